"""Invocation records: their status (with one index per status), attempts, progress and verdicts."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import redis

from pipeline.errors import BadRequest
from pipeline.invocation import AttemptRecord, Invocation, OutputRef, Status
from pipeline.ledger import keys
from pipeline.ledger.attempts import ended_attempt
from pipeline.ledger.json_hash import JsonHash, encode
from pipeline.ledger.lua import script
from pipeline.ledger.outbox import Outbox
from pipeline.ledger.packing import pack_hash, read_hash, unpack_hash
from pipeline.ledger.paging import ids, newest_first
from pipeline.ledger.retention import record_ttl
from pipeline.ledger.usage import UsageStore
from pipeline.usage import Measured, Sample

ATTEMPTS_KEPT = 50
THROUGHPUT_KEPT_S = 3 * 3600
_HASH = JsonHash(Invocation)
# A finished record is packed (`packing.py`): these stay plain fields, for the scripts that compare
# the status and for HINCRBY of attempts when it is retried.
KEPT = ("status", "attempts")


def _kept(history: list[AttemptRecord]) -> list[dict[str, Any]]:
    """The earlier attempts a record keeps: the latest ATTEMPTS_KEPT, with the one it runs now."""
    return [a.model_dump(mode="json", exclude_defaults=True) for a in history[-(ATTEMPTS_KEPT - 1) :]]


def _indexes(inv: Invocation) -> tuple[str, ...]:
    return (
        keys.invocation_index(inv.function, inv.status),
        keys.bucket_index(inv.bucket),
        keys.object_index(inv.bucket, inv.key),
    )


def _invocation_id(member: str) -> bool:
    """Not a notification's member of an object's index."""
    return not member.startswith(keys.EVENT_MEMBER)


def _load(inv_id: str, raw: dict[bytes, bytes]) -> Invocation | None:
    """The record from its stored hash (packed or not)."""
    fields = unpack_hash(raw)
    inv = _HASH.load(fields, implied={"id": inv_id})
    if (
        inv is not None
        and inv.version
        and inv.etag is None
        and inv.version_id is None
        and "etag" not in fields
    ):
        inv.etag = inv.version  # left out when it is the version (`_dump`)
    return inv


def _dump(inv: Invocation) -> dict[str, Any]:
    """The hash of a record: packed once it is finished, since it then changes only if retried."""
    fields = _HASH.dump(inv, always=("status",), implied={"id": inv.id})  # transition.lua reads status
    if inv.etag is not None and inv.etag == inv.version and inv.version_id is None:
        del fields["etag"]  # the version is the ETag when there is no version id (`_load`)
    return pack_hash(fields, KEPT) if inv.status.finished else fields


class InvocationStore:
    def __init__(
        self,
        client: redis.Redis,
        retention: int,
        outbox: Outbox,
        usage: UsageStore,
        record_usage: bool = True,
    ) -> None:
        self.r = client
        self.retention = retention
        self.outbox = outbox
        self.usage = usage
        self.record_usage = record_usage
        self._transition = script(client, "transition")

    # --- writing -----------------------------------------------------------------------------
    def add(self, pipe: Any, inv: Invocation) -> None:
        """Queue the commands that record a new invocation on `pipe` (a transaction)."""
        name = keys.invocation(inv.id)
        pipe.hset(name, mapping=_dump(inv))
        pipe.expire(name, record_ttl(self.retention))
        for index in _indexes(inv):
            pipe.zadd(index, {inv.id: inv.created_at})
            pipe.expire(index, self.retention)
        pipe.sadd(keys.INDEXED_FUNCTIONS, inv.function)
        if inv.status.finished:
            self.outbox.announce(pipe, inv.id, inv.status)

    def delete(self, inv: Invocation) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(keys.invocation(inv.id))
        for index in _indexes(inv)[1:]:
            pipe.zrem(index, inv.id)
        for status in Status:  # whichever it is in now
            pipe.zrem(keys.invocation_index(inv.function, status), inv.id)
        pipe.execute()

    def transition(self, inv_id: str, allowed: tuple[Status, ...], to: Status, **fields: Any) -> bool:
        """Set the status to `to` (and `fields`) only if it is one of `allowed`; True if it was."""
        inv = self.get(inv_id)
        return inv is not None and self._transition_of(inv, allowed, to, **fields)

    def _transition_of(self, inv: Invocation, allowed: tuple[Status, ...], to: Status, **fields: Any) -> bool:
        """`transition` of the record `inv` was read from (its function names its indexes)."""
        done = self._transition(
            keys=[keys.invocation(inv.id)],
            args=[keys.invocation_index_prefix(inv.function), inv.id, to.value, json.dumps(encode(fields))]
            + [s.value for s in allowed],
        )
        return bool(done)

    def _update(
        self,
        inv: Invocation,
        status: Status | None,
        *,
        announce: bool = False,
        counted: Sample | None = None,
        **fields: Any,
    ) -> None:
        """Change fields (and the status, with its index) of the record `inv` was read from, in one
        transaction, which also counts the usage of an attempt that ended."""
        pipe = self.r.pipeline(transaction=True)
        self._queue_update(pipe, inv.id, status, inv, announce=announce, counted=counted, **fields)
        pipe.execute()

    def _queue_update(
        self,
        pipe: Any,
        inv_id: str,
        status: Status | None,
        was: Invocation | None,
        *,
        announce: bool = False,
        counted: Sample | None = None,
        stored: dict[bytes, bytes] | None = None,
        **fields: Any,
    ) -> None:
        """`_update`'s commands. With the `stored` hash, the record is written whole, packed. `was`
        is the record as read before (its function and creation place it in the indexes)."""
        if status is not None:
            fields["status"] = status.value
        if status is not None and was is not None:
            for other in Status:
                pipe.zrem(keys.invocation_index(was.function, other), inv_id)
            index = keys.invocation_index(was.function, status)
            pipe.zadd(index, {inv_id: was.created_at})
            pipe.expire(index, self.retention)
        inv = was if stored else None
        if inv is not None:
            record = _dump(Invocation.model_validate({**inv.model_dump(), **fields}))
            if stale := [name for name in stored or {} if name.decode() not in record]:
                pipe.hdel(keys.invocation(inv_id), *stale)  # never `status`: the TTL stays
            pipe.hset(keys.invocation(inv_id), mapping=record)
        else:
            pipe.hset(keys.invocation(inv_id), mapping=encode(fields))
        if announce and status is not None:
            self.outbox.announce(pipe, inv_id, status)
            pipe.publish(keys.finished_channel(inv_id), status.value)
        if counted is not None:
            self.usage.record(pipe, counted)

    def _set(self, inv_id: str, field: str, value: Any) -> None:
        self.r.hset(keys.invocation(inv_id), field, json.dumps(value))

    def start_attempt(self, inv_id: str, worker: str) -> Invocation | None:
        """Mark an attempt as running. Returns None if the invocation is unknown or already finished,
        so a redelivered message for finished work does nothing."""
        inv = self.get(inv_id)
        if inv is None or inv.status.finished:
            return None
        now = time.time()
        fields: dict[str, Any] = {}
        if inv.status == Status.RUNNING and (cut := inv.latest_attempt("interrupted")):
            # Still running: its worker died mid-run and the message came back (only the holder of
            # the execution lease gets here).
            fields["earlier_attempts"] = _kept([*inv.earlier_attempts, cut])
        attempts = int(self.r.hincrby(keys.invocation(inv_id), "attempts", 1))
        sent = inv.enqueued_at or inv.created_at
        wait_ms = round(max(0.0, now - sent) * 1000, 1)
        self._update(
            inv, Status.RUNNING, started_at=now, worker=worker, error=None, queue_wait_ms=wait_ms, **fields
        )
        return inv.model_copy(
            update={
                "attempts": attempts,
                "status": Status.RUNNING,
                "started_at": now,
                "queue_wait_ms": wait_ms,
            }
        )

    def set_progress(self, inv_id: str, percent: float, speed: float | None) -> None:
        self._set(
            inv_id, "progress", {"percent": round(percent, 1), "speed": speed, "at": round(time.time(), 3)}
        )

    def mark_enqueued(self, inv_id: str, due_in: float = 0.0) -> None:
        """Its message was sent now, to be taken in `due_in` seconds."""
        self._set(inv_id, "enqueued_at", time.time() + due_in)

    def set_media(self, inv_id: str, media: dict[str, Any]) -> None:
        self._set(inv_id, "media", media)

    def set_callback(self, inv_id: str, url: str) -> None:
        self._set(inv_id, "callback_url", url)

    def requeue(
        self, inv_id: str, error: str, *, due_in: float = 0.0, measured: Measured | None = None
    ) -> None:
        """An attempt failed and the invocation runs again after `due_in` seconds."""
        now = time.time()
        raw = read_hash(self.r, keys.invocation(inv_id))
        stored = unpack_hash(raw)
        ended = ended_attempt(stored, "retried", now, measured, self.record_usage)
        inv = _load(inv_id, raw)
        if inv is None:
            return
        fields: dict[str, Any] = {}
        if cut := inv.latest_attempt("retrying"):
            cut.finished_at, cut.error = now, error
            cut.duration_ms = ended.fields["duration_ms"]
            fields["earlier_attempts"] = _kept([*inv.earlier_attempts, cut])
        self._update(
            inv, Status.QUEUED, error=error, enqueued_at=now + due_in, counted=ended.sample, **fields
        )

    def finish(
        self,
        inv_id: str,
        status: Status,
        *,
        outputs: list[OutputRef] | None = None,
        error: str | None = None,
        measured: Measured | None = None,
    ) -> None:
        now = time.time()
        name = keys.invocation(inv_id)
        with self.r.pipeline(transaction=True) as pipe:
            # The record is read and rewritten packed unless something changes it meanwhile (a
            # last progress report): then the new fields are written as they are, unpacked.
            pipe.watch(name)  # type: ignore[no-untyped-call]
            stored = read_hash(pipe, name)
            ended = ended_attempt(unpack_hash(stored), status.value, now, measured, self.record_usage)
            fields = dict(
                finished_at=now,
                outputs=[o.model_dump(mode="json") for o in outputs or []],
                error=error,
                **ended.fields,
            )
            was = _load(inv_id, stored)
            pipe.multi()
            self._queue_update(
                pipe, inv_id, status, was, announce=True, counted=ended.sample, stored=stored, **fields
            )
            try:
                pipe.execute()
            except redis.WatchError:
                if was is not None:
                    self._update(was, status, announce=True, counted=ended.sample, **fields)
        # Per-minute counts of finished invocations, for the dashboard's throughput chart.
        minute = int(now // 60)
        pipe = self.r.pipeline(transaction=False)
        pipe.incr(keys.stat(status.value))
        if ended.backfill:  # a backfill's progress (`ledger/backfill.py`)
            pipe.incr(keys.stat("backfill_done"))
        pipe.hincrby(keys.throughput(minute), status.value, 1)
        pipe.expire(keys.throughput(minute), THROUGHPUT_KEPT_S)
        pipe.execute()

    def reset_for_retry(self, inv_id: str, allowed: tuple[Status, ...]) -> Invocation | None:
        """Atomically put a finished invocation back to queued with a fresh attempt budget.
        None if it is unknown or no longer in an `allowed` state (someone else retried it)."""
        inv = self.get(inv_id)
        if inv is None:
            return None
        fields: dict[str, Any] = {"attempts": 0, "error": None, "finished_at": None, "duration_ms": None}
        # Its attempts so far stay in its history; the next one is numbered 1 again.
        fields["earlier_attempts"] = _kept(inv.attempt_history())
        if not self._transition_of(inv, allowed, Status.QUEUED, **fields):
            return None
        return self.get(inv_id)

    # --- reading -----------------------------------------------------------------------------
    def get(self, inv_id: str) -> Invocation | None:
        return _load(inv_id, read_hash(self.r, keys.invocation(inv_id)))

    def get_many(self, inv_ids: Iterable[str]) -> list[Invocation]:
        inv_ids = [i for i in inv_ids if _invocation_id(i)]
        pipe = self.r.pipeline(transaction=False)
        for inv_id in inv_ids:
            read_hash(pipe, keys.invocation(inv_id))
        found = (_load(inv_id, raw) for inv_id, raw in zip(inv_ids, pipe.execute(), strict=True))
        return [inv for inv in found if inv is not None]

    def attempts(self, inv_id: str) -> list[AttemptRecord]:
        """Its attempts, oldest first (kept in its record)."""
        inv = self.get(inv_id)
        return inv.attempt_history() if inv is not None else []

    def functions(self) -> list[str]:
        """The functions that have invocations in the ledger (or had, within its retention)."""
        return sorted(ids(self.r.smembers(keys.INDEXED_FUNCTIONS)))

    def indexes(self, status: str | None = None, function: str | None = None) -> list[str]:
        """The indexes that together list the invocations of `status` and `function` (either or
        both may be None: all)."""
        functions = [function] if function else self.functions()
        statuses = [status] if status else [s.value for s in Status]
        return [keys.invocation_index(fn, st) for fn in functions for st in statuses]

    def ids_with_status(self, status: Status) -> list[str]:
        pipe = self.r.pipeline(transaction=False)
        for index in self.indexes(status):
            pipe.zrange(index, 0, -1)
        return [inv_id for found in pipe.execute() for inv_id in ids(found)]

    def count_with_status(self, status: Status) -> int:
        pipe = self.r.pipeline(transaction=False)
        for index in self.indexes(status):
            pipe.zcard(index)
        return sum(int(n) for n in pipe.execute())

    def counts(self) -> dict[str, int]:
        """Invocations by status, and notifications that were duplicates."""
        functions = self.functions()
        pipe = self.r.pipeline(transaction=False)
        for fn in functions:
            for status in Status:
                pipe.zcard(keys.invocation_index(fn, status))
        pipe.get(keys.stat("duplicates"))
        *by_index, duplicates = pipe.execute()
        statuses = [s.value for s in Status]
        out = dict.fromkeys(statuses, 0)
        for i, n in enumerate(by_index):  # function by function, each status in turn
            out[statuses[i % len(statuses)]] += int(n)
        out["duplicates"] = int(duplicates or 0)
        return out

    def throughput(self, minutes: int = 60) -> list[tuple[int, dict[str, int]]]:
        """Finished invocations per minute by status, oldest first (minute = Unix time // 60)."""
        last = int(time.time() // 60)
        span = list(range(last - minutes + 1, last + 1))
        pipe = self.r.pipeline(transaction=False)
        for minute in span:
            pipe.hgetall(keys.throughput(minute))
        return [(m, {k: int(v) for k, v in raw.items()}) for m, raw in zip(span, pipe.execute(), strict=True)]

    def query(
        self,
        *,
        status: str | None = None,
        function: str | None = None,
        bucket: str | None = None,
        key: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Invocation]:
        """Newest first. Uses the most selective index, then filters the rest in Python. A key
        needs its bucket (the per-object index); a key alone would mean reading the whole ledger."""
        if key is not None and bucket is None:
            raise BadRequest("a key filter needs its bucket")
        index: str | list[str]
        if bucket is not None and key is not None:
            index = keys.object_index(bucket, key)  # its notifications too: no record loads for them
        elif status or function or not bucket:
            index = self.indexes(status, function)
        else:
            index = keys.bucket_index(bucket)

        def keep(inv: Invocation) -> bool:
            return not (
                (status and inv.status != status)
                or (function and inv.function != function)
                or (bucket and inv.bucket != bucket)
                or (key is not None and inv.key != key)
            )

        return newest_first(self.r, index, self.get_many, keep, limit, offset)

    def for_object(self, bucket: str, key: str) -> list[Invocation]:
        found = ids(self.r.zrange(keys.object_index(bucket, key), 0, -1))
        return [inv for inv in self.get_many(found) if inv.key == key and inv.bucket == bucket]
