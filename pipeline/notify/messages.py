"""Webhook messages and their delivery attempts, kept in Redis next to the ledger.

A message is one event for one subscription. Its id is the `webhook-id` header: the same on every
attempt and on manual redelivery, so receivers can deduplicate. It is derived from what the message
is about, so announcing the same outcome twice (a crash between announcing and recording) cannot
create a second message.

Keys (named in `pipeline.ledger.keys`): a hash of JSON fields per message; a list of its attempts;
sorted sets by creation (all, per subscription, per object); the `due` sorted set of pending
message ids by the time of their next attempt (an attempt in flight holds its message's score a
lease ahead, so a worker lost mid-send means a retry, never a lost message).
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Literal

import redis
from pydantic import BaseModel, Field

from pipeline.event_types import EventType
from pipeline.ledger import keys
from pipeline.ledger.json_hash import JsonHash, encode
from pipeline.ledger.lua import script

MessageState = Literal["pending", "delivered", "failed"]
SNIPPET_CHARS = 500
ATTEMPTS_KEPT = 100


class Attempt(BaseModel):
    at: float
    status_code: int | None = None
    latency_ms: float
    response: str = Field(default="", description=f"First {SNIPPET_CHARS} characters of the body.")
    error: str | None = None
    next_attempt_at: float | None = None


class Message(BaseModel):
    id: str
    subscription_id: str
    event_type: EventType
    body: str = Field(description="The exact JSON sent, byte for byte the same on every attempt.")
    bucket: str
    key: str
    created_at: float = Field(default_factory=time.time)
    state: MessageState = "pending"
    attempts: int = 0
    last_status: int | None = None
    next_attempt_at: float | None = None
    delivered_at: float | None = None
    redelivered_at: float | None = Field(default=None, description="Last manual redelivery.")
    error: str | None = None
    url: str = ""
    trace: dict[str, str] | None = Field(
        default=None, description="The trace of the upload it is about (optional tracing)."
    )

    def public(self, attempts: list[Attempt] | None = None) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["body"] = json.loads(self.body)
        if attempts is not None:
            data["attempt_log"] = [a.model_dump(mode="json") for a in attempts]
        return data


_HASH = JsonHash(Message)


def message_id(subscription_id: str, event: EventType, subject: str) -> str:
    raw = f"{subscription_id}\x00{event.value}\x00{subject}"
    return "msg_" + hashlib.sha256(raw.encode()).hexdigest()[:26]


class MessageStore:
    def __init__(self, client: redis.Redis, retention_seconds: float = 7 * 86400) -> None:
        self.r = client
        self.retention = int(retention_seconds)
        self._claim_due = script(client, "claim_due_messages")

    def add(self, msg: Message) -> bool:
        """Store and schedule a new message; False (and nothing changes) if it exists already."""
        name = keys.webhook_message(msg.id)
        if not self.r.hsetnx(name, "id", json.dumps(msg.id)):
            return False
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(name, mapping=_HASH.dump(msg))
        pipe.expire(name, self.retention)
        indexes = (
            keys.WEBHOOK_MESSAGES_INDEX,
            keys.webhook_subscription_index(msg.subscription_id),
            keys.webhook_object_index(msg.bucket, msg.key),
        )
        for index in indexes:
            pipe.zadd(index, {msg.id: msg.created_at})
            pipe.expire(index, self.retention)
        pipe.zremrangebyscore(keys.WEBHOOK_MESSAGES_INDEX, "-inf", time.time() - self.retention)
        pipe.zadd(keys.WEBHOOK_DUE, {msg.id: msg.created_at})
        pipe.execute()
        return True

    def get(self, msg_id: str) -> Message | None:
        raw = self.r.hgetall(keys.webhook_message(msg_id))
        if "body" not in raw:  # missing, or only the HSETNX of a concurrent add so far
            return None
        return _HASH.load(raw)

    def update(self, msg_id: str, **fields: Any) -> None:
        self.r.hset(keys.webhook_message(msg_id), mapping=encode(fields))

    def add_attempt(self, msg_id: str, attempt: Attempt) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.rpush(keys.webhook_attempts(msg_id), attempt.model_dump_json())
        pipe.ltrim(keys.webhook_attempts(msg_id), -ATTEMPTS_KEPT, -1)
        pipe.expire(keys.webhook_attempts(msg_id), self.retention)
        pipe.hincrby(keys.webhook_message(msg_id), "attempts", 1)
        pipe.execute()

    def attempts(self, msg_id: str) -> list[Attempt]:
        raws = self.r.lrange(keys.webhook_attempts(msg_id), 0, -1)
        return [Attempt.model_validate_json(raw) for raw in raws]

    def schedule(self, msg_id: str, at: float) -> None:
        self.r.zadd(keys.WEBHOOK_DUE, {msg_id: at})

    def unschedule(self, msg_id: str) -> None:
        self.r.zrem(keys.WEBHOOK_DUE, msg_id)

    def claim_due(self, lease_seconds: float, batch: int = 100) -> list[str]:
        ids = self._claim_due(keys=[keys.WEBHOOK_DUE], args=[time.time(), lease_seconds, batch])
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    def due_count(self) -> int:
        return int(self.r.zcard(keys.WEBHOOK_DUE))

    def lock_send(self, msg_id: str, seconds: float) -> bool:
        """At most one attempt of a message in flight at a time."""
        return bool(self.r.set(keys.webhook_sending(msg_id), "1", nx=True, px=int(seconds * 1000)))

    def unlock_send(self, msg_id: str) -> None:
        self.r.delete(keys.webhook_sending(msg_id))

    def for_object(self, bucket: str, key: str, limit: int = 100) -> list[Message]:
        ids = self.r.zrange(keys.webhook_object_index(bucket, key), 0, limit - 1)
        msgs = [self.get(str(i)) for i in ids]
        return [m for m in msgs if m is not None and m.bucket == bucket and m.key == key]

    def list(self, subscription_id: str | None = None, limit: int = 50, offset: int = 0) -> list[Message]:
        if subscription_id:
            index = keys.webhook_subscription_index(subscription_id)
        else:
            index = keys.WEBHOOK_MESSAGES_INDEX
        ids = self.r.zrevrange(index, offset, offset + limit - 1)
        msgs = [self.get(str(i)) for i in ids]
        return [m for m in msgs if m is not None]
