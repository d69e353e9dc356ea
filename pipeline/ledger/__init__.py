"""The ledger: events, invocations, attempts, timings, outputs and errors, kept in Redis.

A package of small stores sharing one client: `invocations`, `events`, `claims` (dedup, execution
lease, slots), `usage` (counters per attempt), `outbox` (and the per-upload join), `runs` (flow
runs), `workers`, `flags` and `stats`. `keys` names every Redis key; Lua scripts live in `scripts/`.
"""

from __future__ import annotations

from typing import Any

import redis

from pipeline.flows.model import Run, RunStatus
from pipeline.invocation import Invocation
from pipeline.ledger import endpoints, keys
from pipeline.ledger.backfill import BackfillProgress
from pipeline.ledger.batch import ScriptedWrites
from pipeline.ledger.claims import Claims
from pipeline.ledger.events import EventStore
from pipeline.ledger.invocations import InvocationStore
from pipeline.ledger.outbox import Outbox
from pipeline.ledger.records import AttemptRecord, EventRecord, WorkerInfo
from pipeline.ledger.retention import Retention
from pipeline.ledger.runs import RunStore
from pipeline.ledger.usage import UsageStore
from pipeline.ledger.workers import FunctionFlags, Stats, Workers

__all__ = ["AttemptRecord", "EventRecord", "Ledger", "WorkerInfo", "connect"]

DEFAULT_RETENTION_S = 7 * 86400


# Redis keeps a hash whose values are all at most this long as one compact listpack. An invocation
# record is ~15-30 short JSON values, but its outputs, params or error can pass the default 64
# bytes, which turns the whole record into a hash table three times the size.
COMPACT_HASH_VALUE = 1024


def tune(client: redis.Redis) -> str | None:
    """Raise `hash-max-listpack-value` (alias `hash-max-ziplist-value`, also understood by Redis
    6) to COMPACT_HASH_VALUE if it is lower. Returns why not when the server refuses CONFIG (a
    managed Redis: set it there, docs/deploy.md)."""
    name = "hash-max-ziplist-value"
    try:
        current = int(client.config_get(name).get(name) or 0)
        if current < COMPACT_HASH_VALUE:
            client.config_set(name, COMPACT_HASH_VALUE)
    except redis.ResponseError as exc:
        return f"{name} not raised to {COMPACT_HASH_VALUE} ({exc}): records take about 3x the memory"
    return None


def connect(url: str) -> redis.Redis:
    """A client for `url`: a Redis URL or a Sentinel one (`endpoints`)."""
    return endpoints.connect(url)


class Ledger:
    def __init__(
        self,
        client: redis.Redis,
        retention_seconds: float = DEFAULT_RETENTION_S,
        *,
        record_usage: bool = True,
    ) -> None:
        self.retention = int(retention_seconds)
        self._client = client
        self.outbox = Outbox(client, self.retention)
        self.usage = UsageStore(client)
        self.invocations = InvocationStore(client, self.retention, self.outbox, self.usage, record_usage)
        self.events = EventStore(client, self.retention)
        self.runs = RunStore(client, self.retention)
        self.claims = Claims(client, self.retention)
        self.workers = Workers(client)
        self.flags = FunctionFlags(client)
        self.stats = Stats(client)
        self.retention_sweeper = Retention(client, self.retention)
        self.backfill = BackfillProgress(client)

    def batch(self) -> ScriptedWrites:
        """Writes that go together, applied by one script call (`batch.py`)."""
        return ScriptedWrites(self._client)

    def stage_intake(
        self, pipe: Any, invs: list[Invocation], event: EventRecord, runs: list[Run] | None = None
    ) -> None:
        """Queue on `pipe` (a transaction, or the intake's `batch()`) the records of a
        notification and of the invocations and flow runs it started, with the upload's join set
        (its single-step invocations and its runs): it is complete before any of them can finish,
        so `object.processed` cannot fire while some are still to come. `invs` includes the first
        steps of the runs."""
        runs = runs or []
        members = [inv.id for inv in invs if inv.run_id is None]
        members += [keys.join_member_for_run(run.id) for run in runs]
        if members:
            self.outbox.open_join(pipe, event.id, members)
        self.events.add(pipe, event)
        for run in runs:
            self.runs.add(pipe, run)
            if run.status != RunStatus.RUNNING:  # every first step was skipped at once
                self.outbox.announce_run(pipe, run.id, run.status.value)
        for inv in invs:
            self.invocations.add(pipe, inv)

    def undo_intake(
        self,
        claimed: list[tuple[Invocation, str]],
        started: list[tuple[Run, list[Invocation]]],
        record: EventRecord,
        exc: Exception,
    ) -> None:
        """Undo what the intake recorded for work the queue then refused (a run is undone whole,
        its first message sent or not), so the sender's retry is new work, not a duplicate; the
        notification's record says what happened."""
        for inv, claim in claimed:
            self.invocations.delete(inv)
            self.claims.release(keys.dedup(claim))
            self.outbox.leave_join(record.id, inv.id)
        for run, invs in started:
            for inv in invs:
                self.invocations.delete(inv)
            self.runs.delete(run)
            self.claims.release(RunStore.claim_key(run))
            self.outbox.leave_join(record.id, keys.join_member_for_run(run.id))
        undone = {inv.id for inv, _ in claimed} | {run.id for run, _ in started}
        record.invocations = [x for x in record.invocations if x not in undone]
        record.runs = [x for x in record.runs if x not in undone]
        record.status = "unavailable"
        record.reason = f"the queue refused the work, the sender will retry: {exc}"
        self.events.amend(record)

    def replicated(self, replicas: int, timeout_ms: int) -> int:
        """How many replicas have every write made so far, waiting up to `timeout_ms` (WAIT). The
        write before the WAIT is on the same connection and after this process's other writes,
        and replication keeps the master's order: its acknowledgement covers them all."""
        pipe = self._client.pipeline(transaction=False)
        pipe.incr(keys.stat("replication_checks"))
        pipe.execute_command("WAIT", replicas, timeout_ms)  # type: ignore[no-untyped-call]
        return int(pipe.execute()[-1])

    def ping(self) -> bool:
        return bool(self._client.ping())
