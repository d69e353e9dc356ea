"""Usage counters in Redis: one script call per ended attempt, in the transaction of its verdict.

Why Redis aggregates rather than a metrics port per worker: workers are prefork processes on many
hosts, started and stopped by an autoscaler. Counters that live in the ledger are exact across all
of them (an attempt is counted in the same transaction that records how it ended, so the counts
equal the ledger's), survive a worker's restart, and reach Prometheus through one scrape target,
the gateway, with no per-pod discovery and no multiprocess directory to share.

- `usage:totals`       cumulative counters and histogram buckets per function (never expire)
- `usage:h:<hour>`     sums per function, rule and bucket for `pipeline usage` (kept 400 days)
- `usage:m:<minute>`   attempts per function and minute (kept 25 hours)
- `usage:w:<window>`   fine duration buckets per function and 10 minutes (kept 25 hours)

Field names put the free-form name last (`n|succeeded|thumbnail`), so a name may hold `|`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import redis

from pipeline.ledger import keys
from pipeline.ledger.lua import source
from pipeline.usage import (
    DIMENSIONS,
    DURATION_BOUNDS_S,
    QUEUE_WAIT_BOUNDS_S,
    Dimension,
    Prices,
    Sample,
    UsageReport,
    UsageRow,
    bucket_index,
    fine_index,
    summarize,
)

HOURS_KEPT_S = 400 * 86400  # a bill is read for last month, or last year's same month
RECENT_KEPT_S = 25 * 3600
WINDOW_S = 600


@dataclass
class FunctionTotals:
    """Cumulative figures of one function, as `/metrics` exposes them."""

    invocations: dict[str, int] = field(default_factory=dict)  # by outcome
    cpu_seconds: float = 0.0
    gb_seconds: float = 0.0
    bytes_read: int = 0
    bytes_written: int = 0
    coldstarts: int = 0
    duration_buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BOUNDS_S) + 1))
    duration_sum: float = 0.0
    wait_buckets: list[int] = field(default_factory=lambda: [0] * (len(QUEUE_WAIT_BOUNDS_S) + 1))
    wait_sum: float = 0.0


_TOTAL_SUMS = {"cpu": "cpu_seconds", "gbs": "gb_seconds", "dsum": "duration_sum", "wsum": "wait_sum"}
_TOTAL_COUNTS = {"in": "bytes_read", "out": "bytes_written", "cold": "coldstarts"}


def _fields(sample: Sample) -> tuple[list[tuple[str, int | float]], ...]:
    fn = sample.function
    totals: list[tuple[str, int | float]] = [
        (f"n|{sample.outcome}|{fn}", 1),
        (f"cpu||{fn}", sample.cpu_s),
        (f"gbs||{fn}", sample.gb_seconds),
        (f"in||{fn}", sample.bytes_read),
        (f"out||{fn}", sample.bytes_written),
        (f"d|{bucket_index(DURATION_BOUNDS_S, sample.duration_s)}|{fn}", 1),
        (f"dsum||{fn}", sample.duration_s),
    ]
    if sample.cold_start:
        totals.append((f"cold||{fn}", 1))
    if sample.queue_wait_s is not None:
        totals.append((f"w|{bucket_index(QUEUE_WAIT_BOUNDS_S, sample.queue_wait_s)}|{fn}", 1))
        totals.append((f"wsum||{fn}", sample.queue_wait_s))
    hour: list[tuple[str, int | float]] = []
    for dim, value in zip(DIMENSIONS, (fn, sample.rule, sample.bucket), strict=True):
        hour += [
            (f"n|{dim}|{value}", 1),
            (f"gbs|{dim}|{value}", sample.gb_seconds),
            (f"cpu|{dim}|{value}", sample.cpu_s),
            (f"dur|{dim}|{value}", sample.duration_s),
            (f"in|{dim}|{value}", sample.bytes_read),
            (f"out|{dim}|{value}", sample.bytes_written),
        ]
    if sample.cold_start:
        hour.append((f"cold|function|{fn}", 1))
    minute: list[tuple[str, int | float]] = [(fn, 1)]
    window: list[tuple[str, int | float]] = [(f"{fine_index(sample.duration_s)}|{fn}", 1)]
    return totals, hour, minute, window


class UsageStore:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self._source = source("record_usage")

    def record(self, pipe: Any, sample: Sample) -> None:
        """Queue the counting of one ended attempt on `pipe` (the verdict's transaction)."""
        groups = _fields(sample)
        args: list[Any] = [HOURS_KEPT_S, RECENT_KEPT_S]
        for group in groups:
            args.append(len(group))
            for name, increment in group:
                args += [name, increment if isinstance(increment, int) else repr(float(increment))]
        names = [
            keys.USAGE_TOTALS,
            keys.usage_hour(int(sample.at // 3600)),
            keys.usage_minute(int(sample.at // 60)),
            keys.usage_window(int(sample.at // WINDOW_S)),
        ]
        # EVAL, not EVALSHA: a pipeline running a registered script first asks Redis whether it
        # has it (a round trip per verdict), and a NOSCRIPT inside the verdict's transaction
        # would lose the counts. Redis caches the compiled script by its text either way.
        pipe.eval(self._source, len(names), *names, *args)

    # --- reading -----------------------------------------------------------------------------
    def totals(self) -> dict[str, FunctionTotals]:
        found: dict[str, FunctionTotals] = defaultdict(FunctionTotals)
        for name, raw in self.r.hgetall(keys.USAGE_TOTALS).items():
            kind, detail, fn = str(name).split("|", 2)
            value, one = float(raw), found[fn]
            if kind == "n":
                one.invocations[detail] = int(value)
            elif kind == "d":
                one.duration_buckets[int(detail)] = int(value)
            elif kind == "w":
                one.wait_buckets[int(detail)] = int(value)
            elif kind in _TOTAL_SUMS:
                setattr(one, _TOTAL_SUMS[kind], value)
            elif kind in _TOTAL_COUNTS:
                setattr(one, _TOTAL_COUNTS[kind], int(value))
        return dict(found)

    def hours(self, since: float, until: float) -> HourlyUsage:
        """The hourly counters from `since`'s hour to `until`'s, in one round trip (no further
        back than they are kept)."""
        since = max(since, until - HOURS_KEPT_S)
        span = list(range(int(since // 3600), int(until // 3600) + 1))
        return HourlyUsage(span, self._read([keys.usage_hour(hour) for hour in span]))

    def rows(self, since: float, until: float, by: Dimension) -> list[UsageRow]:
        """Usage per function, rule or bucket over whole hours from `since`'s hour to `until`'s."""
        return self.hours(since, until).rows(by)

    def report(self, since: float, until: float, by: Dimension, prices: Prices | None) -> UsageReport:
        hourly = self.hours(since, until)
        return summarize(by, hourly.hours[0] * 3600, until, hourly.rows(by), prices)

    def per_minute(self, minutes: int, now: float | None = None) -> tuple[list[int], dict[str, list[int]]]:
        """Attempts per function and minute over the last `minutes` (Unix minutes, oldest first)."""
        last = int((now or time.time()) // 60)
        span = list(range(last - minutes + 1, last + 1))
        series: dict[str, list[int]] = defaultdict(lambda: [0] * len(span))
        for i, raw in enumerate(self._read([keys.usage_minute(m) for m in span])):
            for fn, value in raw.items():
                series[fn][i] = int(float(value))
        return span, dict(series)

    def duration_windows(
        self, windows: int, now: float | None = None
    ) -> tuple[list[int], dict[str, list[dict[int, int]]]]:
        """Fine duration buckets per function and 10-minute window, oldest first."""
        last = int((now or time.time()) // WINDOW_S)
        span = list(range(last - windows + 1, last + 1))
        series: dict[str, list[dict[int, int]]] = defaultdict(lambda: [{} for _ in span])
        for i, raw in enumerate(self._read([keys.usage_window(w) for w in span])):
            for name, value in raw.items():
                index, fn = name.split("|", 1)
                series[fn][i][int(index)] = int(float(value))
        return span, dict(series)

    def _read(self, names: list[str]) -> list[dict[str, str]]:
        """The hashes `names`, in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(name)
        return [{str(k): str(v) for k, v in raw.items()} for raw in pipe.execute()]


@dataclass
class HourlyUsage:
    """The hourly counters of a span of hours (Unix hours, oldest first)."""

    hours: list[int]
    counters: list[dict[str, str]]  # per hour: `<measure>|<dimension>|<name>` -> value

    def rows(self, by: Dimension) -> list[UsageRow]:
        rows: dict[str, UsageRow] = {}
        for raw in self.counters:
            for name, value in raw.items():
                measure, dim, row_name = name.split("|", 2)
                if dim == by:
                    rows.setdefault(row_name, UsageRow(row_name)).add(measure, float(value))
        return sorted(rows.values(), key=lambda row: (-row.requests, row.name))

    def per_hour(self, measure: str, by: Dimension = "function") -> dict[str, list[float]]:
        """One measure per hour for each function (rule, bucket)."""
        series: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(self.hours))
        for i, raw in enumerate(self.counters):
            for name, value in raw.items():
                kind, dim, row_name = name.split("|", 2)
                if kind == measure and dim == by:
                    series[row_name][i] = float(value)
        return dict(series)
