"""`pipeline bench system`: the pipeline's own figures, each a distribution or a ratio from one run.

Everything runs on this machine in one command: an embedded Redis (the real redis-server), real
`pipeline worker` and `pipeline gateway` processes, a bare Celery worker as the baseline for the
pipeline's overhead, and moto's server as the S3 peer (S3 -> SNS -> HTTP push, as AWS delivers).
Each figure's baseline is measured in the same run, interleaved where it can be, so machine noise
hits both alike. Times between processes are wall-clock stamps (`time.time()`) on one host.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import httpx
import redis
from PIL import Image

from functions import thumbnail
from functions.thumbnail import ThumbnailParams
from pipeline import report
from pipeline.config import parse_config
from pipeline.embedded import EmbeddedRedis, free_port
from pipeline.events.model import ObjectEvent
from pipeline.invocation import Invocation, Status
from pipeline.queue import bare
from pipeline.queue.app import queued_runtime
from pipeline.queue.control import FunctionControls
from pipeline.registry import build_pipeline
from pipeline.samples import make_photo
from pipeline.settings import Settings
from pipeline.storage import LocalStore
from pipeline.uploads import upload_file

MARK_START, MARK_END = "<!-- bench:system -->", "<!-- /bench:system -->"
TOKEN = "bench-token"  # noqa: S105 - a throwaway gateway on loopback
THUMBNAIL = ThumbnailParams(sizes=[256, 1024], format="jpeg", quality=82)
CONFIG = """
version: 1
buckets: [media]
functions:
  thumbnail: {concurrency: 2, time_limit: 60, max_attempts: 3}
rules:
  - name: image-thumbnails
    bucket: media
    prefix: uploads/
    content_types: ["image/*"]
    functions:
      - function: thumbnail
        params: {sizes: [256, 1024], format: jpeg, quality: 82}
"""


@dataclass
class Figure:
    what: str
    measured: str
    baseline: str
    goal: str
    met: bool | None = None


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the value below which `q` of the samples lie."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 0.1 else f"{seconds * 1000:.0f} ms"


def dist(values: list[float]) -> str:
    p50, p95, p99 = (ms(pct(values, q)) for q in (0.5, 0.95, 0.99))
    return f"p50 {p50} · p95 {p95} · p99 {p99} (n={len(values)})"


class World:
    """An embedded Redis, the benchmark's pipeline file, a runtime to enqueue with, child processes."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        config_path = tmp / "pipeline.yaml"
        config_path.write_text(CONFIG)
        self.redis = EmbeddedRedis(tmp / "data")
        self.url = self.redis.start()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
        self.env.update(
            PIPELINE_REDIS_URL=self.url,
            PIPELINE_CONFIG=str(config_path),
            PIPELINE_DATA_DIR=str(tmp / "data"),
            PIPELINE_WEBHOOK_TOKEN=TOKEN,
        )
        self.pipeline = build_pipeline(parse_config(CONFIG, str(config_path)), str(config_path))
        settings = Settings(redis_url=self.url, data_dir=tmp / "data", config=config_path, s3_endpoint=None)
        self.runtime = queued_runtime(settings, self.pipeline, self.url)
        self.ledger = self.runtime.ledger
        self.silent = LocalStore(tmp / "data" / "store")  # writes without notifying: we time the notice
        self.silent.ensure_bucket("media")
        self.photo = make_photo(tmp / "photo-1mp.jpg")
        self.small = tmp / "small.png"
        Image.new("RGB", (64, 64), (90, 120, 150)).save(self.small)
        self.procs: list[subprocess.Popen[bytes]] = []
        self._n = 0

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        self._n += 1
        log = (self.tmp / f"proc-{self._n}.log").open("wb")
        proc = subprocess.Popen(
            argv, env=env or self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.procs.append(proc)
        return proc

    def worker(self, concurrency: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        argv = [
            "worker",
            "--functions",
            "thumbnail",
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "WARNING",
        ]
        return self.spawn([sys.executable, "-m", "pipeline", *argv], env)

    def wait_worker(self, proc: subprocess.Popen[bytes], timeout: float = 60) -> float:
        """Wait for the worker's first heartbeat (sent when it is ready); returns that time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for info in self.ledger.workers.live():
                if info.pid == proc.pid:
                    return info.started_at
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}; see {self.tmp}")
            time.sleep(0.005)
        raise TimeoutError("the worker did not come up")

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for info in self.ledger.workers.live():
            if info.pid == proc.pid:
                self.ledger.workers.gone(info.hostname)

    def close(self) -> None:
        for proc in self.procs:
            self.stop(proc)
        self.redis.stop()

    def event_for(self, key: str, path: Path, content_type: str) -> ObjectEvent:
        """Store an object without a notification and return the notification it would make."""
        return self.silent.put_file("media", key, path, content_type=content_type).event("local")

    def accept(self, event: ObjectEvent) -> list[str]:
        return list(self.runtime.intake.accept(event).invocations)

    def wait_done(self, ids: list[str], timeout: float = 120, poll: float = 0.001) -> list[Invocation]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            invs = self.ledger.invocations.get_many(ids)
            if all(inv.status.finished for inv in invs):
                bad = [inv for inv in invs if inv.status != Status.SUCCEEDED]
                if bad:
                    raise RuntimeError(f"{bad[0].key}: {bad[0].status} {bad[0].error}")
                return invs
            time.sleep(poll)
        raise TimeoutError(f"invocations did not finish within {timeout:g}s")


def _stamp(inv: Invocation, field: str) -> float:
    value = getattr(inv, field)
    assert value is not None, f"{inv.id} has no {field}"
    return float(value)


# --- the figures -------------------------------------------------------------------------------------
def bench_overhead(world: World, n: int) -> list[Figure]:
    """Notification accepted by the intake -> attempt started in a worker, beside a bare Celery send
    -> task started, alternating one of each, each on an idle worker."""
    worker = world.worker(1)
    bare_worker = world.spawn(
        [sys.executable, "-m", "celery", "-A", "pipeline.queue.bare", "worker", "-Q", bare.QUEUE, "-c", "1",
         "--without-mingle", "--without-gossip", "--loglevel", "WARNING"]
    )  # fmt: skip
    client = redis.Redis.from_url(world.url, socket_timeout=120)
    publisher = bare.make_app(world.url)
    try:
        world.wait_worker(worker)
        bare.send_and_wait(publisher, client, timeout=60)  # also waits for the bare worker to come up
        ours: list[float] = []
        theirs: list[float] = []
        for i in range(n + 5):
            event = world.event_for(f"uploads/overhead/{i}.png", world.small, "image/png")
            sent = time.time()
            [inv] = world.wait_done(world.accept(event))
            baseline = bare.send_and_wait(publisher, client)
            if i >= 5:  # the first few warm connections on both sides
                ours.append(_stamp(inv, "started_at") - sent)
                theirs.append(baseline)
    finally:
        world.stop(worker)
        world.stop(bare_worker)
        client.close()
    p50, p99 = pct(ours, 0.5), pct(ours, 0.99)
    return [
        Figure(
            "Overhead: notification accepted -> function started (validated, deduplicated, recorded, "
            "queued, taken, leased)",
            dist(ours),
            f"bare Celery send -> task started: {dist(theirs)}",
            "p50 <= 10 ms, p99 <= 30 ms",
            p50 <= 0.010 and p99 <= 0.030,
        )
    ]


def bench_e2e_embedded(world: World, n: int) -> list[Figure]:
    """Upload of a 1 MP JPEG into the local store -> thumbnails stored and recorded, one upload at a
    time, beside the thumbnail function alone on the same file in this process."""
    worker = world.worker(2)
    function_alone: list[float] = []
    latencies: list[float] = []
    try:
        world.wait_worker(worker)
        for i in range(n + 3):
            started = time.time()
            upload = upload_file(world.runtime, world.photo, "media", f"uploads/e2e/{i}.jpg")
            [inv] = world.wait_done(upload.invocation_ids)
            if i >= 3:
                latencies.append(_stamp(inv, "finished_at") - started)
            with tempfile.TemporaryDirectory(dir=world.tmp) as out:
                t0 = time.perf_counter()
                thumbnail.run(world.photo, Path(out), THUMBNAIL)
                function_alone.append(time.perf_counter() - t0)
    finally:
        world.stop(worker)
    return [
        Figure(
            "Upload -> thumbnails (256 + 1024 px) stored, 1 MP JPEG, embedded default (local store)",
            dist(latencies),
            f"the thumbnail function alone: p50 {ms(pct(function_alone, 0.5))}",
            "p50 <= 150 ms",
            pct(latencies, 0.5) <= 0.150,
        )
    ]


@contextlib.contextmanager
def s3_peer(world: World) -> Iterator[tuple[dict[str, str], Any]]:
    """moto's server with bucket `media` notifying an SNS topic subscribed by a gateway over HTTP."""
    import boto3  # noqa: PLC0415 - the bench extra
    from moto.server import ThreadedMotoServer  # noqa: PLC0415

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = dict(
        world.env,
        PIPELINE_S3_ENDPOINT=endpoint,
        PIPELINE_S3_ACCESS_KEY="bench",
        PIPELINE_S3_SECRET_KEY="bench",  # noqa: S106 - moto accepts any
        PIPELINE_S3_REGION="us-east-1",
        PIPELINE_SNS_VERIFY_SIGNATURE="false",  # moto signs with a fake key
    )
    gateway_port = free_port()
    gateway = world.spawn(
        [sys.executable, "-m", "pipeline", "gateway", "--host", "127.0.0.1", "--port", str(gateway_port)], env
    )
    try:
        _wait_http(f"http://127.0.0.1:{gateway_port}/healthz", gateway)
        kw: dict[str, Any] = {
            "endpoint_url": endpoint,
            "region_name": "us-east-1",
            "aws_access_key_id": "bench",
            "aws_secret_access_key": "bench",
        }
        s3, sns = boto3.client("s3", **kw), boto3.client("sns", **kw)
        s3.create_bucket(Bucket="media")
        topic = sns.create_topic(Name="media-events")["TopicArn"]
        sns.subscribe(
            TopicArn=topic,
            Protocol="http",
            Endpoint=f"http://127.0.0.1:{gateway_port}/events/sns?token={TOKEN}",
        )
        s3.put_bucket_notification_configuration(
            Bucket="media",
            NotificationConfiguration={
                "TopicConfigurations": [
                    {
                        "TopicArn": topic,
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "uploads/"}]}},
                    }
                ]
            },
        )
        yield env, s3
    finally:
        world.stop(gateway)
        server.stop()


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer")


def bench_e2e_s3(world: World, n: int) -> list[Figure]:
    """PUT of a 1 MP JPEG to the S3 peer -> S3 -> SNS -> gateway -> worker (download, thumbnails,
    upload) -> recorded; one at a time, beside the bare PUT of the same file."""
    latencies: list[float] = []
    puts: list[float] = []
    data = world.photo.read_bytes()
    with s3_peer(world) as (env, s3):
        worker = world.worker(2, env)
        try:
            world.wait_worker(worker)
            for i in range(n + 3):
                key = f"uploads/e2e-s3/{i}.jpg"
                started = time.time()
                s3.put_object(Bucket="media", Key=key, Body=data, ContentType="image/jpeg")
                put_done = time.time()
                deadline = time.monotonic() + 60
                while not (found := world.ledger.invocations.for_object("media", key)):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"no notification for {key} reached the gateway")
                    time.sleep(0.001)
                [inv] = world.wait_done([found[0].id])
                if i >= 3:
                    latencies.append(_stamp(inv, "finished_at") - started)
                    s3.put_object(Bucket="media", Key=f"other/{i}.jpg", Body=data, ContentType="image/jpeg")
                    puts.append(put_done - started)
        finally:
            world.stop(worker)
    return [
        Figure(
            "Upload -> thumbnails stored, 1 MP JPEG, Redis + S3 peer (moto: S3 -> SNS -> HTTP -> gateway)",
            dist(latencies),
            f"the PUT alone: p50 {ms(pct(puts, 0.5))}",
            "(no goal; for comparison)",
        )
    ]


def bench_throughput(world: World, images: int, rounds: int) -> list[Figure]:
    """A queue of `images` 1 MP JPEGs drained by a worker with 1, then 2 pool processes (alternating,
    `rounds` times): images per minute from the first start to the last finish. The worker is up and
    paused before the queue fills, so its processes start together."""
    controls = FunctionControls(world.url, world.pipeline, world.ledger)
    rates: dict[int, list[float]] = {1: [], 2: []}
    for r in range(rounds):
        for count in (1, 2):
            controls.set_paused("thumbnail", True)
            worker = world.worker(count)  # one worker, `count` pool processes
            try:
                world.wait_worker(worker)
                keys = [f"uploads/tp/{r}-{count}/{n}.jpg" for n in range(images)]
                ids = [
                    i for key in keys for i in world.accept(world.event_for(key, world.photo, "image/jpeg"))
                ]
                controls.set_paused("thumbnail", False)
                invs = world.wait_done(ids, timeout=600, poll=0.05)
                first = min(_stamp(i, "started_at") for i in invs)
                span = max(_stamp(i, "finished_at") for i in invs) - first
                rates[count].append(images / span * 60)
            finally:
                world.stop(worker)
    # Each round's two runs are minutes apart at most: their ratio is what noise leaves alone best.
    ratios = sorted(two / one for one, two in zip(rates[1], rates[2], strict=True))
    ratio = statistics.median(ratios)
    return [
        Figure(
            f"Throughput, 1 MP JPEG -> 2 thumbnails, {images} queued; one worker with 1 or 2 pool "
            f"processes, {rounds} rounds",
            f"2 processes: {statistics.median(rates[2]):.0f} images/min; ratio per round: median "
            f"{ratio:.2f}x (range {ratios[0]:.2f}-{ratios[-1]:.2f}x)",
            f"1 process: {statistics.median(rates[1]):.0f} images/min",
            "2 workers >= 1.8x one",
            ratio >= 1.8,
        )
    ]


def bench_cold_start(world: World, rounds: int, queued: int) -> list[Figure]:
    """A worker started with work already waiting: process start -> first task taken (and ready ->
    first task), and its first invocation's duration against the median of the next ones."""
    to_first: list[float] = []
    ready_to_first: list[float] = []
    first_vs_steady: list[float] = []
    for r in range(rounds):
        ids = [
            i
            for n in range(queued)
            for i in world.accept(world.event_for(f"uploads/cold/{r}/{n}.jpg", world.photo, "image/jpeg"))
        ]
        spawned = time.time()
        worker = world.worker(1)
        try:
            ready = world.wait_worker(worker)
            invs = sorted(world.wait_done(ids, poll=0.01), key=lambda i: _stamp(i, "started_at"))
        finally:
            world.stop(worker)
        first = _stamp(invs[0], "started_at")
        to_first.append(first - spawned)
        ready_to_first.append(first - ready)
        steady = statistics.median(_stamp(i, "duration_ms") for i in invs[1:])
        first_vs_steady.append(_stamp(invs[0], "duration_ms") / steady)
    return [
        Figure(
            f"Cold start: `pipeline worker` process started -> first task taken ({rounds} starts)",
            f"median {ms(statistics.median(to_first))}, max {ms(max(to_first))}",
            f"worker ready (heartbeat) -> first task: median {ms(statistics.median(ready_to_first))}",
            "<= 1 s",
            max(to_first) <= 1.0,
        ),
        Figure(
            "First invocation on a new worker vs its steady state (duration, same input)",
            f"ratio median {statistics.median(first_vs_steady):.2f}x, max {max(first_vs_steady):.2f}x",
            f"median of invocations 2..{queued} on the same worker",
            "not measurably slower (<= 1.2x)",
            statistics.median(first_vs_steady) <= 1.2,
        ),
    ]


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


def bench_ingest(world: World, seconds: int, connections: int) -> list[Figure]:
    """MinIO-format notifications POSTed to the gateway, each for a new object, so each one is
    validated, deduplicated, recorded and enqueued before its 200; beside GET /healthz (one Redis
    ping) against the same server. With one and with two gateway processes; the rate at saturation
    (`connections` clients) and the response time under a light load (two clients per process)."""
    use_wrk = shutil.which("wrk") is not None
    # The intake alone, without HTTP: one thread in this process, sequential.
    events = [
        world.event_for(f"uploads/ingest/direct-{n}.jpg", world.small, "image/jpeg")
        for n in range(seconds * 150)
    ]
    started = time.perf_counter()
    for event in events:
        world.accept(event)
    direct = len(events) / (time.perf_counter() - started)
    script = world.tmp / "ingest.lua"
    script.write_text(WRK_SCRIPT)
    queue = world.pipeline.config.queue_for("thumbnail")
    figures = []
    for processes in (1, 2):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        gateway = world.spawn(
            [sys.executable, "-m", "pipeline", "gateway", "--host", "127.0.0.1", "--port", str(port),
             "--workers", str(processes)]
        )  # fmt: skip
        before = world.runtime.dispatcher.depth(queue)
        try:
            _wait_http(f"{base}/healthz", gateway)

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
            queued = world.runtime.dispatcher.depth(queue) - before
        finally:
            world.stop(gateway)
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
    world.runtime.redis.delete(queue)
    return figures


# --- the run -----------------------------------------------------------------------------------------
def run_system_benchmarks(*, quick: bool = False) -> list[Figure]:
    for noisy in ("httpx", "werkzeug"):  # one line per request otherwise (client; the S3 peer)
        logging.getLogger(noisy).setLevel(logging.WARNING)
    scale = 0.25 if quick else 1.0

    def k(n: int) -> int:
        return max(3, int(n * scale))

    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp:
        world = World(Path(tmp))
        try:
            figures += bench_overhead(world, k(200))
            figures += bench_e2e_embedded(world, k(60))
            figures += bench_e2e_s3(world, k(30))
            figures += bench_cold_start(world, 5, 11)
            figures += bench_throughput(world, k(40), 5)
            figures += bench_ingest(world, max(2, int(8 * scale)), 32)
        finally:
            world.close()
    return figures


def render(figures: list[Figure], command: str) -> str:
    lines = [
        MARK_START,
        f"Command: `{command}`. Machine: {report.machine()}. Everything (load generator included) "
        "ran on this machine in one run.",
        "",
        "| figure | measured | baseline, same run | goal | met |",
        "|---|---|---|---|---|",
    ]
    for f in figures:
        met = "—" if f.met is None else ("yes" if f.met else "**no**")
        lines.append(f"| {f.what} | {f.measured} | {f.baseline} | {f.goal} | {met} |")
    lines.append(MARK_END)
    return "\n".join(lines)


def write_section(doc: Path, section: str) -> None:
    report.write_section(
        doc,
        section,
        start=MARK_START,
        end=MARK_END,
        heading="The pipeline: latency, overhead, scaling, ingest",
    )
