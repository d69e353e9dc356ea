"""The Review page in headless Chromium against real processes (a gateway and a worker on Redis,
the local store): uploads held for review with blurred previews, scores and reasons; Approve runs
the held step, Reject quarantines the upload; each decision is on the upload's timeline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.measure.samples import generate
from tests.helpers import pipeline_runtime, wait_until
from tests.integration.test_admin_browser import _log_in, open_dashboard

pytestmark = pytest.mark.integration

CONFIG = """
version: 1
buckets: [media]
flows:
  photo:
    steps:
      # Every score is at or over 0: each upload is held for a person.
      screen: {function: screen, params: {review_at: 0.0}}
      thumbs:
        function: thumbnail
        needs: [screen]
        input: source
        if: 'steps.screen.verdict == "pass"'
        params: {sizes: [320]}
rules:
  - {name: photos, bucket: media, prefix: uploads/, content_types: ["image/*"], flow: photo}
"""


def test_review_page_approve_and_reject(redis_url: str, tmp_path: Path) -> None:
    tmp = tmp_path
    runtime, env = pipeline_runtime(CONFIG, redis_url, tmp)
    runtime.store.ensure_bucket("media")
    samples = generate(tmp / "samples")
    workers = [["--functions", "screen,thumbnail", "--concurrency", "2"]]
    with open_dashboard(runtime, env, tmp, workers, height=1000) as d:
        page = d.page
        _log_in(d)
        runtime.store.put_file("media", "uploads/first.jpg", samples[0], content_type="image/jpeg")
        runtime.store.put_file("media", "uploads/second.jpg", samples[2], content_type="image/jpeg")
        page.goto(f"{d.url}/admin/review")
        page.wait_for_function("document.querySelectorAll('ul.review li[id^=review-]').length == 2")
        page.reload()  # the count beside the Review link is drawn with the page, not live
        assert page.inner_text("#held-count") == "2"
        first = "li[id^=review-]:has-text('uploads/first.jpg')"
        page.wait_for_selector(f"{first} figure.blurred img")
        # Blurred until the reviewer clicks, and blurred again on a second click.
        blur = page.eval_on_selector(f"{first} img", "img => getComputedStyle(img).filter")
        assert "blur" in blur
        assert "nudity score" in page.inner_text(first) and "nsfw" in page.inner_text(first)
        d.shot("review")
        shown = f"getComputedStyle(document.querySelector('#{page.get_attribute(first, 'id')} img')).filter"
        page.click(f"{first} figure")
        page.wait_for_function(f"{shown} == 'none'")
        page.click(f"{first} figure")
        page.wait_for_function(f"{shown}.includes('blur(24px)')")

        # Approve without a name is refused: every decision says who made it.
        page.click(f"{first} button[value=approve]")  # the browser itself asks for the required name
        assert page.locator(f"{first} input[name=by]:invalid").count() == 1
        page.fill(f"{first} input[name=by]", "ana")
        page.fill(f"{first} input[name=note]", "a landscape")
        page.click(f"{first} button[value=approve]")
        page.wait_for_selector("text=uploads/first.jpg approved by ana: thumbs started")

        second = "li[id^=review-]:has-text('uploads/second.jpg')"
        page.fill(f"{second} input[name=by]", "bo")
        # A live update while the reviewer types leaves what they typed alone.
        with page.expect_response(lambda r: "fragment=1" in r.url):
            runtime.ledger.flags.switch("paused", "copy", True)  # any change the page is told of
        assert page.input_value(f"{second} input[name=by]") == "bo"
        page.click(f"{second} button[value=reject]")
        page.wait_for_selector(
            "text=uploads/second.jpg rejected by bo, quarantined as quarantine/uploads/second.jpg"
        )
        page.wait_for_selector("#review-empty")
        page.wait_for_selector(
            "li[id^=blocked-]:has-text('uploads/second.jpg') .decision[data-action=reject]"
        )
        assert "Rejected by bo via dashboard" in page.inner_text("li[id^=blocked-]")
        d.shot("review-decided")

        # The decisions on the uploads' timelines.
        page.goto(f"{d.url}/admin/uploads/media/uploads/first.jpg")
        page.wait_for_selector(
            "li[data-run][data-status=succeeded] [data-step=thumbs][data-status=succeeded] .previews img"
        )
        decision = page.inner_text("li[data-run] .decision")
        assert decision.startswith("Approved by ana via dashboard") and "a landscape" in decision
        # Beside the typed name, the session that decided: the name alone is free text.
        assert re.search(r"\(dashboard session [0-9a-f]{8} from 127\.0\.0\.1 at 20\d\d-", decision), decision
        assert "review → pass" in page.inner_text("li[data-run] .screening")
        d.shot("review-timeline")
        page.goto(f"{d.url}/admin/uploads/media/uploads/second.jpg")
        page.wait_for_selector("li[data-run][data-status=blocked] .decision[data-action=reject]")
        assert "quarantine: media/quarantine/uploads/second.jpg (move)" in page.inner_text("li[data-run]")

    wait_until(
        lambda: runtime.store.stat("media", "quarantine/uploads/second.jpg"), 10, "the quarantined copy"
    )
