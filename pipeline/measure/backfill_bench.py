"""Fresh uploads during a backfill: upload -> thumbnails stored for uploads made one after another
while `pipeline reconcile` works through a bucket of objects nobody was notified about, beside the
same uploads with the workers otherwise idle (same run, same worker)."""

from __future__ import annotations

import statistics
import threading
import time

from pipeline.measure.testbed import Figure, Testbed, dist
from pipeline.reconcile import reconcile

BACKLOG = 400
WINDOW = 50


def fresh_uploads(bed: Testbed, tag: str, n: int) -> list[float]:
    """`n` uploads of the 1 MP photo one after another: each one's upload -> thumbnails stored."""
    took: list[float] = []
    for i in range(n):
        event = bed.event_for(f"uploads/fresh/{tag}-{i:04d}.jpg", bed.photo, "image/jpeg")
        sent = time.time()
        invs = bed.wait_done(bed.accept(event))
        took.append(max(inv.finished_at or sent for inv in invs) - sent)
    return took


def bench_backfill(bed: Testbed, n: int) -> list[Figure]:
    for i in range(BACKLOG):  # the backlog: stored, never notified
        bed.silent.put_file("media", f"uploads/backlog/{i:05d}.jpg", bed.photo, content_type="image/jpeg")
    worker = bed.worker(2)
    try:
        bed.wait_worker(worker)
        fresh_uploads(bed, "warm", 3)
        idle = fresh_uploads(bed, "idle", n)
        lane = bed.pipeline.config.lane_for("thumbnail", backfill=True)
        depths: list[int] = []
        pass_done = threading.Event()

        def backfill() -> None:
            try:
                reconcile(bed.runtime, rate=0, window=WINDOW, resume=False)
            finally:
                pass_done.set()

        thread = threading.Thread(target=backfill, daemon=True)
        thread.start()
        while bed.runtime.dispatcher.depth(lane) < WINDOW // 2 and not pass_done.is_set():
            time.sleep(0.01)
        during: list[float] = []
        for i in range(n):
            depths.append(bed.runtime.dispatcher.depth(lane))
            if depths[-1] == 0 and pass_done.is_set():
                break  # the backfill is over: what follows would be idle again
            during += fresh_uploads(bed, f"busy{i}", 1)
        progress = bed.ledger.backfill.read()
        thread.join(timeout=300)
    finally:
        bed.stop(worker)
    ratio = statistics.median(during) / statistics.median(idle)
    done = progress.done if progress else 0
    return [
        Figure(
            f"fresh upload -> thumbnails stored, during a backfill of {BACKLOG} objects "
            f"(lane window {WINDOW})",
            f"{dist(during)}; p50 {ratio:.2f}x idle",
            f"idle, same worker: {dist(idle)}",
            "p50 <= 2x idle",
            ratio <= 2.0,
        ),
        Figure(
            "backfill lane depth while fresh uploads ran",
            f"at most {max(depths, default=0)} messages; {done} backfill invocations done meanwhile",
            f"window {WINDOW}",
            "<= window + one object's fan-out",
            max(depths, default=0) <= WINDOW + 1,
        ),
    ]
