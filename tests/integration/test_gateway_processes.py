"""`pipeline gateway --workers N`: several processes share the port and each accepts notifications."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from pipeline.measure.ingest import minio_body
from tests.helpers import THUMBNAILS_ONLY, pipeline_runtime, start_gateway

pytestmark = pytest.mark.integration


def test_two_gateway_processes_share_the_port(redis_url: str, tmp_path: Path) -> None:
    runtime, env = pipeline_runtime(THUMBNAILS_ONLY, redis_url, tmp_path)
    env["PIPELINE_EVENTS_TOKEN"] = "t0ken"
    gateway, base = start_gateway(env, tmp_path / "gateway.log", "--workers", "2")
    try:
        assert "(2 processes)" in gateway.output()
        headers = {"Authorization": "Bearer t0ken", "Content-Type": "application/json"}
        ids: list[str] = []
        # New connections: the kernel hands each to whichever process accepts first. On a busy
        # machine one process can win a whole batch, so send batches until both have answered.
        for batch in range(5):
            with httpx.Client(base_url=base, timeout=10) as client:
                for n in range(batch * 20, batch * 20 + 20):
                    body = minio_body(f"uploads/p/{n}.jpg", 1000 + n)
                    answer = client.post(
                        "/events/minio", content=body, headers={**headers, "Connection": "close"}
                    )
                    assert answer.status_code == 200, answer.text
                    ids += answer.json()["invocations"]
            # Each process counts the notifications it accepted itself. A reading below the total
            # means the process read from took only some of them: another answered the rest.
            counts = accepted_counts(base, headers)
            if all(0 < c < len(ids) for c in counts):
                break
        no_token = {"Content-Type": "application/json"}
        refused = httpx.post(f"{base}/events/minio", content=minio_body("uploads/x.jpg", 1), headers=no_token)
        assert refused.status_code == 401
        total = len(ids)
        assert len(set(ids)) == total and runtime.dispatcher.depth("fn.thumbnail") == total
        assert all(json.loads(e.raw)["Records"] for e in runtime.ledger.events.recent(limit=20))
        assert all(0 < c < total for c in counts), counts
        assert (len(counts) == 2 and sum(counts) == total) or counts == {total // 2}, counts
    finally:
        assert gateway.stop() == 0, gateway.output()[-3000:]


def accepted_counts(base: str, headers: dict[str, str], tries: int = 200) -> set[int]:
    """The accepted-notifications counter as each process reports it, read over new connections
    until two different values have been seen (or `tries` reads)."""
    pattern = re.compile(r'^pipeline_gateway_events_total\{source="minio",status="accepted"\} (\S+)$', re.M)
    seen: set[int] = set()
    for _ in range(tries):
        text = httpx.get(f"{base}/metrics", headers={**headers, "Connection": "close"}, timeout=5).text
        found = pattern.search(text)
        seen.add(int(float(found.group(1))) if found else 0)
        if len(seen) == 2:
            break
    return seen
