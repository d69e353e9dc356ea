"""What the overview shows, read from the ledger: counts, throughput, per-function latency and
usage, queues and workers. One function returns one JSON-able snapshot; the page renders it and
the live stream sends it again every few seconds."""

from __future__ import annotations

import statistics
import time
from typing import Any

from pipeline.invocation import Status
from pipeline.ledger.backfill import Progress
from pipeline.runtime import Runtime

RECENT = 200  # invocations per function that latency and usage are computed from


def _percentile(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 1)


def snapshot(runtime: Runtime) -> dict[str, Any]:
    ledger, config = runtime.ledger, runtime.pipeline.config
    functions = []
    for name in sorted(runtime.pipeline.functions):
        recent = ledger.invocations.query(function=name, limit=RECENT)
        done = [i for i in recent if i.status == Status.SUCCEEDED and i.duration_ms is not None]
        durations = [float(i.duration_ms) for i in done if i.duration_ms is not None]
        queue = config.queue_for(name)
        functions.append(
            {
                "name": name,
                "queue": queue,
                "depth": runtime.dispatcher.depth(queue),
                "lane_depth": runtime.dispatcher.depth(config.lane_for(name, backfill=True)),
                "concurrency": config.function_settings(name).concurrency,
                "p50_ms": _percentile(durations, 50),
                "p95_ms": _percentile(durations, 95),
                "invocations": len(recent),
                "cpu_seconds": round(sum(i.cpu_ms or 0.0 for i in recent) / 1000, 2),
                "failed": sum(1 for i in recent if i.status in (Status.FAILED, Status.DEAD, Status.REJECTED)),
            }
        )
    workers = [
        {
            "hostname": w.hostname,
            "queues": w.queues,
            "concurrency": w.concurrency,
            "seen": round(time.time() - w.seen_at),
        }
        for w in sorted(ledger.workers.live(), key=lambda w: w.hostname)
    ]
    throughput = [
        {"minute": minute, "finished": sum(by.values()), "failed": by.get("failed", 0) + by.get("dead", 0)}
        for minute, by in ledger.invocations.throughput(60)
    ]
    counts = ledger.invocations.counts()
    return {
        "backfill": _backfill(ledger.backfill.read()),
        "at": time.time(),
        "counts": {s.value: counts.get(s.value, 0) for s in Status},
        "functions": functions,
        "workers": workers,
        "throughput": throughput,
    }


def _backfill(progress: Progress | None) -> dict[str, Any] | None:
    """The latest backfill that found work, while it runs and for an hour after (the periodic
    reconciler passes of `pipeline up` that find nothing are not shown)."""
    if progress is None or progress.enqueued == 0:
        return None
    if progress.complete and time.time() - (progress.finished_at or 0) > 3600:
        return None
    share = progress.done / progress.enqueued if progress.enqueued else (1.0 if progress.complete else 0.0)
    return {
        "started_at": progress.started_at,
        "listed": progress.listed,
        "enqueued": progress.enqueued,
        "done": progress.done,
        "rate": round(progress.rate, 1),
        "eta_s": progress.eta_s(),
        "percent": round(100 * share, 1),
        "listing_done": progress.finished_at is not None,
        "complete": progress.complete,
    }
