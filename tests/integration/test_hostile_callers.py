"""Hostile callers against a real gateway process: what it refuses, and that nothing else suffers."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pipeline.runtime import Runtime
from tests.helpers import THUMBNAILS_ONLY, Proc, free_port, pipeline_runtime, wait_until

pytestmark = pytest.mark.integration

API_TOKEN = "api-t0ken"
WEBHOOK_TOKEN = "hook-t0ken"
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
    runtime, env = pipeline_runtime(THUMBNAILS_ONLY, redis_url, tmp_path)
    env.update(
        PIPELINE_API_TOKEN=API_TOKEN, PIPELINE_WEBHOOK_TOKEN=WEBHOOK_TOKEN, PIPELINE_ADMIN_PASSWORD="pw"
    )
    port = free_port()
    proc = Proc(["gateway", "--port", str(port)], env, tmp_path / "gateway.log")
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(lambda: healthy() or not proc.alive(), 30, "the gateway")
        assert proc.alive(), proc.output()
        yield Gateway(url, port, proc, runtime)
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
        ("POST", "/events/minio", WEBHOOK_TOKEN, {413}),
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
        body = json.dumps({"Records": []}).encode()
        answer = client.post(
            "/events/minio", content=body, headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
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
