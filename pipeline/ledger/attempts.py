"""What an attempt that ended leaves: the fields its invocation's record gets, and the usage
sample its counters get."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pipeline.config import is_backfill_lane
from pipeline.tracing import carrier
from pipeline.usage import Measured, Sample, gb_seconds

ATTEMPT_FIELDS = ["started_at", "queue_wait_ms", "function", "rule", "bucket", "queue"]


@dataclass(frozen=True)
class EndedAttempt:
    fields: dict[str, Any]  # what the invocation's record gets
    sample: Sample | None  # what the usage counters get, if the attempt is counted
    backfill: bool = False  # it came through a backfill lane


def ended_attempt(
    stored: dict[str, str], outcome: str, now: float, measured: Measured | None, record_usage: bool
) -> EndedAttempt:
    """The fields an attempt that ended at `now` sets on the record `stored` (its fields as JSON
    values), and its usage sample (if the attempt ever started and usage is recorded)."""
    raw = [stored.get(name) for name in ATTEMPT_FIELDS]
    started, wait_ms, function, rule, bucket, queue = (json.loads(v) if v else None for v in raw)
    measured = measured or Measured()
    duration = max(0.0, now - started) if started else None
    fields: dict[str, Any] = {"duration_ms": round(duration * 1000, 1) if duration is not None else None}
    trace = carrier()
    if trace:  # the attempt's span: webhooks about this outcome continue the trace from it
        fields["trace"] = trace
    if measured.cpu_ms is not None:
        fields["cpu_ms"] = measured.cpu_ms
    backfill = is_backfill_lane(str(queue or ""))
    if not record_usage or duration is None or function is None:
        return EndedAttempt(fields, None, backfill)
    gbs = gb_seconds(measured.memory_mb, duration)
    fields.update(
        memory_mb=measured.memory_mb,
        gb_seconds=round(gbs, 6),
        peak_memory_mb=measured.peak_memory_mb,
        bytes_read=measured.bytes_read,
        bytes_written=measured.bytes_written,
        cold_start=measured.cold_start,
    )
    sample = Sample(
        function=function,
        rule=rule or "",
        bucket=bucket or "",
        outcome=outcome,
        at=now,
        duration_s=duration,
        queue_wait_s=wait_ms / 1000 if wait_ms is not None else None,
        cpu_s=(measured.cpu_ms or 0.0) / 1000,
        gb_seconds=gbs,
        bytes_read=measured.bytes_read,
        bytes_written=measured.bytes_written,
        cold_start=measured.cold_start,
    )
    return EndedAttempt(fields, sample, backfill)
