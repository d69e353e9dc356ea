"""`pipeline bench system`: the pipeline's own figures, each a distribution or a ratio from one run.

Everything runs on this machine in one command: an embedded Redis (the real redis-server), real
`pipeline worker` and `pipeline gateway` processes, a bare Celery worker as the baseline for the
pipeline's overhead, and moto's server as the S3 peer (S3 -> SNS -> HTTP push, as AWS delivers).
Each figure's baseline is measured in the same run, interleaved where it can be, so machine noise
hits both alike. Times between processes are wall-clock stamps (`time.time()`) on one host.
"""

from __future__ import annotations

import itertools
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

from functions import thumbnail
from pipeline.measure import SYSTEM_PARTS, bare_celery
from pipeline.measure.backfill_bench import bench_backfill
from pipeline.measure.docs import DocSection, machine
from pipeline.measure.failover import bench_failover
from pipeline.measure.ingest import bench_ingest
from pipeline.measure.ledger_bench import bench_ledger, server_in_use
from pipeline.measure.testbed import (
    THUMBNAIL,
    Figure,
    Testbed,
    dist,
    figure_rows,
    ms,
    pct,
    s3_peer,
    stamp,
)
from pipeline.measure.usage_bench import bench_usage
from pipeline.queue.control import FunctionControls
from pipeline.uploads import upload_file

SECTION = DocSection("bench:system", "The pipeline: latency, overhead, scaling, ingest, failover")


def bench_overhead(bed: Testbed, n: int) -> list[Figure]:
    """Notification accepted by the intake -> attempt started in a worker, beside a bare Celery send
    -> task started, alternating one of each, each on an idle worker."""
    worker = bed.worker(1)
    bare_worker = bed.spawn(
        [sys.executable, "-m", "celery", "-A", "pipeline.measure.bare_celery", "worker",
         "-Q", bare_celery.QUEUE, "-c", "1", "--without-mingle", "--without-gossip", "--loglevel", "WARNING"]
    )  # fmt: skip
    client = redis.Redis.from_url(bed.url, socket_timeout=120)
    publisher = bare_celery.make_app(bed.url)
    try:
        bed.wait_worker(worker)
        bare_celery.send_and_wait(publisher, client, timeout=60)  # also waits for the bare worker to come up
        ours: list[float] = []
        theirs: list[float] = []
        for i in range(n + 5):
            event = bed.event_for(f"uploads/overhead/{i}.png", bed.small, "image/png")
            sent = time.time()
            [inv] = bed.wait_done(bed.accept(event))
            baseline = bare_celery.send_and_wait(publisher, client)
            if i >= 5:  # the first few warm connections on both sides
                ours.append(stamp(inv, "started_at") - sent)
                theirs.append(baseline)
    finally:
        bed.stop(worker)
        bed.stop(bare_worker)
        client.close()
    p50, p99 = pct(ours, 0.5), pct(ours, 0.99)
    return [
        Figure(
            "Overhead: notification accepted -> function started (validated, deduplicated, recorded, "
            "queued, taken, leased)",
            dist(ours),
            f"bare Celery send -> task started: {dist(theirs)}",
            "p50 <= 10 ms, p99 <= 30 ms",
            p50 <= 0.010 and p99 <= 0.030,
        )
    ]


def bench_flow_hops(bed: Testbed, n: int) -> list[Figure]:
    """Chains of five copy steps, one chain at a time on one idle worker: each hop (parent recorded
    finished -> dependent started), and each chain's time outside its steps, beside the same runs'
    notification accepted -> first step started."""
    worker = bed.worker(2, functions="copy")
    hops: list[float] = []
    chains: list[float] = []
    starts: list[float] = []
    try:
        bed.wait_worker(worker)
        for i in range(n + 3):
            event = bed.event_for(f"chain/{i}.png", bed.small, "image/png")
            sent = time.time()
            [run_id] = bed.runtime.intake.accept(event).runs
            steps = bed.wait_run(run_id)
            if i < 3:  # the first few warm connections
                continue
            starts.append(stamp(steps[0], "started_at") - sent)
            hops += [stamp(b, "started_at") - stamp(a, "finished_at") for a, b in itertools.pairwise(steps)]
            inside = sum(stamp(s, "finished_at") - stamp(s, "started_at") for s in steps)
            chains.append(stamp(steps[-1], "finished_at") - stamp(steps[0], "started_at") - inside)
    finally:
        bed.stop(worker)
    hop50, chain50 = pct(hops, 0.5), pct(chains, 0.5)
    return [
        Figure(
            "Flow step hop: parent recorded finished -> dependent started (one Redis transaction, "
            "then the queue)",
            dist(hops),
            f"notification accepted -> first step started: {dist(starts)}",
            "p50 <= 10 ms, p99 <= 30 ms",
            hop50 <= 0.010 and pct(hops, 0.99) <= 0.030,
        ),
        Figure(
            "A chain of five copy steps: time outside the steps, first started -> last finished",
            f"{dist(chains)}; {chain50 / hop50:.1f}x the p50 hop",
            f"one hop: p50 {ms(hop50)} (four hops in a chain)",
            "<= 5x one hop",
            chain50 <= 5 * hop50,
        ),
    ]


def bench_e2e_embedded(bed: Testbed, n: int) -> list[Figure]:
    """Upload of a 1 MP JPEG into the local store -> thumbnails stored and recorded, one upload at a
    time, beside the thumbnail function alone on the same file in this process."""
    worker = bed.worker(2)
    function_alone: list[float] = []
    latencies: list[float] = []
    try:
        bed.wait_worker(worker)
        for i in range(n + 3):
            started = time.time()
            upload = upload_file(bed.runtime, bed.photo, "media", f"uploads/e2e/{i}.jpg")
            [inv] = bed.wait_done(upload.invocation_ids)
            if i >= 3:
                latencies.append(stamp(inv, "finished_at") - started)
            with tempfile.TemporaryDirectory(dir=bed.tmp) as out:
                t0 = time.perf_counter()
                thumbnail.run(bed.photo, Path(out), THUMBNAIL)
                function_alone.append(time.perf_counter() - t0)
    finally:
        bed.stop(worker)
    return [
        Figure(
            "Upload -> thumbnails (256 + 1024 px) stored, 1 MP JPEG, embedded default (local store)",
            dist(latencies),
            f"the thumbnail function alone: p50 {ms(pct(function_alone, 0.5))}",
            "p50 <= 150 ms",
            pct(latencies, 0.5) <= 0.150,
        )
    ]


def bench_e2e_s3(bed: Testbed, n: int) -> list[Figure]:
    """PUT of a 1 MP JPEG to the S3 peer -> S3 -> SNS -> gateway -> worker (download, thumbnails,
    upload) -> recorded; one at a time, beside the bare PUT of the same file."""
    latencies: list[float] = []
    puts: list[float] = []
    data = bed.photo.read_bytes()
    with s3_peer(bed) as (env, s3):
        worker = bed.worker(2, env)
        try:
            bed.wait_worker(worker)
            for i in range(n + 3):
                key = f"uploads/e2e-s3/{i}.jpg"
                started = time.time()
                s3.put_object(Bucket="media", Key=key, Body=data, ContentType="image/jpeg")
                put_done = time.time()
                deadline = time.monotonic() + 60
                while not (found := bed.ledger.invocations.for_object("media", key)):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"no notification for {key} reached the gateway")
                    time.sleep(0.001)
                [inv] = bed.wait_done([found[0].id])
                if i >= 3:
                    latencies.append(stamp(inv, "finished_at") - started)
                    s3.put_object(Bucket="media", Key=f"other/{i}.jpg", Body=data, ContentType="image/jpeg")
                    puts.append(put_done - started)
        finally:
            bed.stop(worker)
    return [
        Figure(
            "Upload -> thumbnails stored, 1 MP JPEG, Redis + S3 peer (moto: S3 -> SNS -> HTTP -> gateway)",
            dist(latencies),
            f"the PUT alone: p50 {ms(pct(puts, 0.5))}",
            "(no goal; for comparison)",
        )
    ]


def bench_throughput(bed: Testbed, images: int, rounds: int) -> list[Figure]:
    """A queue of `images` 1 MP JPEGs drained by a worker with 1, then 2 pool processes (alternating,
    `rounds` times): images per minute from the first start to the last finish. The worker is up and
    paused before the queue fills, so its processes start together."""
    controls = FunctionControls(bed.url, bed.pipeline, bed.ledger)
    rates: dict[int, list[float]] = {1: [], 2: []}
    for r in range(rounds):
        for count in (1, 2):
            controls.set_paused("thumbnail", True)
            worker = bed.worker(count)  # one worker, `count` pool processes
            try:
                bed.wait_worker(worker)
                keys = [f"uploads/tp/{r}-{count}/{n}.jpg" for n in range(images)]
                ids = [i for key in keys for i in bed.accept(bed.event_for(key, bed.photo, "image/jpeg"))]
                controls.set_paused("thumbnail", False)
                invs = bed.wait_done(ids, timeout=600, poll=0.05)
                first = min(stamp(i, "started_at") for i in invs)
                span = max(stamp(i, "finished_at") for i in invs) - first
                rates[count].append(images / span * 60)
            finally:
                bed.stop(worker)
    # Each round's two runs are minutes apart at most: their ratio is what noise leaves alone best.
    ratios = sorted(two / one for one, two in zip(rates[1], rates[2], strict=True))
    ratio = statistics.median(ratios)
    return [
        Figure(
            f"Throughput, 1 MP JPEG -> 2 thumbnails, {images} queued; one worker with 1 or 2 pool "
            f"processes, {rounds} rounds",
            f"2 processes: {statistics.median(rates[2]):.0f} images/min; ratio per round: median "
            f"{ratio:.2f}x (range {ratios[0]:.2f}-{ratios[-1]:.2f}x)",
            f"1 process: {statistics.median(rates[1]):.0f} images/min",
            "2 workers >= 1.8x one",
            ratio >= 1.8,
        )
    ]


def bench_cold_start(bed: Testbed, rounds: int, queued: int) -> list[Figure]:
    """A worker started with work already waiting: process start -> first task taken (and ready ->
    first task), and its first invocation's duration against the median of the next ones."""
    to_first: list[float] = []
    ready_to_first: list[float] = []
    first_vs_steady: list[float] = []
    for r in range(rounds):
        ids = [
            i
            for n in range(queued)
            for i in bed.accept(bed.event_for(f"uploads/cold/{r}/{n}.jpg", bed.photo, "image/jpeg"))
        ]
        spawned = time.time()
        worker = bed.worker(1)
        try:
            ready = bed.wait_worker(worker)
            invs = sorted(bed.wait_done(ids, poll=0.01), key=lambda i: stamp(i, "started_at"))
        finally:
            bed.stop(worker)
        first = stamp(invs[0], "started_at")
        to_first.append(first - spawned)
        ready_to_first.append(first - ready)
        steady = statistics.median(stamp(i, "duration_ms") for i in invs[1:])
        first_vs_steady.append(stamp(invs[0], "duration_ms") / steady)
    return [
        Figure(
            f"Cold start: `pipeline worker` process started -> first task taken ({rounds} starts)",
            f"median {ms(statistics.median(to_first))}, max {ms(max(to_first))}",
            f"worker ready (heartbeat) -> first task: median {ms(statistics.median(ready_to_first))}",
            "<= 1 s",
            max(to_first) <= 1.0,
        ),
        Figure(
            "First invocation on a new worker vs its steady state (duration, same input)",
            f"ratio median {statistics.median(first_vs_steady):.2f}x, max {max(first_vs_steady):.2f}x",
            f"median of invocations 2..{queued} on the same worker",
            "not measurably slower (<= 1.2x)",
            statistics.median(first_vs_steady) <= 1.2,
        ),
    ]


# --- the run -----------------------------------------------------------------------------------------
def run_system_benchmarks(*, quick: bool = False, only: str | None = None) -> list[Figure]:
    """Every part in turn, or the one named `only` (a smoke run of one part, not figures to keep)."""
    for noisy in ("httpx", "werkzeug"):  # one line per request otherwise (client; the S3 peer)
        logging.getLogger(noisy).setLevel(logging.WARNING)
    scale = 0.25 if quick else 1.0

    def k(n: int) -> int:
        return max(3, int(n * scale))

    parts: dict[str, Callable[[Testbed], list[Figure]]] = {
        "overhead": lambda bed: bench_overhead(bed, k(200)),
        "usage": lambda bed: bench_usage(bed, k(400)),
        "flows": lambda bed: bench_flow_hops(bed, k(60)),
        "backfill": lambda bed: bench_backfill(bed, k(40)),
        "embedded": lambda bed: bench_e2e_embedded(bed, k(60)),
        "s3": lambda bed: bench_e2e_s3(bed, k(30)),
        "cold-start": lambda bed: bench_cold_start(bed, 5, 11),
        "throughput": lambda bed: bench_throughput(bed, k(40), 5),
        "ingest": lambda bed: bench_ingest(bed, max(2, int(8 * scale)), 32),
        "failover": lambda bed: bench_failover(bed.tmp / "failover"),
        # Two Redis servers of its own, a million invocations (a quick run: 250,000).
        "ledger": lambda bed: bench_ledger(k(1_000_000), 10_000, k(20), server_in_use(None))[0],
    }
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp:
        bed = Testbed(Path(tmp))
        try:
            for name in SYSTEM_PARTS:
                if only in (None, name):
                    figures += parts[name](bed)
        finally:
            bed.close()
    return figures


def part_section(part: str) -> DocSection:
    """Where `--only PART --write` puts its figures: a table of their own, beside the whole run's."""
    return DocSection(f"bench:system-{part}", f"The pipeline, one part: {part}")


def render(figures: list[Figure], command: str, section: DocSection = SECTION) -> str:
    return section.render(
        f"Command: `{command}`. Machine: {machine()}. Everything (load generator included) "
        "ran on this machine in one run.",
        *figure_rows(figures),
    )
