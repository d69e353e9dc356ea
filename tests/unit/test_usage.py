"""Usage arithmetic, prices, periods, the worker's meter, the charts' markup and the log fields."""

from __future__ import annotations

import json
import logging
import random
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from functions._ffmpeg.sandbox import Limits, run_sandboxed
from pipeline.admin.charts import Series, bar_chart, line_chart
from pipeline.errors import ConfigError
from pipeline.logs import InvocationFields, InvocationFilter, about_invocation, remember_task
from pipeline.metering import Meter
from pipeline.usage import (
    DURATION_BOUNDS_S,
    Prices,
    UsageRow,
    bucket_index,
    fine_index,
    fine_percentile,
    gb_seconds,
    load_prices,
    parse_since,
    summarize,
)
from tests.helpers import REPO


def test_gb_seconds_are_memory_in_gb_times_seconds() -> None:
    assert gb_seconds(1024, 2.0) == 2.0
    assert gb_seconds(128, 1.0) == 0.125


def test_histogram_buckets_take_a_value_at_their_bound_and_overflow_to_inf() -> None:
    assert bucket_index(DURATION_BOUNDS_S, 0.005) == 0
    assert bucket_index(DURATION_BOUNDS_S, 0.0051) == 1
    assert bucket_index(DURATION_BOUNDS_S, 10_000) == len(DURATION_BOUNDS_S)


def test_fine_percentiles_are_within_ten_percent() -> None:
    rng = random.Random(3)
    values = [rng.lognormvariate(-2, 1) for _ in range(5000)]
    counts: dict[int, int] = {}
    for v in values:
        counts[fine_index(v)] = counts.get(fine_index(v), 0) + 1
    ordered = sorted(values)
    for q in (0.5, 0.95):
        exact = ordered[int(q * len(ordered)) - 1]
        estimate = fine_percentile(counts, q)
        assert estimate is not None and abs(estimate - exact) / exact < 0.1
    assert fine_percentile({}, 0.5) is None


def test_prices_cost_and_the_example_file() -> None:
    prices = load_prices(REPO / "samples" / "prices-example.yaml")
    assert prices == Prices(per_million_requests=0.2, per_gb_second=0.0000166667, per_gb_written=0.023)
    assert prices.cost(1_000_000, 0.0, 0) == pytest.approx(0.2)
    assert prices.cost(0, 1000.0, 2 * 1024**3) == pytest.approx(0.0166667 + 0.046)


def test_a_bad_price_file_is_named_with_its_problem(tmp_path: Path) -> None:
    bad = tmp_path / "prices.yaml"
    bad.write_text("per_gb_second: -1\nper_million: 3\n")
    with pytest.raises(ConfigError, match=r"prices\.yaml: not a price file"):
        load_prices(bad)


def test_periods_are_spans_or_utc_dates() -> None:
    now = 1_800_000_000.0
    assert parse_since("24h", now) == now - 86400
    assert parse_since("7d", now) == now - 7 * 86400
    assert parse_since("30m", now) == now - 1800
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    with pytest.raises(ValueError, match="neither a span"):
        parse_since("yesterday", now)


def test_a_report_totals_its_rows_and_prices_each() -> None:
    rows = [UsageRow("a", requests=2, gb_seconds=1.0, bytes_written=10), UsageRow("b", requests=3)]
    report = summarize("function", 0, 3600, rows, Prices(per_million_requests=1e6))
    assert report.total.requests == 5 and report.total.gb_seconds == 1.0
    assert [r.cost for r in report.rows] == [2.0, 3.0] and report.total.cost == 5.0
    assert json.loads(json.dumps(report.as_json()))["total"]["requests"] == 5


def test_the_meter_counts_a_cold_start_once_and_a_childs_peak_memory(tmp_path: Path) -> None:
    meter = Meter()
    meter.begin(512)
    # A child that holds 120 MB: its peak reaches the attempt's figure through wait4.
    run_sandboxed(
        [sys.executable, "-c", "b = bytearray(120 * 2**20); b[::4096] = b'x' * len(b[::4096])"],
        tmp_path,
        Limits(),
    )
    first = meter.end()
    assert first is not None and first.cold_start and first.memory_mb == 512
    assert first.peak_memory_mb is not None and first.peak_memory_mb >= 120
    assert first.cpu_ms is not None and first.cpu_ms > 0
    meter.begin(None)
    second = meter.end()
    assert second is not None and not second.cold_start and second.memory_mb == 128
    assert second.peak_memory_mb is not None and second.peak_memory_mb < first.peak_memory_mb
    assert meter.end() is None  # measured once


def test_charts_escape_what_they_print_and_scale_to_a_round_top() -> None:
    svg = line_chart(
        [Series("<p95>", [1.0, None, 3.2], "line-a")], unit=" ms", x_labels=("a", "b"), title="t&t"
    )
    assert "&lt;p95&gt;" in svg and "<p95>" not in svg and "t&amp;t" in svg
    assert ">5 ms<" in svg  # 3.2 rounds up to an axis top of 5
    assert "<circle" in svg  # the lone point after the gap
    bars = bar_chart([0.0, 40.0], unit="", x_labels=("x",), title="gbs", tips=["one", "two"])
    assert bars.count("<rect") == 2 and ">50<" in bars and "<title>two</title>" in bars


def _record(request: dict[str, str] | None = None) -> logging.LogRecord:
    """A record as `log.info(message, {request dict})` makes it (Celery's task lines)."""
    args = (request,) if request is not None else None
    return logging.LogRecord("celery", logging.INFO, __file__, 1, "msg", args, None)


def test_log_records_about_an_invocation_carry_its_fields() -> None:
    fields = InvocationFields("01abc", "thumbnail", "media", "uploads/a b/c.jpg")
    assert InvocationFields.from_argsrepr(fields.argsrepr()) == fields
    log_filter = InvocationFilter()
    with about_invocation(fields):
        inside = _record()
        log_filter.filter(inside)
    assert inside.invocation_id == "01abc" and inside.key == "uploads/a b/c.jpg"  # type: ignore[attr-defined]
    received = _record({"id": "task-1", "args": fields.argsrepr()})
    log_filter.filter(received)
    assert received.function == "thumbnail"  # type: ignore[attr-defined]
    remember_task("task-2", fields)
    retried = _record({"id": "task-2", "exc": "Retry in 1s"})
    log_filter.filter(retried)
    assert retried.bucket == "media"  # type: ignore[attr-defined]
    other = _record({"id": "unknown"})
    assert log_filter.filter(other) and not hasattr(other, "invocation_id")
