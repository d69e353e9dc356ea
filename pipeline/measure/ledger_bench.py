"""The ledger at scale: a million invocations loaded quickly, the queries operators and the
dashboard make answered on it beside the same queries on a 10,000-invocation ledger (two Redis
servers side by side, queried in alternation), Redis memory per invocation, and retention removing
a tenth of it in bounded batches, watched by SLOWLOG.

The synthetic ledger is written by the stores' own `add` methods, so it has what the intake writes:
per notification an event record, its raw body (once), two invocations (thumbnail and filter) with
their five indexes, the dedup claims and, while some of its work runs, the upload's join set;
every twentieth upload also starts a three-step flow run. Statuses are a plausible mix: mostly
succeeded, some failed, dead, rejected and skipped, a few queued and running.
"""

from __future__ import annotations

import json
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from pipeline.embedded import EmbeddedRedis, free_port
from pipeline.flows.model import Run, RunStatus, StepState, StepStatus
from pipeline.invocation import AttemptRecord, Invocation, OutputRef, Status, dedup_key
from pipeline.ledger import Ledger, connect, keys, tune
from pipeline.ledger.records import EventRecord
from pipeline.ledger.retention import BATCH, Retention, Swept, record_ttl
from pipeline.measure.docs import DocSection, machine
from pipeline.measure.testbed import Figure, figure_rows, ms

GRAY = {"steps": [{"op": "grayscale"}]}
MEDIA = {"media_type": "image/jpeg", "size": 245812, "width": 1600, "height": 1067}
SPAN_S = 6 * 86400  # created over the last six days of a seven-day retention
STATUSES = [
    (Status.SUCCEEDED, 0.90),
    (Status.FAILED, 0.03),
    (Status.DEAD, 0.01),
    (Status.REJECTED, 0.02),
    (Status.SKIPPED, 0.02),
    (Status.QUEUED, 0.01),
    (Status.RUNNING, 0.01),
]
RAW = json.dumps(
    {
        "EventName": "s3:ObjectCreated:Put",
        "Key": "media/{key}",
        "Records": [
            {
                "eventVersion": "2.0",
                "eventSource": "minio:s3",
                "awsRegion": "",
                "eventTime": "2026-12-01T10:00:00.000Z",
                "eventName": "s3:ObjectCreated:Put",
                "userIdentity": {"principalId": "uploader"},
                "requestParameters": {"principalId": "uploader", "region": "", "sourceIPAddress": "10.0.0.7"},
                "responseElements": {"x-amz-request-id": "{n}", "x-minio-origin-endpoint": "http://minio:9000"},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "Config",
                    "bucket": {"name": "media", "ownerIdentity": {"principalId": "uploader"},
                               "arn": "arn:aws:s3:::media"},
                    "object": {"key": "{key}", "size": 245812, "eTag": "{etag}", "contentType": "image/jpeg",
                               "userMetadata": {"content-type": "image/jpeg"}, "sequencer": "{n}"},
                },
                "source": {"host": "10.0.0.7", "port": "",
                           "userAgent": "MinIO (linux; amd64) minio-go/v7.0.70"},
            }
        ],
    }
)  # fmt: skip


@dataclass
class Loaded:
    invocations: int
    events: int
    runs: int
    seconds: float
    used_memory: int  # bytes Redis used for it


def _status(rng: random.Random) -> Status:
    pick, total = rng.random(), 0.0
    for status, share in STATUSES:
        total += share
        if pick < total:
            return status
    return Status.SUCCEEDED


def _invocation(
    rng: random.Random, n: int, fn: str, key: str, etag: str, event_id: str, at: float
) -> Invocation:
    status = _status(rng)
    finished = status not in (Status.QUEUED, Status.RUNNING)
    outputs = (
        [OutputRef(bucket="media", key=f"derived/{key}/{fn}/{size}.jpg", content_type="image/jpeg",
                   size=rng.randint(4000, 90000), meta={"width": size, "height": size * 2 // 3})
         for size in ((256, 1024) if fn == "thumbnail" else (1280,))]
        if status == Status.SUCCEEDED else []
    )  # fmt: skip
    error = {
        Status.FAILED: "MediaError: image file is truncated (3 bytes not processed)",
        Status.DEAD: "StorageError: S3 endpoint unreachable (after 3 attempts)",
        Status.REJECTED: f"media/{key}: content is text/plain, which is not allowed (screening.allow)",
    }.get(status)
    duration = rng.uniform(0.04, 0.6)
    params = {"sizes": [256, 1024], "format": "jpeg", "quality": 82} if fn == "thumbnail" else GRAY
    ran = status != Status.QUEUED
    # Its attempts before the last (a dead one ran out of three): kept in its record.
    retried = [
        AttemptRecord(n=n + 1, worker="images.4711@worker-7f9c", started_at=at + n, finished_at=at + n + 0.2,
                      duration_ms=200.0, outcome="retrying", error="StorageError: S3 endpoint unreachable")
        for n in range(2 if status == Status.DEAD else 0)
    ]  # fmt: skip
    return Invocation(
        id=f"{int(at * 1000):012x}{n:012x}", function=fn, params=params,
        params_hash="44136fa355b3678a" if fn == "thumbnail" else "9f1c2a7be0d35e61", rule="image-thumbnails",
        queue=f"fn.{fn}", bucket="media", key=key, version=etag, etag=etag, event_id=event_id, status=status,
        attempts=3 if status == Status.DEAD else (1 if ran else 0), created_at=at,
        enqueued_at=at + 0.002, started_at=at + 0.01 if ran else None,
        finished_at=at + duration if finished else None,
        duration_ms=round(duration * 1000, 1) if finished else None,
        worker="images.4711@worker-7f9c" if ran else None, queue_wait_ms=8.2,
        cpu_ms=round(duration * 700, 1) if finished else None, memory_mb=512,
        gb_seconds=round(duration / 2, 6) if finished else None,
        peak_memory_mb=142.0 if finished else None, bytes_read=245812 if finished else None,
        bytes_written=sum(o.size for o in outputs) if finished else None, outputs=outputs, error=error,
        media=MEDIA if finished else None, earlier_attempts=retried,
    )  # fmt: skip


def load(ledger: Ledger, client: redis.Redis, invocations: int, now: float, seed: int = 7) -> Loaded:
    """Write a synthetic ledger of about `invocations` invocations, created over the last SPAN_S."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not secrets
    before = int(client.info("memory")["used_memory"])
    started = time.monotonic()
    pipe = client.pipeline(transaction=False)
    made = events = runs = n = 0
    while made < invocations:
        n += 1
        at = now - SPAN_S * rng.random()
        key = f"uploads/user{rng.randint(1, 50_000)}/IMG_{n:08d}.jpg"
        etag = f"{rng.getrandbits(128):032x}"
        event_id = f"{int(at * 1000):012x}{n:012x}"
        invs = [
            _invocation(rng, n * 2 + i, fn, key, etag, event_id, at)
            for i, fn in enumerate(("thumbnail", "filter"))
        ]
        raw = RAW.replace("{key}", key).replace("{etag}", etag).replace("{n}", f"{n:016X}")
        event = EventRecord(
            id=event_id, received_at=at, source="minio", event_name="s3:ObjectCreated:Put", bucket="media",
            key=key, version=etag, size=245812, content_type="image/jpeg", status="accepted",
            invocations=[i.id for i in invs], raw=raw,
        )  # fmt: skip
        ledger.events.add(pipe, event)
        for inv in invs:
            ledger.invocations.add(pipe, inv)
            claim = keys.dedup(dedup_key(inv.bucket, inv.key, inv.version, inv.function, inv.params_hash))
            pipe.hset(claim.shard, claim.field, inv.id)
            pipe.expire(claim.shard, record_ttl(ledger.retention))
        if n % 20 == 0:
            run, steps = _run(rng, n, key, etag, event_id, at)
            ledger.runs.add(pipe, run)
            claim = keys.run_claim(run.rule, run.bucket, run.key, run.version)
            pipe.hset(claim.shard, claim.field, run.id)
            for inv in steps:
                ledger.invocations.add(pipe, inv)
            invs += steps
            runs += 1
        if running := [i.id for i in invs if not i.status.finished]:
            pipe.sadd(keys.join(event_id), *running)
        made += len(invs)
        events += 1
        if n % 200 == 0:
            pipe.execute()
    pipe.execute()
    client.delete(keys.OUTBOX)  # announced long ago, in a ledger that has been running
    used = int(client.info("memory")["used_memory"]) - before
    return Loaded(made, events, runs, time.monotonic() - started, used)


def _run(
    rng: random.Random, n: int, key: str, etag: str, event_id: str, at: float
) -> tuple[Run, list[Invocation]]:
    steps = [_invocation(rng, 10**9 + n * 3 + i, "thumbnail", key, etag, event_id, at) for i in range(3)]
    for step, name in zip(steps, ("probe", "poster", "poster-thumbs"), strict=True):
        step.run_id, step.step = f"run{n:021d}", name
    state = {
        name: StepState(status=StepStatus.SUCCEEDED if inv.status == Status.SUCCEEDED else StepStatus.FAILED,
                        invocations=[inv.id], outputs=inv.outputs, started_at=at, finished_at=at + 1)
        for name, inv in zip(("probe", "poster", "poster-thumbs"), steps, strict=True)
    }  # fmt: skip
    failed = any(s.status == StepStatus.FAILED for s in state.values())
    run = Run(
        id=f"run{n:021d}", flow="video", rule="video-renditions", bucket="media", key=key, version=etag,
        etag=etag, event_id=event_id, status=RunStatus.FAILED if failed else RunStatus.SUCCEEDED,
        started_at=at, finished_at=at + 2, steps=state,
    )  # fmt: skip
    return run, steps


SECTION = DocSection("bench:ledger", "The ledger at scale")


def render(figures: list[Figure], command: str) -> str:
    return SECTION.render(
        f"Command: `{command}`. Machine: {machine()}. Both ledgers, both gateways and the client ran "
        "on this machine in one run; each query alternates between the two ledgers.",
        *figure_rows(figures),
    )


# --- the queries, on both ledgers ------------------------------------------------------------------
@dataclass
class Side:
    """One ledger: its Redis, a gateway serving it, and what was loaded."""

    embedded: EmbeddedRedis
    url: str
    client: redis.Redis
    ledger: Ledger
    loaded: Loaded
    gateway: str = ""
    server: Any = None
    thread: threading.Thread | None = None
    sample_key: str = ""

    def serve(self, data_dir: Path) -> None:
        import uvicorn  # noqa: PLC0415

        from pipeline.gateway.app import create_app  # noqa: PLC0415
        from pipeline.settings import Settings  # noqa: PLC0415

        port = free_port()
        settings = Settings(redis_url=self.url, data_dir=data_dir, reconcile_interval=0)
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        self.gateway = f"http://127.0.0.1:{port}"

    def close(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            if self.thread is not None:
                self.thread.join(timeout=10)
        self.embedded.stop()


def _side(root: Path, name: str, invocations: int, now: float) -> Side:
    server = EmbeddedRedis(root / name, persist=False)
    url = server.start()
    client = connect(url)
    tune(client)
    ledger = Ledger(client)
    loaded = load(ledger, client, invocations, now)
    side = Side(server, url, client, ledger, loaded)
    # An object the bucket+key query asks for: one of the most recent uploads.
    [newest] = ledger.invocations.query(limit=1)
    side.sample_key = newest.key
    side.serve(root / name / "data")
    return side


QUERIES: list[tuple[str, Callable[[Side], str]]] = [
    ("GET /api/invocations?status=failed", lambda s: "/api/invocations?status=failed"),
    ("GET /api/invocations?function=filter", lambda s: "/api/invocations?function=filter"),
    ("GET /api/invocations?bucket&key", lambda s: f"/api/invocations?bucket=media&key={s.sample_key}"),
    ("dashboard Overview", lambda s: "/admin"),
    ("dashboard Invocations, failed", lambda s: "/admin/invocations?status=failed"),
    ("dashboard Usage", lambda s: "/admin/usage"),
    ("GET /api/runs?status=succeeded", lambda s: "/api/runs?status=succeeded"),
]


def _time_queries(small: Side, large: Side, rounds: int) -> dict[str, tuple[list[float], list[float]]]:
    times: dict[str, tuple[list[float], list[float]]] = {}
    # A client (and a dashboard session) per gateway: cookies do not tell ports apart.
    with httpx.Client(timeout=60) as http_small, httpx.Client(timeout=60) as http_large:
        clients = {id(small): http_small, id(large): http_large}
        for side in (small, large):
            clients[id(side)].post(
                side.gateway + "/admin/login",
                data={"password": "-", "next": "/admin"},
                headers={"origin": side.gateway},
            )
        for name, path in QUERIES:
            pair: tuple[list[float], list[float]] = ([], [])
            for i in range(rounds + 2):
                order = [(small, pair[0]), (large, pair[1])]
                for side, out in order if i % 2 else reversed(order):  # alternate who goes first
                    began = time.perf_counter()
                    clients[id(side)].get(side.gateway + path(side)).raise_for_status()
                    if i >= 2:  # the first rounds warm connections and caches
                        out.append(time.perf_counter() - began)
            times[name] = pair
        # The command as an operator runs it: a process of its own, so its start is in the time.
        pair = ([], [])
        for i in range(rounds + 2):
            for side, out in ((small, pair[0]), (large, pair[1])):
                env = {**os.environ, "PIPELINE_REDIS_URL": side.url}
                began = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "pipeline", "invocations", "--status", "failed"],
                    env=env, capture_output=True, check=True, timeout=120,
                )  # fmt: skip
                if i >= 2:
                    out.append(time.perf_counter() - began)
        times["pipeline invocations --status failed"] = pair
    return times


def _retention(side: Side, now: float) -> tuple[Swept, float]:
    """Sweep what a 5.4-day retention leaves behind (a tenth of a six-day ledger), with SLOWLOG
    catching every command over 1 ms; returns what was swept and the slowest command's seconds."""
    client = side.client
    client.config_set("slowlog-log-slower-than", 1000)
    client.config_set("slowlog-max-len", 100_000)
    client.slowlog_reset()
    sweeper = Retention(client, int(SPAN_S * 0.9))
    swept = sweeper.sweep(now=now)
    slowest = max((entry["duration"] for entry in client.slowlog_get(100_000)), default=0)
    client.config_set("slowlog-log-slower-than", 10_000)
    return swept, slowest / 1e6


def bench_ledger(large: int = 1_000_000, small: int = 10_000, rounds: int = 20) -> list[Figure]:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    now = time.time()
    with tempfile.TemporaryDirectory(prefix="pipeline-ledger-bench-") as tmp:
        root = Path(tmp)
        sides: list[Side] = []
        try:
            sides.append(_side(root, "small", small, now))
            sides.append(_side(root, "large", large, now))
            low, high = sides
            times = _time_queries(low, high, rounds)
            figures = [_memory(high, low)]
            for name, (few, many) in times.items():
                ratio = statistics.median(many) / statistics.median(few)
                figures.append(
                    Figure(
                        f"{name}: {high.loaded.invocations:,} invocations vs {low.loaded.invocations:,}",
                        f"p50 {ms(statistics.median(many))} ({ratio:.2f}x)",
                        f"p50 {ms(statistics.median(few))}",
                        "<= 1.5x",
                        ratio <= 1.5,
                    )
                )
            swept, slowest = _retention(high, now)
            figures.append(
                Figure(
                    f"retention: {swept.invocations:,} invocations, {swept.events:,} notifications and "
                    f"{swept.runs:,} runs removed in {swept.batches} batches",
                    (f"slowest command {ms(slowest)}" if slowest else "no command took 1 ms (SLOWLOG empty)")
                    + f"; {swept.seconds:.1f} s in all",
                    f"batches of {BATCH}",
                    "no command over 10 ms",
                    slowest <= 0.010,
                )
            )
            figures.append(
                Figure(
                    f"loading the synthetic ledger ({high.loaded.events:,} notifications, "
                    f"{high.loaded.runs:,} runs)",
                    f"{high.loaded.invocations / high.loaded.seconds:,.0f} invocations/s",
                    f"{high.loaded.seconds:.0f} s for {high.loaded.invocations:,}",
                    "—",
                )
            )
        finally:
            for side in sides:
                side.close()
    return figures


def _memory(high: Side, low: Side) -> Figure:
    per = high.loaded.used_memory / high.loaded.invocations
    per_low = low.loaded.used_memory / low.loaded.invocations
    return Figure(
        "Redis memory per invocation, with its share of its notification (raw body once), claims, "
        "join sets, indexes and runs",
        f"{per:,.0f} B at {high.loaded.invocations:,}",
        f"{per_low:,.0f} B at {low.loaded.invocations:,}",
        "<= 1,536 B",
        per <= 1536,
    )
