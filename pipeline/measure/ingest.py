"""Gateway ingest: notifications per second at saturation and the response time at 1,000/s, with
two gateway processes, beside GET /healthz on the same server, beside the same gateway with group
commit off (PIPELINE_INTAKE_BATCH=1) and beside a gateway on the built-in pipeline file (each
notification starts a flow run), all in one run; loaded by wrk when it is installed, else by
an httpx client in this process. Each load alternates with its baselines, three rounds, medians."""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import quote_plus

import httpx

from pipeline.intake import Notification
from pipeline.measure.testbed import TOKEN, Figure, Testbed, ms, pct


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
  pause = tonumber(args[2] or "0")
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
function delay() return pause end
function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT %d %d %d %d %d\\n", summary.requests, summary.duration, errors,
    latency:percentile(50), latency:percentile(99)))
end
""".replace("TOKEN", TOKEN)


def wrk_load(base: str, script: Path, prefix: str, seconds: int, connections: int, pause_ms: int = 0) -> Load:
    """`pause_ms`: each connection waits this long after an answer before its next request."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script), base, "--", prefix,
         str(pause_ms)],
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


ROUNDS = 3
PACED_RATE = 1000  # notifications/s for the response-time figure
PACED_CONNECTIONS = 20


def median_load(loads: list[Load]) -> Load:
    return Load(
        statistics.median(x.rate for x in loads),
        statistics.median(x.p50 for x in loads),
        statistics.median(x.p99 for x in loads),
        sum(x.requests for x in loads),
    )


def direct_intake(bed: Testbed, n: int, batch: int) -> float:
    """Notifications/s through `Intake.accept_many` in batches of `batch`, without HTTP."""
    notes = [
        Notification(bed.event_for(f"uploads/ingest/direct-{batch}-{i}.jpg", bed.small, "image/jpeg"))
        for i in range(n)
    ]
    started = time.perf_counter()
    for i in range(0, n, batch):
        bed.runtime.intake.accept_many(notes[i : i + batch])
    return n / (time.perf_counter() - started)


class Gateway:
    """`pipeline gateway` with `processes` processes, loaded by wrk (or httpx)."""

    def __init__(self, bed: Testbed, script: Path, processes: int, env: dict[str, str] | None = None) -> None:
        self.bed, self.script, self.processes = bed, script, processes
        self.proc, self.base = bed.gateway("--workers", str(processes), env={**bed.env, **(env or {})})

    def load(self, prefix: str, seconds: int, clients: int, pause_ms: int = 0) -> Load:
        if shutil.which("wrk"):
            return wrk_load(self.base, self.script, prefix, seconds, clients, pause_ms)
        # Without wrk nothing paces the requests: the paced figure is then one more saturated load.
        return asyncio.run(_httpx_load(self.base, prefix, seconds * 150, clients))

    def pause_for(self, rate: float, clients: int) -> int:
        """The pause between a connection's answer and its next request that makes `clients`
        connections send about `rate` notifications/s, found by trying (wrk sends no faster
        than each connection's answers come back, so the pause makes up the rest of the cycle)."""
        cycle_ms = clients * 1000 / rate
        pause = max(0, int(cycle_ms) - 3)
        for attempt in range(3):
            got = self.load(f"pace{attempt}", 2, clients, pause).rate
            pause = max(0, round(pause + cycle_ms - clients * 1000 / got))
        return pause

    def stop(self) -> None:
        self.bed.stop(self.proc)


def bench_ingest(bed: Testbed, seconds: int, connections: int) -> list[Figure]:
    """MinIO-format notifications POSTed to the gateway, each for a new object, so each one is
    validated, deduplicated, recorded and enqueued before its 200. Two gateway processes (and one,
    for scale), at saturation (`connections` clients) and paced at 1,000/s; beside GET /healthz
    (one Redis ping) on the same server, and the same gateway with group commit off."""
    script = bed.tmp / "ingest.lua"
    script.write_text(WRK_SCRIPT)
    queue = bed.pipeline.config.queue_for("thumbnail")
    flow_queue = bed.pipeline.config.queue_for("screen")  # the images flow's first step
    before = bed.runtime.dispatcher.depth(queue) + bed.runtime.dispatcher.depth(flow_queue)
    direct_one = direct_intake(bed, seconds * 200, 1)
    direct_batched = direct_intake(bed, seconds * 200, 64)
    built_in = bed.tmp / "built-in.yaml"
    built_in.write_text(resources.files("pipeline").joinpath("default_pipeline.yaml").read_text("utf-8"))
    grouped = Gateway(bed, script, 2)
    flows = Gateway(bed, script, 2, {"PIPELINE_CONFIG": str(built_in)})
    single = Gateway(bed, script, 2, {"PIPELINE_INTAKE_BATCH": "1"})
    one_process = Gateway(bed, script, 1)
    gateways = (grouped, flows, single, one_process)
    rounds: dict[str, list[Load]] = {}
    answered = 0
    try:
        for gateway in gateways:
            gateway.load(f"warm{gateway.base[-5:]}", 1, connections)
        pause_ms = grouped.pause_for(PACED_RATE, PACED_CONNECTIONS)
        for r in range(ROUNDS):
            for name, gateway, prefix, clients, pause in (
                ("health", grouped, "", connections, 0),
                ("grouped", grouped, f"g{r}", connections, 0),
                ("flow", flows, f"f{r}", connections, 0),
                ("single", single, f"s{r}", connections, 0),
                ("one", one_process, f"o{r}", connections, 0),
                ("health_paced", grouped, "", PACED_CONNECTIONS, pause_ms),
                ("paced", grouped, f"p{r}", PACED_CONNECTIONS, pause_ms),
            ):
                result = gateway.load(prefix, seconds, clients, pause)
                rounds.setdefault(name, []).append(result)
                answered += result.requests if prefix else 0
        queued = bed.runtime.dispatcher.depth(queue) + bed.runtime.dispatcher.depth(flow_queue) - before
    finally:
        for gateway in gateways:
            gateway.stop()
    bed.runtime.redis.delete(queue, flow_queue)
    if queued < answered:
        raise RuntimeError(f"{answered} notifications answered 200 but only {queued} invocations queued")
    m = {name: median_load(loads) for name, loads in rounds.items()}
    client = (
        "wrk" if shutil.which("wrk") else "an httpx client in this process (install wrk for a lighter one)"
    )
    return [
        Figure(
            f"Gateway ingest at saturation, 2 gateway processes, {connections} connections from {client}: "
            "MinIO notifications claimed, recorded and queued before their 200",
            f"{m['grouped'].rate:.0f}/s, {m['grouped'].rate / m['health'].rate:.2f}x GET /healthz",
            f"GET /healthz on the same server: {m['health'].rate:.0f}/s; group commit off "
            f"(PIPELINE_INTAKE_BATCH=1): {m['single'].rate:.0f}/s "
            f"({m['grouped'].rate / m['single'].rate:.2f}x with it)",
            ">= 1,500/s",
            m["grouped"].rate >= 1500,
        ),
        Figure(
            f"The same for the built-in pipeline file ({connections} connections, 2 processes): each "
            "image notification starts a run of the images flow (run record, claim, its first step queued)",
            f"{m['flow'].rate:.0f}/s, {m['flow'].rate / m['health'].rate:.2f}x GET /healthz",
            f"a single-step rule: {m['grouped'].rate:.0f}/s "
            f"({m['flow'].rate / m['grouped'].rate:.2f}x of it)",
            ">= 1,500/s and >= 0.7x GET /healthz",
            m["flow"].rate >= 1500 and m["flow"].rate >= 0.7 * m["health"].rate,
        ),
        Figure(
            f"Response time at about {PACED_RATE}/s, 2 gateway processes ({PACED_CONNECTIONS} paced "
            "connections)",
            f"{m['paced'].rate:.0f}/s: p50 {ms(m['paced'].p50)}, p99 {ms(m['paced'].p99)}",
            f"GET /healthz paced alike: {m['health_paced'].rate:.0f}/s, p50 {ms(m['health_paced'].p50)}, "
            f"p99 {ms(m['health_paced'].p99)}",
            "p99 <= 25 ms",
            m["paced"].p99 <= 0.025 and m["paced"].rate >= 0.9 * PACED_RATE,
        ),
        Figure(
            "Gateway ingest at saturation, 1 gateway process",
            f"{m['one'].rate:.0f}/s",
            f"2 processes: {m['grouped'].rate:.0f}/s ({m['grouped'].rate / m['one'].rate:.2f}x)",
            "—",
        ),
        Figure(
            "The intake without HTTP (one thread, in-process): notifications/s in batches of 64",
            f"{direct_batched:.0f}/s",
            f"one at a time: {direct_one:.0f}/s ({direct_batched / direct_one:.2f}x batched)",
            "—",
        ),
    ]
