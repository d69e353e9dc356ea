"""Time limits and lost worker processes, with a real Celery worker: every failure ends in a
recorded verdict, bounded by max_attempts; nothing stays `running` or loops."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.invocation import Status
from pipeline.measure.samples import generate
from tests.helpers import Proc, pipeline_runtime, wait_until

pytestmark = pytest.mark.integration

CONFIG = """
version: 1
buckets: [media]
functions:
  misbehaving: {module: tests.fixtures.misbehaving, time_limit: 1, max_attempts: 2, concurrency: 2}
limits:
  lease_seconds: 2  # a killed run's lease lapses fast, so its redelivery is not held back long
rules:
  - {name: slow, bucket: media, prefix: slow/, functions: [{function: misbehaving}]}
  - {name: stubborn, bucket: media, prefix: stubborn/, functions: [{function: misbehaving, params: {ignore_soft_limit: true}}]}
  - {name: crash, bucket: media, prefix: crash/, functions: [{function: misbehaving, params: {crash: true}}]}
"""


def test_time_limits_and_lost_processes_end_dead(redis_url: str, tmp_path: Path) -> None:
    runtime, env = pipeline_runtime(CONFIG, redis_url, tmp_path)
    worker = Proc(
        ["worker", "--functions", "misbehaving", "--concurrency", "2"], env, tmp_path / "worker.log"
    )
    try:
        wait_until(lambda: runtime.ledger.workers.live() or not worker.alive(), 30, "the worker")
        image = generate(tmp_path / "samples")[0]
        runtime.store.ensure_bucket("media")
        for prefix in ("slow", "stubborn", "crash"):
            runtime.store.put_file("media", f"{prefix}/a.jpg", image, content_type="image/jpeg")

        def verdicts() -> dict[str, tuple[str, int, str]]:
            return {
                inv.key.split("/")[0]: (inv.status.value, inv.attempts, inv.error or "")
                for inv in runtime.ledger.invocations.query(bucket="media")
            }

        wait_until(
            lambda: all(v[0] == "dead" for v in verdicts().values()) and len(verdicts()) == 3,
            60,
            "three dead invocations",
            interval=0.2,
        )
        result = verdicts()
        assert result["slow"][1] == 2 and "time limit of 1s exceeded (after 2 attempts)" in result["slow"][2]
        assert result["stubborn"][1] == 2 and "killed at the hard time limit" in result["stubborn"][2]
        # A child that dies within its hard time limit is reported by Celery as lost or, in a race,
        # as timed out; either way it ends dead after its attempts, never running or looping.
        crash = result["crash"][2]
        assert "worker process was lost" in crash or "killed at the hard time limit" in crash, crash
        assert "media/crash/a.jpg" in crash or "(after 2 attempts)" in crash
        assert runtime.ledger.invocations.counts()[Status.RUNNING.value] == 0
        assert worker.alive()  # the pool replaced its lost and killed children
    finally:
        assert worker.stop() == 0, worker.output()[-3000:]


RETRY = """
version: 1
buckets: [media]
functions:
  misbehaving:
    module: tests.fixtures.misbehaving
    time_limit: 1
    retry: {max_attempts: 3, initial: 0.1, multiplier: 1, jitter: false, non_retryable: [TimeoutError]}
rules:
  - {name: passing, bucket: media, prefix: passing/, functions: [{function: misbehaving, params: {fail: passing}}]}
  - {name: permanent, bucket: media, prefix: permanent/, functions: [{function: misbehaving, params: {fail: permanent}}]}
  - {name: crash, bucket: media, prefix: crash/, functions: [{function: misbehaving, params: {fail: crash}}]}
  - {name: slow, bucket: media, prefix: slow/, functions: [{function: misbehaving}]}
"""


def test_the_retry_policy_in_the_pipeline_file_decides(redis_url: str, tmp_path: Path) -> None:
    """`functions.misbehaving.retry`: three attempts 0.1 s apart, TimeoutError never retried. An
    error the function raises as passing (`permanent=False`) is retried like a crash; its own
    permanent error and the time-out end the invocation `failed` after one attempt."""
    runtime, env = pipeline_runtime(RETRY, redis_url, tmp_path)
    worker = Proc(["worker", "--functions", "misbehaving", "--concurrency", "2"], env, tmp_path / "w.log")
    try:
        wait_until(lambda: runtime.ledger.workers.live() or not worker.alive(), 30, "the worker")
        image = generate(tmp_path / "samples")[0]
        runtime.store.ensure_bucket("media")
        for prefix in ("passing", "permanent", "crash", "slow"):
            runtime.store.put_file("media", f"{prefix}/a.jpg", image, content_type="image/jpeg")

        def verdicts() -> dict[str, tuple[str, int]]:
            return {
                inv.key.split("/")[0]: (inv.status.value, inv.attempts)
                for inv in runtime.ledger.invocations.query(bucket="media")
            }

        wait_until(
            lambda: len(verdicts()) == 4 and all(s in ("dead", "failed") for s, _ in verdicts().values()),
            60,
            "four verdicts",
            interval=0.2,
        )
        assert verdicts() == {
            "passing": ("dead", 3),
            "crash": ("dead", 3),
            "permanent": ("failed", 1),
            "slow": ("failed", 1),
        }
        [slow] = runtime.ledger.invocations.for_object("media", "slow/a.jpg")
        assert "TimeoutError: time limit of 1s exceeded" in (slow.error or "")
    finally:
        worker.stop()
