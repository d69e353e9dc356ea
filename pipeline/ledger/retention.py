"""Retention: records older than the retention period removed with their index entries, in
bounded batches, so no single Redis command grows with the ledger.

Each store's records also carry a TTL, a day longer than the retention (`record_ttl`): the safety
net if no sweeper runs. The sweeper, not the TTL, normally removes a record, because only it knows
which indexes name the record (an index entry whose record expired first would stay until the
index's own TTL, and be read and skipped by every query meanwhile).

One sweeper at a time (a lock); the webhook worker's scheduler runs it every minute.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis

from pipeline.invocation import Status, dedup_key
from pipeline.ledger import keys
from pipeline.ledger.lua import script
from pipeline.ledger.packing import read_hash, read_value, unpack, unpack_hash
from pipeline.ledger.paging import ids

# At most this many records per command: a ZREM of 500 members from a sorted set of millions, or
# 500 DELs, each take a millisecond or two.
BATCH = 500
GRACE_S = 86400
LOCK_S = 120


# What the sweeper reads of an invocation: where it is indexed, and what its dedup claim is made of.
_SWEPT_FIELDS = ("status", "function", "bucket", "key", "version", "params_hash")


def record_ttl(retention: int) -> int:
    """The TTL of a record: a day past its retention, after which the sweeper has removed it."""
    return retention + GRACE_S


@dataclass
class Swept:
    invocations: int = 0
    events: int = 0
    runs: int = 0
    batches: int = 0
    seconds: float = 0.0
    slowest_batch_s: float = 0.0
    done: bool = True  # False when `max_batches` stopped it with more left

    def as_dict(self) -> dict[str, float | int | bool]:
        return dict(self.__dict__)


@dataclass
class _Kind:
    name: str  # also the `Swept` field that counts it
    index: str  # the index the sweeper walks, by creation time
    fields: Callable[[redis.client.Pipeline, str], None]  # queue what it needs to know of one record
    drop: Callable[[redis.client.Pipeline, str, object], None]  # queue the removals for one record


class Retention:
    def __init__(self, client: redis.Redis, retention: int) -> None:
        self.r = client
        self.retention = retention
        self._forget_claim = script(client, "forget_claim")

    def sweep(self, now: float | None = None, max_batches: int | None = None) -> Swept:
        """Remove what is older than the retention. Returns what was removed (nothing when another
        sweeper holds the lock)."""
        token = uuid.uuid4().hex
        swept = Swept()
        if not self.r.set(keys.RETENTION_LOCK, token, nx=True, ex=LOCK_S):
            return swept
        started = time.monotonic()
        cutoff = (now or time.time()) - self.retention
        try:
            for kind in self._kinds():
                while max_batches is None or swept.batches < max_batches:
                    batch_started = time.monotonic()
                    found = ids(self.r.zrangebyscore(kind.index, "-inf", cutoff, start=0, num=BATCH))
                    if not found:
                        break
                    self._drop(kind, found)
                    setattr(swept, kind.name, getattr(swept, kind.name) + len(found))
                    swept.batches += 1
                    swept.slowest_batch_s = max(swept.slowest_batch_s, time.monotonic() - batch_started)
                    self.r.expire(keys.RETENTION_LOCK, LOCK_S)
                else:
                    swept.done = False
                    break
        finally:
            if self.r.get(keys.RETENTION_LOCK) == token:
                self.r.delete(keys.RETENTION_LOCK)
        swept.seconds = time.monotonic() - started
        return swept

    def _drop(self, kind: _Kind, found: list[str]) -> None:
        read = self.r.pipeline(transaction=False)
        for record_id in found:
            kind.fields(read, record_id)
        facts = read.execute()
        write = self.r.pipeline(transaction=False)
        for record_id, known in zip(found, facts, strict=True):
            kind.drop(write, record_id, known)
        write.zrem(kind.index, *found)
        write.execute()

    def _kinds(self) -> list[_Kind]:
        # Invocations are walked index by index: each is in the one of its function and status.
        functions = sorted(ids(self.r.smembers(keys.INDEXED_FUNCTIONS)))
        return [
            *(
                _Kind("invocations", keys.invocation_index(fn, st), _invocation_fields, self._drop_invocation)
                for fn in functions
                for st in Status
            ),
            _Kind("events", keys.EVENTS_INDEX, _event_fields, _drop_event),
            _Kind("runs", keys.RUNS_INDEX, _run_fields, self._drop_run),
        ]

    def _forget(self, pipe: redis.client.Pipeline, claim: keys.Claim, claimant: str) -> None:
        """The claim goes with its record (unless another claimant took it over since)."""
        self._forget_claim(keys=[claim.shard], args=[claim.field, claimant], client=pipe)

    def _drop_invocation(self, pipe: redis.client.Pipeline, inv_id: str, known: object) -> None:
        fields = unpack_hash(known) if isinstance(known, dict) else {}
        found = {name: json.loads(fields[name]) for name in _SWEPT_FIELDS if name in fields}
        status, function, bucket, key = (found.get(n) for n in ("status", "function", "bucket", "key"))
        # The index walked names it; so does its current one, should its status have changed since.
        if function and status:
            pipe.zrem(keys.invocation_index(str(function), str(status)), inv_id)
        if bucket:
            pipe.zrem(keys.bucket_index(str(bucket)), inv_id)
            if key is not None:
                pipe.zrem(keys.object_index(str(bucket), str(key)), inv_id)
        if len(found) == len(_SWEPT_FIELDS):  # all known (a flow step has no claim of its own: none found)
            unit = dedup_key(
                str(bucket), str(key), str(found["version"]), str(function), str(found["params_hash"])
            )
            self._forget(pipe, keys.dedup(unit), inv_id)
        pipe.delete(keys.invocation(inv_id))

    def _drop_run(self, pipe: redis.client.Pipeline, run_id: str, known: object) -> None:
        if isinstance(known, str):
            run = json.loads(known)
            pipe.zrem(keys.run_status_index(run["status"]), run_id)
            pipe.zrem(keys.run_flow_index(run["flow"]), run_id)
            pipe.zrem(keys.run_object_index(run["bucket"], run["key"]), run_id)
            claim = keys.run_claim(run.get("rule", ""), run["bucket"], run["key"], run.get("version", ""))
            self._forget(pipe, claim, run_id)
        pipe.delete(keys.run(run_id))


def _invocation_fields(pipe: redis.client.Pipeline, inv_id: str) -> None:
    read_hash(pipe, keys.invocation(inv_id))


def _event_fields(pipe: redis.client.Pipeline, event_id: str) -> None:
    read_value(pipe, keys.event(event_id))


def _drop_event(pipe: redis.client.Pipeline, event_id: str, known: object) -> None:
    if isinstance(known, bytes):
        record = json.loads(unpack(known))
        pipe.zrem(keys.object_index(record["bucket"], record["key"]), keys.object_event(event_id))
        pipe.delete(keys.join(event_id))
    pipe.delete(keys.event(event_id))


def _run_fields(pipe: redis.client.Pipeline, run_id: str) -> None:
    pipe.get(keys.run(run_id))
