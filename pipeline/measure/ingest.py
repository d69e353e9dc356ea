"""Gateway ingest: notifications per second with one and two gateway processes, beside GET /healthz
on the same server; loaded by wrk when it is installed, else by an httpx client in this process."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote_plus

import httpx

from pipeline.embedded import free_port
from pipeline.measure.testbed import TOKEN, Figure, Testbed, ms, pct, wait_http


def minio_body(key: str, size: int) -> bytes:
    record = {
        "eventVersion": "2.0",
        "eventSource": "minio:s3",
        "eventName": "s3:ObjectCreated:Put",
        "eventTime": "2026-01-01T00:00:00.000Z",
        "s3": {
            "bucket": {"name": "media"},
            "object": {"key": quote_plus(key), "size": size, "eTag": f"{size:032x}",
                       "contentType": "image/jpeg", "sequencer": "1"},
        },
    }  # fmt: skip
    body = {"EventName": "s3:ObjectCreated:Put", "Key": f"media/{key}", "Records": [record]}
    return json.dumps(body).encode()


@dataclass
class Load:
    """One load run: requests per second and the latency distribution the client saw."""

    rate: float
    p50: float
    p99: float
    requests: int


# wrk (C, one thread per core, keep-alive) loads the gateway without taking the CPU it measures.
# Every request is a different object, so each is a new unit of work, never a duplicate.
WRK_SCRIPT = """
local n = 0
local threads = 0
function setup(thread) thread:set("id", threads); threads = threads + 1 end
function init(args)
  prefix = args[1] or ""
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer TOKEN"
end
function request()
  if prefix == "" then return wrk.format("GET", "/healthz") end
  n = n + 1
  local key = "uploads%2Fingest%2F" .. prefix .. "-" .. id .. "-" .. n .. ".jpg"
  local body = '{"EventName":"s3:ObjectCreated:Put","Key":"media/uploads/x.jpg",'
    .. '"Records":[{"eventVersion":"2.0","eventSource":"minio:s3","eventName":"s3:ObjectCreated:Put",'
    .. '"eventTime":"2026-01-01T00:00:00.000Z",'
    .. '"s3":{"bucket":{"name":"media"},"object":{"key":"' .. key .. '","size":1000,"eTag":"e' .. id .. n
    .. '","contentType":"image/jpeg","sequencer":"1"}}}]}'
  return wrk.format("POST", "/events/minio", nil, body)
end
function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT %d %d %d %d %d\\n", summary.requests, summary.duration, errors,
    latency:percentile(50), latency:percentile(99)))
end
""".replace("TOKEN", TOKEN)


def wrk_load(base: str, script: Path, prefix: str, seconds: int, connections: int) -> Load:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script), base, "--", prefix],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    ).stdout  # fmt: skip
    line = next(x for x in out.splitlines() if x.startswith("RESULT"))
    requests, duration_us, errors, p50_us, p99_us = (int(v) for v in line.split()[1:])
    if errors:
        raise RuntimeError(f"wrk saw {errors} failed requests:\n{out}")
    return Load(requests / (duration_us / 1e6), p50_us / 1e6, p99_us / 1e6, requests)


async def _httpx_load(base: str, prefix: str, n: int, connections: int) -> Load:
    latencies: list[float] = []
    counter = iter(range(n))
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def user() -> None:
            for i in counter:
                t0 = time.perf_counter()
                if prefix:
                    body = minio_body(f"uploads/ingest/{prefix}-{i}.jpg", 1000 + i)
                    response = await client.post("/events/minio", content=body, headers=headers)
                else:
                    response = await client.get("/healthz")
                latencies.append(time.perf_counter() - t0)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return Load(n / elapsed, pct(latencies, 0.5), pct(latencies, 0.99), n)


def bench_ingest(bed: Testbed, seconds: int, connections: int) -> list[Figure]:
    """MinIO-format notifications POSTed to the gateway, each for a new object, so each one is
    validated, deduplicated, recorded and enqueued before its 200; beside GET /healthz (one Redis
    ping) against the same server. With one and with two gateway processes; the rate at saturation
    (`connections` clients) and the response time under a light load (two clients per process)."""
    use_wrk = shutil.which("wrk") is not None
    # The intake alone, without HTTP: one thread in this process, sequential.
    events = [
        bed.event_for(f"uploads/ingest/direct-{n}.jpg", bed.small, "image/jpeg") for n in range(seconds * 150)
    ]
    started = time.perf_counter()
    for event in events:
        bed.accept(event)
    direct = len(events) / (time.perf_counter() - started)
    script = bed.tmp / "ingest.lua"
    script.write_text(WRK_SCRIPT)
    queue = bed.pipeline.config.queue_for("thumbnail")
    figures = []
    for processes in (1, 2):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        gateway = bed.spawn(
            [sys.executable, "-m", "pipeline", "gateway", "--host", "127.0.0.1", "--port", str(port),
             "--workers", str(processes)]
        )  # fmt: skip
        before = bed.runtime.dispatcher.depth(queue)
        try:
            wait_http(f"{base}/healthz", gateway)

            def load(prefix: str, duration: int, clients: int = connections, base: str = base) -> Load:
                if use_wrk:
                    return wrk_load(base, script, prefix, duration, clients)
                return asyncio.run(_httpx_load(base, prefix, duration * 150, clients))

            load(f"warm{processes}", 1)
            health = load("", seconds)
            ours = load(f"p{processes}", seconds)
            # At saturation the latency is mostly waiting behind the other connections' requests
            # (Little's law); with a few connections it is the time one notification takes.
            light = load(f"l{processes}", seconds, clients=processes * 2)
            queued = bed.runtime.dispatcher.depth(queue) - before
        finally:
            bed.stop(gateway)
        if queued < ours.requests + light.requests:
            raise RuntimeError(
                f"{ours.requests} notifications answered 200 but only {queued} invocations queued"
            )
        client = "wrk" if use_wrk else "an httpx client in this process (install wrk for a lighter one)"
        figures.append(
            Figure(
                f"Gateway ingest, {processes} gateway process{'es' if processes > 1 else ''}: "
                f"MinIO notifications accepted and queued, {connections} connections from {client}",
                f"{ours.rate:.0f}/s (p99 {ms(ours.p99)} at saturation); with {processes * 2} connections: "
                f"{light.rate:.0f}/s, p50 {ms(light.p50)}, p99 {ms(light.p99)}",
                f"GET /healthz on the same server: {health.rate:.0f}/s, p99 {ms(health.p99)}; "
                f"the intake without HTTP (one thread, in-process): {direct:.0f}/s",
                ">= 1,500/s, p99 <= 25 ms",
                ours.rate >= 1500 and light.p99 <= 0.025,
            )
        )
    bed.runtime.redis.delete(queue)
    return figures
