"""The benchmark's own arithmetic and the notifications it sends (its figures are only as good)."""

from __future__ import annotations

import json

from pipeline.events import parse_records
from pipeline.measure.ingest import minio_body
from pipeline.measure.system import SECTION, render
from pipeline.measure.testbed import Figure, dist, pct


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert pct(values, 0.5) == 50 and pct(values, 0.99) == 99 and pct(values, 1.0) == 100
    assert pct([7.0], 0.99) == 7.0
    assert dist([0.001, 0.002, 0.003]) == "p50 2.0 ms · p95 3.0 ms · p99 3.0 ms (n=3)"


def test_ingest_bodies_are_valid_minio_notifications_for_distinct_objects() -> None:
    first = parse_records(json.loads(minio_body("uploads/ingest/a b+1.jpg", 1001)), "minio")
    second = parse_records(json.loads(minio_body("uploads/ingest/a b+1.jpg", 1002)), "minio")
    [event] = first
    assert (event.bucket, event.key, event.size) == ("media", "uploads/ingest/a b+1.jpg", 1001)
    assert event.version_tag != second[0].version_tag, "each body is a new version: never a duplicate"


def test_table_marks_goals_met_missed_and_without_goal() -> None:
    table = render(
        [Figure("a", "1", "2", "g", True), Figure("b", "1", "2", "g", False), Figure("c", "1", "2", "-")],
        "pipeline bench system",
    )
    assert table.startswith(SECTION.start) and table.endswith(SECTION.end)
    rows = [line for line in table.splitlines() if line.startswith("| a") or line.startswith("| b")]
    assert rows[0].endswith("| yes |") and rows[1].endswith("| **no** |")
    assert "| c | 1 | 2 | - | — |" in table
