"""Flow runs: one JSON document per run, indexes by status, flow and object, and the claim that
makes one run per (rule, object version).

Every change is a WATCH/MULTI transaction on the run's key (`change`): two workers finishing
steps of one run at the same moment each see the other's write, or retry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import redis

from pipeline.errors import BadRequest
from pipeline.flows.model import Run, RunStatus
from pipeline.ledger import keys
from pipeline.ledger.paging import ids, newest_first
from pipeline.ledger.retention import record_ttl

# A change that lost a race is tried again; this many losses in a row means something is wrong.
MAX_CHANGE_TRIES = 50

Decide = Callable[[Run], Callable[[Any], None] | None]


class RunStore:
    def __init__(self, client: redis.Redis, retention: int) -> None:
        self.r = client
        self.retention = retention

    @staticmethod
    def claim_key(run: Run) -> keys.Claim:
        """The claim that makes one run per (rule, object version): it stands for all its steps."""
        return keys.run_claim(run.rule, run.bucket, run.key, run.version)

    def _indexes(self, run: Run) -> tuple[str, ...]:
        return (keys.RUNS_INDEX, keys.run_flow_index(run.flow), keys.run_object_index(run.bucket, run.key))

    def add(self, pipe: Any, run: Run) -> None:
        """Queue the commands that record a new run on `pipe` (a transaction)."""
        self._write(pipe, run, None)
        for index in self._indexes(run):
            pipe.zadd(index, {run.id: run.started_at})
            pipe.expire(index, self.retention)

    def _write(self, pipe: Any, run: Run, before: RunStatus | None) -> None:
        pipe.set(keys.run(run.id), run.model_dump_json(), ex=record_ttl(self.retention))
        if before != run.status:
            if before is not None:
                pipe.zrem(keys.run_status_index(before), run.id)
            pipe.zadd(keys.run_status_index(run.status), {run.id: run.started_at})
            pipe.expire(keys.run_status_index(run.status), self.retention)

    def delete(self, run: Run) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(keys.run(run.id))
        for index in (*self._indexes(run), keys.run_status_index(run.status)):
            pipe.zrem(index, run.id)
        pipe.execute()

    def change(self, run_id: str, decide: Decide) -> Run | None:
        """Change a run atomically. `decide` gets a copy of the run, changes it in place and
        returns a function that queues any other writes on the transaction (or None to write
        nothing). Returns the run as written (or as found, when nothing was written); None if
        there is no such run."""
        name = keys.run(run_id)
        for _ in range(MAX_CHANGE_TRIES):
            with self.r.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(name)  # type: ignore[no-untyped-call]
                    raw = pipe.get(name)
                    if raw is None:
                        return None
                    run = Run.model_validate_json(raw)
                    before = run.status
                    also = decide(run)
                    if also is None:
                        return Run.model_validate_json(raw)
                    pipe.multi()
                    self._write(pipe, run, before)
                    also(pipe)
                    pipe.execute()
                    return run
                except redis.WatchError:
                    continue
        raise redis.RedisError(f"run {run_id}: gave up after {MAX_CHANGE_TRIES} conflicting changes")

    def get(self, run_id: str) -> Run | None:
        raw = self.r.get(keys.run(run_id))
        return Run.model_validate_json(raw) if raw else None

    def get_many(self, run_ids: Iterable[str]) -> list[Run]:
        run_ids = list(run_ids)
        raws = self.r.mget([keys.run(i) for i in run_ids]) if run_ids else []
        return [Run.model_validate_json(raw) for raw in raws if raw]

    def ids_with_status(self, status: RunStatus) -> list[str]:
        return ids(self.r.zrange(keys.run_status_index(status), 0, -1))

    def count_with_status(self, status: RunStatus) -> int:
        return int(self.r.zcard(keys.run_status_index(status)))

    def counts(self) -> dict[str, int]:
        pipe = self.r.pipeline(transaction=False)
        for status in RunStatus:
            pipe.zcard(keys.run_status_index(status))
        return {s.value: int(n) for s, n in zip(RunStatus, pipe.execute(), strict=True)}

    def for_object(self, bucket: str, key: str) -> list[Run]:
        found = ids(self.r.zrange(keys.run_object_index(bucket, key), 0, -1))
        return [run for run in self.get_many(found) if run.bucket == bucket and run.key == key]

    def query(
        self,
        *,
        status: str | None = None,
        flow: str | None = None,
        bucket: str | None = None,
        key: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Run]:
        """Newest first, from the most selective index (as invocations are queried)."""
        if key is not None and bucket is None:
            raise BadRequest("a key filter needs its bucket")
        if status is not None and status not in {s.value for s in RunStatus}:
            raise BadRequest(
                f"unknown run status {status!r} (one of {', '.join(s.value for s in RunStatus)})"
            )
        if bucket is not None and key is not None:
            index = keys.run_object_index(bucket, key)
        elif status:
            index = keys.run_status_index(status)
        elif flow:
            index = keys.run_flow_index(flow)
        else:
            index = keys.RUNS_INDEX

        def keep(run: Run) -> bool:
            return not (
                (status and run.status != status)
                or (flow and run.flow != flow)
                or (bucket and run.bucket != bucket)
                or (key is not None and run.key != key)
            )

        return newest_first(self.r, index, self.get_many, keep, limit, offset)
