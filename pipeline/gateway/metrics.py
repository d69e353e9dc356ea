"""What `/metrics` reads from Redis at scrape time: the ledger's counts and gauges, and the usage
counters every worker process adds to (see ledger/usage.py for why they live in Redis). Labels are
functions, outcomes, queues and states, never object keys, so the series stay few."""

from __future__ import annotations

from collections.abc import Iterable

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.ledger.usage import FunctionTotals
from pipeline.notify.notifier import Notifier
from pipeline.runtime import Runtime
from pipeline.usage import DURATION_BOUNDS_S, OUTCOMES, QUEUE_WAIT_BOUNDS_S


class LedgerCollector(Collector):
    """Invocation and run counts by status and queue depths, read from Redis at scrape time."""

    def __init__(self, runtime: Runtime, notifier: Notifier) -> None:
        self.runtime = runtime
        self.notifier = notifier

    def collect(self) -> Iterable[GaugeMetricFamily]:
        by_status = GaugeMetricFamily(
            "pipeline_invocations", "Invocations in the ledger by status", labels=["status"]
        )
        depth = GaugeMetricFamily(
            "pipeline_queue_depth", "Messages waiting per function queue", labels=["queue"]
        )
        guards = GaugeMetricFamily(
            "pipeline_guard", "Times a delivery guarantee stepped in (cumulative)", labels=["kind"]
        )
        runs = GaugeMetricFamily("pipeline_runs", "Flow runs in the ledger by status", labels=["status"])
        try:
            for name, value in self.runtime.ledger.invocations.counts().items():
                by_status.add_metric([name], value)
            for name, value in self.runtime.ledger.runs.counts().items():
                runs.add_metric([name], value)
            for queue in self.runtime.pipeline.consumed_queues():  # backfill lanes too
                depth.add_metric([queue], self.runtime.dispatcher.depth(queue))
            for kind, value in self.runtime.ledger.stats.guards().items():
                guards.add_metric([kind], value)
        except redis.RedisError:
            return
        yield by_status
        yield runs
        yield depth
        yield guards
        yield from self._webhooks()

    def _webhooks(self) -> Iterable[GaugeMetricFamily]:
        attempts = GaugeMetricFamily(
            "pipeline_webhook_messages", "Webhook messages by outcome (cumulative)", labels=["outcome"]
        )
        subs = GaugeMetricFamily("pipeline_webhook_subscriptions", "Webhook subscriptions", labels=["state"])
        backlog = GaugeMetricFamily(
            "pipeline_webhook_backlog", "Work waiting for the webhook worker", labels=["kind"]
        )
        try:
            for outcome in ("delivered", "retried", "failed"):
                attempts.add_metric([outcome], self.runtime.ledger.stats.get(f"webhooks:{outcome}"))
            all_subs = self.notifier.subs.all()
            subs.add_metric(["enabled"], sum(1 for s in all_subs if s.enabled))
            subs.add_metric(["disabled"], sum(1 for s in all_subs if not s.enabled))
            backlog.add_metric(["scheduled"], self.notifier.messages.due_count())
            backlog.add_metric(["unannounced"], self.runtime.ledger.outbox.length())
        except redis.RedisError:
            return
        yield attempts
        yield subs
        yield backlog


def _buckets(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    """Per-bucket counts as Prometheus wants them: cumulative, by upper bound, ending at +Inf."""
    cumulative, out = 0, []
    for bound, count in zip((*[f"{b:g}" for b in bounds], "+Inf"), counts, strict=True):
        cumulative += count
        out.append((bound, float(cumulative)))
    return out


class UsageCollector(Collector):
    """Per-function usage (FaaS style: invocations, duration, queue wait, CPU, GB-seconds, bytes,
    cold starts) and the worker processes serving each function."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterable[Metric]:
        fn_label = ["function"]
        invocations = CounterMetricFamily(
            "pipeline_function_invocations",
            "Attempts of a function that ended, by outcome (retried: failed, will run again)",
            labels=["function", "outcome"],
        )
        duration = HistogramMetricFamily(
            "pipeline_function_duration_seconds", "Attempt duration: started -> verdict", labels=fn_label
        )
        wait = HistogramMetricFamily(
            "pipeline_function_queue_wait_seconds",
            "Message sent (or due) -> attempt started",
            labels=fn_label,
        )
        cpu = CounterMetricFamily(
            "pipeline_function_cpu_seconds", "CPU time of attempts, ffmpeg included", labels=fn_label
        )
        gbs = CounterMetricFamily(
            "pipeline_function_gb_seconds",
            "Memory size (memory_mb) x duration, in GB-seconds",
            labels=fn_label,
        )
        moved = CounterMetricFamily(
            "pipeline_function_bytes", "Bytes read (input, assets) and written (outputs)",
            labels=["function", "direction"],
        )  # fmt: skip
        cold = CounterMetricFamily(
            "pipeline_function_coldstarts", "First invocations of new worker processes", labels=fn_label
        )
        workers = GaugeMetricFamily(
            "pipeline_workers", "Live workers taking a function's queue", labels=fn_label
        )
        processes = GaugeMetricFamily(
            "pipeline_worker_processes",
            "Worker processes (most, with autoscale) for a function",
            labels=fn_label,
        )
        try:
            totals = self.runtime.ledger.usage.totals()
            live = self.runtime.ledger.workers.live()
        except redis.RedisError:
            return
        config = self.runtime.pipeline.config
        for fn in sorted(set(self.runtime.pipeline.functions) | set(totals)):
            one = totals.get(fn) or FunctionTotals()
            for outcome in sorted(set(OUTCOMES) | set(one.invocations)):
                invocations.add_metric([fn, outcome], one.invocations.get(outcome, 0))
            duration.add_metric([fn], _buckets(DURATION_BOUNDS_S, one.duration_buckets), one.duration_sum)
            wait.add_metric([fn], _buckets(QUEUE_WAIT_BOUNDS_S, one.wait_buckets), one.wait_sum)
            cpu.add_metric([fn], one.cpu_seconds)
            gbs.add_metric([fn], one.gb_seconds)
            moved.add_metric([fn, "read"], one.bytes_read)
            moved.add_metric([fn, "written"], one.bytes_written)
            cold.add_metric([fn], one.coldstarts)
            if fn in self.runtime.pipeline.functions:
                queue = config.queue_for(fn)
                serving = [w for w in live if queue in w.queues]
                workers.add_metric([fn], len(serving))
                processes.add_metric([fn], sum(w.concurrency for w in serving))
        yield from (invocations, duration, wait, cpu, gbs, moved, cold, workers, processes)
