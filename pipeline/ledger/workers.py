"""Worker heartbeats, the operator's function switches and the pipeline's counters."""

from __future__ import annotations

import redis

from pipeline.ledger import keys
from pipeline.ledger.records import WorkerInfo

# How often the delivery guarantees stepped in: duplicates claimed nothing, loops stopped, objects
# found by the reconciler, messages re-sent after loss in the broker.
GUARDS = ("duplicates", "loops_stopped", "reconciled", "resent")


class Workers:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def beat(self, info: WorkerInfo, ttl: int = 30) -> None:
        self.r.set(keys.worker(info.hostname), info.model_dump_json(), ex=ttl)

    def gone(self, hostname: str) -> None:
        self.r.delete(keys.worker(hostname))

    def live(self) -> list[WorkerInfo]:
        names = list(self.r.scan_iter(keys.WORKERS_PATTERN, count=100))
        raws = self.r.mget(names) if names else []
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
