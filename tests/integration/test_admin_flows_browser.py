"""Flow runs in the dashboard, in headless Chromium against real processes (a gateway and a worker
on Redis, the local store): the run drawn as a graph on the upload's timeline, Redrive and Rerun
buttons, and the Rules page's dry run of a flow."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Route

from pipeline.measure.samples import generate
from pipeline.runtime import Runtime
from tests.helpers import pipeline_runtime, wait_until
from tests.integration.test_admin_browser import Dashboard, _log_in, open_dashboard

pytestmark = pytest.mark.integration

CONFIG = """
version: 1
buckets: [media]
functions:
  step: {{module: tests.fixtures.steps, max_attempts: 1}}
flows:
  photo:
    steps:
      thumbs: {{function: thumbnail, params: {{sizes: [160, 320]}}}}
      check: {{function: step, params: {{name: checked, fail_if: "{flag}"}}}}
      sheet: {{function: step, needs: [thumbs, check], use: {{suffixes: [".jpg"]}}, params: {{name: sheet}}}}
      poster-size: {{function: thumbnail, if: "source.width >= 4000", params: {{sizes: [1024]}}}}
rules:
  - {{name: photos, bucket: media, prefix: uploads/, content_types: ["image/*"], flow: photo}}
"""


@pytest.fixture
def flow_dashboard(redis_url: str, tmp_path: Path) -> Iterator[tuple[Dashboard, Path, Runtime]]:
    flag = tmp_path / "fail-check"
    runtime, env = pipeline_runtime(CONFIG.format(flag=flag), redis_url, tmp_path)
    runtime.store.ensure_bucket("media")
    workers = [["--functions", "thumbnail,step", "--concurrency", "2"]]
    with open_dashboard(runtime, env, tmp_path, workers, height=900) as d:
        yield d, flag, runtime


def test_a_run_as_a_graph_with_redrive_and_rerun_buttons(
    flow_dashboard: tuple[Dashboard, Path, Runtime], tmp_path: Path
) -> None:
    d, flag, runtime = flow_dashboard
    page = d.page
    _log_in(d)
    sample = generate(tmp_path / "samples")[0]
    flag.touch()  # the check step fails until the flag is gone
    runtime.store.put_file("media", "uploads/photo.jpg", sample, content_type="image/jpeg")
    page.goto(f"{d.url}/admin/uploads/media/uploads/photo.jpg")
    # Generous: on a fresh machine this is often the first test of its process (Chromium's first start).
    run = page.wait_for_selector("li[data-run][data-status=failed]", timeout=60_000)
    assert run is not None
    page.wait_for_selector("[data-step=thumbs][data-status=succeeded] .previews img")
    assert page.get_attribute("[data-step=check]", "data-status") == "failed"
    assert "told to fail" in page.inner_text("[data-step=check]")
    assert page.get_attribute("[data-step=sheet]", "data-status") == "skipped"
    assert "check failed" in page.inner_text("[data-step=sheet]")
    # The sample is under 4000 px wide: its worker screened it and skipped the step.
    assert page.get_attribute("[data-step=poster-size]", "data-status") == "skipped"
    assert "condition not met" in page.inner_text("[data-step=poster-size]")
    d.shot("flow-run-failed")

    flag.unlink()
    page.click("li[data-run] form[action$='/redrive'] button")
    page.wait_for_selector("li[data-run][data-status=succeeded]")
    page.wait_for_selector("[data-step=sheet][data-status=succeeded] .previews img")
    assert "redriven 1\N{MULTIPLICATION SIGN}" in page.inner_text("li[data-run]")
    d.shot("flow-run")

    page.click("[data-step=thumbs] form[action$='/steps/thumbs/rerun'] button")
    page.wait_for_selector("text=thumbs of run photo on uploads/photo.jpg started again")
    page.wait_for_selector("li[data-run][data-status=succeeded] [data-step=thumbs][data-status=succeeded]")
    run_id = page.get_attribute("li[data-run]", "data-run")
    got = httpx.get(f"{d.url}/api/runs/{run_id}").json()
    assert len(got["steps"]["thumbs"]["invocations"]) == 2  # run again, on its own
    assert len(got["steps"]["sheet"]["invocations"]) == 3  # its dependents were not: one per parent file

    # The Rules page: the flow's graph, and which `if` holds for this object.
    page.goto(f"{d.url}/admin/rules?bucket=media&key=uploads/photo.jpg&content_type=image/jpeg")
    verdict = page.inner_text("#dry-run-flow-photo [data-step=poster-size] [data-verdict]")
    assert verdict == "if does not hold: skipped"
    assert "media facts from an earlier screening" in page.inner_text("#dry-run-flow-photo")
    assert (
        page.inner_text("#dry-run-flow-photo [data-step=sheet] [data-verdict]")
        == "runs on the outputs of thumbs, check"
    )
    d.shot("rules-flow-dry-run")


def test_a_change_before_the_live_stream_opens_is_caught_up(
    flow_dashboard: tuple[Dashboard, Path, Runtime], tmp_path: Path
) -> None:
    """The timeline is rendered, then the live stream opens: a run that ends in between must still
    reach the page. Here the upload is made and its run fails after the page was rendered and
    before its stream opens; the stream's first event (every new stream starts with one) brings
    the run in."""
    d, flag, runtime = flow_dashboard
    page = d.page
    _log_in(d)
    flag.touch()
    sample = generate(tmp_path / "samples")[0]

    def failed() -> bool:
        runs = runtime.ledger.runs.for_object("media", "uploads/held.jpg")
        return bool(runs) and runs[0].status.value == "failed"

    def hold_stream(route: Route) -> None:
        # The page's script asks for the stream once the page is rendered (without the upload).
        runtime.store.put_file("media", "uploads/held.jpg", sample, content_type="image/jpeg")
        wait_until(failed, 30, "the run to fail")
        route.continue_()

    page.route("**/admin/stream", hold_stream)
    page.goto(f"{d.url}/admin/uploads/media/uploads/held.jpg")
    page.wait_for_selector("li[data-run][data-status=failed]", timeout=15_000)
