"""Worker faults with real Celery worker processes (docs/reliability.md rows 3 and 4)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from pipeline.errors import ObjectNotFound
from pipeline.flows.model import RunStatus
from pipeline.invocation import Invocation, Status
from pipeline.measure.pipelines import PIPELINES, PipelineName, pipeline_under_test
from pipeline.measure.samples import generate, make_video
from pipeline.runtime import Runtime
from pipeline.storage import LocalStore
from tests.helpers import Proc, broker_copies, need, pipeline_runtime, wait_until

pytestmark = pytest.mark.integration

CONFIG = """
version: 1
buckets: [media]
functions:
  misbehaving: {module: tests.fixtures.misbehaving, time_limit: 60, max_attempts: 3}
limits:
  visibility_timeout: 3
  lease_seconds: 2
rules:
  - {name: slow, bucket: media, prefix: slow/, functions: [{function: misbehaving, params: {seconds: 4}}]}
"""


def setup(redis_url: str, tmp_path: Path, config: str = CONFIG) -> tuple[Runtime, dict[str, str]]:
    return pipeline_runtime(config, redis_url, tmp_path)


def start_worker(runtime: Runtime, env: dict[str, str], log: Path) -> Proc:
    before = {w.pid for w in runtime.ledger.workers.live()}
    worker = Proc(["worker", "--concurrency", "1"], env, log)
    wait_until(
        lambda: {w.pid for w in runtime.ledger.workers.live()} - before or not worker.alive(), 30, "a worker"
    )
    return worker


def upload(runtime: Runtime, tmp_path: Path) -> str:
    image = generate(tmp_path / "samples")[0]
    runtime.store.ensure_bucket("media")
    runtime.store.put_file("media", "slow/a.jpg", image, content_type="image/jpeg")
    [inv] = runtime.ledger.invocations.query(bucket="media")
    return inv.id


def status(runtime: Runtime, inv_id: str) -> Status:
    inv = runtime.ledger.invocations.get(inv_id)
    assert inv is not None
    return inv.status


def test_sigterm_finishes_the_running_task_and_nothing_is_redelivered(redis_url: str, tmp_path: Path) -> None:
    runtime, env = setup(redis_url, tmp_path)
    worker = start_worker(runtime, env, tmp_path / "w1.log")
    inv_id = upload(runtime, tmp_path)
    wait_until(lambda: status(runtime, inv_id) == Status.RUNNING, 20, "the task to start")
    assert worker.interrupt(signal.SIGTERM, timeout=30) == 0, worker.output()[-2000:]
    inv = runtime.ledger.invocations.get(inv_id)
    assert inv is not None and inv.status == Status.SUCCEEDED and inv.attempts == 1  # warm shutdown
    # Acknowledged before the worker exited: the broker keeps no copy to redeliver, to this worker
    # or any later one (an unacknowledged message would be back after the visibility timeout).
    assert broker_copies(runtime, inv.queue) == 0


def test_sigkill_of_a_whole_worker_mid_task_is_recovered_by_another(redis_url: str, tmp_path: Path) -> None:
    runtime, env = setup(redis_url, tmp_path)
    doomed = start_worker(runtime, env, tmp_path / "doomed.log")
    inv_id = upload(runtime, tmp_path)
    wait_until(lambda: status(runtime, inv_id) == Status.RUNNING, 20, "the task to start")
    os.killpg(doomed.popen.pid, signal.SIGKILL)  # the main process and its pool children, no goodbye
    doomed.stop()
    rescuer = start_worker(runtime, env, tmp_path / "rescuer.log")
    try:
        wait_until(
            lambda: status(runtime, inv_id) == Status.SUCCEEDED,
            60,
            "the task to be redelivered",
            interval=0.2,
        )
        inv = runtime.ledger.invocations.get(inv_id)
        assert inv is not None and inv.attempts == 2 and inv.worker != "" and inv.error is None
    finally:
        assert rescuer.stop() == 0


def test_task_longer_than_the_visibility_timeout_never_runs_twice_at_once(
    redis_url: str, tmp_path: Path
) -> None:
    """Row 5: the broker redelivers the unacknowledged task to a second worker while the first is
    still running it; the lease turns the redelivery away until the first run has finished."""
    journal = tmp_path / "journal.txt"
    config = CONFIG.replace("visibility_timeout: 3", "visibility_timeout: 2").replace(
        "params: {seconds: 4}", f"params: {{seconds: 8, journal: '{journal}'}}"
    )
    runtime, env = setup(redis_url, tmp_path, config)
    workers = [start_worker(runtime, env, tmp_path / f"w{i}.log") for i in range(2)]
    try:
        inv_id = upload(runtime, tmp_path)
        wait_until(lambda: status(runtime, inv_id) == Status.SUCCEEDED, 60, "the long task", interval=0.2)
        # Every redelivered copy arrives, is turned away and acknowledged: none is left to run.
        wait_until(lambda: broker_copies(runtime, "fn.misbehaving") == 0, 30, "the broker to hold no copy")
        lines = journal.read_text().splitlines()
        assert [line.split()[0] for line in lines] == ["start", "end"], lines  # one run, never overlapping
        inv = runtime.ledger.invocations.get(inv_id)
        assert inv is not None and inv.attempts == 1 and inv.status == Status.SUCCEEDED
        logs = "".join(w.output() for w in workers)
        assert "retry: Retry in" in logs  # the broker did redeliver it, and the lease turned it away
    finally:
        for w in workers:
            w.stop()


TRANSCODE = """
version: 1
buckets: [media]
functions:
  transcode: {time_limit: 120, max_attempts: 3}
limits: {visibility_timeout: 3, lease_seconds: 2}
rules:
  - name: video
    bucket: media
    prefix: uploads/
    functions:
      - {function: transcode, preset: mp4, params: {heights: [720, 360], only_when_needed: false, speed: medium}}
"""


def ffmpeg_under(directory: Path) -> list[int]:
    """ffmpeg processes working inside `directory` (our worker's temp dirs)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"ffmpeg" in (entry / "cmdline").read_bytes().split(b"\0")[0] and str(
                (entry / "cwd").resolve()
            ).startswith(str(directory.resolve())):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def running_transcode(runtime: Runtime, step: str | None) -> Invocation | None:
    """The transcode invocation (of the flow step `step`, where there is a flow) now running."""
    for inv in runtime.ledger.invocations.query(bucket="media", limit=50):
        if (
            inv.function == "transcode"
            and inv.status == Status.RUNNING
            and (step is None or inv.step == step)
        ):
            return inv
    return None


@pytest.mark.parametrize("pipeline_file", PIPELINES)
def test_sigkill_during_a_transcode_leaves_no_orphan_and_no_partial_output(
    redis_url: str, tmp_path: Path, pipeline_file: PipelineName
) -> None:
    """The built-in file: its video flow's mp4 step is killed mid-encode (after screening passed);
    the one-rule file: its one transcode invocation is."""
    need(bool(shutil.which("ffmpeg")), "ffmpeg is not installed")
    built_in = pipeline_file == "built-in"
    limits = {"visibility_timeout": 3, "lease_seconds": 2}
    config = pipeline_under_test("built-in", limits).text if built_in else TRANSCODE
    runtime, env = pipeline_runtime(config, redis_url, tmp_path)
    video = make_video(tmp_path / "long.mp4", width=1280, height=720, seconds=12 if built_in else 20)
    doomed = start_worker(runtime, env, tmp_path / "doomed.log")
    runtime.store.ensure_bucket("media")
    runtime.store.put_file("media", "uploads/long.mp4", video, content_type="video/mp4")
    work = tmp_path / "data" / "tmp"
    step = "mp4" if built_in else None
    wait_until(lambda: running_transcode(runtime, step) and ffmpeg_under(work), 60, "the mp4 encode to start")
    inv = running_transcode(runtime, step)
    assert inv is not None
    os.killpg(doomed.popen.pid, signal.SIGKILL)
    doomed.stop()
    wait_until(lambda: not ffmpeg_under(work), 5, "ffmpeg to die with its worker")  # no orphan encoding on
    for name in ("720p.mp4", "360p.mp4"):
        with pytest.raises(ObjectNotFound):  # nothing half-done was published
            runtime.store.stat("media", f"derived/uploads/long.mp4/transcode/{name}")
    rescuer = start_worker(runtime, env, tmp_path / "rescuer.log")
    try:
        wait_until(
            lambda: status(runtime, inv.id) == Status.SUCCEEDED,
            180,
            "the transcode to be redone",
            interval=0.5,
        )
        done = runtime.ledger.invocations.get(inv.id)
        assert done is not None and done.attempts == 2
        assert [o.key.rsplit("/", 1)[1] for o in done.outputs] == (
            ["720p.mp4", "480p.mp4", "360p.mp4"] if built_in else ["720p.mp4", "360p.mp4"]
        )
        assert isinstance(runtime.store, LocalStore)
        for out in done.outputs:
            assert float(_duration(runtime.store.path_of("media", out.key))) == pytest.approx(
                12 if built_in else 20, abs=0.1
            )
        if built_in:  # the rest of the run went on, and it ended once
            wait_until(lambda: _run_ended(runtime), 120, "the video run to end", interval=0.5)
            [run] = runtime.ledger.runs.for_object("media", "uploads/long.mp4")
            assert run.status == RunStatus.SUCCEEDED, run
            assert {name: len(state.invocations) for name, state in run.steps.items()} == dict.fromkeys(
                ("screen", "probe", "mp4", "hls", "poster", "poster-thumbs"), 1
            )
    finally:
        rescuer.stop()


def _run_ended(runtime: Runtime) -> bool:
    runs = runtime.ledger.runs.for_object("media", "uploads/long.mp4")
    return bool(runs) and runs[0].status.ended


def _duration(path: Path) -> str:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()
