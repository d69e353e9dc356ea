"""Screening in a flow, end to end with real processes: a clamd with our own EICAR signature, the
nudity classifier of the [moderation] extra, a worker, the webhook worker and a real receiver.

A clean image passes and is thumbnailed; an image carrying the EICAR string is blocked and moved to
quarantine; a video is screened on sampled frames; two uploads held for review are approved
through the API (their held step then runs) and rejected through the CLI (quarantined), each
decision recorded with who and when, and each outcome announced by a signed webhook."""

from __future__ import annotations

import base64
import getpass
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import ObjectNotFound
from pipeline.flows.model import Run, RunStatus, StepStatus
from pipeline.gateway.app import create_app
from pipeline.measure.samples import generate
from pipeline.runtime import Runtime
from tests.clamd import EICAR, FOUND, running_clamd
from tests.helpers import REPO, Proc, ServedApp, pipeline_runtime, wait_until
from tests.receiver import Receiver

pytestmark = pytest.mark.integration

CONFIG = """
version: 1
buckets: [media]
screening: {{clamd: "{clamd}"}}
functions:
  screen: {{max_attempts: 1}}
webhooks:
  - id: app
    url: "{receiver}/app"
    secret_env: APP_WEBHOOK_SECRET
    events: [object.held, object.blocked, object.rejected, run.completed]
flows:
  images:
    steps:
      screen: {{function: screen}}
      thumbs:
        function: thumbnail
        needs: [screen]
        input: source
        if: 'steps.screen.verdict == "pass"'
        params: {{sizes: [64]}}
  clips:
    steps:
      screen: {{function: screen, params: {{frames: 5}}}}
  strict:
    steps:
      # Every score is at or over 0: each upload goes to a person.
      screen: {{function: screen, params: {{review_at: 0.0}}}}
      thumbs:
        function: thumbnail
        needs: [screen]
        input: source
        if: 'steps.screen.verdict == "pass"'
        params: {{sizes: [64]}}
rules:
  - {{name: images, bucket: media, prefix: uploads/, content_types: ["image/*"], flow: images}}
  - {{name: clips, bucket: media, prefix: uploads/, content_types: ["video/*"], flow: clips}}
  - {{name: strict, bucket: media, prefix: strict/, content_types: ["image/*"], flow: strict}}
"""


def run_of(runtime: Runtime, key: str) -> Run | None:
    runs = runtime.ledger.runs.for_object("media", key)
    return runs[0] if runs else None


def settled(runtime: Runtime, key: str) -> bool:
    run = run_of(runtime, key)
    return run is not None and run.status != RunStatus.RUNNING


def gone(runtime: Runtime, key: str) -> bool:
    try:
        runtime.store.stat("media", key)
    except ObjectNotFound:
        return True
    return False


def test_screening_blocks_holds_and_passes_and_reviewers_decide(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    monkeypatch.setenv("APP_WEBHOOK_SECRET", secret)  # the gateway in this process reads the file too
    with running_clamd() as clamd, Receiver() as receiver:
        receiver.secrets["/app"].append(secret)
        runtime, env = pipeline_runtime(
            CONFIG.format(clamd=clamd, receiver=receiver.url), redis_url, tmp_path
        )
        env = {
            **env,
            "APP_WEBHOOK_SECRET": secret,
            "PIPELINE_WEBHOOK_ALLOW_NETWORKS": '["127.0.0.1/32"]',
        }
        runtime.store.ensure_bucket("media")
        images = generate(tmp_path / "samples")
        clean, other = images[0], images[2]
        infected = tmp_path / "infected.jpg"
        infected.write_bytes(clean.read_bytes() + EICAR)  # still a valid JPEG: the string trails it
        worker = Proc(
            ["worker", "--functions", "screen,thumbnail", "--concurrency", "2"], env, tmp_path / "w.log"
        )
        hooks = Proc(["worker", "--webhooks"], env, tmp_path / "hooks.log")
        try:
            wait_until(
                lambda: len(runtime.ledger.workers.live()) >= 2 or not worker.alive(), 60, "the workers"
            )
            uploads = {
                "uploads/clean.jpg": clean,
                "uploads/infected.jpg": infected,
                "uploads/clip.mp4": REPO / "samples" / "media" / "clip.mp4",
                "strict/a.jpg": clean,
                "strict/b.jpg": other,
            }
            for key, path in uploads.items():
                content_type = "video/mp4" if key.endswith(".mp4") else "image/jpeg"
                runtime.store.put_file("media", key, path, content_type=content_type)
            wait_until(lambda: all(settled(runtime, k) for k in uploads), 90, "every run", interval=0.1)
            _check_screened(runtime, tmp_path)
            _check_reviews(runtime, env, receiver, tmp_path)
            # Seven screenings, one model load per pool process (at its warm-up).
            assert worker.output().count("nudity classifier loaded") == 2
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\n--- worker:\n{worker.output()[-4000:]}\n--- webhooks:\n{hooks.output()[-2000:]}"
            ) from None
        finally:
            worker.stop()
            hooks.stop()


def _check_screened(runtime: Runtime, tmp_path: Path) -> None:
    passed = run_of(runtime, "uploads/clean.jpg")
    assert passed is not None and passed.status == RunStatus.SUCCEEDED, passed
    fields = passed.steps["screen"].fields
    assert fields["verdict"] == "pass" and fields["malware"] is None and fields["notes"] == []
    assert isinstance(fields["nsfw"], float) and 0 <= fields["nsfw"] < 0.6  # the classifier ran
    assert [o.key for o in passed.steps["thumbs"].outputs] == ["derived/uploads/clean.jpg/thumbnail/64.jpg"]

    blocked = run_of(runtime, "uploads/infected.jpg")
    assert blocked is not None and blocked.status == RunStatus.BLOCKED
    assert blocked.reason == f"blocked by screen: malware: clamd found {FOUND}"
    assert (
        blocked.steps["thumbs"].status == StepStatus.SKIPPED
        and blocked.steps["thumbs"].skip_cause == "blocked"
    )
    assert blocked.screening is not None and blocked.screening.scores["malware"] == FOUND
    wait_until(lambda: gone(runtime, "uploads/infected.jpg"), 30, "the infected upload to be moved")
    moved = runtime.store.stat("media", "quarantine/uploads/infected.jpg")
    assert moved.size == (tmp_path / "infected.jpg").stat().st_size
    assert FOUND in moved.metadata["pipeline-blocked"] and moved.metadata["pipeline-run"] == blocked.id
    # The quarantined copy started nothing.
    assert run_of(runtime, "quarantine/uploads/infected.jpg") is None

    video = run_of(runtime, "uploads/clip.mp4")
    assert video is not None and video.status == RunStatus.SUCCEEDED, video
    assert video.steps["screen"].fields["frames_checked"] == 5

    for key in ("strict/a.jpg", "strict/b.jpg"):
        held = run_of(runtime, key)
        assert held is not None and held.status == RunStatus.HELD
        assert held.steps["thumbs"].status == StepStatus.HELD and held.steps["thumbs"].invocations == []
        assert held.screening is not None and held.screening.held == ["thumbs"]
        assert held.screening.reasons[0].startswith("the image: nudity score ")


def _check_reviews(runtime: Runtime, env: dict[str, str], receiver: Receiver, tmp_path: Path) -> None:
    approved, rejected = run_of(runtime, "strict/a.jpg"), run_of(runtime, "strict/b.jpg")
    assert approved is not None and rejected is not None
    with ServedApp(create_app(runtime.settings)) as api:
        response = api.post(f"/api/runs/{approved.id}/approve", json={"by": "ana", "note": "a landscape"})
        assert response.status_code == 202, response.text
        assert response.json()["steps"]["thumbs"]["status"] == "running"
        wait_until(lambda: settled(runtime, "strict/a.jpg"), 60, "the approved run", interval=0.1)
        again = api.post(f"/api/runs/{approved.id}/approve", json={"by": "ana"})
        assert again.status_code == 409 and "holds no step" in again.text
    done = run_of(runtime, "strict/a.jpg")
    assert done is not None and done.status == RunStatus.SUCCEEDED
    assert done.steps["thumbs"].outputs and done.steps["screen"].fields["reviewed"] == "approved by ana"
    [decision] = done.decisions
    assert (decision.action, decision.by, decision.via, decision.note, decision.login) == (
        "approve",
        "ana",
        "api",
        "a landscape",
        "no API token (development mode)",
    )

    cli = subprocess.run(
        [sys.executable, "-m", "pipeline", "runs", "reject", rejected.id, "--by", "bo", "--note", "not for us"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert f"run {rejected.id} rejected by bo; quarantined as media/quarantine/strict/b.jpg" in cli.stdout
    final = run_of(runtime, "strict/b.jpg")
    assert (
        final is not None
        and final.status == RunStatus.BLOCKED
        and final.reason == "rejected by bo: not for us"
    )
    assert final.screening is not None and final.screening.quarantine is not None
    assert final.screening.quarantine.done_at is not None
    assert gone(runtime, "strict/b.jpg") and runtime.store.stat("media", "quarantine/strict/b.jpg").size > 0

    def announced() -> bool:
        got = {r.json["type"] for r in receiver.at("/app")}
        return {"object.held", "object.blocked", "object.rejected", "run.completed"} <= got

    wait_until(announced, 60, "the webhooks", interval=0.1)
    bodies = receiver.at("/app")
    assert all(r.verified for r in bodies), [r.verify_error for r in bodies]
    held = sorted(r.json["data"]["key"] for r in receiver.at("/app", "object.held"))
    assert held == ["strict/a.jpg", "strict/b.jpg"]
    [blocked] = [r.json["data"] for r in receiver.at("/app", "object.blocked")]
    assert blocked["key"] == "uploads/infected.jpg" and blocked["scores"]["malware"] == FOUND
    assert blocked["quarantine"] == {
        "bucket": "media",
        "key": "quarantine/uploads/infected.jpg",
        "mode": "move",
    }
    [rejected_body] = [r.json["data"] for r in receiver.at("/app", "object.rejected")]
    assert rejected_body["key"] == "strict/b.jpg" and rejected_body["reason"] == "rejected by bo: not for us"
    assert rejected_body["screening"]["decision"]["by"] == "bo"
    assert rejected_body["screening"]["decision"]["via"] == "cli"
    assert rejected_body["screening"]["decision"]["login"] == f"{getpass.getuser()}@{socket.gethostname()}"
    completed = {r.json["data"]["key"] for r in receiver.at("/app", "run.completed")}
    assert "strict/a.jpg" in completed and "strict/b.jpg" not in completed


def test_the_reconciler_sweep_finishes_a_quarantine_a_dead_worker_left(
    redis_url: str, tmp_path: Path
) -> None:
    """The worker that blocked the run died before it moved the upload: the sweep moves it, once."""
    from pipeline.flows.model import Quarantine, Screening

    runtime, _ = pipeline_runtime(
        CONFIG.format(clamd="unix:///nowhere", receiver="http://127.0.0.1:9"), redis_url, tmp_path
    )
    runtime.store.ensure_bucket("media")
    image = generate(tmp_path / "samples")[0]
    info = runtime.store.put_file("media", "other/left.jpg", image, content_type="image/jpeg")
    run = Run(
        id="run-left-behind", flow="images", rule="images", bucket="media", key="other/left.jpg",
        version=info.version_tag, etag=info.etag, status=RunStatus.BLOCKED, reason="blocked by screen: x",
        screening=Screening(
            step="screen", invocation_id="i1", at=1.0, screened="block", verdict="block",
            quarantine=Quarantine(bucket="media", key="quarantine/other/left.jpg", mode="move"),
        ),
    )  # fmt: skip
    pipe = runtime.redis.pipeline(transaction=True)
    runtime.ledger.runs.add(pipe, run)
    pipe.execute()
    runtime.flows.sweep()
    assert gone(runtime, "other/left.jpg")
    assert runtime.store.stat("media", "quarantine/other/left.jpg").size == info.size
    swept = runtime.ledger.runs.get(run.id)
    assert swept is not None and swept.screening is not None and swept.screening.quarantine is not None
    assert swept.screening.quarantine.done_at is not None
    runtime.flows.sweep()  # done: nothing more happens
    assert runtime.ledger.runs.get(run.id) == swept
