"""The ledger: events, invocations, attempts, timings, outputs and errors, kept in Redis.

A package of small stores sharing one client: `invocations`, `events`, `claims` (dedup, execution
lease, slots), `outbox` (and the per-upload join), `workers`, `flags` and `stats`. `keys` names
every Redis key; Lua scripts live in `scripts/`.
"""

from __future__ import annotations

import redis

from pipeline.invocation import Invocation
from pipeline.ledger.claims import Claims
from pipeline.ledger.events import EventStore
from pipeline.ledger.invocations import InvocationStore
from pipeline.ledger.outbox import Outbox
from pipeline.ledger.records import AttemptRecord, EventRecord, WorkerInfo
from pipeline.ledger.workers import FunctionFlags, Stats, Workers

__all__ = ["AttemptRecord", "EventRecord", "Ledger", "WorkerInfo", "connect"]

DEFAULT_RETENTION_S = 7 * 86400


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=5.0, socket_connect_timeout=2.0, health_check_interval=30, decode_responses=True
    )


class Ledger:
    def __init__(self, client: redis.Redis, retention_seconds: float = DEFAULT_RETENTION_S) -> None:
        self.retention = int(retention_seconds)
        self._client = client
        self.outbox = Outbox(client, self.retention)
        self.invocations = InvocationStore(client, self.retention, self.outbox)
        self.events = EventStore(client, self.retention)
        self.claims = Claims(client, self.retention)
        self.workers = Workers(client)
        self.flags = FunctionFlags(client)
        self.stats = Stats(client)

    def record_intake(self, invs: list[Invocation], event: EventRecord) -> None:
        """Record a notification and the invocations it started in one transaction, with the
        upload's join set: it is complete before any of them can finish, so `object.processed`
        cannot fire while some are still to come."""
        pipe = self._client.pipeline(transaction=True)
        if invs:
            self.outbox.open_join(pipe, event.id, [inv.id for inv in invs])
        self.events.add(pipe, event)
        for inv in invs:
            self.invocations.add(pipe, inv)
        pipe.execute()

    def ping(self) -> bool:
        return bool(self._client.ping())
