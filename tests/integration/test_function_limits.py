"""Per-function limits from the pipeline file, with real Celery workers: reserved concurrency caps
how many invocations of a function run at once across all workers, and `paused: true` or
`reserved_concurrency: 0` hold its work in the queue until the file changes."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from pipeline.invocation import Status
from pipeline.measure.samples import generate
from pipeline.queue.control import FunctionControls
from pipeline.uploads import upload_file
from tests.helpers import THUMBNAILS_ONLY, Proc, consumed_queues, pipeline_runtime, wait_until

pytestmark = pytest.mark.integration


def with_thumbnail_settings(settings: str) -> str:
    return THUMBNAILS_ONLY.replace("rules:", f"functions:\n  thumbnail:\n{settings}\nrules:", 1)


def test_reserved_concurrency_caps_runs_across_all_workers(redis_url: str, tmp_path: Path) -> None:
    config = with_thumbnail_settings("    reserved_concurrency: 1")
    runtime, env = pipeline_runtime(config, redis_url, tmp_path)
    images = generate(tmp_path / "samples")[:1] * 6
    # Two workers with two processes each: four could run at once without the cap.
    workers = [
        Proc(["worker", "--functions", "thumbnail", "--concurrency", "2"], env, tmp_path / f"w{i}.log")
        for i in range(2)
    ]
    try:
        wait_until(lambda: len(runtime.ledger.workers.live()) == 2, 30, "two workers")
        ids = [
            i
            for n, image in enumerate(images)
            for i in upload_file(runtime, image, "media", f"uploads/{n}.jpg").invocation_ids
        ]

        def done() -> bool:
            return all(inv.status.finished for inv in runtime.ledger.invocations.get_many(ids))

        wait_until(done, 90, "all six thumbnails")
        invocations = runtime.ledger.invocations.get_many(ids)
        assert [inv.status for inv in invocations] == [Status.SUCCEEDED] * 6
        # Waiting for a slot is not an attempt: each ran exactly once.
        assert [inv.attempts for inv in invocations] == [1] * 6
        spans = sorted(
            (a.started_at, a.finished_at or 0.0) for i in ids for a in runtime.ledger.invocations.attempts(i)
        )
        assert len(spans) == 6
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end - 0.01, f"two runs overlapped: {spans}"
        assert runtime.ledger.claims.slots_taken("thumbnail") == 0, "every slot was given back"
    finally:
        for worker in workers:
            assert worker.stop() == 0, worker.output()[-3000:]


@pytest.mark.parametrize("held", ["paused: true", "reserved_concurrency: 0"])
def test_the_file_holds_a_function_until_it_changes(held: str, redis_url: str, tmp_path: Path) -> None:
    runtime, env = pipeline_runtime(with_thumbnail_settings(f"    {held}"), redis_url, tmp_path)
    image = generate(tmp_path / "samples")[0]
    worker = Proc(["worker", "--functions", "thumbnail", "--concurrency", "1"], env, tmp_path / "w1.log")
    again: Proc | None = None
    try:
        pid = worker.popen.pid
        wait_until(lambda: consumed_queues(runtime, pid) is not None, 30, "the worker")
        ids = upload_file(runtime, image, "media", "uploads/held.jpg").invocation_ids
        # The operator's Resume cannot release what the file holds. Had it told the worker to take
        # from the queue, the worker would have done so before answering the question asked after.
        FunctionControls(redis_url, runtime.pipeline, runtime.ledger).set_paused("thumbnail", False)
        queues = consumed_queues(runtime, pid)
        assert queues is not None and "fn.thumbnail" not in queues, queues
        assert runtime.ledger.invocations.get_many(ids)[0].status == Status.QUEUED, worker.output()[-2000:]
        assert runtime.dispatcher.depth("fn.thumbnail") == 1, "the work waits in the function's queue"
        assert worker.stop() == 0, worker.output()[-3000:]

        # Released in the file: a worker started with it drains the queue.
        Path(env["PIPELINE_CONFIG"]).write_text(THUMBNAILS_ONLY)
        again = Proc(["worker", "--functions", "thumbnail", "--concurrency", "1"], env, tmp_path / "w2.log")
        wait_until(
            lambda: runtime.ledger.invocations.get_many(ids)[0].status == Status.SUCCEEDED,
            30,
            "the held work",
        )
    finally:
        worker.stop()
        if again is not None:
            assert again.stop() == 0, again.output()[-3000:]


SLOW = """
version: 1
buckets: [media]
functions:
  misbehaving: {module: tests.fixtures.misbehaving, time_limit: 60}
rules:
  - {name: slow, bucket: media, prefix: slow/, functions: [{function: misbehaving, params: {seconds: 3}}]}
"""


def test_autoscale_grows_the_pool_with_the_queue(redis_url: str, tmp_path: Path) -> None:
    """`--autoscale 3,1`: one process when idle, three when three slow invocations wait."""
    runtime, env = pipeline_runtime(SLOW, redis_url, tmp_path)
    image = generate(tmp_path / "samples")[0]
    args = ["worker", "--functions", "misbehaving", "--autoscale", "3,1"]
    worker = Proc(args, env, tmp_path / "w.log")
    try:
        wait_until(runtime.ledger.workers.live, 30, "the worker")
        [info] = runtime.ledger.workers.live()
        assert info.concurrency == 3, "the heartbeat reports the most it may run"
        runtime.store.ensure_bucket("media")
        for n in range(3):
            runtime.store.put_file("media", f"slow/{n}.jpg", image, content_type="image/jpeg")
        ids = [inv.id for inv in runtime.ledger.invocations.query(bucket="media")]
        assert len(ids) == 3
        wait_until(
            lambda: all(inv.status.finished for inv in runtime.ledger.invocations.get_many(ids)),
            60,
            "three runs",
        )
        spans = [
            (a.started_at, a.finished_at or 0.0) for i in ids for a in runtime.ledger.invocations.attempts(i)
        ]
        overlapping = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
        assert overlapping >= 2, f"the pool did not grow: {spans}"
        assert {inv.status for inv in runtime.ledger.invocations.get_many(ids)} == {Status.SUCCEEDED}
    finally:
        assert worker.stop() == 0, worker.output()[-3000:]


def test_a_run_longer_than_the_slot_wait_puts_the_next_back_without_an_attempt(
    redis_url: str, tmp_path: Path
) -> None:
    """Reserved concurrency 1 and runs of 3 s: the second invocation gives up waiting for the slot
    after 2 s, goes back to the queue (not an attempt, a fresh send time) and runs afterwards."""
    config = SLOW.replace("time_limit: 60}", "time_limit: 60, reserved_concurrency: 1}")
    runtime, env = pipeline_runtime(config, redis_url, tmp_path)
    image = generate(tmp_path / "samples")[0]
    worker = Proc(["worker", "--functions", "misbehaving", "--concurrency", "2"], env, tmp_path / "w.log")
    try:
        wait_until(runtime.ledger.workers.live, 30, "the worker")
        runtime.store.ensure_bucket("media")
        for n in range(2):
            runtime.store.put_file("media", f"slow/{n}.jpg", image, content_type="image/jpeg")
        ids = [inv.id for inv in runtime.ledger.invocations.query(bucket="media")]
        wait_until(
            lambda: all(inv.status.finished for inv in runtime.ledger.invocations.get_many(ids)),
            60,
            "both runs",
        )
        invs = sorted(runtime.ledger.invocations.get_many(ids), key=lambda inv: inv.started_at or 0)
        assert [inv.status for inv in invs] == [Status.SUCCEEDED] * 2
        assert [inv.attempts for inv in invs] == [1, 1], "waiting for a slot is not an attempt"
        first, second = invs
        assert (second.started_at or 0) >= (first.finished_at or 0) - 0.01, "they never overlapped"
        assert (second.enqueued_at or 0) > second.created_at + 1, "put back with a fresh send time"
        assert "retry: Retry in" in worker.output(), "Celery put the message back"
    finally:
        assert worker.stop() == 0, worker.output()[-3000:]
