"""The Usage page in headless Chromium against real processes: per-function totals and the three
server-drawn charts, beside the upload timeline's usage line of one invocation."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.invocation import Status
from pipeline.measure.samples import generate
from pipeline.runtime import Runtime
from pipeline.usage import Sample, gb_seconds
from tests.helpers import pipeline_runtime, wait_until
from tests.integration.test_admin_browser import CONFIG, Dashboard, _log_in, open_dashboard

pytestmark = pytest.mark.integration


@pytest.fixture
def usage_dashboard(redis_url: str, tmp_path: Path) -> Iterator[tuple[Dashboard, Runtime]]:
    runtime, env = pipeline_runtime(CONFIG, redis_url, tmp_path)
    runtime.store.ensure_bucket("media")
    workers = [["--functions", "thumbnail,filter", "--concurrency", "2"]]
    with open_dashboard(runtime, env, tmp_path, workers, height=1000) as d:
        yield d, runtime


def earlier_day(runtime: Runtime, now: float) -> None:
    """A day of earlier thumbnail traffic with a busy afternoon, counted through the same counters
    a worker writes when an attempt ends (the charts need history that a test cannot wait for)."""
    rng = random.Random(7)
    pipe = runtime.ledger.usage.r.pipeline(transaction=False)
    for minute in range(24 * 60, 10, -7):
        busy = 3 if 6 * 60 < minute < 10 * 60 else 1
        for _ in range(busy):
            duration = rng.lognormvariate(-2.3, 0.35) * busy
            runtime.ledger.usage.record(
                pipe,
                Sample(
                    function="thumbnail",
                    rule="images",
                    bucket="media",
                    outcome="succeeded",
                    at=now - minute * 60,
                    duration_s=duration,
                    queue_wait_s=0.004,
                    cpu_s=duration * 0.8,
                    gb_seconds=gb_seconds(512, duration),
                    bytes_read=400_000,
                    bytes_written=60_000,
                    cold_start=False,
                ),
            )
    pipe.execute()


def test_usage_page_charts_each_function_and_an_invocation_shows_its_usage(
    usage_dashboard: tuple[Dashboard, Runtime], tmp_path: Path
) -> None:
    d, runtime = usage_dashboard
    page = d.page
    _log_in(d)
    now = time.time()
    earlier_day(runtime, now)
    samples = {p.name: p for p in generate(tmp_path / "samples")}
    sample = samples["landscape.jpg"]
    runtime.store.put_file("media", "brand/logo.png", samples["logo-alpha.png"], content_type="image/png")
    for i in range(3):
        runtime.store.put_file("media", f"uploads/usage-{i}.jpg", sample, content_type="image/jpeg")

    def done() -> bool:
        found = runtime.ledger.invocations.query(bucket="media", limit=100)
        return len(found) == 6 and all(i.status.finished for i in found)

    wait_until(done, 60, "six invocations")
    invocations = runtime.ledger.invocations.query(bucket="media", limit=100)
    assert {i.status for i in invocations} == {Status.SUCCEEDED}

    page.goto(f"{d.url}/admin/usage")
    rows = {r.name: r for r in runtime.ledger.usage.rows(time.time() - 86400, time.time(), "function")}
    for fn in ("thumbnail", "filter"):
        cells = page.locator(f"table.usage tbody tr:has(a[href='#fn-{fn}']) td").all_inner_texts()
        assert int(cells[1]) == rows[fn].requests >= 3
        assert float(cells[2]) == pytest.approx(rows[fn].gb_seconds, abs=0.001)
        section = page.locator(f"#fn-{fn}")
        assert section.locator("svg.chart-svg").count() == 3
        assert section.locator("svg path.line-a").count() == 2  # invocations, and the p50 line
    # The earlier day shows as history: GB-seconds bars across the hours, p95 above p50.
    thumbs = page.locator("#fn-thumbnail")
    bars = [
        float(t.split(": ")[1].split()[0]) for t in thumbs.locator("rect.bar-fill title").all_text_contents()
    ]
    assert len(bars) == 24 and sum(1 for b in bars if b > 0) >= 20
    assert thumbs.locator("svg path.line-b").count() == 1
    idle = sorted(set(runtime.pipeline.functions) - set(rows))
    if idle:
        assert f"No invocations in the last 24 hours: {', '.join(idle)}." in page.inner_text("main")
    d.shot("usage")

    # One invocation's usage on its upload's timeline.
    inv = next(i for i in invocations if i.function == "thumbnail")
    page.goto(f"{d.url}/admin/uploads/media/{inv.key}")
    line = page.inner_text(f"#inv-{inv.id} [data-usage]")
    assert f"{inv.gb_seconds:.4f} GB-s at 512 MB" in line
    assert "waited" in line and "peak" in line and "read" in line
