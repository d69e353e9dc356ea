"""The intake's group commit: a batch of notifications claimed in one script and recorded, with
their queue messages, in one script call. What it writes must be what the one-at-a-time path
writes (a MULTI/EXEC transaction, and Celery's own `send_task`), and a batch must keep every
guarantee a single notification has: each unit of work claimed once, each refusal its own."""

from __future__ import annotations

import base64
import json
import time
from typing import Any, cast

import pytest
import redis

from pipeline.config import parse_config
from pipeline.errors import BrokerUnavailable
from pipeline.events import ObjectEvent
from pipeline.flows.model import Run
from pipeline.intake import Intake, Notification
from pipeline.invocation import Invocation, Status, dedup_key
from pipeline.ledger import EventRecord, Ledger, connect, keys
from pipeline.queue.app import CeleryDispatcher, create_celery
from pipeline.registry import build_pipeline
from tests.helpers import THUMBNAILS_ONLY, plant_claim

pytestmark = pytest.mark.integration


def event(key: str, etag: str = "e1") -> ObjectEvent:
    return ObjectEvent(
        source="minio", event_name="s3:ObjectCreated:Put", bucket="media", key=key, etag=etag, size=10,
        content_type="image/jpeg",
    )  # fmt: skip


def snapshot(client: redis.Redis) -> dict[Any, Any]:
    """Every key: its type, its value (as bytes: records may be packed), and whether it expires."""
    found: dict[Any, Any] = {}
    for name in sorted(client.keys("*")):
        kind = cast(bytes, client.type(name)).decode()
        value: Any
        if kind == "string":
            value = client.get(name)
        elif kind == "hash":
            value = client.hgetall(name)
        elif kind == "zset":
            value = client.zrange(name, 0, -1, withscores=True)
        elif kind == "set":
            value = sorted(client.smembers(name))
        else:
            value = client.lrange(name, 0, -1)
        found[name] = (kind, value, client.ttl(name) > 0)
    return found


def test_batched_writes_leave_what_a_transaction_leaves(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=False)
    ledger = Ledger(connect(redis_url))
    now = time.time()
    invs = [
        Invocation(
            id=f"inv{n}", function="thumbnail", params={"sizes": [64]}, params_hash="h", rule="r",
            queue="fn.thumbnail", bucket="media", key=f"uploads/{n}.jpg", version="v1", etag="v1",
            event_id=f"ev{n}", output_bucket="media", output_template="t/{key}", created_at=now + n,
            enqueued_at=now + n, status=Status.REJECTED if n == 2 else Status.QUEUED,
        )
        for n in range(3)
    ]  # fmt: skip
    records = [
        EventRecord(id=f"ev{n}", received_at=now + n, source="minio", event_name="s3:ObjectCreated:Put",
                    bucket="media", key=f"uploads/{n}.jpg", status="accepted", raw=f'{{"n": {n}}}',
                    invocations=[f"inv{n}"])
        for n in range(3)
    ]  # fmt: skip
    run = Run(id="run1", flow="f", rule="r", bucket="media", key="uploads/0.jpg", version="v1",
              event_id="ev0", started_at=now)  # fmt: skip

    sent: list[int] = []

    def write(pipe: Any) -> None:
        ledger.stage_intake(pipe, [invs[0]], records[0], [run])
        for inv, record in zip(invs[1:], records[1:], strict=True):
            ledger.stage_intake(pipe, [inv], record)
        pipe.lpush("fn.thumbnail", "message")
        pipe.incr(keys.stat("events:ignored"))
        sent.append(len(pipe.command_stack) if isinstance(pipe, redis.client.Pipeline) else 0)
        pipe.execute()

    transaction = client.pipeline(transaction=True)
    write(transaction)
    expected = snapshot(client)
    client.flushall()
    batch = ledger.batch()
    write(batch)
    assert snapshot(client) == expected
    assert batch.commands < sent[0], "an index's expiry is set once per batch"


def test_a_staged_message_is_the_one_send_task_writes(redis_url: str) -> None:
    pipeline = build_pipeline(parse_config(THUMBNAILS_ONLY, "t.yaml"), "t.yaml")
    dispatcher = CeleryDispatcher(create_celery(redis_url, pipeline))
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    inv = Invocation(
        id="inv1", function="thumbnail", params={"sizes": [64]}, params_hash="h", rule="r",
        queue="fn.thumbnail", bucket="media", key="uploads/a.jpg", version="v1", event_id="ev1",
        output_bucket="media", output_template="t/{key}", time_limit=42,
    )  # fmt: skip
    dispatcher.enqueue(inv)
    pipe = client.pipeline(transaction=True)
    dispatcher.stage(pipe, inv)
    pipe.execute()
    staged, sent = (json.loads(m) for m in client.lrange("fn.thumbnail", 0, -1))  # LPUSH: newest first
    assert staged.keys() == sent.keys()
    for message in (staged, sent):
        message["body"] = json.loads(base64.b64decode(message["body"]))
        for name in ("id", "root_id", "origin"):
            message["headers"].pop(name)
        for name in ("correlation_id", "delivery_tag"):
            message["properties"].pop(name)
    for name in ("argsrepr", "kwargsrepr"):  # also sent as headers, where the worker reads them
        sent["properties"].pop(name)
    differing = {k: (staged[k], sent[k]) for k in staged if staged[k] != sent[k]}
    assert not differing, differing
    assert staged["headers"]["timelimit"] == [46, 42]  # hard: soft + a tenth of it
    assert staged["body"][0][0]["key"] == "uploads/a.jpg"


def test_a_batch_claims_each_unit_once_and_refuses_only_what_it_must(redis_url: str) -> None:
    pipeline = build_pipeline(parse_config(THUMBNAILS_ONLY, "t.yaml"), "t.yaml")
    ledger = Ledger(connect(redis_url))
    dispatcher = CeleryDispatcher(create_celery(redis_url, pipeline))
    intake = Intake(pipeline, ledger, dispatcher.enqueue, dispatcher.stage)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    intake.accept(event("uploads/probe.jpg"))
    params_hash = ledger.invocations.for_object("media", "uploads/probe.jpg")[0].params_hash
    # An earlier delivery of `stuck.jpg` claimed its work and never recorded it (not yet an orphan).
    plant_claim(
        client, keys.dedup(dedup_key("media", "uploads/stuck.jpg", "e1", "thumbnail", params_hash)), 1
    )
    notes = [
        Notification(event("uploads/a.jpg")),
        Notification(event("uploads/a.jpg")),  # the same upload twice in one batch
        Notification(event("uploads/stuck.jpg")),
        Notification(event("elsewhere/b.jpg")),  # no rule
        Notification(event("uploads/c.jpg")),
    ]
    first, again, stuck, unrouted, last = intake.accept_many(notes)
    assert isinstance(first, EventRecord) and first.status == "accepted"
    assert isinstance(again, EventRecord) and again.status == "duplicate"
    assert again.invocations == first.invocations
    assert isinstance(stuck, BrokerUnavailable) and "has not recorded it yet" in str(stuck)
    assert isinstance(unrouted, EventRecord) and unrouted.status == "ignored"
    assert isinstance(last, EventRecord) and last.status == "accepted"
    assert client.llen("fn.thumbnail") == 3  # probe, a, c: one message per unit of work
    queued = {inv.key for inv in ledger.invocations.query(status=Status.QUEUED)}
    assert queued == {"uploads/probe.jpg", "uploads/a.jpg", "uploads/c.jpg"}
    assert ledger.events.get(first.id) == first and ledger.events.get(again.id) == again
