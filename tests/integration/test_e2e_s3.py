"""Upload -> notification -> queue -> worker -> thumbnails in the bucket, with real processes:
moto as the S3 peer (S3 -> SNS -> HTTP push, and MinIO-format webhooks), the gateway under
uvicorn, a Celery worker on Redis."""

from __future__ import annotations

import copy
import io
import json
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3
import httpx
import pytest
from minio.error import S3Error
from PIL import Image
from pydantic import SecretStr

from pipeline.measure.samples import make_video
from pipeline.settings import Settings
from pipeline.storage.s3 import S3Store
from tests.helpers import EVENTS, need, wait_until
from tests.integration.conftest import TOKEN, Stack

pytestmark = pytest.mark.integration


def subscribe_gateway(stack: Stack) -> None:
    """Configure the bucket like AWS: ObjectCreated under uploads/ -> SNS topic -> HTTP subscription."""
    kw: dict[str, Any] = {
        "endpoint_url": stack.s3_endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "test",
        "aws_secret_access_key": "test",
    }
    sns = boto3.client("sns", **kw)
    s3 = boto3.client("s3", **kw)
    topic = sns.create_topic(Name=f"{stack.bucket}-events")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=f"{stack.gateway_url}/events/sns?token={TOKEN}")
    s3.put_bucket_notification_configuration(
        Bucket=stack.bucket,
        NotificationConfiguration={
            "TopicConfigurations": [
                {
                    "TopicArn": topic,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "uploads/"}]}},
                }
            ]
        },
    )


def object_exists(stack: Stack, key: str) -> bool:
    try:
        stack.minio.stat_object(stack.bucket, key)
    except S3Error:
        return False
    return True


def read_image(stack: Stack, key: str) -> Image.Image:
    response = stack.minio.get_object(stack.bucket, key)
    try:
        data = response.read()
    finally:
        response.close()
        response.release_conn()
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.copy()


def invocations_for(stack: Stack, key: str, function: str = "thumbnail") -> list[dict[str, Any]]:
    params = {"bucket": stack.bucket, "key": key, "function": function}
    items: list[dict[str, Any]] = httpx.get(f"{stack.gateway_url}/api/invocations", params=params).json()[
        "items"
    ]
    return items


def test_s3_put_via_sns_makes_thumbnails(stack: Stack, sample_images: dict[str, Path]) -> None:
    subscribe_gateway(stack)
    key = "uploads/cat photo+1.jpg"  # space and plus: quote_plus-encoded in the event, decoded once
    stack.minio.fput_object(stack.bucket, key, str(sample_images["landscape.jpg"]), content_type="image/jpeg")

    small, large = f"derived/{key}/thumbnail/64.jpg", f"derived/{key}/thumbnail/200.jpg"
    wait_until(lambda: object_exists(stack, small) and object_exists(stack, large), 30, "thumbnails")
    for name, box in ((small, 64), (large, 200)):
        width, height = read_image(stack, name).size
        assert width == box and abs(height - box * 1067 / 1600) <= 1  # aspect kept
    s3 = Settings(s3_endpoint=stack.s3_endpoint, s3_access_key="test", s3_secret_key=SecretStr("test")).s3()
    assert s3 is not None
    stat = S3Store(s3).stat(stack.bucket, large)
    assert stat.content_type == "image/jpeg"
    assert stat.metadata["pipeline-source-key"] == key  # lineage on every output
    assert stat.metadata["pipeline-function"] == "thumbnail" and stat.metadata["pipeline-generation"] == "1"

    [inv] = invocations_for(stack, key)
    wait_until(lambda: invocations_for(stack, key)[0]["status"] == "succeeded", 10, "the ledger")
    [inv] = invocations_for(stack, key)
    assert inv["function"] == "thumbnail" and inv["attempts"] == 1 and inv["error"] is None
    assert inv["started_at"] >= inv["created_at"] and inv["finished_at"] >= inv["started_at"]
    assert inv["duration_ms"] > 0
    assert sorted(o["key"] for o in inv["outputs"]) == sorted([large, small])
    assert all(o["size"] > 0 and o["content_type"] == "image/jpeg" for o in inv["outputs"])
    events = httpx.get(f"{stack.gateway_url}/api/events").json()["items"]
    assert any(e["source"] == "sns" and e["key"] == key and e["status"] == "accepted" for e in events)
    # Outputs under derived/ are not watched: no second generation of work.
    assert {i.key for i in stack.ledger.invocations.query(bucket=stack.bucket)} == {key}


def minio_body(stack: Stack, key: str) -> dict[str, Any]:
    stat = stack.minio.stat_object(stack.bucket, key)
    body: dict[str, Any] = copy.deepcopy(json.loads((EVENTS / "minio-put.json").read_text()))
    body["Key"] = f"{stack.bucket}/{key}"
    record = body["Records"][0]
    record["s3"]["bucket"]["name"] = stack.bucket
    record["s3"]["object"].update(key=quote_plus(key), eTag=stat.etag, size=stat.size)
    return body


def test_minio_webhook_makes_thumbnails_and_refuses_bad_tokens(
    stack: Stack, sample_images: dict[str, Path]
) -> None:
    key = "uploads/portrait.jpg"
    stack.minio.fput_object(
        stack.bucket, key, str(sample_images["portrait-exif-rotated.jpg"]), content_type="image/jpeg"
    )
    body = minio_body(stack, key)

    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        refused = httpx.post(f"{stack.gateway_url}/events/minio", json=body, headers=headers)
        assert refused.status_code == 401
    assert stack.ledger.invocations.query(bucket=stack.bucket) == []

    accepted = httpx.post(
        f"{stack.gateway_url}/events/minio", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert accepted.status_code == 200, accepted.text
    large = f"derived/{key}/thumbnail/200.jpg"
    wait_until(lambda: object_exists(stack, large), 30, "thumbnail")
    assert read_image(stack, large).size == (150, 200)  # EXIF orientation applied: portrait


def test_a_lying_file_is_rejected_with_its_reason(stack: Stack, tmp_path: Path) -> None:
    subscribe_gateway(stack)
    fake = tmp_path / "invoice.jpg"
    fake.write_bytes(b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n")
    key = "uploads/invoice.jpg"
    stack.minio.fput_object(stack.bucket, key, str(fake), content_type="image/jpeg")
    wait_until(lambda: [i for i in invocations_for(stack, key) if i["status"] == "rejected"], 30, "rejection")
    [inv] = invocations_for(stack, key)
    assert inv["attempts"] == 1  # a permanent verdict: never retried
    assert f"{stack.bucket}/{key}" in inv["error"] and "application/pdf" in inv["error"]
    assert not object_exists(stack, f"derived/{key}/thumbnail/64.jpg")


@pytest.mark.parametrize("damage", ["truncated"])
def test_damaged_image_fails_permanently(
    stack: Stack, sample_images: dict[str, Path], tmp_path: Path, damage: str
) -> None:
    subscribe_gateway(stack)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(sample_images["landscape.jpg"].read_bytes()[:1500])
    key = "uploads/broken.jpg"
    stack.minio.fput_object(stack.bucket, key, str(broken), content_type="image/jpeg")
    wait_until(lambda: [i for i in invocations_for(stack, key) if i["status"] == "failed"], 30, "failure")
    [inv] = invocations_for(stack, key)
    assert inv["attempts"] == 1 and "MediaError" in inv["error"]


def test_image_and_video_through_the_whole_pipeline(
    stack: Stack, sample_images: dict[str, Path], tmp_path: Path
) -> None:
    """One image -> thumbnails + filtered variant (with a watermark from the bucket) + archive copy;
    one video -> renditions, one-pass HLS, poster and probe JSON, each checked as a user would."""
    need(bool(shutil.which("ffmpeg")), "ffmpeg is not installed")
    subscribe_gateway(stack)
    logo = tmp_path / "logo.png"
    Image.new("RGBA", (40, 40), (0, 0, 0, 255)).save(logo)
    stack.minio.fput_object(stack.bucket, "brand/logo.png", str(logo), content_type="image/png")
    video = make_video(tmp_path / "clip.mp4", width=640, height=360, seconds=2)
    stack.minio.fput_object(stack.bucket, "uploads/clip.mp4", str(video), content_type="video/mp4")
    stack.minio.fput_object(
        stack.bucket, "uploads/pic.jpg", str(sample_images["landscape.jpg"]), content_type="image/jpeg"
    )

    def all_finished() -> bool:
        items = stack.ledger.invocations.query(bucket=stack.bucket, limit=100)
        return len(items) == 8 and all(i.status.finished for i in items)

    try:
        wait_until(all_finished, 90, "every invocation to finish", interval=0.25)
    except AssertionError:
        states = [
            (i.key, i.function, i.status, i.error)
            for i in stack.ledger.invocations.query(bucket=stack.bucket, limit=100)
        ]
        raise AssertionError(f"{states}\n{stack.worker.output()[-4000:]}") from None
    by_key: dict[str, list[Any]] = {}
    for inv in stack.ledger.invocations.query(bucket=stack.bucket, limit=100):
        assert inv.status == "succeeded", (inv.function, inv.error)
        by_key.setdefault(inv.key, []).append(inv)
    assert sorted(i.function for i in by_key["uploads/pic.jpg"]) == ["copy", "filter", "thumbnail"]
    assert sorted(i.function for i in by_key["uploads/clip.mp4"]) == ["copy"] + ["transcode"] * 4

    filtered = read_image(stack, "derived/uploads/pic.jpg/filter/filtered.png")
    assert filtered.size == (300, 200)
    corner = filtered.convert("RGB").getpixel((5, 5))
    assert corner == (0, 0, 0)  # the logo from the bucket, top-left

    archived = stack.minio.stat_object(f"{stack.bucket}-archive", "uploads/pic.jpg")
    assert archived.size == sample_images["landscape.jpg"].stat().st_size

    base = "derived/uploads/clip.mp4/transcode"
    for key in (
        f"{base}/360p.mp4",
        f"{base}/180p.mp4",
        f"{base}/poster.jpg",
        f"{base}/probe.json",
        f"{base}/hls/master.m3u8",
    ):
        assert object_exists(stack, key), key
    master = stack.minio.get_object(stack.bucket, f"{base}/hls/master.m3u8")
    try:
        text = master.read().decode()
    finally:
        master.close()
        master.release_conn()
    for uri in [line for line in text.splitlines() if line and not line.startswith("#")]:
        playlist = stack.minio.get_object(stack.bucket, f"{base}/hls/{uri}")
        try:
            segments = [s for s in playlist.read().decode().splitlines() if s and not s.startswith("#")]
        finally:
            playlist.close()
            playlist.release_conn()
        folder = uri.rsplit("/", 1)[0]
        assert segments and all(object_exists(stack, f"{base}/hls/{folder}/{s}") for s in segments)
    probe_inv = next(
        i for i in by_key["uploads/clip.mp4"] if i.outputs and i.outputs[0].key.endswith("probe.json")
    )
    assert (
        probe_inv.outputs[0].meta["width"] == 640
        and probe_inv.media
        and probe_inv.media["duration"] == pytest.approx(2, abs=0.1)
    )
    renditions = next(
        i for i in by_key["uploads/clip.mp4"] if any(o.key.endswith("360p.mp4") for o in i.outputs)
    )
    assert renditions.progress is not None and renditions.progress["percent"] == 100.0
