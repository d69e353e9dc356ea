"""A backfill (`pipeline reconcile`) over a bucket of objects nobody was notified about, with a
real worker: its work waits in the backfill lane, never more than the window at once; a fresh
upload made meanwhile runs before the backfill's queued work; the progress is counted; an
interrupted backfill resumes where it stopped and processes every object once."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from pipeline.config import backfill_lane
from pipeline.gateway.app import create_app
from pipeline.invocation import Invocation, Status
from pipeline.runtime import Runtime
from pipeline.storage import LocalStore
from tests.helpers import THUMBNAILS_ONLY, Proc, ServedApp, pipeline_runtime, plant_claim, wait_until

pytestmark = pytest.mark.integration

OBJECTS = 120
WINDOW = 10


def test_a_backfill_waits_behind_fresh_uploads_stays_bounded_and_resumes(
    redis_url: str, tmp_path: Path
) -> None:
    runtime, env = pipeline_runtime(THUMBNAILS_ONLY, redis_url, tmp_path)
    runtime.store.ensure_bucket("media")
    silent = LocalStore(tmp_path / "data" / "store")  # writes that notify nobody: a backlog
    image = tmp_path / "tile.png"
    Image.new("RGB", (640, 480), (40, 90, 160)).save(image)
    for i in range(OBJECTS):
        silent.put_file("media", f"uploads/old/{i:04d}.png", image, content_type="image/png")
    lane = backfill_lane(runtime.pipeline.config.queue_for("thumbnail"))
    depths: list[int] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            depths.append(runtime.dispatcher.depth(lane))
            sampling.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    reconcile = ["reconcile", "--window", str(WINDOW), "--rate", "0", "--quiet"]
    first = Proc(reconcile, env, tmp_path / "first.log")  # no worker yet: the lane fills to the window
    wait_until(lambda: runtime.dispatcher.depth(lane) >= WINDOW, 30, "the lane to fill")
    progress = runtime.ledger.backfill.read()
    assert progress is not None and progress.enqueued <= WINDOW + 1
    first.popen.send_signal(signal.SIGKILL)  # interrupted mid-backfill
    first.stop()
    worker = Proc(["worker", "--functions", "thumbnail", "--concurrency", "1"], env, tmp_path / "worker.log")
    try:
        wait_until(lambda: runtime.ledger.workers.live() or not worker.alive(), 30, "the worker")
        second = subprocess.Popen(
            [sys.executable, "-m", "pipeline", *reconcile], env=env, stdout=subprocess.PIPE, text=True
        )
        # The fresh upload arrives behind a full lane: the pass (a process of its own, which parallel
        # tests can starve) refills it as the worker takes from it.
        wait_until(
            lambda: (
                (runtime.ledger.backfill.read() or progress).done >= 20
                and runtime.dispatcher.depth(lane) >= WINDOW - 1
            ),
            60,
            "backfill work, and a full lane",
        )
        runtime.store.put_file("media", "uploads/fresh.png", image, content_type="image/png")
        wait_until(lambda: _fresh(runtime) is not None, 30, "the fresh upload's thumbnail")
        out, _ = second.communicate(timeout=120)
        assert second.returncode == 0, out
        wait_until(lambda: _done(runtime) == OBJECTS + 1, 120, "every object", interval=0.2)
    finally:
        sampling.set()
        worker.stop()

    fresh = _fresh(runtime)
    assert fresh is not None and fresh.queue == "fn.thumbnail"
    backfilled = [
        i
        for i in runtime.ledger.invocations.query(function="thumbnail", limit=500)
        if i.key != "uploads/fresh.png"
    ]
    assert len(backfilled) == OBJECTS and {i.queue for i in backfilled} == {lane}  # each object once
    assert all(i.status == Status.SUCCEEDED for i in backfilled)
    # Backfill work queued before the fresh upload arrived ran after it (all but what the worker
    # had already taken: the task running, and the next one its consumer had fetched).
    assert fresh.started_at is not None
    waited = [
        i
        for i in backfilled
        if i.created_at < fresh.created_at and i.started_at and i.started_at > fresh.started_at
    ]
    assert len(waited) >= 3, (len(waited), fresh.queue_wait_ms)
    assert max(depths) <= WINDOW + 1  # one object's fan-out past the check at most
    done = runtime.ledger.backfill.read()
    assert done is not None and done.complete and done.done == done.enqueued
    assert "scanned" in out and f"enqueued {OBJECTS - (progress.enqueued if progress else 0)}" in out
    # The dashboard's Overview shows it.
    with ServedApp(create_app(runtime.settings)) as http:
        http.post(
            "/admin/login",
            data={"password": "-", "next": "/admin"},
            headers={"origin": http.base_url.scheme + "://" + http.base_url.netloc.decode()},
        )
        page = http.get("/admin").text
    assert 'id="backfill" data-complete="yes"' in page and f"done {OBJECTS:,}" in page


def _fresh(runtime: Runtime) -> Invocation | None:
    found = [
        i for i in runtime.ledger.invocations.for_object("media", "uploads/fresh.png") if i.status.finished
    ]
    return found[0] if found else None


def _done(runtime: Runtime) -> int:
    return sum(
        1 for i in runtime.ledger.invocations.query(function="thumbnail", limit=500) if i.status.finished
    )


def test_an_object_claimed_but_never_recorded_is_not_taken_for_done(redis_url: str, tmp_path: Path) -> None:
    """A pass stopped between claiming an object's work and recording it (Ctrl-C, a killed
    process) leaves a claim with no invocation behind: the next pass does that object, taking the
    claim over once it is old enough, instead of skipping it for done."""
    from pipeline.invocation import dedup_key
    from pipeline.ledger import keys
    from pipeline.ledger.claims import ORPHAN_CLAIM_S
    from pipeline.reconcile import reconcile
    from pipeline.routing import route

    runtime, _ = pipeline_runtime(THUMBNAILS_ONLY, redis_url, tmp_path)
    silent = LocalStore(tmp_path / "data" / "store")
    image = tmp_path / "tile.png"
    Image.new("RGB", (64, 64), (40, 90, 160)).save(image)
    silent.ensure_bucket("media")
    event = silent.put_file("media", "uploads/half-done.png", image, content_type="image/png").event("local")
    [plan] = route(runtime.pipeline, event)
    unit = dedup_key("media", event.key, event.version_tag, plan.function, plan.params_hash)
    plant_claim(runtime.redis, keys.dedup(unit), ORPHAN_CLAIM_S + 1)  # old enough to take over
    assert not runtime.ledger.claims.done(keys.dedup(unit))
    summary = reconcile(runtime, rate=0, resume=False)
    assert summary.enqueued == 1
    [inv] = runtime.ledger.invocations.for_object("media", event.key)
    assert inv.status == Status.QUEUED and runtime.ledger.claims.done(keys.dedup(unit))
    assert reconcile(runtime, rate=0, resume=False).enqueued == 0  # now it is done
