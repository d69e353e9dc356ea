"""The ledger: events, invocations, attempts, timings, outputs and errors, kept in Redis.

Layout (all keys under `pl:`; records expire after the retention period):
- `inv:<id>`            hash, one JSON-encoded value per Invocation field (partial updates are atomic)
- `event:<id>`          JSON of an EventRecord
- `idx:all|status:<s>|fn:<name>|bucket:<b>|obj:<hash>`  sorted sets of invocation ids by creation time
- `idx:events`          sorted set of event ids
- `dedup:<hash>`        the invocation that claimed one unit of work (SET NX)
- `worker:<hostname>`   a worker's heartbeat
- `stat:<name>`         counters
- `outbox`              list of finished invocations not yet announced to webhooks (written in the
                        same transaction as the verdict, so no outcome goes unannounced)
- `join:<event>`        the invocations of one upload still running; `joined:<event>` once all have
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from typing import Any

import redis
from pydantic import BaseModel, Field

from pipeline.invocation import Invocation, OutputRef, Status

P = "pl:"
_FIELDS = tuple(Invocation.model_fields)

# Compare-and-set of an invocation's status, with its indexes, in one atomic step: concurrent
# retries (one by one, or "all dead" racing new failures) can each win an invocation only once.
# KEYS: invocation hash, idx:all. ARGV: prefix, new status, JSON fields, allowed current statuses...
_TRANSITION = """
local raw = redis.call('HGET', KEYS[1], 'status')
if not raw then return 0 end
local current = cjson.decode(raw)
local allowed = false
for i = 4, #ARGV do if ARGV[i] == current then allowed = true end end
if not allowed then return 0 end
local fields = cjson.decode(ARGV[3])
for name, value in pairs(fields) do redis.call('HSET', KEYS[1], name, value) end
redis.call('HSET', KEYS[1], 'status', cjson.encode(ARGV[2]))
local id = string.sub(KEYS[1], string.len(ARGV[1]) + 5)
local created = redis.call('ZSCORE', KEYS[2], id) or 0
redis.call('ZREM', ARGV[1] .. 'idx:status:' .. current, id)
redis.call('ZADD', ARGV[1] .. 'idx:status:' .. ARGV[2], created, id)
return 1
"""

# Renew a lease only if it is still ours. KEYS: lease. ARGV: token, ttl ms.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# One invocation of an upload finished: remove it from the upload's join set. Returns 1 exactly
# once per upload: to the caller that finds the set empty first. KEYS: join, joined. ARGV: id, ttl.
_CLOSE_JOIN = """
redis.call('SREM', KEYS[1], ARGV[1])
if redis.call('SCARD', KEYS[1]) > 0 then return 0 end
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', tonumber(ARGV[2])) then return 1 end
return 0
"""
OUTBOX_CAP = 100_000
# A claim with no invocation record after this long was left by an intake that died mid-call.
ORPHAN_CLAIM_S = 60

# The intake's claims for one notification, in one round trip. KEYS: the disabled-functions set,
# the duplicates counter, then one dedup key per unit of work. ARGV: ttl, orphan age, key prefix,
# then a function name and an invocation id per unit. Returns per unit: 0 (its function is
# disabled), 1 (claimed now), or the id of the invocation that claimed it earlier.
# A claim whose invocation was never recorded (the claimant died between its two round trips) is
# an orphan: once it is older than any intake call can take, the next claimant takes it over.
_CLAIM_ALL = """
local ttl, orphan_age, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local out = {}
for i = 3, #KEYS do
  local fn, id = ARGV[(i - 3) * 2 + 4], ARGV[(i - 3) * 2 + 5]
  if redis.call('SISMEMBER', KEYS[1], fn) == 1 then
    out[#out + 1] = 0
  elseif redis.call('SET', KEYS[i], id, 'NX', 'EX', ttl) then
    out[#out + 1] = 1
  else
    local earlier = redis.call('GET', KEYS[i]) or ''
    local age = ttl - redis.call('TTL', KEYS[i])
    if age > orphan_age and redis.call('EXISTS', prefix .. 'inv:' .. earlier) == 0 then
      redis.call('SET', KEYS[i], id, 'EX', ttl)
      out[#out + 1] = 1
    else
      redis.call('INCR', KEYS[2])
      out[#out + 1] = earlier
    end
  end
end
return out
"""

# Reserved concurrency: a counting semaphore whose holders expire unless renewed, so a killed worker
# frees its slot. KEYS: slots (sorted set token -> expiry ms). ARGV: token, limit, ttl ms.
_TAKE_SLOT = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class EventRecord(BaseModel):
    id: str
    received_at: float
    source: str
    event_name: str
    bucket: str
    key: str
    version: str = ""
    size: int | None = None
    content_type: str | None = None
    status: str = Field(description="accepted | ignored | duplicate")
    reason: str = ""
    invocations: list[str] = Field(default_factory=list)
    duplicates: int = 0
    raw: str = Field(default="", description="The notification as received (first 16 KB), for the dashboard.")


class AttemptRecord(BaseModel):
    """One try of an invocation: who ran it, how long, and how it ended."""

    n: int
    worker: str
    started_at: float
    finished_at: float | None = None
    duration_ms: float | None = None
    outcome: str = "running"
    error: str | None = None


class WorkerInfo(BaseModel):
    hostname: str
    queues: list[str]
    concurrency: int
    pid: int
    started_at: float
    seen_at: float


def object_digest(bucket: str, key: str) -> str:
    """A fixed-length name for one object, for per-object index keys (keys can be 1 KB)."""
    return hashlib.sha256(f"{bucket}\x00{key}".encode()).hexdigest()[:32]


def _obj_index(bucket: str, key: str, kind: str = "obj") -> str:
    """Per-object index of invocations (`obj`) or of notifications (`obj-events`)."""
    return f"{P}idx:{kind}:{object_digest(bucket, key)}"


def _ids(values: Any) -> list[str]:
    """Redis replies as str (decode_responses=True); the client's types also allow bytes."""
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _encode(fields: dict[str, Any]) -> dict[Any, Any]:
    return {k: json.dumps(v) for k, v in fields.items()}


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=5.0, socket_connect_timeout=2.0, health_check_interval=30, decode_responses=True
    )


class Ledger:
    def __init__(self, client: redis.Redis, retention_seconds: float = 7 * 86400) -> None:
        self.r = client
        self.retention = int(retention_seconds)
        self._transition = client.register_script(_TRANSITION)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._close_join = client.register_script(_CLOSE_JOIN)
        self._take_slot = client.register_script(_TAKE_SLOT)
        self._claim_all = client.register_script(_CLAIM_ALL)

    def transition(self, inv_id: str, allowed: tuple[Status, ...], to: Status, **fields: Any) -> bool:
        """Set the status to `to` (and `fields`) only if it is one of `allowed`; True if it was."""
        encoded = json.dumps({k: json.dumps(v) for k, v in fields.items()})
        done = self._transition(
            keys=[f"{P}inv:{inv_id}", f"{P}idx:all"], args=[P, to.value, encoded, *[s.value for s in allowed]]
        )
        return bool(done)

    # --- leases: at most one execution of an invocation at a time ---------------------------------
    def acquire_lease(self, inv_id: str, token: str, ttl_ms: int) -> bool:
        return bool(self.r.set(f"{P}lease:{inv_id}", token, nx=True, px=ttl_ms))

    def renew_lease(self, inv_id: str, token: str, ttl_ms: int) -> bool:
        return bool(self._renew(keys=[f"{P}lease:{inv_id}"], args=[token, ttl_ms]))

    def release_lease(self, inv_id: str, token: str) -> None:
        self._release(keys=[f"{P}lease:{inv_id}"], args=[token])

    # --- reserved concurrency: at most N running invocations of a function, all workers together --
    def take_slot(self, function: str, token: str, limit: int, ttl_ms: int) -> bool:
        """Take (or renew) one of the function's `limit` slots; False when all are taken."""
        return bool(self._take_slot(keys=[f"{P}slots:{function}"], args=[token, limit, ttl_ms]))

    def release_slot(self, function: str, token: str) -> None:
        self.r.zrem(f"{P}slots:{function}", token)

    def slots_taken(self, function: str) -> int:
        return int(self.r.zcount(f"{P}slots:{function}", f"({int(time.time() * 1000)}", "+inf"))

    def claimed(self, dedup_key: str) -> bool:
        return bool(self.r.exists(f"{P}dedup:{dedup_key}"))

    def count(self, name: str, n: int = 1) -> None:
        self.r.incrby(f"{P}stat:{name}", n)

    def stat(self, name: str) -> int:
        return int(self.r.get(f"{P}stat:{name}") or 0)

    # --- dedup -------------------------------------------------------------------------------
    def claim_all(self, units: list[tuple[str, str, str]]) -> list[str | bool]:
        """Claim units of work (dedup key, function, invocation id) at once, skipping functions
        switched off. Per unit: True if claimed now, False if its function is disabled, else the
        id of the invocation that claimed it earlier."""
        if not units:
            return []
        keys = [f"{P}fn:disabled", f"{P}stat:duplicates", *[f"{P}dedup:{key}" for key, _, _ in units]]
        args: list[str | int] = [self.retention, ORPHAN_CLAIM_S, P]
        for _, function, inv_id in units:
            args += [function, inv_id]
        raw = self._claim_all(keys=keys, args=args)
        return [bool(r) if isinstance(r, int) else str(r) for r in raw]

    def release(self, dedup_key: str) -> None:
        self.r.delete(f"{P}dedup:{dedup_key}")

    # --- invocations -------------------------------------------------------------------------
    def create(self, inv: Invocation) -> None:
        self.create_many([inv])

    def create_many(self, invs: list[Invocation], event: EventRecord | None = None) -> None:
        """Record invocations in one transaction; with `event`, also the event record and the
        upload's join set: it is complete before any of them can finish, so `object.processed`
        cannot fire while some are still to come."""
        pipe = self.r.pipeline(transaction=True)
        if event is not None:
            if invs:
                pipe.sadd(f"{P}join:{event.id}", *[inv.id for inv in invs])
                pipe.expire(f"{P}join:{event.id}", self.retention)
            self._record_event(pipe, event)
        for inv in invs:
            self._create(pipe, inv)
        pipe.execute()

    def _create(self, pipe: Any, inv: Invocation) -> None:
        name = f"{P}inv:{inv.id}"
        data = inv.model_dump(mode="json")
        pipe.hset(name, mapping=_encode(data))
        pipe.expire(name, self.retention)
        for index in (
            f"{P}idx:all",
            f"{P}idx:status:{inv.status}",
            f"{P}idx:fn:{inv.function}",
            f"{P}idx:bucket:{inv.bucket}",
            _obj_index(inv.bucket, inv.key),
        ):
            pipe.zadd(index, {inv.id: inv.created_at})
            pipe.expire(index, self.retention)
        pipe.zremrangebyscore(f"{P}idx:all", "-inf", time.time() - self.retention)
        if inv.status.finished:
            self._announce(pipe, inv.id, inv.status)

    def _announce(self, pipe: Any, inv_id: str, status: Status) -> None:
        pipe.rpush(f"{P}outbox", json.dumps({"id": inv_id, "status": status.value}))
        pipe.ltrim(f"{P}outbox", -OUTBOX_CAP, -1)

    def delete(self, inv: Invocation) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(f"{P}inv:{inv.id}")
        for index in (
            f"{P}idx:all",
            f"{P}idx:status:{inv.status}",
            f"{P}idx:fn:{inv.function}",
            f"{P}idx:bucket:{inv.bucket}",
            _obj_index(inv.bucket, inv.key),
        ):
            pipe.zrem(index, inv.id)
        pipe.execute()

    def get(self, invocation_id: str) -> Invocation | None:
        raw = self.r.hgetall(f"{P}inv:{invocation_id}")
        if not raw:
            return None
        return Invocation.model_validate({k: json.loads(v) for k, v in raw.items() if k in _FIELDS})

    def get_many(self, ids: Iterable[str]) -> list[Invocation]:
        ids = list(ids)
        pipe = self.r.pipeline(transaction=False)
        for invocation_id in ids:
            pipe.hgetall(f"{P}inv:{invocation_id}")
        out = []
        for raw in pipe.execute():
            if raw:
                out.append(
                    Invocation.model_validate({k: json.loads(v) for k, v in raw.items() if k in _FIELDS})
                )
        return out

    def _update(self, inv_id: str, status: Status | None, *, announce: bool = False, **fields: Any) -> None:
        pipe = self.r.pipeline(transaction=True)
        if status is not None:
            fields["status"] = status.value
        values = _encode(fields)
        if status is not None:
            created = self.r.zscore(f"{P}idx:all", inv_id) or time.time()
            for other in Status:
                pipe.zrem(f"{P}idx:status:{other}", inv_id)
            pipe.zadd(f"{P}idx:status:{status}", {inv_id: created})
            pipe.expire(f"{P}idx:status:{status}", self.retention)
        pipe.hset(f"{P}inv:{inv_id}", mapping=values)
        if announce and status is not None:
            self._announce(pipe, inv_id, status)
        pipe.execute()

    def start_attempt(self, inv_id: str, worker: str) -> Invocation | None:
        """Mark an attempt as running. Returns None if the invocation is unknown or already finished,
        so a redelivered message for finished work does nothing."""
        inv = self.get(inv_id)
        if inv is None or inv.status.finished:
            return None
        attempts = int(self.r.hincrby(f"{P}inv:{inv_id}", "attempts", 1))
        now = time.time()
        self._update(inv_id, Status.RUNNING, started_at=now, worker=worker, error=None)
        record = AttemptRecord(n=attempts, worker=worker, started_at=now)
        pipe = self.r.pipeline(transaction=False)
        pipe.rpush(f"{P}att:{inv_id}", record.model_dump_json())
        pipe.ltrim(f"{P}att:{inv_id}", -50, -1)
        pipe.expire(f"{P}att:{inv_id}", self.retention)
        pipe.execute()
        return inv.model_copy(update={"attempts": attempts, "status": Status.RUNNING, "started_at": now})

    def set_progress(self, inv_id: str, percent: float, speed: float | None) -> None:
        value = {"percent": round(percent, 1), "speed": speed, "at": round(time.time(), 3)}
        self.r.hset(f"{P}inv:{inv_id}", "progress", json.dumps(value))

    def mark_enqueued(self, inv_id: str) -> None:
        self.r.hset(f"{P}inv:{inv_id}", "enqueued_at", json.dumps(time.time()))

    def set_media(self, inv_id: str, media: dict[str, Any]) -> None:
        self.r.hset(f"{P}inv:{inv_id}", "media", json.dumps(media))

    def set_callback(self, inv_id: str, url: str) -> None:
        self.r.hset(f"{P}inv:{inv_id}", "callback_url", json.dumps(url))

    def requeue(self, inv_id: str, error: str) -> None:
        self._update(inv_id, Status.QUEUED, error=error)
        self._end_attempt(inv_id, "retrying", error)

    def _end_attempt(self, inv_id: str, outcome: str, error: str | None) -> None:
        """Close the latest attempt's record (only the attempt holding the lease writes here)."""
        raw = self.r.lindex(f"{P}att:{inv_id}", -1)
        if not raw:
            return
        record = AttemptRecord.model_validate_json(raw)
        if record.finished_at is not None:
            return
        now = time.time()
        record.finished_at, record.outcome, record.error = now, outcome, error
        record.duration_ms = round((now - record.started_at) * 1000, 1)
        self.r.lset(f"{P}att:{inv_id}", -1, record.model_dump_json())

    def attempts(self, inv_id: str) -> list[AttemptRecord]:
        return [AttemptRecord.model_validate_json(raw) for raw in self.r.lrange(f"{P}att:{inv_id}", 0, -1)]

    def finish(
        self,
        inv_id: str,
        status: Status,
        *,
        outputs: list[OutputRef] | None = None,
        error: str | None = None,
        cpu_ms: float | None = None,
    ) -> None:
        now = time.time()
        started = json.loads(self.r.hget(f"{P}inv:{inv_id}", "started_at") or "null")
        duration = round((now - started) * 1000, 1) if started else None
        self._update(
            inv_id,
            status,
            announce=True,
            finished_at=now,
            duration_ms=duration,
            outputs=[o.model_dump(mode="json") for o in outputs or []],
            error=error,
            cpu_ms=cpu_ms,
        )
        self._end_attempt(inv_id, status.value, error)
        # Per-minute counts of finished invocations, for the dashboard's throughput chart.
        minute = int(now // 60)
        pipe = self.r.pipeline(transaction=False)
        pipe.incr(f"{P}stat:{status.value}")
        pipe.hincrby(f"{P}tp:{minute}", status.value, 1)
        pipe.expire(f"{P}tp:{minute}", 3 * 3600)
        pipe.execute()

    def throughput(self, minutes: int = 60) -> list[tuple[int, dict[str, int]]]:
        """Finished invocations per minute by status, oldest first (minute = Unix time // 60)."""
        last = int(time.time() // 60)
        span = list(range(last - minutes + 1, last + 1))
        pipe = self.r.pipeline(transaction=False)
        for minute in span:
            pipe.hgetall(f"{P}tp:{minute}")
        return [(m, {k: int(v) for k, v in raw.items()}) for m, raw in zip(span, pipe.execute(), strict=True)]

    def reset_for_retry(self, inv_id: str, allowed: tuple[Status, ...]) -> Invocation | None:
        """Atomically put a finished invocation back to queued with a fresh attempt budget.
        None if it is unknown or no longer in an `allowed` state (someone else retried it)."""
        fields: dict[str, Any] = {"attempts": 0, "error": None, "finished_at": None, "duration_ms": None}
        if not self.transition(inv_id, allowed, Status.QUEUED, **fields):
            return None
        return self.get(inv_id)

    # --- announcing outcomes (read by the webhook notifier) -----------------------------------
    def outbox(self, n: int) -> list[tuple[str, Status]]:
        items = [json.loads(raw) for raw in self.r.lrange(f"{P}outbox", 0, n - 1)]
        return [(item["id"], Status(item["status"])) for item in items]

    def outbox_done(self, n: int) -> None:
        """Drop the first `n` entries (new ones are only ever appended at the end)."""
        self.r.ltrim(f"{P}outbox", n, -1)

    def outbox_length(self) -> int:
        return int(self.r.llen(f"{P}outbox"))

    def leave_join(self, event_id: str, inv_id: str) -> None:
        """An invocation that was never enqueued (intake undid it) is not waited for."""
        self.r.srem(f"{P}join:{event_id}", inv_id)

    def close_join(self, event_id: str, inv_id: str) -> bool:
        """True exactly once per upload: when its last invocation has finished."""
        keys = [f"{P}join:{event_id}", f"{P}joined:{event_id}"]
        return bool(self._close_join(keys=keys, args=[inv_id, self.retention]))

    def ids_with_status(self, status: Status) -> list[str]:
        return _ids(self.r.zrange(f"{P}idx:status:{status}", 0, -1))

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
        """Newest first. Uses the most selective index, then filters the rest in Python."""
        if bucket is not None and key is not None:
            index = _obj_index(bucket, key)
        elif status:
            index = f"{P}idx:status:{status}"
        elif function:
            index = f"{P}idx:fn:{function}"
        elif bucket:
            index = f"{P}idx:bucket:{bucket}"
        else:
            index = f"{P}idx:all"
        out: list[Invocation] = []
        skipped = 0
        start = 0
        page = max(limit * 2, 100)
        while len(out) < limit:
            ids = _ids(self.r.zrevrange(index, start, start + page - 1))
            if not ids:
                break
            start += page
            for inv in self.get_many(ids):
                if (
                    (status and inv.status != status)
                    or (function and inv.function != function)
                    or (bucket and inv.bucket != bucket)
                    or (key is not None and inv.key != key)
                ):
                    continue
                if skipped < offset:
                    skipped += 1
                    continue
                out.append(inv)
                if len(out) == limit:
                    break
        return out

    def for_object(self, bucket: str, key: str) -> list[Invocation]:
        ids = _ids(self.r.zrange(_obj_index(bucket, key), 0, -1))
        return [inv for inv in self.get_many(ids) if inv.key == key and inv.bucket == bucket]

    # --- events ------------------------------------------------------------------------------
    def record_event(self, record: EventRecord) -> None:
        pipe = self.r.pipeline(transaction=True)
        self._record_event(pipe, record)
        pipe.execute()

    def amend_event(self, record: EventRecord) -> None:
        """Rewrite an event record already counted and indexed (e.g. its work could not be queued)."""
        self.r.set(f"{P}event:{record.id}", record.model_dump_json(), ex=self.retention)

    def _record_event(self, pipe: Any, record: EventRecord) -> None:
        pipe.set(f"{P}event:{record.id}", record.model_dump_json(), ex=self.retention)
        pipe.zadd(f"{P}idx:events", {record.id: record.received_at})
        pipe.zremrangebyscore(f"{P}idx:events", "-inf", time.time() - self.retention)
        by_object = _obj_index(record.bucket, record.key, "obj-events")
        pipe.zadd(by_object, {record.id: record.received_at})
        pipe.expire(by_object, self.retention)
        pipe.incr(f"{P}stat:events:{record.status}")

    def events(self, limit: int = 50, offset: int = 0) -> list[EventRecord]:
        ids = _ids(self.r.zrevrange(f"{P}idx:events", offset, offset + limit - 1))
        if not ids:
            return []
        raws = self.r.mget([f"{P}event:{i}" for i in ids])
        return [EventRecord.model_validate_json(raw) for raw in raws if raw]

    def events_for_object(self, bucket: str, key: str) -> list[EventRecord]:
        index = _obj_index(bucket, key, "obj-events")
        ids = _ids(self.r.zrange(index, 0, 199))
        raws = self.r.mget([f"{P}event:{i}" for i in ids]) if ids else []
        records = [EventRecord.model_validate_json(raw) for raw in raws if raw]
        return [e for e in records if e.bucket == bucket and e.key == key]

    def get_event(self, event_id: str) -> EventRecord | None:
        raw = self.r.get(f"{P}event:{event_id}")
        return EventRecord.model_validate_json(raw) if raw else None

    # --- function switches (set from the dashboard; read by the intake and the workers) ---------
    def set_function_flag(self, flag: str, name: str, on: bool) -> None:
        """`flag` is `paused` (work waits in its queue) or `disabled` (no new work is routed)."""
        key = f"{P}fn:{flag}"
        if on:
            self.r.sadd(key, name)
        else:
            self.r.srem(key, name)

    def function_flags(self, flag: str) -> set[str]:
        return {str(n) for n in self.r.smembers(f"{P}fn:{flag}")}

    # --- workers and stats -------------------------------------------------------------------
    def heartbeat(self, info: WorkerInfo, ttl: int = 30) -> None:
        self.r.set(f"{P}worker:{info.hostname}", info.model_dump_json(), ex=ttl)

    def worker_gone(self, hostname: str) -> None:
        self.r.delete(f"{P}worker:{hostname}")

    def workers(self) -> list[WorkerInfo]:
        names = list(self.r.scan_iter(f"{P}worker:*", count=100))
        raws = self.r.mget(names) if names else []
        return [WorkerInfo.model_validate_json(raw) for raw in raws if raw]

    def counts(self) -> dict[str, int]:
        pipe = self.r.pipeline(transaction=False)
        for status in Status:
            pipe.zcard(f"{P}idx:status:{status}")
        pipe.get(f"{P}stat:duplicates")
        *by_status, duplicates = pipe.execute()
        out = {status.value: int(n) for status, n in zip(Status, by_status, strict=True)}
        out["duplicates"] = int(duplicates or 0)
        return out

    def guard_counts(self) -> dict[str, int]:
        """How often the delivery guarantees stepped in: duplicates claimed nothing, loops stopped,
        objects found by the reconciler, messages re-sent after loss in the broker."""
        names = ("duplicates", "loops_stopped", "reconciled", "resent")
        values = self.r.mget([f"{P}stat:{n}" for n in names])
        return {n: int(v or 0) for n, v in zip(names, values, strict=True)}

    def ping(self) -> bool:
        return bool(self.r.ping())
