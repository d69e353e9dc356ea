"""The issue's video flow through real processes: the S3 peer (moto S3 -> SNS -> gateway), a
worker running ffmpeg, the webhook worker and a receiver of signed run webhooks."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from minio.commonconfig import ENABLED
from minio.error import S3Error
from minio.versioningconfig import VersioningConfig

from pipeline.measure.samples import generate, make_video
from pipeline.notify.payloads import ProcessedPayload, RunPayload
from tests.helpers import Proc, built_in_template, need, wait_until
from tests.integration.conftest import Stack, open_stack
from tests.integration.test_e2e_s3 import object_exists, read_image, subscribe_gateway
from tests.receiver import Receiver

pytestmark = pytest.mark.integration

VIDEO_FLOW = """
version: 1
buckets: [{bucket}]
functions:
  transcode: {{concurrency: 2, time_limit: 120, max_attempts: 2}}
flows:
  video:
    steps:
      probe: {{function: transcode, preset: probe}}
      mp4: {{function: transcode, preset: mp4, params: {{heights: [180]}}}}
      hls:
        function: transcode
        preset: hls
        params: {{heights: [180], segment_seconds: 1}}
        if: "source.height >= 480 && source.duration <= 7200"
      poster: {{function: transcode, preset: poster}}
      poster-thumbs:
        function: thumbnail
        needs: [poster]
        params: {{sizes: [64, 128]}}
rules:
  - name: video-renditions
    bucket: {bucket}
    prefix: uploads/
    content_types: ["video/*"]
    flow: video
"""


@pytest.fixture
def video_stack(moto_endpoint: str, redis_url: str, tmp_path: Path) -> Any:
    need(bool(shutil.which("ffmpeg")), "ffmpeg is not installed")
    with open_stack(moto_endpoint, redis_url, tmp_path, VIDEO_FLOW, concurrency=2) as stack:
        yield stack


def runs_of(stack: Stack, key: str) -> list[dict[str, Any]]:
    got = httpx.get(f"{stack.gateway_url}/api/runs", params={"bucket": stack.bucket, "key": key})
    items: list[dict[str, Any]] = got.json()["items"]
    return items


def test_the_video_flow_through_the_s3_peer(video_stack: Stack, tmp_path: Path) -> None:
    stack = video_stack
    webhooks = Proc(["worker", "--webhooks"], stack.env, tmp_path / "webhooks.log")
    try:
        with Receiver() as receiver:
            created = httpx.post(f"{stack.gateway_url}/api/webhooks", json={"url": f"{receiver.url}/app"})
            assert created.status_code == 201, created.text
            receiver.secrets["/app"].append(created.json()["secret"])
            subscribe_gateway(stack)
            tall = make_video(tmp_path / "tall.mp4", width=854, height=480, seconds=1)
            short = make_video(tmp_path / "short.mp4", width=320, height=180, seconds=1)
            stack.minio.fput_object(stack.bucket, "uploads/tall.mp4", str(tall), content_type="video/mp4")
            stack.minio.fput_object(stack.bucket, "uploads/short.mp4", str(short), content_type="video/mp4")
            for key in ("uploads/tall.mp4", "uploads/short.mp4"):
                wait_until(
                    lambda k=key: [r["status"] for r in runs_of(stack, k)] == ["succeeded"],  # type: ignore[misc]
                    120,
                    f"the run of {key}",
                    interval=0.25,
                )
            wait_until(lambda: len(receiver.at("/app", "object.processed")) >= 2, 30, "object.processed")
            _check(stack, receiver)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- worker:\n{stack.worker.output()[-3000:]}") from None
    finally:
        assert webhooks.stop() == 0, webhooks.output()[-3000:]


def _check(stack: Stack, receiver: Receiver) -> None:
    [tall] = runs_of(stack, "uploads/tall.mp4")
    [short] = runs_of(stack, "uploads/short.mp4")
    assert {name: s["status"] for name, s in tall["steps"].items()} == dict.fromkeys(
        ("probe", "mp4", "hls", "poster", "poster-thumbs"), "succeeded"
    )
    # The short clip is under 480 lines: hls is skipped with its reason, the run still succeeds.
    assert short["steps"]["hls"]["status"] == "skipped"
    assert short["steps"]["hls"]["reason"].startswith("condition not met: source.height >= 480")
    assert short["steps"]["poster-thumbs"]["status"] == "succeeded"
    for run in (tall, short):
        outputs = [o for s in run["steps"].values() for o in s["outputs"]]
        for output in outputs:  # every step's outputs are in the bucket
            stat = stack.minio.stat_object(output["bucket"], output["key"])
            assert stat.size == output["size"]
        [poster] = run["steps"]["poster"]["outputs"]
        thumbs = run["steps"]["poster-thumbs"]["outputs"]
        assert sorted(o["key"] for o in thumbs) == [
            poster["key"] + "/thumbnail/128.jpg",
            poster["key"] + "/thumbnail/64.jpg",
        ]
        # Derived from the poster: its lineage says so, and its shape is the poster's.
        [inv_id] = run["steps"]["poster-thumbs"]["invocations"]
        inv = httpx.get(f"{stack.gateway_url}/api/invocations/{inv_id}").json()
        assert inv["key"] == poster["key"] and inv["run_id"] == run["id"] and inv["step"] == "poster-thumbs"
        stat = stack.minio.stat_object(stack.bucket, thumbs[0]["key"])
        assert stat.metadata is not None
        assert stat.metadata["x-amz-meta-pipeline-source-key"] == poster["key"]
        poster_img = read_image(stack, poster["key"])
        thumb_img = read_image(stack, poster["key"] + "/thumbnail/128.jpg")
        assert thumb_img.width == 128
        assert abs(thumb_img.height - 128 * poster_img.height / poster_img.width) <= 1

    assert 'pipeline_runs{status="succeeded"} 2.0' in httpx.get(f"{stack.gateway_url}/metrics").text
    got = receiver.at("/app")
    assert all(r.verified for r in got), [r.verify_error for r in got if not r.verified]
    completed = [RunPayload.model_validate_json(r.body) for r in receiver.at("/app", "run.completed")]
    assert sorted(p.data.key for p in completed) == ["uploads/short.mp4", "uploads/tall.mp4"]
    by_key = {p.data.key: p.data for p in completed}
    assert by_key["uploads/tall.mp4"].steps["poster-thumbs"].function == "thumbnail"
    assert by_key["uploads/short.mp4"].steps["hls"].status == "skipped"
    processed = [
        ProcessedPayload.model_validate_json(r.body) for r in receiver.at("/app", "object.processed")
    ]
    assert sorted(p.data.key for p in processed) == ["uploads/short.mp4", "uploads/tall.mp4"]
    for p in processed:  # sent once the run ended, with the run in it
        assert p.data.succeeded and [r.id for r in p.data.runs] == [by_key[p.data.key].id]
        assert p.data.invocations == []  # every invocation of this upload was a step of its run


@pytest.fixture
def built_in_stack(moto_endpoint: str, redis_url: str, tmp_path: Path) -> Any:
    with open_stack(moto_endpoint, redis_url, tmp_path, built_in_template(), concurrency=2) as stack:
        yield stack


def test_the_built_in_pipeline_through_the_s3_peer(built_in_stack: Stack, tmp_path: Path) -> None:
    """What users run, on a versioned bucket: a clean image is screened, then thumbnailed and
    filtered; a listed image under a key of 1,024 bytes is blocked and quarantined under a
    shortened key, and its version is deleted for good (not readable by its version id)."""
    stack = built_in_stack
    stack.minio.set_bucket_versioning(stack.bucket, VersioningConfig(ENABLED))
    subscribe_gateway(stack)
    # Far apart as PDQ sees them (134 of 256 bits; the landscape is only 72 from the portrait).
    _, listed, clean, *_ = generate(tmp_path / "samples")
    added = subprocess.run(
        [sys.executable, "-m", "pipeline", "hashes", "add", str(listed), "--bucket", stack.bucket],
        env=stack.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    long_key = "uploads/" + "x" * (1024 - len("uploads/") - len(".jpg")) + ".jpg"
    stack.minio.fput_object(stack.bucket, "uploads/clean.png", str(clean), content_type="image/png")
    blocked = stack.minio.fput_object(stack.bucket, long_key, str(listed), content_type="image/jpeg")
    assert blocked.version_id
    try:
        for key in ("uploads/clean.png", long_key):
            wait_until(
                lambda k=key: [r["status"] for r in runs_of(stack, k)] not in ([], ["running"]),  # type: ignore[misc]
                60,
                f"the run of {key[:40]}",
                interval=0.25,
            )
        [passed] = runs_of(stack, "uploads/clean.png")
        assert passed["status"] == "succeeded", passed
        made = sorted(o["key"] for s in passed["steps"].values() for o in s["outputs"])
        assert made == [
            f"derived/uploads/clean.png/{name}"
            for name in (
                "filter/filtered.webp",
                "screen/screen.json",
                "thumbnail/1024.jpg",
                "thumbnail/256.jpg",
            )
        ]
        [stopped] = runs_of(stack, long_key)
        assert stopped["status"] == "blocked" and "known-bad" in stopped["reason"], stopped
        target = stopped["screening"]["quarantine"]
        digest = hashlib.sha256(long_key.encode()).hexdigest()
        assert target["key"] == f"quarantine/_long/{digest}"
        wait_until(lambda: not object_exists(stack, long_key), 30, "the blocked upload to be moved")
        kept = stack.minio.stat_object(stack.bucket, target["key"])
        assert kept.size == listed.stat().st_size and kept.content_type == "image/jpeg"
        assert kept.metadata is not None, kept
        assert kept.metadata["x-amz-meta-pipeline-source-key"] == long_key  # ASCII: it fits
        # moto's notification carries no versionId (AWS's does): the quarantine finds the version.
        with pytest.raises(S3Error) as gone:  # removed for good, not hidden behind a delete marker
            stack.minio.stat_object(stack.bucket, long_key, version_id=blocked.version_id)
        assert gone.value.code in ("NoSuchVersion", "NoSuchKey")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- worker:\n{stack.worker.output()[-3000:]}") from None
