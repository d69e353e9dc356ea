"""Hostile callers against a real gateway process: what it refuses, and that nothing else suffers."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from pipeline.admin.auth import COOKIE
from pipeline.ledger import keys
from pipeline.notify.notifier import notifier_for
from pipeline.runtime import Runtime
from tests.helpers import (
    REPO,
    THUMBNAILS_ONLY,
    Proc,
    free_port,
    need,
    pipeline_runtime,
    start_gateway,
    wait_until,
)

pytestmark = pytest.mark.integration

API_TOKEN = "api-t0ken"
EVENTS_TOKEN = "hook-t0ken"
MB = 1024 * 1024


@dataclass
class Gateway:
    url: str
    port: int
    proc: Proc
    runtime: Runtime

    def peak_rss_kb(self) -> int:
        """The process's high-water mark of resident memory (VmHWM)."""
        for line in Path(f"/proc/{self.proc.popen.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")


@pytest.fixture
def gateway(redis_url: str, tmp_path: Path) -> Iterator[Gateway]:
    with running_gateway(redis_url, tmp_path) as gateway:
        yield gateway


@contextlib.contextmanager
def running_gateway(redis_url: str, tmp_path: Path, **settings: str) -> Iterator[Gateway]:
    """A `pipeline gateway` process with every token set (so nothing is in development mode)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    runtime, env = pipeline_runtime(THUMBNAILS_ONLY, redis_url, tmp_path)
    env.update(PIPELINE_API_TOKEN=API_TOKEN, PIPELINE_EVENTS_TOKEN=EVENTS_TOKEN, PIPELINE_ADMIN_PASSWORD="pw")
    env.update(settings)
    proc, url = start_gateway(env, tmp_path / "gateway.log", timeout=30)
    try:
        yield Gateway(url, httpx.URL(url).port or 0, proc, runtime)
    finally:
        proc.stop()
        assert "Traceback" not in proc.output(), proc.output()[-3000:]


def hostile_request(port: int, method: str, path: str, size: int, *, chunked: bool, auth: str = "") -> int:
    """Send `size` bytes of body (declared, or chunked without a length) and return the status the
    server answers with. Sending stops as soon as the server has answered, as a client would."""
    kind = "application/x-www-form-urlencoded" if path.startswith("/admin/") else "application/json"
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {kind}\r\n"
    head += "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {size}\r\n"
    if auth:
        head += f"Authorization: Bearer {auth}\r\n"
    chunk = b"[" * 65536
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode() + b"\r\n")
        sent = 0
        try:
            while sent < size and not select.select([sock], [], [], 0)[0]:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk)
                sent += len(chunk)
            if chunked and sent >= size:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server closed its end after answering: the answer is still to be read
        reply = sock.recv(4096)
    assert sent < size, f"{method} {path}: the server took all {size} bytes before answering"
    return int(reply.split(b" ", 2)[1])


def test_bodies_are_refused_before_they_are_buffered(gateway: Gateway) -> None:
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    with httpx.Client(base_url=gateway.url, timeout=10) as client:  # warm every route first
        assert client.post("/api/webhooks", json={"url": "ftp://x"}, headers=auth).status_code == 422
        assert client.post("/admin/login", data={"password": "wrong"}).status_code == 303
    before = gateway.peak_rss_kb()
    refusals = [
        # (method, path, credentials) -> the statuses a 100 MB body may get: refused for its
        # missing credentials, or for its declared length, whichever is checked first
        ("POST", "/api/webhooks", "", {401}),
        ("PATCH", "/api/webhooks/wh_x", "", {401}),
        ("POST", "/api/functions/thumbnail/invoke", "", {401}),
        ("POST", "/events/minio", "", {401, 413}),
        ("POST", "/events/sns?token=wrong", "", {401, 413}),
        ("POST", "/admin/login", "", {400, 413}),  # 400: a form field over its 4 KB
        ("POST", "/admin/upload", "", {403}),
        ("POST", "/api/webhooks", API_TOKEN, {413}),
        ("POST", "/events/minio", EVENTS_TOKEN, {413}),
    ]
    for method, path, token, expected in refusals:
        for chunked in (False, True):
            got = hostile_request(gateway.port, method, path, 100 * MB, chunked=chunked, auth=token)
            assert got in expected, f"{method} {path} (chunked={chunked}): {got}, expected {expected}"
    grown_mb = (gateway.peak_rss_kb() - before) / 1024
    assert grown_mb < 8, f"18 bodies of 100 MB raised the gateway's peak memory by {grown_mb:.1f} MB"
    # Nothing else was affected: the gateway still serves its callers.
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        assert client.get("/api/invocations", headers=auth).status_code == 200
        answer = client.post(
            "/events/minio", json={"Records": []}, headers={"Authorization": f"Bearer {EVENTS_TOKEN}"}
        )
        assert answer.status_code == 200, answer.text
    assert gateway.proc.alive()


def test_login_form_with_files_or_many_fields_is_refused(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        upload = ("a.bin", b"x" * 1000, "application/octet-stream")
        assert client.post("/admin/login", data={"password": "pw"}, files={"f": upload}).status_code == 400
        many = {f"f{n}": "v" for n in range(50)} | {"password": "pw"}
        assert client.post("/admin/login", data=many).status_code == 400
        assert client.post("/admin/login", data={"password": "pw"}).status_code == 303  # still works


def minio_notification(keys: list[str]) -> bytes:
    """One MinIO notification carrying a record per key."""
    records = [
        {
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "eventName": "s3:ObjectCreated:Put",
            "s3": {
                "bucket": {"name": "media"},
                "object": {"key": key, "size": 1000, "eTag": f"e{n}", "contentType": "image/jpeg"},
            },
        }
        for n, key in enumerate(keys)
    ]
    return json.dumps({"EventName": "s3:ObjectCreated:Put", "Records": records}).encode()


def post_notification(gateway: Gateway, body: bytes) -> httpx.Response:
    headers = {"Authorization": f"Bearer {EVENTS_TOKEN}", "Content-Type": "application/json"}
    return httpx.post(f"{gateway.url}/events/minio", content=body, headers=headers, timeout=120)


def test_records_per_notification_are_capped_and_unwanted_ones_leave_only_a_counter(
    gateway: Gateway, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    ledger = gateway.runtime.ledger
    too_many = post_notification(gateway, minio_notification([f"uploads/{n}.jpg" for n in range(101)]))
    assert too_many.status_code == 413 and "PIPELINE_MAX_EVENT_RECORDS" in too_many.text
    assert ledger.invocations.query() == [] and ledger.events.count() == 0

    before = int(client.info("memory")["used_memory"])
    unwanted = post_notification(
        gateway, minio_notification([f"elsewhere/{n:04d}{'x' * 200}.jpg" for n in range(100)])
    )
    assert unwanted.status_code == 200 and unwanted.json()["invocations"] == []
    grown = int(client.info("memory")["used_memory"]) - before
    assert grown < 64 * 1024, f"100 records no rule wants took {grown} bytes of Redis"
    assert ledger.events.count() == 0 and ledger.stats.get("events:ignored") == 100

    wanted = post_notification(gateway, minio_notification([f"uploads/{n}.jpg" for n in range(100)]))
    assert wanted.status_code == 200 and len(wanted.json()["invocations"]) == 100
    assert len(client.keys(keys.raw_notification("*"))) == 1, "the body is kept once, not per record"
    events = httpx.get(
        f"{gateway.url}/api/events?limit=100", headers={"Authorization": f"Bearer {API_TOKEN}"}
    ).json()["items"]
    assert len(events) == 100 and len({e["raw"] for e in events}) == 1  # each record shows the body
    assert events[0]["raw"].startswith('{"EventName"') and len(events[0]["raw"]) == 16384


def test_a_large_notification_does_not_hold_up_the_others(redis_url: str, tmp_path: Path) -> None:
    with running_gateway(redis_url, tmp_path, PIPELINE_MAX_EVENT_RECORDS="1000") as gateway:
        big = minio_notification([f"uploads/big/{n}.jpg" for n in range(1000)])
        done: list[float] = []

        def send_big() -> None:
            assert post_notification(gateway, big).status_code == 200
            done.append(time.monotonic())

        sender = threading.Thread(target=send_big)
        sender.start()
        wait_until(lambda: gateway.runtime.ledger.events.count() > 0, 30, "the large notification")
        smalls: list[float] = []

        def send_small(n: int) -> None:
            answer = post_notification(gateway, minio_notification([f"uploads/small/{n}.jpg"]))
            assert answer.status_code == 200 and len(answer.json()["invocations"]) == 1
            smalls.append(time.monotonic())

        # Sent together while the large one is being taken in: each shares the next batch with it.
        small_senders = [threading.Thread(target=send_small, args=(n,)) for n in range(5)]
        for thread in small_senders:
            thread.start()
        for thread in small_senders:
            thread.join(60)
        sender.join(60)
        assert len(smalls) == 5
        assert done and max(smalls) < done[0], "the small notifications waited for the large one"
        assert gateway.runtime.ledger.invocations.counts()["queued"] == 1005


def test_development_mode_answers_only_loopback_names_and_same_origin_pages(
    redis_url: str, tmp_path: Path
) -> None:
    """No tokens set, and the app started by uvicorn directly (not through `pipeline gateway`):
    DNS rebinding (a foreign Host) and cross-site posts from a web page are refused."""
    runtime, env = pipeline_runtime(THUMBNAILS_ONLY, redis_url, tmp_path)
    env["PIPELINE_WEBHOOK_ALLOW_NETWORKS"] = '["127.0.0.1/32"]'
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "pipeline.gateway.app:app_from_environment", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(f"{base}/healthz"), 30, "uvicorn")
        with httpx.Client(base_url=base, timeout=10) as client:
            rebound = client.get("/api/invocations", headers={"Host": f"attacker.example:{port}"})
            assert rebound.status_code == 400 and "loopback" in rebound.json()["detail"]
            assert client.get("/api/invocations", headers={"Host": f"localhost:{port}"}).status_code == 200
            page = {"Origin": "http://attacker.example", "Content-Type": "text/plain"}
            sub = '{"url": "https://attacker.example/hook"}'
            assert client.post("/api/webhooks", content=sub, headers=page).status_code == 403
            marked = {"Sec-Fetch-Site": "cross-site", "Content-Type": "application/x-www-form-urlencoded"}
            assert client.post("/admin/login", content="password=x", headers=marked).status_code == 403
            notice = client.post(
                "/events/minio", content=b'{"Records": []}', headers={"Content-Type": "text/plain"}
            )
            assert notice.status_code == 415, "a JSON route takes application/json only"
            mine = client.post("/api/webhooks", json={"url": "http://127.0.0.1:9/hook"})
            assert mine.status_code == 201, mine.text  # the page of the gateway's own user still works
        assert runtime.ledger.invocations.query() == []
        assert [s.url for s in notifier_for(runtime).subs.all()] == ["http://127.0.0.1:9/hook"]
    finally:
        server.terminate()
        server.wait(10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize(
    "field",
    [{"userMetadata": ["a", "list"]}, {"eTag": 12345}, {"versionId": 7}, {"contentType": {"x": 1}}],
)
def test_malformed_record_fields_are_the_senders_error(gateway: Gateway, field: dict[str, object]) -> None:
    """400, never 500: MinIO retries a 500 forever."""
    record = json.loads(minio_notification(["uploads/odd.jpg"]))
    record["Records"][0]["s3"]["object"].update(field)
    answer = post_notification(gateway, json.dumps(record).encode())
    assert answer.status_code == 400 and "Records[0]" in answer.json()["detail"], answer.text
    assert gateway.runtime.ledger.invocations.query() == []


def test_anonymous_callers_learn_only_whether_it_is_healthy(redis_url: str, tmp_path: Path) -> None:
    with running_gateway(redis_url, tmp_path, PIPELINE_METRICS_TOKEN="scrape-t0ken") as gateway:
        api = {"Authorization": f"Bearer {API_TOKEN}"}
        scraper = {"Authorization": "Bearer scrape-t0ken"}
        with httpx.Client(base_url=gateway.url, timeout=10) as client:
            assert client.get("/healthz").json() == {"status": "ok"}
            detailed = client.get("/healthz", headers=api).json()
            assert detailed["status"] == "ok" and "pipeline.yaml" in detailed["pipeline"]
            for path in ("/openapi.json", "/docs"):
                assert client.get(path).status_code == 401
                assert client.get(path, headers=api).status_code == 200
            assert client.get("/metrics").status_code == 401
            assert client.get("/metrics", headers=api).status_code == 401  # its own token
            assert "pipeline_queue_depth" in client.get("/metrics", headers=scraper).text


def test_changing_the_admin_password_ends_the_sessions_opened_with_the_old_one(
    redis_url: str, tmp_path: Path
) -> None:
    def login(client: httpx.Client, password: str) -> None:
        answer = client.post("/admin/login", data={"password": password, "next": "/admin"})
        assert answer.status_code == 303 and answer.headers["location"] == "/admin"

    def signed_in(client: httpx.Client, gateway: Gateway) -> bool:
        return client.get(f"{gateway.url}/admin").status_code == 200

    with httpx.Client(timeout=10) as client, httpx.Client(timeout=10) as newcomer:
        with running_gateway(redis_url, tmp_path / "one", PIPELINE_ADMIN_PASSWORD="first") as gateway:
            client.base_url = httpx.URL(gateway.url)
            login(client, "first")
            assert signed_in(client, gateway)
        with running_gateway(redis_url, tmp_path / "same", PIPELINE_ADMIN_PASSWORD="first") as gateway:
            assert signed_in(client, gateway), "a restart with the same password keeps the session"
        with running_gateway(redis_url, tmp_path / "two", PIPELINE_ADMIN_PASSWORD="second") as gateway:
            assert not signed_in(client, gateway), "the session opened with the old password still works"
            newcomer.base_url = httpx.URL(gateway.url)
            login(newcomer, "second")
            assert signed_in(newcomer, gateway)


def test_behind_a_trusted_proxy_clients_and_https_are_the_ones_it_saw(redis_url: str, tmp_path: Path) -> None:
    def login(client: httpx.Client, password: str, client_ip: str, proto: str = "http") -> httpx.Response:
        headers = {"X-Forwarded-For": f"{client_ip}, 10.0.0.7", "X-Forwarded-Proto": proto}
        return client.post("/admin/login", data={"password": password, "next": "/admin"}, headers=headers)

    proxies = '["127.0.0.1/32", "10.0.0.0/8"]'  # the ingress, and a hop inside the cluster
    with (
        running_gateway(redis_url, tmp_path / "proxied", PIPELINE_TRUSTED_PROXIES=proxies) as gateway,
        httpx.Client(base_url=gateway.url, timeout=10) as client,
    ):
        for _ in range(10):
            assert login(client, "wrong", "203.0.113.5").status_code == 303
        assert login(client, "wrong", "203.0.113.5").status_code == 429
        answer = login(client, "pw", "203.0.113.6", proto="https")  # another admin is not locked out
        assert answer.status_code == 303 and "secure" in answer.headers["set-cookie"].lower()
        # The cookie is Secure: this plain-HTTP test client sends it by hand, as the proxy would.
        cookie = {"Cookie": f"{COOKIE}={answer.cookies[COOKIE]}", "X-Forwarded-Proto": "https"}
        client.cookies.clear()
        page = client.get("/admin", headers=cookie)
        csrf = page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        origin = {**cookie, "Origin": f"https://127.0.0.1:{gateway.port}"}
        paused = client.post("/admin/functions/thumbnail/pause", data={"csrf": csrf}, headers=origin)
        assert paused.status_code == 303, "the Origin check must judge by the scheme the proxy saw"
    with (
        running_gateway(redis_url, tmp_path / "direct") as gateway,
        httpx.Client(base_url=gateway.url, timeout=10) as client,
    ):
        for n in range(10):  # nobody is trusted: forwarded headers from a client prove nothing
            assert login(client, "wrong", f"198.51.100.{n}").status_code == 303
        assert login(client, "pw", "198.51.100.99").status_code == 429


DNS_PROBE = """
import json, socket, sys, time
from pathlib import Path
import httpx
from pipeline.gateway.app import create_app
from pipeline.settings import Settings
from tests.helpers import ServedApp

silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
silent.bind(("127.0.0.1", 53))  # the namespace's resolver: it never answers
settings = Settings(redis_url="redis://127.0.0.1:1/0", data_dir=Path(sys.argv[1]))
with ServedApp(create_app(settings)) as client:
    started = time.monotonic()
    answer = client.post("/api/webhooks", json={"url": "https://slow.example/hook"}, timeout=30)
    print(json.dumps({"status": answer.status_code, "detail": answer.json()["detail"],
                      "seconds": time.monotonic() - started}))
"""


def test_a_webhook_destination_whose_lookup_hangs_is_refused_in_seconds(tmp_path: Path) -> None:
    """The gateway in a network namespace whose resolver never answers: the look-up of a webhook
    URL's host gives up after 5 s instead of holding the request (or a delivery thread)."""
    need(os.geteuid() == 0 and shutil.which("ip") is not None, "needs root and iproute2 for a namespace")
    namespace = f"pldns{os.getpid()}"
    resolv = Path("/etc/netns") / namespace / "resolv.conf"
    script = tmp_path / "probe.py"
    script.write_text(DNS_PROBE)
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        resolv.parent.mkdir(parents=True, exist_ok=True)
        resolv.write_text("nameserver 127.0.0.1\noptions timeout:30 attempts:1\n")
        result = subprocess.run(
            ["ip", "netns", "exec", namespace, "sh", "-c",
             f"ip link set lo up && PYTHONPATH={REPO} exec {sys.executable} {script} {tmp_path}"],
            capture_output=True, text=True, timeout=120, cwd=REPO, check=False,
        )  # fmt: skip
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=False)
        shutil.rmtree(resolv.parent, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["status"] == 422 and "took over 5s" in answer["detail"], answer
    assert 4.5 <= answer["seconds"] < 10, answer
