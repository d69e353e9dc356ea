"""A backfill's progress: what a reconciler pass has listed, handed to the backfill lanes and seen
finished, kept in Redis so the CLI that runs it, the dashboard and a resumed pass read the same."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis

from pipeline.ledger import keys

KEPT_S = 7 * 86400


@dataclass(frozen=True)
class Progress:
    started_at: float
    read_at: float  # when it was read: the rate is measured up to then
    listed: int
    enqueued: int
    done: int
    finished_at: float | None  # the listing ended; its work may still be running

    @property
    def remaining(self) -> int:
        return max(0, self.enqueued - self.done)

    @property
    def rate(self) -> float:
        """Invocations finished per second since the backfill started."""
        elapsed = max(1e-6, self.read_at - self.started_at)
        return self.done / elapsed

    @property
    def complete(self) -> bool:
        return self.finished_at is not None and self.remaining == 0

    def eta_s(self) -> float | None:
        """Seconds until the work enqueued so far is done, at the rate so far."""
        return self.remaining / self.rate if self.rate > 0 else None


class BackfillProgress:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def start(self, resume: bool) -> None:
        """A pass begins. Resuming keeps the counts of the interrupted pass."""
        started, finished = self.r.hmget(keys.BACKFILL, ["started_at", "finished_at"])
        if resume and started and not finished:
            return
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(keys.BACKFILL)
        pipe.hset(keys.BACKFILL, mapping={"started_at": time.time(), "listed": 0, "enqueued": 0})
        pipe.set(keys.stat("backfill_done"), 0)
        pipe.expire(keys.BACKFILL, KEPT_S)
        pipe.execute()

    def count(self, pipe: Any, listed: int, enqueued: int) -> None:
        """Queue on `pipe` (the transaction that also moves the backfill's cursor) what was listed
        and handed on since the last count."""
        if listed:
            pipe.hincrby(keys.BACKFILL, "listed", listed)
        if enqueued:
            pipe.hincrby(keys.BACKFILL, "enqueued", enqueued)

    def finish(self) -> None:
        self.r.hset(keys.BACKFILL, "finished_at", time.time())

    def read(self) -> Progress | None:
        raw = self.r.hgetall(keys.BACKFILL)
        if not raw:
            return None
        finished = raw.get("finished_at")
        return Progress(
            started_at=float(raw["started_at"]),
            read_at=time.time(),
            listed=int(raw.get("listed", 0)),
            enqueued=int(raw.get("enqueued", 0)),
            done=int(self.r.get(keys.stat("backfill_done")) or 0),
            finished_at=float(finished) if finished else None,
        )
