"""The dashboard in headless Chromium (Debian's, driven by Playwright) against real processes:
a gateway, a Celery worker and a webhook worker on Redis, with the local directory store.

Set PIPELINE_SCREENSHOTS=docs/screenshots to keep the screenshots (`make screenshots`)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from pipeline.measure.samples import generate
from pipeline.runtime import Runtime
from tests.helpers import Proc, free_port, pipeline_runtime, wait_until
from tests.receiver import Receiver

pytestmark = pytest.mark.integration

PASSWORD = "browser-test-password"
CONFIG = """
version: 1
buckets: [media]
functions:
  thumbnail: {memory_mb: 512}
  filter: {memory_mb: 512, retry: {max_attempts: 5, initial: 1, non_retryable: [TimeoutError]}}
  transcode: {memory_mb: 1024, reserved_concurrency: 0}
rules:
  - name: images
    bucket: media
    prefix: uploads/
    content_types: ["image/*"]
    functions:
      - function: thumbnail
        params: {sizes: [160, 480]}
      - function: filter
        params:
          steps:
            - {op: resize, width: 480}
            - {op: watermark, image: "s3://media/brand/logo.png", width: 0.2, position: bottom-right}
          format: webp
"""
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@dataclass
class Dashboard:
    url: str
    page: Any
    shots: Path
    receiver: Receiver

    def shot(self, name: str, full_page: bool = True) -> None:
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=full_page)


@pytest.fixture
def dashboard(redis_url: str, tmp_path: Path) -> Iterator[Dashboard]:
    runtime, env = pipeline_runtime(CONFIG, redis_url, tmp_path)
    env = {**env, "PIPELINE_WEBHOOK_ALLOW_NETWORKS": '["127.0.0.1/32"]'}
    workers = [["--functions", "thumbnail,filter", "--concurrency", "1"], ["--webhooks"]]
    with open_dashboard(runtime, env, tmp_path, workers, height=860) as d:
        hook = httpx.post(
            f"{d.url}/api/webhooks", json={"url": f"{d.receiver.url}/app", "events": ["object.processed"]}
        )
        assert hook.status_code == 201, hook.text
        yield d


@contextmanager
def open_dashboard(
    runtime: Runtime, env: dict[str, str], tmp_path: Path, workers: list[list[str]], height: int
) -> Iterator[Dashboard]:
    """A gateway and `pipeline worker` processes (one per argument list) for `runtime`'s pipeline
    file, a webhook receiver, and Debian's Chromium on a fresh page, not logged in."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed (pip install -e '.[test]')")
    from tests.helpers import need

    need(bool(shutil.which("chromium")), "Debian's chromium is not installed (apt-get install chromium)")
    env = {**env, "PIPELINE_ADMIN_PASSWORD": PASSWORD}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    shots = Path(os.environ.get("PIPELINE_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    procs = [Proc(["gateway", "--port", str(port)], env, tmp_path / "gateway.log")]
    procs += [Proc(["worker", *args], env, tmp_path / f"worker-{n}.log") for n, args in enumerate(workers)]
    try:
        wait_until(lambda: _up(url) or not procs[0].alive(), 30, "the gateway")
        wait_until(
            lambda: len(runtime.ledger.workers.live()) >= len(workers) or not all(p.alive() for p in procs),
            30,
            "the workers",
        )
        with Receiver() as receiver, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
            context = browser.new_context(viewport={"width": 1280, "height": height})
            page = context.new_page()
            page.set_default_timeout(30_000)
            try:
                yield Dashboard(url, page, shots, receiver)
            finally:
                context.close()
                browser.close()
    except BaseException:
        for proc in procs:
            print(f"--- {' '.join(proc.args[:2])} log:\n{proc.output()[-3000:]}")
        raise
    finally:
        for proc in procs:
            proc.stop()


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _log_in(d: Dashboard) -> None:
    d.page.goto(f"{d.url}/admin/invocations")
    assert "/admin/login" in d.page.url, "unauthenticated access must redirect to the login"
    d.shot("login", full_page=False)
    d.page.fill("#password", "wrong")
    d.page.click("button[type=submit]")
    d.page.wait_for_selector("text=wrong password")
    d.page.fill("#password", PASSWORD)
    d.page.click("button[type=submit]")
    d.page.wait_for_url(f"{d.url}/admin/invocations")


def _upload(d: Dashboard, path: Path, prefix: str = "uploads/") -> None:
    d.page.goto(f"{d.url}/admin/upload")
    d.page.set_input_files("input[name=files]", str(path))
    d.page.fill("input[name=prefix]", prefix)
    d.page.click("form[action='/admin/upload'] button")


def test_upload_watch_fail_repair_and_retry_in_the_browser(dashboard: Dashboard, tmp_path: Path) -> None:
    d, page = dashboard, dashboard.page
    _log_in(d)
    sample = generate(tmp_path / "samples")[0]

    # Upload through the form; the timeline turns succeeded live, without a reload.
    page.goto(f"{d.url}/admin/upload")
    d.shot("upload", full_page=False)
    _upload(d, sample)
    page.wait_for_url(f"**/admin/uploads/media/uploads/{sample.name}")
    page.evaluate("window.__stayed = true")  # a reload would clear this
    page.wait_for_selector("li[data-function=thumbnail][data-status=succeeded]")
    thumb = page.wait_for_selector("li[data-function=thumbnail] .previews img")
    assert thumb is not None
    page.wait_for_function(
        "[...document.querySelectorAll('li[data-function=thumbnail] img')].every(i => i.naturalWidth > 0)"
    )
    # The watermark logo is not in the bucket yet: filter fails, and says why.
    failed = page.wait_for_selector("li[data-function=filter][data-status=failed]")
    assert failed is not None and "brand/logo.png does not exist" in failed.inner_text()
    assert page.evaluate("window.__stayed === true"), "the page reloaded instead of updating live"
    page.click("li[data-function=filter] summary")
    d.shot("timeline-failed")

    # The invocations page shows the reason; repair (upload the logo) and retry in one click.
    page.goto(f"{d.url}/admin/invocations?status=failed")
    assert "brand/logo.png does not exist" in page.inner_text("table")
    d.shot("invocations")
    logo = tmp_path / "logo.png"
    Image.new("RGBA", (60, 60), (255, 200, 0, 255)).save(logo)
    _upload(d, logo, prefix="brand/")
    page.goto(f"{d.url}/admin/invocations?status=failed")
    page.click("table button:has-text('Retry')")
    page.wait_for_selector(".flash:has-text('queued again')")
    page.goto(f"{d.url}/admin/uploads/media/uploads/{sample.name}")
    page.wait_for_selector("li[data-function=filter][data-status=succeeded]")
    page.wait_for_selector("li[data-function=filter] .previews img")
    page.wait_for_function("[...document.querySelectorAll('.previews img')].every(i => i.naturalWidth > 0)")
    d.shot("timeline")
    page.set_viewport_size({"width": 390, "height": 844})
    d.shot("timeline-phone")
    page.set_viewport_size({"width": 1280, "height": 860})

    # The other pages, as an operator sees them.
    wait_until(lambda: d.receiver.at("/app"), 20, "the object.processed webhook")
    for name, path in [
        ("overview", "/admin"),
        ("uploads", "/admin/uploads"),
        ("functions", "/admin/functions"),
        ("webhooks", "/admin/webhooks"),
        ("rules", "/admin/rules?bucket=media&key=uploads%2Fholiday%2Fbeach.jpg&content_type=image%2Fjpeg"),
    ]:
        page.goto(f"{d.url}{path}")
        page.wait_for_selector("main h1")
        d.shot(name)
    page.goto(f"{d.url}/admin")
    assert page.inner_text(".card.succeeded .n") != "0"
    page.goto(f"{d.url}/admin/webhooks")
    assert "delivered" in page.inner_text("table >> nth=1")


def test_forged_requests_are_refused_in_the_browser(dashboard: Dashboard) -> None:
    d, page = dashboard, dashboard.page
    _log_in(d)
    # Same origin, logged in, but no CSRF token (what injected script without the token could do).
    status = page.evaluate("fetch('/admin/invocations/retry-dead', {method: 'POST'}).then(r => r.status)")
    assert status == 403
    # A page from elsewhere posting a form at the dashboard: without the token (and, from another
    # site, without the Strict cookie too) the request is refused.
    page.set_content(
        f'<form id="f" method="post" action="{d.url}/admin/functions/thumbnail/pause">'
        '<input name="back" value="/admin"></form>'
    )
    with page.expect_navigation():
        page.evaluate("document.getElementById('f').submit()")
    refusals = ("missing or wrong CSRF token", "refused", "not logged in")
    assert any(r in page.content() for r in refusals), page.content()
    page.goto(f"{d.url}/admin/functions")
    assert "Paused: new work waits" not in page.content()
    filter_panel = page.inner_text("#fn-filter")
    assert "retry: 5 attempts, 1 s x2 up to 300 s, full jitter; never retried: TimeoutError" in filter_panel
