"""The Usage page: what each function used over the last 24 hours, from the usage counters (never
from the invocation records, so the page costs the same with ten or ten million of them)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from markupsafe import Markup

from pipeline.admin.charts import Series, bar_chart, line_chart
from pipeline.ledger.usage import WINDOW_S
from pipeline.runtime import Runtime
from pipeline.usage import UsageRow, fine_percentile, summarize

HOURS = 24
X_LABELS = ("-24 h", "-18 h", "-12 h", "-6 h", "now")


@dataclass
class FunctionUsage:
    name: str
    row: UsageRow
    invocations_chart: Markup
    duration_chart: Markup
    gb_seconds_chart: Markup


def _clock(at: float) -> str:
    return time.strftime("%H:%M", time.gmtime(at))


def _durations(windows: list[dict[int, int]]) -> tuple[list[float | None], list[float | None], str, float]:
    """p50 and p95 per window in the unit that reads best (ms below half a second)."""
    p50 = [fine_percentile(w, 0.5) for w in windows]
    p95 = [fine_percentile(w, 0.95) for w in windows]
    peak = max((v for v in p95 if v is not None), default=0.0)
    scale, unit = (1000.0, " ms") if peak < 0.5 else (1.0, " s")  # axis labels stay short
    return (
        [v * scale if v is not None else None for v in p50],
        [v * scale if v is not None else None for v in p95],
        unit,
        scale,
    )


def usage_page(runtime: Runtime, now: float | None = None) -> dict[str, object]:
    now = now or time.time()
    usage = runtime.ledger.usage
    _minutes, per_minute = usage.per_minute(HOURS * 60, now)
    _windows, durations = usage.duration_windows(HOURS * 3600 // WINDOW_S, now)
    hourly = usage.hours(now - HOURS * 3600, now)  # the table's period, the last 24 as bars
    rows = {row.name: row for row in hourly.rows("function")}
    hours, gb_seconds = hourly.hours[-HOURS:], {fn: v[-HOURS:] for fn, v in hourly.per_hour("gbs").items()}
    active = sorted(
        set(per_minute) | set(rows), key=lambda fn: (-(rows.get(fn) or UsageRow(fn)).requests, fn)
    )
    functions = []
    for fn in active:
        counts = per_minute.get(fn, [0] * (HOURS * 60))
        p50, p95, unit, _scale = _durations(durations.get(fn, []))
        gbs = gb_seconds.get(fn, [0.0] * HOURS)
        functions.append(
            FunctionUsage(
                name=fn,
                row=rows.get(fn) or UsageRow(fn),
                invocations_chart=line_chart(
                    [Series("per minute", [float(c) for c in counts], "line-a")],
                    unit="",
                    x_labels=X_LABELS,
                    title=f"{fn}: invocations per minute, last 24 hours",
                ),
                duration_chart=line_chart(
                    [Series("p50", p50, "line-a"), Series("p95", p95, "line-b")],
                    unit=unit,
                    x_labels=X_LABELS,
                    title=f"{fn}: duration p50 and p95 per 10 minutes",
                ),
                gb_seconds_chart=bar_chart(
                    gbs,
                    unit="",
                    x_labels=X_LABELS,
                    title=f"{fn}: GB-seconds per hour",
                    tips=[f"{_clock(h * 3600)} UTC: {v:.3f} GB-s" for h, v in zip(hours, gbs, strict=True)],
                ),
            )
        )
    idle = sorted(set(runtime.pipeline.functions) - set(active))
    total = summarize("function", now - HOURS * 3600, now, list(rows.values()), None).total
    return {"functions": functions, "idle": idle, "total": total, "at": now}
