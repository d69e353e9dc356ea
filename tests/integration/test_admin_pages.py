"""The dashboard over real HTTP (uvicorn) and real Redis: login, every page, CSRF, actions."""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from pydantic import SecretStr

from pipeline.events.model import ObjectEvent
from pipeline.gateway.app import create_app
from pipeline.invocation import Invocation, OutputRef, Status
from pipeline.notify.subscriptions import SecretEntry, Subscription, new_secret
from pipeline.runtime import Runtime
from pipeline.usage import Measured
from tests.helpers import ServedApp, pipeline_runtime

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"
CONFIG = """
version: 1
buckets: [media]
functions:
  thumbnail: {memory_mb: 256, reserved_concurrency: 3}
  transcode: {paused: true}
rules:
  - name: images
    bucket: media
    prefix: uploads/
    content_types: ["image/*"]
    functions:
      - function: thumbnail
        params: {sizes: [64]}
      - function: filter
        params: {steps: [{op: grayscale}]}
"""


@dataclasses.dataclass
class Admin:
    runtime: Runtime
    url: str
    anon: httpx.Client
    client: httpx.Client  # logged in
    csrf: str


def _login(url: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=url, timeout=10)
    response = client.post("/admin/login", data={"password": PASSWORD, "next": "/admin"})
    assert response.status_code == 303 and response.headers["location"] == "/admin"
    page = client.get("/admin")
    assert page.status_code == 200
    match = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert match
    return client, match.group(1)


@pytest.fixture
def admin(redis_url: str, tmp_path: Path) -> Iterator[Admin]:
    runtime, _env = pipeline_runtime(CONFIG, redis_url, tmp_path)
    settings = runtime.settings.model_copy(update={"admin_password": SecretStr(PASSWORD)})
    runtime = dataclasses.replace(runtime, settings=settings)
    with ServedApp(create_app(settings, runtime)) as anon:
        url = str(anon.base_url).rstrip("/")
        client, csrf = _login(url)
        try:
            yield Admin(runtime, url, anon, client, csrf)
        finally:
            client.close()


def _upload_event(runtime: Runtime, key: str = "uploads/cat.jpg") -> list[Invocation]:
    event = ObjectEvent(
        source="minio",
        event_name="s3:ObjectCreated:Put",
        bucket="media",
        key=key,
        etag="etag-1",
        size=1234,
        content_type="image/jpeg",
    )
    record = runtime.intake.accept(
        event, raw='{"EventName": "s3:ObjectCreated:Put", "Key": "media/' + key + '"}'
    )
    return runtime.ledger.invocations.get_many(record.invocations)


def _finish(runtime: Runtime, inv: Invocation, status: Status, error: str | None = None) -> None:
    runtime.ledger.invocations.start_attempt(inv.id, "worker-a@host")
    outputs: list[OutputRef] = []
    if status == Status.SUCCEEDED:
        src = runtime.settings.data_dir / "thumb.jpg"
        src.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 48), (200, 40, 40)).save(src)
        key = f"derived/{inv.key}/{inv.function}/64.jpg"
        runtime.store.ensure_bucket("media")
        info = runtime.store.put_file("media", key, src, content_type="image/jpeg")
        outputs = [OutputRef(bucket="media", key=key, content_type="image/jpeg", size=info.size)]
    runtime.ledger.invocations.finish(
        inv.id, status, outputs=outputs, error=error, measured=Measured(cpu_ms=12.5)
    )


def test_unauthenticated_access_goes_to_the_login(admin: Admin) -> None:
    for path in (
        "/admin",
        "/admin/invocations?status=dead",
        "/admin/uploads/media/uploads/cat.jpg",
        "/admin/stream",
    ):
        response = admin.anon.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/admin/login?next=")
    assert admin.anon.post("/admin/invocations/x/retry", data={"csrf": "x"}).status_code == 403
    assert admin.anon.get("/admin/objects/media/uploads/cat.jpg").status_code == 303


def test_login_sets_a_strict_http_only_session_and_logout_ends_it(admin: Admin) -> None:
    wrong = admin.anon.post("/admin/login", data={"password": "nope", "next": "/admin/functions"})
    assert wrong.status_code == 303 and "wrong+password" in wrong.headers["location"]
    page = admin.anon.get(wrong.headers["location"])
    assert "wrong password" in page.text and PASSWORD not in page.text
    with httpx.Client(base_url=admin.url) as client:
        ok = client.post("/admin/login", data={"password": PASSWORD, "next": "/admin/functions"})
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/admin" in cookie
        assert ok.headers["location"] == "/admin/functions"
        assert client.get("/admin/functions").status_code == 200
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/admin").text)
        assert csrf
        assert client.post("/admin/logout", data={"csrf": csrf.group(1)}).status_code == 303
    # The old cookie is dead on the server too, not just deleted in this client.
    with httpx.Client(base_url=admin.url, cookies={"pipeline_admin": ok.cookies["pipeline_admin"]}) as stolen:
        assert stolen.get("/admin").status_code == 303


def test_offsite_redirect_after_login_is_refused(admin: Admin) -> None:
    with httpx.Client(base_url=admin.url) as client:
        response = client.post("/admin/login", data={"password": PASSWORD, "next": "//evil.example/"})
    assert response.headers["location"] == "/admin"


def test_failed_logins_are_rate_limited(admin: Admin) -> None:
    codes = [admin.anon.post("/admin/login", data={"password": "guess"}).status_code for _ in range(11)]
    assert codes[:10] == [303] * 10 and codes[10] == 429


def test_guesses_from_many_addresses_slow_the_login_but_never_lock_out_the_operator(
    redis_url: str, tmp_path: Path
) -> None:
    """100 failed logins from 100 addresses (behind a trusted proxy, so each is its own client)
    put the login over its global ceiling: the operator, who has not failed, still gets in."""
    runtime, _env = pipeline_runtime(CONFIG, redis_url, tmp_path)
    settings = runtime.settings.model_copy(
        update={"admin_password": SecretStr(PASSWORD), "trusted_proxies": ["127.0.0.1/32"]}
    )
    with ServedApp(create_app(settings, dataclasses.replace(runtime, settings=settings))) as anon:
        for n in range(100):
            forwarded = {"X-Forwarded-For": f"198.51.100.{n + 1}"}
            guess = anon.post("/admin/login", data={"password": f"guess{n}"}, headers=forwarded)
            assert guess.status_code == 303 and "wrong+password" in guess.headers["location"]
        started = time.monotonic()
        operator = anon.post(
            "/admin/login", data={"password": PASSWORD}, headers={"X-Forwarded-For": "203.0.113.7"}
        )
        waited = time.monotonic() - started
        assert operator.status_code == 303 and operator.headers["location"] == "/admin", operator.text
        assert "pipeline_admin" in operator.cookies
        assert waited >= 1.0  # slowed by the global ceiling, not refused
        # One address's own failures still refuse it.
        mine = {"X-Forwarded-For": "198.51.100.1"}
        for _ in range(9):
            anon.post("/admin/login", data={"password": "again"}, headers=mine)
        assert anon.post("/admin/login", data={"password": PASSWORD}, headers=mine).status_code == 429


def test_state_changes_need_the_csrf_token_and_the_same_origin(admin: Admin) -> None:
    inv = _upload_event(admin.runtime)[0]
    _finish(admin.runtime, inv, Status.FAILED, "MediaError: truncated")
    url = f"/admin/invocations/{inv.id}/retry"
    assert admin.client.post(url).status_code == 403
    assert admin.client.post(url, data={"csrf": "forged"}).status_code == 403
    cross = admin.client.post(url, data={"csrf": admin.csrf}, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403
    site = admin.client.post(url, data={"csrf": admin.csrf}, headers={"Sec-Fetch-Site": "cross-site"})
    assert site.status_code == 403
    assert admin.runtime.ledger.invocations.get(inv.id).status == Status.FAILED  # type: ignore[union-attr]
    done = admin.client.post(url, data={"csrf": admin.csrf, "back": "/admin/invocations"})
    assert done.status_code == 303 and done.headers["location"].startswith("/admin/invocations?flash=")
    assert admin.runtime.ledger.invocations.get(inv.id).status == Status.QUEUED  # type: ignore[union-attr]


def test_pages_answer_what_happened_to_an_upload(admin: Admin) -> None:
    thumb, filt = sorted(_upload_event(admin.runtime), key=lambda i: i.function)[::-1]
    _finish(admin.runtime, thumb, Status.SUCCEEDED)
    _finish(admin.runtime, filt, Status.DEAD, "StorageError: S3 endpoint unreachable (after 3 attempts)")
    c = admin.client

    overview = c.get("/admin").text
    assert "Throughput" in overview and "thumbnail" in overview and "No worker is online" in overview

    found = c.get("/admin/uploads", params={"q": "cat"}).text
    assert "/admin/uploads/media/uploads/cat.jpg" in found

    line = c.get("/admin/uploads/media/uploads/cat.jpg").text
    assert "Notification received" in line and "s3:ObjectCreated:Put" in line
    assert "&#34;EventName&#34;" in line or "&quot;EventName&quot;" in line  # the raw payload, escaped
    assert "S3 endpoint unreachable" in line and "worker-a@host" in line
    assert 'src="/admin/objects/media/derived/uploads/cat.jpg/thumbnail/64.jpg"' in line
    preview = c.get("/admin/objects/media/derived/uploads/cat.jpg/thumbnail/64.jpg")
    assert preview.status_code == 200 and preview.headers["content-type"] == "image/jpeg"
    assert (
        preview.headers["x-content-type-options"] == "nosniff"
        and "sandbox" in preview.headers["content-security-policy"]
    )

    dead = c.get("/admin/invocations", params={"status": "dead"}).text
    assert filt.id in dead and thumb.id not in dead and "Retry all 1 dead" in dead
    by_prefix = c.get("/admin/invocations", params={"prefix": "uploads/dog"}).text
    assert "No invocation matches" in by_prefix

    fragment = c.get("/admin/invocations", params={"status": "dead", "fragment": "1"}).text
    assert "<html" not in fragment and filt.id in fragment
    assert 'name="back" value="/admin/invocations?status=dead"' in fragment

    retried = c.post("/admin/invocations/retry-dead", data={"csrf": admin.csrf, "back": "/admin/invocations"})
    assert "1+dead+invocations+queued+again" in retried.headers["location"]


def test_rules_dry_run_shows_functions_and_output_keys(admin: Admin) -> None:
    page = admin.client.get(
        "/admin/rules", params={"bucket": "media", "key": "uploads/a b.png", "content_type": "image/png"}
    ).text
    assert "Rules matched: <strong>images</strong>" in page
    assert "media/derived/uploads/a b.png/thumbnail/&lt;name&gt;" in page
    assert "media/derived/uploads/a b.png/filter/&lt;name&gt;" in page
    none = admin.client.get("/admin/rules", params={"bucket": "media", "key": "elsewhere/x.png"}).text
    assert "no rule matches" in none
    loop = admin.client.get("/admin/rules", params={"bucket": "media", "key": "derived/x.png"}).text
    assert "loop guard" in loop


def test_the_files_limits_and_holds_are_shown_and_not_overridden(admin: Admin) -> None:
    page = admin.client.get("/admin/functions").text
    thumbnail = page.split('id="fn-thumbnail"', 1)[1].split('class="panel"', 1)[0]
    assert "memory 256 MB" in thumbnail and "reserved concurrency 0/3 in use" in thumbnail
    transcode = page.split('id="fn-transcode"', 1)[1].split('class="panel"', 1)[0]
    assert 'Held by <span class="mono">paused: true in the pipeline file</span>' in transcode
    assert "/admin/functions/transcode/resume" not in transcode, "Resume cannot override the file"
    # Resuming it anyway (a stale form) changes nothing: the file still holds it.
    post = admin.client.post
    assert post("/admin/functions/transcode/resume", data={"csrf": admin.csrf}).status_code == 303
    assert "Held by" in admin.client.get("/admin/functions").text.split('id="fn-transcode"', 1)[1]


def test_disable_stops_new_work_and_pause_is_recorded(admin: Admin) -> None:
    post = admin.client.post
    assert post("/admin/functions/filter/disable", data={"csrf": admin.csrf}).status_code == 303
    assert post("/admin/functions/thumbnail/pause", data={"csrf": admin.csrf}).status_code == 303
    page = admin.client.get("/admin/functions").text
    assert "Paused: new work waits" in page and "Disabled: uploads no longer start" in page
    invs = _upload_event(admin.runtime, "uploads/new.jpg")
    assert [i.function for i in invs] == ["thumbnail"]
    record = admin.runtime.ledger.events.for_object("media", "uploads/new.jpg")[0]
    assert "disabled: filter" in record.reason
    assert admin.runtime.ledger.flags.members("paused") == {"thumbnail"}
    post("/admin/functions/thumbnail/resume", data={"csrf": admin.csrf})
    post("/admin/functions/filter/enable", data={"csrf": admin.csrf})
    flags = admin.runtime.ledger.flags
    assert not flags.members("paused") | flags.members("disabled")
    assert post("/admin/functions/nope/pause", data={"csrf": admin.csrf}).status_code == 404


def test_webhook_page_never_shows_secrets(admin: Admin) -> None:
    secret = new_secret()
    sub = Subscription(id="shop", url="https://shop.example.com/hooks", secrets=[SecretEntry(secret=secret)])
    from pipeline.notify.subscriptions import SubscriptionStore

    SubscriptionStore(admin.runtime.redis).create(sub)
    page = admin.client.get("/admin/webhooks").text
    assert "https://shop.example.com/hooks" in page and secret not in page and secret[6:20] not in page
    assert admin.client.post("/admin/webhooks/shop/disable", data={"csrf": admin.csrf}).status_code == 303
    assert "disabled by an operator" in admin.client.get("/admin/webhooks").text


def test_upload_form_stores_the_file_and_shows_its_timeline(admin: Admin, tmp_path: Path) -> None:
    image = tmp_path / "pic.jpg"
    Image.new("RGB", (80, 60), (10, 120, 200)).save(image)
    with image.open("rb") as fh:
        response = admin.client.post(
            "/admin/upload",
            data={"csrf": admin.csrf, "bucket": "media", "prefix": "uploads/"},
            files={"files": ("pic.jpg", fh, "image/jpeg")},
        )
    assert (
        response.status_code == 303 and response.headers["location"] == "/admin/uploads/media/uploads/pic.jpg"
    )
    assert admin.runtime.store.stat("media", "uploads/pic.jpg").size == image.stat().st_size
    assert sorted(
        i.function for i in admin.runtime.ledger.invocations.for_object("media", "uploads/pic.jpg")
    ) == [
        "filter",
        "thumbnail",
    ]
    refused = admin.client.post(
        "/admin/upload",
        data={"csrf": admin.csrf, "bucket": "other"},
        files={"files": ("x.jpg", b"x", "image/jpeg")},
    )
    assert refused.status_code == 400


def test_the_stream_says_when_something_changed(admin: Admin) -> None:
    inv = _upload_event(admin.runtime)[0]
    seen: list[str] = []

    def listen() -> None:
        with admin.client.stream("GET", "/admin/stream", timeout=15) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                seen.append(line)
                if sum(1 for s in seen if s == "event: change") >= 2:
                    return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    from tests.helpers import wait_until

    wait_until(lambda: "event: change" in seen, 10, "the first snapshot")
    _finish(admin.runtime, inv, Status.SUCCEEDED)
    thread.join(timeout=10)
    assert sum(1 for s in seen if s == "event: change") >= 2


def test_the_dashboard_refuses_a_public_bind_without_a_password(redis_url: str, tmp_path: Path) -> None:
    runtime, _env = pipeline_runtime(CONFIG, redis_url, tmp_path)
    settings = runtime.settings.model_copy(update={"admin_password": None, "gateway_host": "0.0.0.0"})
    with ServedApp(create_app(settings, dataclasses.replace(runtime, settings=settings))) as client:
        assert client.get("/admin").status_code == 403
        assert "needs PIPELINE_ADMIN_PASSWORD" in client.get("/admin/login").text
    local = runtime.settings.model_copy(update={"admin_password": None})
    with ServedApp(create_app(local, dataclasses.replace(runtime, settings=local))) as client:
        assert "development mode" in client.get("/admin/login").text
        assert client.post("/admin/login", data={}).status_code == 303
        assert client.get("/admin").status_code == 200
