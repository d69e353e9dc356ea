"""Notification records: what arrived, what it started, and why not if nothing."""

from __future__ import annotations

import hashlib
from typing import Any

import redis

from pipeline.ledger import keys
from pipeline.ledger.packing import EVENT, NOTIFICATION, pack, read_values, unpack
from pipeline.ledger.paging import ids
from pipeline.ledger.records import EventRecord
from pipeline.ledger.retention import record_ttl

OBJECT_EVENTS_SHOWN = 200


def _dump(record: EventRecord) -> bytes:
    return pack(record.model_dump_json(exclude_defaults=True), EVENT)


class EventStore:
    def __init__(self, client: redis.Redis, retention: int) -> None:
        self.r = client
        self.retention = retention

    def add(self, pipe: Any, record: EventRecord) -> None:
        """Queue the commands that record a notification on `pipe` (a transaction). Its raw body
        is kept once, under its digest, however many of its records are recorded."""
        if record.raw:
            digest = hashlib.sha256(record.raw.encode()).hexdigest()[:32]
            pipe.set(
                keys.raw_notification(digest),
                pack(record.raw, NOTIFICATION),
                nx=True,
                ex=record_ttl(self.retention),
            )
            record = record.model_copy(update={"raw": "", "raw_digest": digest})
        pipe.set(keys.event(record.id), _dump(record), ex=record_ttl(self.retention))
        pipe.zadd(keys.EVENTS_INDEX, {record.id: record.received_at})
        by_object = keys.object_index(record.bucket, record.key)
        pipe.zadd(by_object, {keys.object_event(record.id): record.received_at})
        pipe.expire(by_object, self.retention)
        pipe.incr(keys.stat(f"events:{record.status}"))

    def record(self, record: EventRecord) -> None:
        pipe = self.r.pipeline(transaction=True)
        self.add(pipe, record)
        pipe.execute()

    def amend(self, record: EventRecord) -> None:
        """Rewrite a record already counted and indexed (e.g. its work could not be queued)."""
        stored = self.get(record.id)
        digest = stored.raw_digest if stored else ""
        update = {"raw": "", "raw_digest": digest} if digest else {}
        self.r.set(
            keys.event(record.id),
            _dump(record.model_copy(update=update)),
            ex=record_ttl(self.retention),
        )

    def get(self, event_id: str) -> EventRecord | None:
        found = self._load([event_id])
        return found[0] if found else None

    def _load(self, event_ids: list[str]) -> list[EventRecord]:
        raws = read_values(self.r, [keys.event(i) for i in event_ids])
        records = [EventRecord.model_validate_json(unpack(raw)) for raw in raws if raw]
        digests = sorted({r.raw_digest for r in records if r.raw_digest})
        found = read_values(self.r, [keys.raw_notification(d) for d in digests])
        bodies = {d: unpack(raw) for d, raw in zip(digests, found, strict=True) if raw}
        return [
            r.model_copy(update={"raw": bodies.get(r.raw_digest) or ""}) if r.raw_digest else r
            for r in records
        ]

    def recent(self, limit: int = 50, offset: int = 0) -> list[EventRecord]:
        """Newest first."""
        return self._load(ids(self.r.zrevrange(keys.EVENTS_INDEX, offset, offset + limit - 1)))

    def count(self) -> int:
        return int(self.r.zcard(keys.EVENTS_INDEX))

    def for_object(self, bucket: str, key: str) -> list[EventRecord]:
        """Oldest first (the first OBJECT_EVENTS_SHOWN)."""
        listed = ids(self.r.zrange(keys.object_index(bucket, key), 0, -1))  # by arrival
        events = [m[len(keys.EVENT_MEMBER) :] for m in listed if m.startswith(keys.EVENT_MEMBER)]
        found = events[:OBJECT_EVENTS_SHOWN]
        return [e for e in self._load(found) if e.bucket == bucket and e.key == key]
