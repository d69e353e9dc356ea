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

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from pipeline.config import parse_config
from pipeline.embedded import EmbeddedRedis
from pipeline.ledger.backfill import Progress
from pipeline.measure.docs import DocSection, machine
from pipeline.measure.samples import make_photo
from pipeline.measure.testbed import Figure, dist, figure_rows
from pipeline.queue.app import queued_runtime
from pipeline.registry import build_pipeline
from pipeline.runtime import Runtime
from pipeline.settings import Settings
from pipeline.storage import LocalStore

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


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Bench:
    def __init__(self, root: Path, objects: int) -> None:
        self.root, self.objects = root, objects
        config = root / "pipeline.yaml"
        config.write_text(CONFIG)
        data = root / "data"
        self.redis = EmbeddedRedis(data, persist=False)
        url = self.redis.start()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
        self.env.update(
            PIPELINE_REDIS_URL=url, PIPELINE_CONFIG=str(config), PIPELINE_DATA_DIR=str(data),
            PIPELINE_RECONCILE_INTERVAL="0",
        )  # fmt: skip
        settings = Settings(redis_url=url, data_dir=data, config=config, s3_endpoint=None)
        self.runtime: Runtime = queued_runtime(
            settings, build_pipeline(parse_config(CONFIG, str(config)), str(config)), url
        )
        self.store = LocalStore(data / "store")
        self.store.ensure_bucket("media")
        self.tile = root / "tile.png"
        Image.new("RGB", (32, 32), (40, 90, 160)).save(self.tile)
        self.photo = make_photo(root / "photo-1mp.jpg")
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, *argv: str) -> subprocess.Popen[bytes]:
        with (self.root / f"{argv[0]}-{len(self.procs)}.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline", *argv], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.procs.append(proc)
        return proc

    def fresh(self, n: int) -> float:
        """One upload the gateway would have been notified of: stored, accepted, waited for."""
        event = self.store.put_file(
            "media", f"uploads/fresh-{n:05d}.jpg", self.photo, content_type="image/jpeg"
        )
        sent = time.time()
        record = self.runtime.intake.accept(event.event("local"))
        while True:
            invs = self.runtime.ledger.invocations.get_many(record.invocations)
            if invs and all(i.status.finished for i in invs):
                return max(i.finished_at or sent for i in invs) - sent
            time.sleep(0.005)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=60)
        self.redis.stop()


def run(root: Path, objects: int) -> list[Figure]:
    bench = Bench(root, objects)
    try:
        return _run(bench)
    finally:
        bench.close()


def _run(bench: Bench) -> list[Figure]:
    started = time.monotonic()
    for i in range(bench.objects):
        bench.store.put_file("media", f"backlog/{i:07d}.png", bench.tile, content_type="image/png")
    stored_s = time.monotonic() - started
    bench.spawn("worker", "--functions", "copy,thumbnail", "--concurrency", "4", "--loglevel", "WARNING")
    while not bench.runtime.ledger.workers.live():
        time.sleep(0.1)
    for n in range(3):
        bench.fresh(n)  # warm
    idle = [bench.fresh(100 + n) for n in range(20)]
    lane = bench.runtime.pipeline.config.lane_for("copy", backfill=True)
    samples, done_event = Samples(), threading.Event()
    argv = ("reconcile", "--rate", "0", "--window", str(WINDOW), "--quiet")
    passes = [bench.spawn(*argv)]
    began = time.monotonic()

    def sample() -> None:
        while not done_event.is_set():
            samples.lane_depth.append(bench.runtime.dispatcher.depth(lane))
            progress = bench.runtime.ledger.backfill.read()
            if progress is not None:
                samples.progress.append(progress)
                rss = _rss_mb(passes[-1].pid) if passes[-1].poll() is None else None
                if rss is not None:
                    samples.reconciler_rss_mb.append((progress.listed, rss))
            time.sleep(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    during: list[float] = []
    interrupted: Progress | None = None
    n = 1000
    while True:
        progress = bench.runtime.ledger.backfill.read()
        if interrupted is None and progress and progress.listed >= INTERRUPT_AT * bench.objects:
            passes[0].send_signal(signal.SIGINT)  # Ctrl-C: the pass stops; its cursor stays
            passes[0].wait(timeout=60)
            interrupted = bench.runtime.ledger.backfill.read()
            passes.append(bench.spawn(*argv))  # resumes after the last key handed on
        elif progress and progress.complete and passes[-1].poll() is not None:
            break
        n += 1
        during.append(bench.fresh(n))
        time.sleep(FRESH_EVERY_S)
    took = time.monotonic() - began
    done_event.set()
    sampler.join()
    return _figures(bench, stored_s, took, idle, during, samples, interrupted)


def _figures(
    bench: Bench,
    stored_s: float,
    took: float,
    idle: list[float],
    during: list[float],
    samples: Samples,
    interrupted: Progress | None,
) -> list[Figure]:
    final = bench.runtime.ledger.backfill.read()
    counts = bench.runtime.ledger.invocations.counts()
    made = sum(n for status, n in counts.items() if status != "duplicates")
    backlog_invocations = made - (len(idle) + len(during) + 3)
    ratio = statistics.median(during) / statistics.median(idle)
    rss = samples.reconciler_rss_mb
    early = [mb for listed, mb in rss if listed < bench.objects * 0.2]
    late = [mb for listed, mb in rss if listed > bench.objects * 0.8]
    n = bench.objects
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
    with tempfile.TemporaryDirectory(prefix="pipeline-backfill-") as tmp:
        return run(Path(tmp), objects)


SECTION = DocSection("bench:backfill", "A backfill of a whole bucket")


def render(figures: list[Figure], command: str) -> str:
    return SECTION.render(
        f"Command: `{command}`. Machine: {machine()}. Redis, the worker, both `pipeline reconcile` "
        "passes and this process ran on this machine in one run.",
        *figure_rows(figures),
    )
