"""A synthetic ledger, written by the stores' own `add` methods, so it has what the intake and the
workers write: per notification an event record, its raw body (once), two invocations (thumbnail
and filter) with their indexes, attempts and dedup claims and, while some of its work runs, the
upload's join set; every twentieth upload also starts a three-step flow run with its claim.
Statuses are a plausible mix: mostly succeeded, some failed, dead, rejected and skipped, a few
queued and running.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass

import redis

from pipeline.flows.model import Run, RunStatus, StepState, StepStatus
from pipeline.invocation import AttemptRecord, Invocation, OutputRef, Status, dedup_key
from pipeline.ledger import Ledger, keys
from pipeline.ledger.records import EventRecord
from pipeline.ledger.retention import record_ttl

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
