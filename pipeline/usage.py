"""Usage as a FaaS bill counts it: what one attempt of a function used, the histogram buckets the
figures are kept in, and unit prices. Pure: the ledger stores it (`ledger/usage.py`), the worker
measures it (`metering.py`), `pipeline usage`, `/metrics` and the dashboard read it.

Every attempt a worker starts is counted once when it ends (succeeded, failed, dead, rejected,
skipped, or retried), as Lambda bills each retry of an invocation.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.errors import ConfigError

# Functions without a `memory_mb` hint are billed at Lambda's smallest size.
DEFAULT_BILLED_MEMORY_MB = 128
GIB = 1024**3

# Prometheus histogram bounds (seconds, +Inf implied): functions run from milliseconds (a copy)
# to many minutes (a transcode); queue waits from a millisecond to a backlog of minutes.
DURATION_BOUNDS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
QUEUE_WAIT_BOUNDS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

# The dashboard's percentiles come from finer buckets, 20% wide from 1 ms: an estimate within
# 10% of the true value, from a fixed number of counters however many attempts there were.
FINE_BASE_S = 0.001
FINE_RATIO = 1.2
FINE_BUCKETS = 90  # up to about 3.6 hours; longer runs land in the last bucket

Dimension = Literal["function", "rule", "bucket"]
DIMENSIONS: tuple[Dimension, ...] = ("function", "rule", "bucket")

# How an attempt ended; "retried" is an attempt that failed and will run again.
OUTCOMES = ("succeeded", "failed", "dead", "rejected", "skipped", "retried")


@dataclass(frozen=True)
class Measured:
    """What the worker process measured around one attempt (the ledger adds the times)."""

    cpu_ms: float | None = None
    peak_memory_mb: float | None = None
    bytes_read: int = 0
    bytes_written: int = 0
    cold_start: bool = False
    memory_mb: int = DEFAULT_BILLED_MEMORY_MB


@dataclass(frozen=True)
class Sample:
    """One ended attempt, as the usage counters record it."""

    function: str
    rule: str
    bucket: str
    outcome: str
    at: float
    duration_s: float
    queue_wait_s: float | None
    cpu_s: float
    gb_seconds: float
    bytes_read: int
    bytes_written: int
    cold_start: bool


def gb_seconds(memory_mb: int, duration_s: float) -> float:
    """The memory a function is sized for x how long it ran, in GB-seconds (GB = 1024 MB, as
    Lambda counts it)."""
    return memory_mb / 1024 * duration_s


def bucket_index(bounds: tuple[float, ...], value: float) -> int:
    """The histogram bucket of `value`: the first bound it does not exceed, len(bounds) for +Inf."""
    return bisect.bisect_left(bounds, value)


def fine_index(seconds: float) -> int:
    if seconds <= FINE_BASE_S:
        return 0
    return min(FINE_BUCKETS - 1, int(math.log(seconds / FINE_BASE_S, FINE_RATIO)) + 1)


def fine_value(index: int) -> float:
    """A representative value of a fine bucket: the geometric middle of its bounds."""
    if index == 0:
        return FINE_BASE_S
    return float(FINE_BASE_S * FINE_RATIO ** (index - 0.5))


def fine_percentile(counts: dict[int, int], q: float) -> float | None:
    """The q-quantile (0..1) of the values counted in fine buckets, None without any."""
    total = sum(counts.values())
    if not total:
        return None
    rank = q * total
    seen = 0
    for index in sorted(counts):
        seen += counts[index]
        if seen >= rank:
            return fine_value(index)
    return fine_value(max(counts))


class Prices(BaseModel):
    """Unit prices for `pipeline usage --prices FILE` (YAML or JSON). None is assumed: the
    pipeline runs on the user's machines, so the file says what they want to charge or compare."""

    model_config = ConfigDict(extra="forbid")

    currency: str = "USD"
    per_million_requests: float = Field(default=0.0, ge=0)
    per_gb_second: float = Field(default=0.0, ge=0)
    per_gb_written: float = Field(default=0.0, ge=0, description="Per GiB of outputs stored.")

    def cost(self, requests: int, gb_s: float, bytes_written: int) -> float:
        return (
            requests / 1e6 * self.per_million_requests
            + gb_s * self.per_gb_second
            + bytes_written / GIB * self.per_gb_written
        )


def load_prices(path: Path) -> Prices:
    try:
        data = yaml.safe_load(path.read_text()) or {}
        return Prices.model_validate(data)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"{path}: not a price file: {exc}") from exc


# The hourly counters' measures and the report columns they add up in.
_COLUMNS = {
    "n": "requests",
    "gbs": "gb_seconds",
    "cpu": "cpu_seconds",
    "dur": "duration_seconds",
    "in": "bytes_read",
    "out": "bytes_written",
    "cold": "coldstarts",
}


@dataclass
class UsageRow:
    """Usage of one function, rule or bucket over a period."""

    name: str
    requests: int = 0
    gb_seconds: float = 0.0
    cpu_seconds: float = 0.0
    duration_seconds: float = 0.0
    bytes_read: int = 0
    bytes_written: int = 0
    coldstarts: int = 0
    cost: float | None = None

    def add(self, measure: str, value: float) -> None:
        """Add a counter's value (`n`, `gbs`, `cpu`, `dur`, `in`, `out`, `cold`) to its column."""
        column = _COLUMNS.get(measure)
        if column is not None:
            current = getattr(self, column)
            setattr(self, column, current + (int(value) if isinstance(current, int) else value))


_SPAN = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LONGEST_SPAN_S = 100 * 365 * 86400


def parse_since(text: str, now: float) -> float:
    """`24h`, `7d`, `30m`, `2w` before now, or a date (`2026-11-01`, UTC) or ISO date-time."""
    text = text.strip()
    if len(text) >= 2 and text[-1] in _SPAN and text[:-1].isascii() and text[:-1].isdigit():
        digits = text[:-1]
        # Digits counted first: a span of 400 digits is no number of seconds a float can hold.
        if len(digits) > 12 or int(digits) * _SPAN[text[-1]] > _LONGEST_SPAN_S:
            raise ValueError(f"{text[:20]!r}: a span reaches back 100 years at most")
        return now - int(digits) * _SPAN[text[-1]]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither a span (24h, 7d, 30m, 2w) nor a date (2026-11-01)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def period(since: str, until: str | None, now: float) -> tuple[float, float]:
    """The start and end of `--since`/`--until` (or `?since=&until=`); ValueError says why not."""
    start = parse_since(since, now)
    end = parse_since(until, now) if until else now
    if end < start:
        raise ValueError(f"until ({until}) is before since ({since})")
    return start, end


@dataclass
class UsageReport:
    """Usage per function, rule or bucket over whole hours, with its cost if prices were given."""

    by: str
    since: float
    until: float
    rows: list[UsageRow]
    total: UsageRow
    currency: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "since": self.since,
            "until": self.until,
            "currency": self.currency,
            "rows": [asdict(row) for row in self.rows],
            "total": asdict(self.total),
        }


def summarize(
    by: str, since: float, until: float, rows: list[UsageRow], prices: Prices | None
) -> UsageReport:
    total = UsageRow("total")
    for column in _COLUMNS.values():
        setattr(total, column, sum(getattr(row, column) for row in rows))
    if prices is not None:
        for row in [*rows, total]:
            row.cost = prices.cost(row.requests, row.gb_seconds, row.bytes_written)
    return UsageReport(by, since, until, rows, total, prices.currency if prices else None)
