"""Notification records: what arrived, what it started, and why not if nothing."""

from __future__ import annotations

import time
from typing import Any

import redis

from pipeline.ledger import keys
from pipeline.ledger.invocations import ids
from pipeline.ledger.records import EventRecord

OBJECT_EVENTS_SHOWN = 200


class EventStore:
    def __init__(self, client: redis.Redis, retention: int) -> None:
        self.r = client
        self.retention = retention

    def add(self, pipe: Any, record: EventRecord) -> None:
        """Queue the commands that record a notification on `pipe` (a transaction)."""
        pipe.set(keys.event(record.id), record.model_dump_json(), ex=self.retention)
        pipe.zadd(keys.EVENTS_INDEX, {record.id: record.received_at})
        pipe.zremrangebyscore(keys.EVENTS_INDEX, "-inf", time.time() - self.retention)
        by_object = keys.object_events_index(record.bucket, record.key)
        pipe.zadd(by_object, {record.id: record.received_at})
        pipe.expire(by_object, self.retention)
        pipe.incr(keys.stat(f"events:{record.status}"))

    def record(self, record: EventRecord) -> None:
        pipe = self.r.pipeline(transaction=True)
        self.add(pipe, record)
        pipe.execute()

    def amend(self, record: EventRecord) -> None:
        """Rewrite a record already counted and indexed (e.g. its work could not be queued)."""
        self.r.set(keys.event(record.id), record.model_dump_json(), ex=self.retention)

    def get(self, event_id: str) -> EventRecord | None:
        raw = self.r.get(keys.event(event_id))
        return EventRecord.model_validate_json(raw) if raw else None

    def _load(self, event_ids: list[str]) -> list[EventRecord]:
        raws = self.r.mget([keys.event(i) for i in event_ids]) if event_ids else []
        return [EventRecord.model_validate_json(raw) for raw in raws if raw]

    def recent(self, limit: int = 50, offset: int = 0) -> list[EventRecord]:
        """Newest first."""
        return self._load(ids(self.r.zrevrange(keys.EVENTS_INDEX, offset, offset + limit - 1)))

    def count(self) -> int:
        return int(self.r.zcard(keys.EVENTS_INDEX))

    def for_object(self, bucket: str, key: str) -> list[EventRecord]:
        """Oldest first."""
        found = ids(self.r.zrange(keys.object_events_index(bucket, key), 0, OBJECT_EVENTS_SHOWN - 1))
        return [e for e in self._load(found) if e.bucket == bucket and e.key == key]
