"""`pipeline gateway --workers N`: several processes share the port and each accepts notifications."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from pipeline.bench_system import minio_body
from tests.helpers import THUMBNAILS_ONLY, Proc, free_port, pipeline_runtime, wait_until

pytestmark = pytest.mark.integration


def test_two_gateway_processes_share_the_port(redis_url: str, tmp_path: Path) -> None:
    runtime, env = pipeline_runtime(THUMBNAILS_ONLY, redis_url, tmp_path)
    port = free_port()
    env["PIPELINE_WEBHOOK_TOKEN"] = "t0ken"
    gateway = Proc(["gateway", "--port", str(port), "--workers", "2"], env, tmp_path / "gateway.log")
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(lambda: healthy() or not gateway.alive(), 60, "the gateway")
        assert gateway.alive(), gateway.output()
        assert "(2 processes)" in gateway.output()
        headers = {"Authorization": "Bearer t0ken"}
        ids = []
        with httpx.Client(base_url=base, timeout=10) as client:
            for n in range(20):  # new connections: the kernel spreads them over both processes
                body = minio_body(f"uploads/p/{n}.jpg", 1000 + n)
                answer = client.post(
                    "/events/minio", content=body, headers={**headers, "Connection": "close"}
                )
                assert answer.status_code == 200, answer.text
                ids += answer.json()["invocations"]
            refused = client.post("/events/minio", content=minio_body("uploads/x.jpg", 1), headers={})
            assert refused.status_code == 401
        assert len(set(ids)) == 20 and runtime.ledger.r.llen("fn.thumbnail") == 20
        assert all(json.loads(e.raw)["Records"] for e in runtime.ledger.events(limit=20))
    finally:
        assert gateway.stop() == 0, gateway.output()[-3000:]
