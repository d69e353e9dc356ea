"""The outbox (finished invocations and flow runs not yet announced to webhooks) and the
per-upload join that tells when the last invocation or run of an upload has finished."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import redis

from pipeline.invocation import Status
from pipeline.ledger import keys
from pipeline.ledger.lua import script

OUTBOX_CAP = 100_000


@dataclass(frozen=True)
class Finished:
    """One outbox entry: an invocation or a run that finished with `status`."""

    kind: Literal["invocation", "run", "screening"]
    id: str
    status: str  # for a screening: the event (object.held, object.blocked, object.rejected)
    serial: int = 0  # for a screening: how many decisions the run had, so each is announced once


class Outbox:
    def __init__(self, client: redis.Redis, retention: int) -> None:
        self.r = client
        self.retention = retention
        self._close_join = script(client, "close_join")

    def announce(self, pipe: Any, inv_id: str, status: Status) -> None:
        """Queue an announcement on `pipe`, the transaction that records the verdict itself."""
        pipe.rpush(keys.OUTBOX, json.dumps({"id": inv_id, "status": status.value}))
        pipe.ltrim(keys.OUTBOX, -OUTBOX_CAP, -1)

    def announce_run(self, pipe: Any, run_id: str, status: str) -> None:
        """Queue a finished run's announcement on the transaction that records its end."""
        pipe.rpush(keys.OUTBOX, json.dumps({"run": run_id, "status": status}))
        pipe.ltrim(keys.OUTBOX, -OUTBOX_CAP, -1)

    def announce_screening(self, pipe: Any, run_id: str, event: str, decisions: int) -> None:
        """Queue a run's screening event (held, blocked, rejected) on the transaction that records it."""
        pipe.rpush(keys.OUTBOX, json.dumps({"screening": run_id, "event": event, "serial": decisions}))
        pipe.ltrim(keys.OUTBOX, -OUTBOX_CAP, -1)

    def read(self, n: int) -> list[Finished]:
        return [_finished(json.loads(raw)) for raw in self.r.lrange(keys.OUTBOX, 0, n - 1)]

    def done(self, n: int) -> None:
        """Drop the first `n` entries (new ones are only ever appended at the end)."""
        self.r.ltrim(keys.OUTBOX, n, -1)

    def length(self) -> int:
        return int(self.r.llen(keys.OUTBOX))

    def open_join(self, pipe: Any, event_id: str, inv_ids: list[str]) -> None:
        """Queue on `pipe` the set of an upload's invocations still to finish."""
        pipe.sadd(keys.join(event_id), *inv_ids)
        pipe.expire(keys.join(event_id), self.retention)

    def leave_join(self, event_id: str, inv_id: str) -> None:
        """An invocation that was never enqueued (intake undid it) is not waited for."""
        self.r.srem(keys.join(event_id), inv_id)

    def close_join(self, event_id: str, inv_id: str) -> bool:
        """True exactly once per upload: when its last invocation has finished."""
        return bool(self._close_join(keys=[keys.join(event_id)], args=[inv_id]))


def _finished(item: dict[str, Any]) -> Finished:
    if "screening" in item:
        return Finished("screening", item["screening"], item["event"], int(item.get("serial", 0)))
    if "run" in item:
        return Finished("run", item["run"], item["status"])
    return Finished("invocation", item["id"], item["status"])
