"""Pausing a function with real Celery workers: its work waits in its queue, and runs on resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.invocation import Status
from pipeline.measure.samples import generate
from pipeline.queue.control import FunctionControls
from pipeline.runtime import Runtime
from pipeline.uploads import upload_file
from tests.helpers import THUMBNAILS_ONLY, Proc, consumed_queues, pipeline_runtime, wait_until

pytestmark = pytest.mark.integration


def blocked_pops(runtime: Runtime) -> int:
    """Clients of Redis waiting in a blocking command (a worker's BRPOP on its queues)."""
    return sum("b" in str(c["flags"]) for c in runtime.redis.client_list())


def test_paused_work_waits_in_its_queue_and_runs_on_resume(redis_url: str, tmp_path: Path) -> None:
    runtime, env = pipeline_runtime(THUMBNAILS_ONLY, redis_url, tmp_path)
    controls = FunctionControls(redis_url, runtime.pipeline, runtime.ledger)
    image = generate(tmp_path / "samples")[0]
    worker = Proc(["worker", "--functions", "thumbnail", "--concurrency", "1"], env, tmp_path / "w1.log")

    def not_taking(pid: int) -> bool:
        queues = consumed_queues(runtime, pid)
        return queues is not None and "fn.thumbnail" not in queues

    late: Proc | None = None
    try:
        wait_until(lambda: consumed_queues(runtime, worker.popen.pid), 30, "the worker")
        controls.set_paused("thumbnail", True)  # a live worker is told at once
        wait_until(lambda: not_taking(worker.popen.pid), 10, "the worker to stop taking from fn.thumbnail")
        # A pop the worker began before it was told (a BRPOP on its queues, up to a second long)
        # still runs: a message pushed now could be taken by it, and handed back. Once no client
        # of Redis is blocked in a pop, nothing takes from the queue.
        wait_until(lambda: blocked_pops(runtime) == 0, 10, "the worker's last pop to end")
        first = upload_file(runtime, image, "media", "uploads/one.jpg").invocation_ids
        # Nothing consumes the queue (the worker said so), so the message stays where it is.
        assert runtime.ledger.invocations.get_many(first)[0].status == Status.QUEUED
        assert runtime.dispatcher.depth("fn.thumbnail") == 1, "the work waits in the function's queue"

        # A worker that starts while the function is paused does not take it either.
        worker.stop()
        late = Proc(["worker", "--functions", "thumbnail", "--concurrency", "1"], env, tmp_path / "w2.log")
        late_pid = late.popen.pid
        wait_until(lambda: consumed_queues(runtime, late_pid) is not None, 30, "the new worker")
        # Its event loop answers, so it is past the point where it could have taken the message
        # before learning of the pause: the queue is not among its consumers, the message still in it.
        assert not_taking(late_pid)
        assert runtime.dispatcher.depth("fn.thumbnail") == 1, late.output()[-2000:]
        assert runtime.ledger.invocations.get_many(first)[0].status == Status.QUEUED, late.output()[-2000:]

        controls.set_paused("thumbnail", False)
        wait_until(
            lambda: runtime.ledger.invocations.get_many(first)[0].status == Status.SUCCEEDED,
            30,
            "the resumed work",
        )
        second = upload_file(runtime, image, "media", "uploads/two.jpg").invocation_ids
        wait_until(
            lambda: runtime.ledger.invocations.get_many(second)[0].status == Status.SUCCEEDED, 30, "new work"
        )
    finally:
        worker.stop()
        if late is not None:
            assert late.stop() == 0, late.output()[-3000:]


def test_health_probe_sees_this_hosts_worker(redis_url: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    runtime, env = pipeline_runtime(THUMBNAILS_ONLY, redis_url, tmp_path)

    def probe() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pipeline", "health", "--worker"],
            check=False,
            env=env,
            capture_output=True,
            text=True,
        )

    before = probe()
    assert before.returncode == 1 and "no worker on" in before.stderr
    worker = Proc(["worker", "--functions", "thumbnail", "--concurrency", "1"], env, tmp_path / "w.log")
    try:
        wait_until(runtime.ledger.workers.live, 30, "the worker")
        after = probe()
        assert after.returncode == 0 and "thumbnail" in after.stdout
    finally:
        worker.stop()
    down = subprocess.run(
        [sys.executable, "-m", "pipeline", "health"],
        check=False,
        env={**env, "PIPELINE_REDIS_URL": "redis://127.0.0.1:1/0"},
        capture_output=True,
        text=True,
    )
    assert down.returncode == 1 and "does not answer" in down.stderr
