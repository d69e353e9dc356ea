"""Worker heartbeats, the operator's function switches and the pipeline's counters."""

from __future__ import annotations

import time

import redis

from pipeline.ledger import keys
from pipeline.ledger.paging import ids
from pipeline.ledger.records import WorkerInfo

# How often the delivery guarantees stepped in: duplicates claimed nothing, loops stopped, objects
# found by the reconciler, messages re-sent after loss in the broker.
# A worker whose heartbeat ran out this long ago leaves the registry.
FORGET_AFTER_S = 3600
GUARDS = ("duplicates", "loops_stopped", "reconciled", "resent")


class Workers:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def beat(self, info: WorkerInfo, ttl: int = 30) -> None:
        """A worker is alive for `ttl` seconds more. The registry names every worker seen, so
        listing them reads a few keys, never the whole keyspace (a SCAN would read millions)."""
        pipe = self.r.pipeline(transaction=True)
        pipe.set(keys.worker(info.hostname), info.model_dump_json(), ex=ttl)
        pipe.zadd(keys.WORKERS_REGISTRY, {info.hostname: time.time() + ttl})
        pipe.execute()

    def gone(self, hostname: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(keys.worker(hostname))
        pipe.zrem(keys.WORKERS_REGISTRY, hostname)
        pipe.execute()

    def live(self) -> list[WorkerInfo]:
        now = time.time()
        self.r.zremrangebyscore(keys.WORKERS_REGISTRY, "-inf", now - FORGET_AFTER_S)  # a handful
        names = ids(self.r.zrangebyscore(keys.WORKERS_REGISTRY, now, "+inf"))
        raws = self.r.mget([keys.worker(n) for n in names]) if names else []
        return [WorkerInfo.model_validate_json(raw) for raw in raws if raw]


class FunctionFlags:
    """Switches set from the dashboard and read by the intake and the workers: `paused` (work
    waits in its queue) and `disabled` (no new work is routed)."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def switch(self, flag: str, name: str, on: bool) -> None:
        if on:
            self.r.sadd(keys.function_flag(flag), name)
        else:
            self.r.srem(keys.function_flag(flag), name)

    def members(self, flag: str) -> set[str]:
        return {str(n) for n in self.r.smembers(keys.function_flag(flag))}


class Stats:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def incr(self, name: str, n: int = 1) -> None:
        self.r.incrby(keys.stat(name), n)

    def get(self, name: str) -> int:
        return int(self.r.get(keys.stat(name)) or 0)

    def guards(self) -> dict[str, int]:
        values = self.r.mget([keys.stat(n) for n in GUARDS])
        return {n: int(v or 0) for n, v in zip(GUARDS, values, strict=True)}
