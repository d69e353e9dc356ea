"""What screening must never let through, with a real gateway, real workers and the CLI:

- a blocked upload is never processed again: not by a redrive of its run (API, CLI) nor by
  "retry dead", even when a step beside the screening step had failed;
- a hash list that does not exist holds the upload for review (a typo in its name, or a list
  someone deleted, must not switch matching off), and `pipeline doctor` names it;
- a caller of the invoke API reaches no bucket the pipeline file does not open with a data file,
  names no clamd, names a bounded number of lists, and never reads a file back in an error.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from pipeline.flows.model import RunStatus, StepStatus
from pipeline.gateway.app import create_app
from pipeline.invocation import Status
from pipeline.measure.samples import generate
from pipeline.runtime import Runtime
from tests.helpers import Proc, ServedApp, pipeline_runtime, wait_until

pytestmark = pytest.mark.integration

# `broken` runs beside the screening step, not after it, and fails (its watermark does not
# exist): a redrive of the blocked run would run it, and `thumbs`, on the blocked upload.
CONFIG = """
version: 1
buckets: [media]
screening: {on_block: copy}
functions:
  screen: {max_attempts: 1}
  filter: {max_attempts: 1}
flows:
  images:
    steps:
      screen:
        function: screen
        params: {hash_lists: ["s3://media/.pipeline/hashes/known-bad.txt"], nsfw: false}
      broken:
        function: filter
        params: {steps: [{op: watermark, image: "s3://media/brand/missing.png"}]}
      thumbs:
        function: thumbnail
        needs: [screen]
        input: source
        if: 'steps.screen.verdict == "pass"'
        params: {sizes: [64]}
  avatars:
    steps:
      screen:
        function: screen
        # The list is called banned-avatars: this name has a typo.
        params: {hash_lists: ["s3://media/.pipeline/hashes/banned-avatar.txt"], nsfw: false}
      thumbs:
        function: thumbnail
        needs: [screen]
        input: source
        if: 'steps.screen.verdict == "pass"'
        params: {sizes: [64]}
rules:
  - {name: images, bucket: media, prefix: uploads/, content_types: ["image/*"], flow: images}
  - {name: avatars, bucket: media, prefix: avatars/, content_types: ["image/*"], flow: avatars}
"""


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _run(runtime: Runtime, key: str) -> RunStatus | None:
    runs = runtime.ledger.runs.for_object("media", key)
    return runs[0].status if runs else None


def test_a_blocked_upload_is_never_processed_again(redis_url: str, tmp_path: Path) -> None:
    runtime, env = pipeline_runtime(CONFIG, redis_url, tmp_path)
    runtime.store.ensure_bucket("media")
    image = generate(tmp_path / "samples")[0]
    listed = _cli(env, "hashes", "add", str(image), "--list", "known-bad")
    assert listed.returncode == 0, listed.stderr
    banned = _cli(env, "hashes", "add", str(image), "--list", "banned-avatars")
    assert banned.returncode == 0, banned.stderr
    # Only filter first: the parallel step has failed before the upload is screened.
    filters = Proc(["worker", "--functions", "filter"], env, tmp_path / "filter.log")
    screens: Proc | None = None
    try:
        runtime.store.put_file("media", "uploads/listed.jpg", image, content_type="image/jpeg")
        [run] = runtime.ledger.runs.for_object("media", "uploads/listed.jpg")

        def broken_failed() -> bool:
            current = runtime.ledger.runs.get(run.id)
            return current is not None and current.steps["broken"].status.failure

        wait_until(broken_failed, 60, "the parallel step to fail", interval=0.1)
        screens = Proc(["worker", "--functions", "screen,thumbnail"], env, tmp_path / "screen.log")
        wait_until(lambda: _run(runtime, "uploads/listed.jpg") == RunStatus.BLOCKED, 60, "the block")
        blocked = runtime.ledger.runs.get(run.id)
        assert blocked is not None and blocked.steps["thumbs"].skip_cause == "blocked"
        [failed_id] = blocked.steps["broken"].invocations

        with ServedApp(create_app(runtime.settings)) as api:
            refused = api.post(f"/api/runs/{run.id}/redrive")
            assert refused.status_code == 409, refused.text
            assert "blocked by screening" in refused.json()["detail"]
            # The failed step dies for good (attempts used up): "Retry dead" redrives dead steps'
            # runs, and must not redrive this one.
            assert runtime.ledger.invocations.transition(failed_id, (Status.FAILED,), Status.DEAD, error="x")
            retried = api.post("/api/invocations/retry-dead")
            assert retried.status_code == 202, retried.text
            assert retried.json()["requeued"] == [], retried.json()
        cli = _cli(env, "runs", "redrive", run.id)
        assert cli.returncode != 0 and "blocked by screening" in cli.stderr, cli.stderr

        after = runtime.ledger.runs.get(run.id)
        assert after is not None and after.status == RunStatus.BLOCKED
        assert after.steps["broken"].invocations == [failed_id] and after.steps["thumbs"].invocations == []
        made = [o.key for o in runtime.store.list("media", "derived/")]
        assert made == ["derived/uploads/listed.jpg/screen/screen.json"], "only the screening report"

        # A list named with a typo: the avatar is held for review with the reason, not passed.
        runtime.store.put_file("media", "avatars/a.jpg", image, content_type="image/jpeg")
        wait_until(lambda: _run(runtime, "avatars/a.jpg") == RunStatus.HELD, 60, "the avatar held")
        [held] = runtime.ledger.runs.for_object("media", "avatars/a.jpg")
        assert held.steps["thumbs"].status == StepStatus.HELD
        assert held.screening is not None and held.screening.reasons == [
            "hash list s3://media/.pipeline/hashes/banned-avatar.txt does not exist: "
            "nothing could be matched against it"
        ]
        # An animated GIF whose second frame is the listed image (the first is another photo).
        animated = tmp_path / "animated.gif"
        with Image.open(generate(tmp_path / "other")[3]) as first, Image.open(image) as second:
            size = (480, 320)  # one canvas: every frame whole, as an animation's frames are
            frames = [first.convert("RGB").resize(size), second.convert("RGB").resize(size)]
            frames[0].save(animated, save_all=True, append_images=[frames[1], frames[0]], duration=100)
        runtime.store.put_file("media", "uploads/animated.gif", animated, content_type="image/gif")
        wait_until(
            lambda: _run(runtime, "uploads/animated.gif") not in (None, RunStatus.RUNNING), 60, "the GIF"
        )
        [gif] = runtime.ledger.runs.for_object("media", "uploads/animated.gif")
        assert gif.status == RunStatus.BLOCKED, (
            gif.reason,
            gif.steps["screen"].fields,
            gif.steps["screen"].reason,
        )
        assert gif.reason is not None and "frame 2 of 3 matches" in gif.reason, gif.reason

        doctor = _cli(env, "doctor")
        assert "flows.avatars.steps.screen: s3://media/.pipeline/hashes/banned-avatar.txt does not exist" in (
            doctor.stdout
        ), doctor.stdout
        assert "known-bad.txt does not exist" not in doctor.stdout
        flows = _cli(env, "flows")
        assert "banned-avatar.txt does not exist" in flows.stderr, flows.stderr
    finally:
        filters.stop()
        if screens is not None:
            screens.stop()


def test_invoke_callers_reach_no_other_bucket_no_socket_and_read_no_file(
    redis_url: str, tmp_path: Path
) -> None:
    runtime, env = pipeline_runtime(CONFIG, redis_url, tmp_path)
    for bucket in ("media", "private"):
        runtime.store.ensure_bucket(bucket)
    image = generate(tmp_path / "samples")[0]
    runtime.store.put_file("media", "plain/photo.jpg", image, content_type="image/jpeg")
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-TOKEN-4242 the rest of a private file\n")
    runtime.store.put_file("private", "secret.txt", secret)
    runtime.store.put_file("media", "notes/secret.txt", secret)
    worker = Proc(["worker", "--functions", "screen"], env, tmp_path / "worker.log")
    try:
        with ServedApp(create_app(runtime.settings)) as api:

            def invoke(params: dict[str, object]) -> tuple[int, dict[str, object]]:
                body = {"bucket": "media", "key": "plain/photo.jpg", "params": {"nsfw": False, **params}}
                answer = api.post("/api/functions/screen/invoke", json=body)
                return answer.status_code, answer.json()

            status, body = invoke({"hash_lists": ["s3://private/secret.txt"]})
            assert status == 403 and "'private' is not open to invoke" in str(body["detail"]), body
            status, body = invoke({"clamd": "tcp://10.0.0.5:80"})
            assert status == 422 and "clamd is set by the pipeline file only" in str(body["detail"]), body
            status, body = invoke({"clamd": "unix:///var/run/docker.sock"})
            assert status == 422, body
            many = [f"s3://media/.pipeline/hashes/l{i}.txt" for i in range(17)]
            status, body = invoke({"hash_lists": many})
            assert status == 422 and "at most 16" in str(body["detail"]), body

            # A file of an open bucket named as a list: the invocation fails, and says why without
            # quoting a byte of it.
            status, body = invoke({"hash_lists": ["s3://media/notes/secret.txt"]})
            assert status == 202, body
            inv_id = str(body["id"])

            def finished() -> bool:
                inv = runtime.ledger.invocations.get(inv_id)
                return inv is not None and inv.status.finished

            wait_until(finished, 60, "the invocation")
            inv = runtime.ledger.invocations.get(inv_id)
            assert inv is not None and inv.status == Status.FAILED and inv.error
            assert "not a hash list entry" in inv.error and "SECRET" not in inv.error, inv.error
            assert "4242" not in api.get(f"/api/invocations/{inv_id}").text
    finally:
        worker.stop()
