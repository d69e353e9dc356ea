"""Webhook messages and their delivery attempts, kept in Redis next to the ledger.

A message is one event for one subscription. Its id is the `webhook-id` header: the same on every
attempt and on manual redelivery, so receivers can deduplicate. It is derived from what the message
is about, so announcing the same outcome twice (a crash between announcing and recording) cannot
create a second message.

Keys (under `pl:wh:`): `msg:<id>` hash of JSON fields; `att:<id>` list of attempts;
`idx:all` and `idx:sub:<sub>` sorted sets by creation; `due` sorted set of pending message ids by
the time of their next attempt (an attempt in flight holds its message's score a lease ahead, so a
worker lost mid-send means a retry, never a lost message).
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Literal

import redis
from pydantic import BaseModel, Field

from pipeline.ledger import object_digest
from pipeline.notify.payloads import EventType

P = "pl:wh:"
MessageState = Literal["pending", "delivered", "failed"]
SNIPPET_CHARS = 500

# Claim due messages: move each one's score a lease ahead and return them, in one step, so two
# schedulers never take the same message. KEYS: due. ARGV: now, lease seconds, batch size.
_CLAIM_DUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), id) end
return ids
"""


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

    def public(self, attempts: list[Attempt] | None = None) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["body"] = json.loads(self.body)
        if attempts is not None:
            data["attempt_log"] = [a.model_dump(mode="json") for a in attempts]
        return data


def _obj_index(bucket: str, key: str) -> str:
    return f"{P}idx:obj:{object_digest(bucket, key)}"


def message_id(subscription_id: str, event: EventType, subject: str) -> str:
    raw = f"{subscription_id}\x00{event.value}\x00{subject}"
    return "msg_" + hashlib.sha256(raw.encode()).hexdigest()[:26]


class MessageStore:
    def __init__(self, client: redis.Redis, retention_seconds: float = 7 * 86400) -> None:
        self.r = client
        self.retention = int(retention_seconds)
        self._claim_due = client.register_script(_CLAIM_DUE)

    def add(self, msg: Message) -> bool:
        """Store and schedule a new message; False (and nothing changes) if it exists already."""
        name = f"{P}msg:{msg.id}"
        if not self.r.hsetnx(name, "id", json.dumps(msg.id)):
            return False
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(name, mapping={k: json.dumps(v) for k, v in msg.model_dump(mode="json").items()})
        pipe.expire(name, self.retention)
        for index in (f"{P}idx:all", f"{P}idx:sub:{msg.subscription_id}", _obj_index(msg.bucket, msg.key)):
            pipe.zadd(index, {msg.id: msg.created_at})
            pipe.expire(index, self.retention)
        pipe.zremrangebyscore(f"{P}idx:all", "-inf", time.time() - self.retention)
        pipe.zadd(f"{P}due", {msg.id: msg.created_at})
        pipe.execute()
        return True

    def get(self, msg_id: str) -> Message | None:
        raw = self.r.hgetall(f"{P}msg:{msg_id}")
        if not raw or "body" not in raw:
            return None
        return Message.model_validate({k: json.loads(v) for k, v in raw.items() if k in Message.model_fields})

    def update(self, msg_id: str, **fields: Any) -> None:
        self.r.hset(f"{P}msg:{msg_id}", mapping={k: json.dumps(v) for k, v in fields.items()})

    def add_attempt(self, msg_id: str, attempt: Attempt) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.rpush(f"{P}att:{msg_id}", attempt.model_dump_json())
        pipe.ltrim(f"{P}att:{msg_id}", -100, -1)
        pipe.expire(f"{P}att:{msg_id}", self.retention)
        pipe.hincrby(f"{P}msg:{msg_id}", "attempts", 1)
        pipe.execute()

    def attempts(self, msg_id: str) -> list[Attempt]:
        return [Attempt.model_validate_json(raw) for raw in self.r.lrange(f"{P}att:{msg_id}", 0, -1)]

    def schedule(self, msg_id: str, at: float) -> None:
        self.r.zadd(f"{P}due", {msg_id: at})

    def unschedule(self, msg_id: str) -> None:
        self.r.zrem(f"{P}due", msg_id)

    def claim_due(self, lease_seconds: float, batch: int = 100) -> list[str]:
        ids = self._claim_due(keys=[f"{P}due"], args=[time.time(), lease_seconds, batch])
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    def due_count(self) -> int:
        return int(self.r.zcard(f"{P}due"))

    def lock_send(self, msg_id: str, seconds: float) -> bool:
        """At most one attempt of a message in flight at a time."""
        return bool(self.r.set(f"{P}sending:{msg_id}", "1", nx=True, px=int(seconds * 1000)))

    def unlock_send(self, msg_id: str) -> None:
        self.r.delete(f"{P}sending:{msg_id}")

    def for_object(self, bucket: str, key: str, limit: int = 100) -> list[Message]:
        ids = self.r.zrange(_obj_index(bucket, key), 0, limit - 1)
        msgs = [self.get(str(i)) for i in ids]
        return [m for m in msgs if m is not None and m.bucket == bucket and m.key == key]

    def list(self, subscription_id: str | None = None, limit: int = 50, offset: int = 0) -> list[Message]:
        index = f"{P}idx:sub:{subscription_id}" if subscription_id else f"{P}idx:all"
        ids = self.r.zrevrange(index, offset, offset + limit - 1)
        msgs = [self.get(str(i)) for i in ids]
        return [m for m in msgs if m is not None]
