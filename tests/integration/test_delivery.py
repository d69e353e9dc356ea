"""Delivery guarantees (docs/reliability.md rows 1, 2, 7, 8, 9): duplicates run once, lost notifications
are found by the reconciler, stale events are skipped, loops stop, retries are atomic, one
invocation never runs twice at once. The worker adapter runs in-process here; the rows that need
real worker processes killed or stopped are in test_worker_faults.py.

The tests of what a notification starts run twice: through the built-in pipeline file (each image
starts the `images` flow: screen, then thumbnail and filter) and through a one-rule file (one
thumbnail invocation). Loops, dead letters and leases use files of their own, each saying why."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from PIL import Image

from pipeline.attempt import Verdict, run_attempt
from pipeline.config import parse_config
from pipeline.errors import RetryRefused
from pipeline.events import ObjectEvent
from pipeline.execution import Executor
from pipeline.flows.model import RunStatus
from pipeline.flows.runner import FlowRunner
from pipeline.intake import Intake
from pipeline.invocation import Invocation, Status
from pipeline.ledger import Ledger, connect, keys
from pipeline.ledger.claims import ExecutionLease
from pipeline.reconcile import reconcile
from pipeline.registry import build_pipeline
from pipeline.retry import retry_all_dead, retry_invocation
from pipeline.runtime import Runtime
from pipeline.settings import Settings
from pipeline.storage import LocalStore
from tests.helpers import BUILT_IN

pytestmark = pytest.mark.integration

# The one-rule file, plus a slow function under slow/ for the lease test.
THUMBS = """
version: 1
buckets: [media]
functions:
  misbehaving: {module: tests.fixtures.misbehaving}
rules:
  - name: thumbs
    bucket: media
    prefix: uploads/
    functions:
      - function: thumbnail
        params: {sizes: [16]}
  - name: slow
    bucket: media
    prefix: slow/
    functions:
      - function: misbehaving
        params: {seconds: 1.5}
"""


class Queue:
    """Stands in for the broker: records what was enqueued, in order."""

    def __init__(self) -> None:
        self.items: list[Invocation] = []
        self.lock = threading.Lock()

    def enqueue(self, inv: Invocation) -> None:
        with self.lock:
            self.items.append(inv)

    def stage(self, pipe: object, inv: Invocation) -> None:
        self.enqueue(inv)  # no broker here: staged is as good as sent

    def depth(self, queue: str) -> int:
        with self.lock:
            return sum(1 for inv in self.items if inv.queue == queue)


class InProcessPipeline:
    def __init__(self, redis_url: str, tmp: Path, config: str = THUMBS) -> None:
        self.built_in = config == BUILT_IN
        self.pipeline = build_pipeline(parse_config(config, "t.yaml"), "t.yaml")
        client = connect(redis_url)
        self.ledger = Ledger(client)
        self.queue = Queue()
        # Wired as build_runtime wires it, with this queue in place of the broker.
        silent = LocalStore(tmp / "store")
        flows = FlowRunner(self.pipeline, self.ledger, self.queue.enqueue, silent)
        self.intake = Intake(self.pipeline, self.ledger, self.queue.enqueue, flows=flows)
        self.store = silent.notifying(self.intake.accept)
        self.store.ensure_bucket("media")
        self.executor = Executor(self.pipeline, self.store, self.ledger, tmp / "work")
        self.runtime = Runtime(
            Settings(data_dir=tmp),
            self.pipeline,
            redis_url,
            client,
            self.ledger,
            self.store,
            self.intake,
            self.queue,
            flows,
        )
        self.tmp = tmp

    def image(self, name: str, colour: tuple[int, int, int]) -> Path:
        path = self.tmp / name
        Image.new("RGB", (64, 48), colour).save(path)
        return path

    def drain(self) -> None:
        """Run queued invocations (and whatever they enqueue) to the end through `run_attempt`,
        the worker's own: a verdict to send the message again puts it back at the end."""
        done = 0
        while done < len(self.queue.items):
            inv = self.queue.items[done]
            done += 1
            self.attempt(inv)

    def attempt(self, inv: Invocation, worker: str = "test") -> Verdict:
        verdict = run_attempt(self.runtime, self.executor, inv, worker)
        if not verdict.done and verdict.counted:
            self.queue.enqueue(inv)  # as the broker would, after the backoff
        return verdict

    def derived(self, key: str) -> list[str]:
        """The outputs of one upload."""
        return sorted(i.key for i in self.store.list("media", f"derived/{key}/"))

    def outputs_of(self, key: str) -> list[str]:
        """What one image upload is expected to make under this pipeline file."""
        if self.built_in:
            made = ["filter/filtered.webp", "screen/screen.json", "thumbnail/1024.jpg", "thumbnail/256.jpg"]
            return [f"derived/{key}/{name}" for name in made]
        return [f"derived/{key}/thumbnail/16.jpg"]

    @property
    def thumbnail_key(self) -> str:
        return "thumbnail/256.jpg" if self.built_in else "thumbnail/16.jpg"


@pytest.fixture
def world(redis_url: str, tmp_path: Path) -> Iterator[InProcessPipeline]:
    yield InProcessPipeline(redis_url, tmp_path)


@pytest.fixture(params=["built-in", "one-rule"])
def either(request: pytest.FixtureRequest, redis_url: str, tmp_path: Path) -> Iterator[InProcessPipeline]:
    """The built-in pipeline file, and the one-rule file."""
    yield InProcessPipeline(redis_url, tmp_path, BUILT_IN if request.param == "built-in" else THUMBS)


def event(world: InProcessPipeline, key: str, **kw: Any) -> ObjectEvent:
    info = world.store.stat("media", key)
    fields: dict[str, Any] = {
        "source": "minio",
        "event_name": "s3:ObjectCreated:Put",
        "bucket": "media",
        "key": key,
        "etag": info.etag,
        "version_id": info.version_id,
        "size": info.size,
        "content_type": info.content_type,
    }
    fields.update(kw)
    return ObjectEvent(**fields)


def test_duplicate_storm_runs_each_unit_once(either: InProcessPipeline) -> None:
    world = either
    world.store.put_file(
        "media", "uploads/a.png", world.image("a.png", (10, 200, 10)), content_type="image/png"
    )
    e = event(world, "uploads/a.png")
    multipart = e.model_copy(update={"event_name": "s3:ObjectCreated:CompleteMultipartUpload"})
    threads = [threading.Thread(target=world.intake.accept, args=(x,)) for x in [e, e, e, multipart] * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(world.queue.items) == 1  # the store's own notification won; 12 duplicates claimed nothing
    assert world.ledger.invocations.counts()["duplicates"] == 12
    world.drain()
    invocations = world.ledger.invocations.query(bucket="media", key="uploads/a.png")
    assert len(invocations) == (3 if world.built_in else 1)  # screen, thumbnail, filter: once each
    assert all(inv.status == Status.SUCCEEDED and inv.attempts == 1 for inv in invocations)
    assert len(world.ledger.runs.for_object("media", "uploads/a.png")) == (1 if world.built_in else 0)
    assert world.derived("uploads/a.png") == world.outputs_of("uploads/a.png")


def test_stale_event_is_skipped_and_outputs_derive_from_the_newest_version(either: InProcessPipeline) -> None:
    world = either
    world.store.put_file(
        "media", "uploads/v.png", world.image("v1.png", (255, 0, 0)), content_type="image/png"
    )
    world.store.put_file(
        "media", "uploads/v.png", world.image("v2.png", (0, 0, 255)), content_type="image/png"
    )
    v1, v2 = world.queue.items
    world.queue.items[:] = [v2, v1]  # v2's event is delivered first
    world.drain()
    states = {i.id: i for i in world.ledger.invocations.query(key="uploads/v.png", bucket="media")}
    assert states[v2.id].status == Status.SUCCEEDED
    # A run is superseded by the newer version's run; a single step sees its event is stale.
    stale = "(a newer version)" if world.built_in else "stale event"
    assert states[v1.id].status == Status.SKIPPED and stale in (states[v1.id].error or ""), states[v1.id]
    if world.built_in:
        runs = {r.id: r.status for r in world.ledger.runs.for_object("media", "uploads/v.png")}
        assert runs == {v2.run_id: RunStatus.SUCCEEDED, v1.run_id: RunStatus.SKIPPED}
    with Image.open(world.store.path_of("media", f"derived/uploads/v.png/{world.thumbnail_key}")) as thumb:
        pixel = thumb.convert("RGB").getpixel((5, 5))
    assert isinstance(pixel, tuple) and pixel[2] > 200 and pixel[0] < 60  # blue: from v2


def test_deleted_object_is_skipped(either: InProcessPipeline) -> None:
    world = either
    world.store.put_file(
        "media", "uploads/gone.png", world.image("g.png", (1, 2, 3)), content_type="image/png"
    )
    world.store.delete("media", "uploads/gone.png")
    world.drain()
    [inv] = world.ledger.invocations.query(key="uploads/gone.png", bucket="media")
    gone = "was deleted" if world.built_in else "no longer exists"
    assert inv.status == Status.SKIPPED and gone in (inv.error or ""), inv
    if world.built_in:
        [run] = world.ledger.runs.for_object("media", "uploads/gone.png")
        assert run.status == RunStatus.SKIPPED and world.derived("uploads/gone.png") == []


def test_reconciler_finds_what_notifications_lost(either: InProcessPipeline, tmp_path: Path) -> None:
    world = either
    silent = LocalStore(tmp_path / "store")  # the same directory, but nobody is told about writes
    for i in range(5):
        silent.put_file(
            "media", f"uploads/lost-{i}.png", world.image(f"l{i}.png", (i, i, i)), content_type="image/png"
        )
    world.store.put_file(
        "media", "uploads/seen.png", world.image("s.png", (9, 9, 9)), content_type="image/png"
    )
    assert len(world.queue.items) == 1
    dry = reconcile(world.runtime, dry_run=True, rate=0)
    assert sorted(k for _, k, _ in dry.would_run) == [f"uploads/lost-{i}.png" for i in range(5)]
    assert len(world.queue.items) == 1  # a dry run changes nothing
    report = reconcile(world.runtime, rate=0)
    assert (report.scanned, report.enqueued) == (6, 5)
    assert reconcile(world.runtime, rate=0).enqueued == 0  # idempotent
    world.drain()
    for key in [f"uploads/lost-{i}.png" for i in range(5)] + ["uploads/seen.png"]:
        assert world.derived(key) == world.outputs_of(key)
    assert world.ledger.stats.get("reconciled") == 5


def test_trigger_loop_stops_within_one_generation(redis_url: str, tmp_path: Path) -> None:
    looping = """
version: 1
rules:
  - name: echo
    bucket: media
    prefix: uploads/
    functions:
      - function: copy
        output: {template: "{stem}.copy.{ext}"}
"""
    world = InProcessPipeline(redis_url, tmp_path, looping)
    world.store.put_file("media", "uploads/a.png", world.image("a.png", (1, 1, 1)), content_type="image/png")
    world.drain()
    keys = sorted(i.key for i in world.store.list("media"))
    assert keys == ["uploads/a.copy.png", "uploads/a.png"]  # one generation, then the guard
    assert world.ledger.stats.get("loops_stopped") == 1
    event_reasons = [e.reason for e in world.ledger.events.recent() if e.key == "uploads/a.copy.png"]
    assert event_reasons and event_reasons[0].startswith("loop guard")


def test_opted_in_derivation_stops_at_max_generation(redis_url: str, tmp_path: Path) -> None:
    chained = """
version: 1
limits: {max_generation: 3}
rules:
  - name: echo
    bucket: media
    prefix: uploads/
    allow_derived: true
    functions:
      - function: copy
        output: {template: "{stem}.c.{ext}"}
"""
    world = InProcessPipeline(redis_url, tmp_path, chained)
    world.store.put_file("media", "uploads/a.png", world.image("a.png", (1, 1, 1)), content_type="image/png")
    world.drain()
    assert sorted(i.key for i in world.store.list("media")) == [
        "uploads/a.c.c.c.png",
        "uploads/a.c.c.png",
        "uploads/a.c.png",
        "uploads/a.png",
    ]
    assert world.store.stat("media", "uploads/a.c.c.c.png").metadata["pipeline-generation"] == "3"


def make_dead(world: InProcessPipeline, n: int) -> list[str]:
    ids = []
    for i in range(n):
        world.store.put_file(
            "media", f"uploads/d{i}.png", world.image(f"d{i}.png", (i, 0, 0)), content_type="image/png"
        )
    for inv in world.queue.items:
        world.ledger.invocations.start_attempt(inv.id, "w")
        world.ledger.invocations.finish(inv.id, Status.DEAD, error="boom")
        ids.append(inv.id)
    world.queue.items.clear()
    return ids


def test_retry_all_dead_is_atomic_under_concurrency(world: InProcessPipeline) -> None:
    ids = make_dead(world, 20)
    results: list[list[Invocation]] = []
    threads = [
        threading.Thread(target=lambda: results.append(retry_all_dead(world.runtime))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    enqueued = [inv.id for inv in world.queue.items]
    assert sorted(enqueued) == sorted(ids)  # every dead letter once, none twice
    assert sum(len(r) for r in results) == 20
    assert (
        world.ledger.invocations.counts()["dead"] == 0 and world.ledger.invocations.counts()["queued"] == 20
    )
    world.drain()
    assert world.ledger.invocations.counts()["succeeded"] == 20


def test_retry_one_races_cleanly(world: InProcessPipeline) -> None:
    [inv_id] = make_dead(world, 1)
    outcomes: list[str] = []

    def attempt() -> None:
        try:
            retry_invocation(world.runtime, inv_id)
            outcomes.append("won")
        except RetryRefused:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused"] * 4 + ["won"] and len(world.queue.items) == 1
    with pytest.raises(RetryRefused, match="queued"):
        retry_invocation(world.runtime, inv_id)


def test_one_invocation_never_runs_twice_at_once(world: InProcessPipeline) -> None:
    world.store.put_file("media", "slow/x.png", world.image("x.png", (5, 5, 5)), content_type="image/png")
    [inv] = world.queue.items
    verdicts: list[Verdict] = []

    def run() -> None:
        verdicts.append(run_attempt(world.runtime, world.executor, inv, "w"))

    first = threading.Thread(target=run)
    first.start()
    client = redis.Redis.from_url(world.runtime.redis_url)
    while not client.exists(keys.lease(inv.id)):
        pass
    run()  # a redelivery while the first run holds the lease
    first.join()
    # The redelivery ran nothing: it is to be sent again after the lease's time, not counted.
    assert [(v.status, v.counted) for v in verdicts] == [(None, False), (Status.SUCCEEDED, True)]
    assert verdicts[0].again_in == world.pipeline.config.limits.lease_seconds
    done = world.ledger.invocations.get(inv.id)
    assert done is not None and done.status == Status.SUCCEEDED and done.attempts == 1
    assert not client.exists(keys.lease(inv.id))  # released
    assert ExecutionLease(world.ledger.claims, "x").ttl_ms == 30_000


def test_messages_lost_in_the_broker_are_sent_again(either: InProcessPipeline) -> None:
    from pipeline.reconcile import resend_stuck

    world = either
    world.store.put_file("media", "uploads/a.png", world.image("a.png", (1, 1, 1)), content_type="image/png")
    world.store.put_file("media", "uploads/b.png", world.image("b.png", (2, 2, 2)), content_type="image/png")
    a, b = world.queue.items
    world.attempt(b, "w")  # b ran; a's message was lost between the broker's pop and its unacked record
    world.queue.items[:] = [inv for inv in world.queue.items if inv.id not in (a.id, b.id)]
    world.drain()  # what b's flow run started after it, where the file has a flow
    world.queue.items.clear()
    assert resend_stuck(world.runtime, older_than=60) == 0  # too recent to presume lost
    assert resend_stuck(world.runtime, older_than=0) == 1
    assert [inv.id for inv in world.queue.items] == [a.id]
    world.drain()
    done = world.ledger.invocations.get(a.id)
    assert done is not None and done.status == Status.SUCCEEDED and world.ledger.stats.get("resent") == 1
    assert world.derived("uploads/a.png") == world.outputs_of("uploads/a.png")


def test_a_running_invocation_whose_message_is_gone_is_sent_again(either: InProcessPipeline) -> None:
    """After a failover the broker's unacknowledged record can be gone while the ledger says
    running: no worker holds the lease, and no redelivery comes. The reconciler sends it again,
    and the cut-short attempt stays in the history as interrupted."""
    from pipeline.reconcile import resend_stuck

    world = either
    world.store.put_file("media", "uploads/a.png", world.image("a.png", (1, 1, 1)), content_type="image/png")
    a = world.queue.items[0]
    world.queue.items.clear()
    assert world.ledger.invocations.start_attempt(a.id, "gone-worker") is not None  # then the worker died
    world.ledger.claims.acquire_lease(a.id, "gone-worker", 60_000)
    assert resend_stuck(world.runtime, older_than=0) == 0  # a worker holds it: still running
    world.runtime.redis.delete(keys.lease(a.id))  # its lease ran out, no worker renews it
    assert resend_stuck(world.runtime, older_than=60) == 0  # too recent to presume lost
    assert resend_stuck(world.runtime, older_than=0) == 1
    assert [inv.id for inv in world.queue.items] == [a.id]
    world.drain()
    done = world.ledger.invocations.get(a.id)
    assert done is not None and done.status == Status.SUCCEEDED
    assert [r.outcome for r in world.ledger.invocations.attempts(a.id)] == ["interrupted", "succeeded"]
