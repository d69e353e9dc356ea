"""A backfill of a whole bucket: `pipeline reconcile` over OBJECTS stored objects nobody was
notified about (100,000 by default), interrupted with Ctrl-C (SIGINT) a third of the way and run
again, while fresh uploads keep arriving. Real processes throughout: the embedded Redis, one
`pipeline worker` (the backlog is copied: next to no work, so the pipeline's own cost shows; fresh
uploads get thumbnails), the `pipeline reconcile` command twice. This process stores the objects,
makes the fresh uploads (as the gateway would hand them to the intake) and samples lane depth,
progress and the reconciler's memory once a second. `pipeline bench backfill` runs it; it takes
minutes, so it is not part of `pipeline bench system` (whose backfill part measures fresh uploads
during a smaller backfill)."""

from __future__ import annotations

import signal
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.ledger.backfill import Progress
from pipeline.measure.backfill_bench import fresh_uploads
from pipeline.measure.docs import DocSection, machine
from pipeline.measure.testbed import Figure, Testbed, dist, figure_rows, rss_mb

CONFIG = """
version: 1
buckets: [media]
functions:
  copy: {concurrency: 4, max_attempts: 3}
  thumbnail: {concurrency: 4, max_attempts: 3}
rules:
  - {name: backlog, bucket: media, prefix: backlog/, functions: [{function: copy}]}
  - name: fresh
    bucket: media
    prefix: uploads/
    functions: [{function: thumbnail, params: {sizes: [256, 1024], format: jpeg, quality: 82}}]
"""
WINDOW = 200
FRESH_EVERY_S = 2.0
INTERRUPT_AT = 0.33  # share of the bucket listed when the first pass is interrupted


@dataclass
class Samples:
    lane_depth: list[int] = field(default_factory=list)
    reconciler_rss_mb: list[tuple[int, float]] = field(default_factory=list)  # (listed, MiB)
    progress: list[Progress] = field(default_factory=list)


def run(root: Path, objects: int) -> list[Figure]:
    bed = Testbed(root, CONFIG, persist=False)
    try:
        return _run(bed, objects)
    finally:
        bed.close()


def _run(bed: Testbed, objects: int) -> list[Figure]:
    started = time.monotonic()
    for i in range(objects):
        bed.silent.put_file("media", f"backlog/{i:07d}.png", bed.small, content_type="image/png")
    stored_s = time.monotonic() - started
    bed.wait_worker(bed.worker(4, functions="copy,thumbnail"))
    fresh_uploads(bed, "warm", 3)
    idle = fresh_uploads(bed, "idle", 20)
    lane = bed.pipeline.config.lane_for("copy", backfill=True)
    samples, done_event = Samples(), threading.Event()
    args = ["reconcile", "--rate", "0", "--window", str(WINDOW), "--quiet"]
    passes = [bed.run(args)]
    began = time.monotonic()

    def sample() -> None:
        while not done_event.is_set():
            samples.lane_depth.append(bed.runtime.dispatcher.depth(lane))
            progress = bed.ledger.backfill.read()
            if progress is not None:
                samples.progress.append(progress)
                if rss := rss_mb([passes[-1].pid]) if passes[-1].alive() else 0.0:
                    samples.reconciler_rss_mb.append((progress.listed, rss))
            time.sleep(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    during: list[float] = []
    interrupted: Progress | None = None
    while True:
        progress = bed.ledger.backfill.read()
        if interrupted is None and progress and progress.listed >= INTERRUPT_AT * objects:
            passes[0].popen.send_signal(signal.SIGINT)  # Ctrl-C: the pass stops; its cursor stays
            passes[0].popen.wait(timeout=60)
            interrupted = bed.ledger.backfill.read()
            passes.append(bed.run(args))  # resumes after the last key handed on
        elif progress and progress.complete and not passes[-1].alive():
            break
        during += fresh_uploads(bed, f"busy{len(during)}", 1)
        time.sleep(FRESH_EVERY_S)
    took = time.monotonic() - began
    done_event.set()
    sampler.join()
    return _figures(bed, objects, stored_s, took, idle, during, samples, interrupted)


def _figures(
    bed: Testbed,
    n: int,
    stored_s: float,
    took: float,
    idle: list[float],
    during: list[float],
    samples: Samples,
    interrupted: Progress | None,
) -> list[Figure]:
    final = bed.ledger.backfill.read()
    counts = bed.ledger.invocations.counts()
    made = sum(count for status, count in counts.items() if status != "duplicates")
    backlog_invocations = made - (len(idle) + len(during) + 3)
    ratio = statistics.median(during) / statistics.median(idle)
    rss = samples.reconciler_rss_mb
    early = [mb for listed, mb in rss if listed < n * 0.2]
    late = [mb for listed, mb in rss if listed > n * 0.8]
    assert final is not None and interrupted is not None
    return [
        Figure(
            f"`pipeline reconcile` over a bucket of {n:,} objects nobody was notified about "
            f"(embedded store, {n:,} stored in {stored_s:.0f} s), each copied; one worker (concurrency 4)",
            f"listed {final.listed:,} (with the fresh uploads) · enqueued {final.enqueued:,} · done "
            f"{final.done:,} in {took:.0f} s ({n / took:.0f} objects/s)",
            f"invocations {counts['succeeded']:,} succeeded, {counts['failed'] + counts['dead']} failed",
            "every object once",
            final.done >= n and backlog_invocations == n,
        ),
        Figure(
            f"interrupted (Ctrl-C) at {interrupted.listed:,} listed, then run again",
            f"resumed after the last key handed on: {backlog_invocations - n} objects enqueued twice, "
            f"{max(0, n - backlog_invocations)} missed",
            f"progress counted on: listed {interrupted.listed:,} -> {final.listed:,}",
            "no object twice",
            backlog_invocations == n,
        ),
        Figure(
            "backfill lane depth, sampled each second",
            f"at most {max(samples.lane_depth, default=0)} messages",
            f"window {WINDOW}",
            "<= window + one object's fan-out",
            max(samples.lane_depth, default=0) <= WINDOW + 1,
        ),
        Figure(
            "fresh upload (1 MP JPEG) -> thumbnails stored, one every 2 s during the backfill",
            f"{dist(during)}; p50 {ratio:.2f}x idle",
            f"idle, same worker: {dist(idle)}",
            "p50 <= 2x idle",
            ratio <= 2.0,
        ),
        Figure(
            "the reconciler's memory (RSS) while listing (the embedded store reads a prefix's listing "
            "whole, sorted, before its first object; S3 pages it 1,000 keys at a time)",
            f"{statistics.median(late):.0f} MiB after 80% listed" if late else "-",
            f"{statistics.median(early):.0f} MiB before 20% listed" if early else "-",
            "—",
            None,
        ),
    ]


def bench_backfill_at_scale(objects: int) -> list[Figure]:
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # Started in the background, the shell left Ctrl-C ignored, and the passes this process
        # starts would inherit that and never hear the Ctrl-C the bench sends them. A handled
        # signal is reset to its default in a child: it then becomes KeyboardInterrupt there.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="pipeline-backfill-") as tmp:
        return run(Path(tmp), objects)


SECTION = DocSection("bench:backfill", "A backfill of a whole bucket")


def render(figures: list[Figure], command: str) -> str:
    return SECTION.render(
        f"Command: `{command}`. Machine: {machine()}. Redis, the worker, both `pipeline reconcile` "
        "passes and this process ran on this machine in one run.",
        *figure_rows(figures),
    )
