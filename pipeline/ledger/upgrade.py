"""A ledger written by an earlier version of the pipeline, brought to this one's layout a batch at a
time by the retention sweeper, so its invocations stay listed and are removed when they are due.

Earlier versions indexed an invocation three times: in `idx:all`, in `idx:status:<status>` and in
`idx:fn:<function>`; this one indexes it once by function and status together
(`keys.invocation_index`). A batch moves up to `BATCH` invocations out of `idx:all`, each into the
index of its function and current status (a status change since the upgrade did that already: the
move is the same write again). Once `idx:all` is empty the other two kinds of index go (UNLINK:
Redis frees them in the background). Claims, attempt lists and object notification indexes of
earlier versions are read where they are until they expire (`claims.py`, `invocations.py`,
`events.py`)."""

from __future__ import annotations

import json
from typing import cast

import redis

from pipeline.invocation import Status
from pipeline.ledger import keys
from pipeline.ledger.packing import read_hash, unpack_hash
from pipeline.ledger.paging import ids, ids_scored


def reindex_batch(client: redis.Redis, retention: int, batch: int) -> int:
    """Move up to `batch` invocations of the earlier layout's index into this one's; returns how
    many (0 when there are none left)."""
    listed = client.zrangebyscore(keys.LEGACY_INDEX_ALL, "-inf", "+inf", start=0, num=batch, withscores=True)
    found = ids_scored(cast(list[tuple[object, float]], listed))
    if not found:
        return 0
    read = client.pipeline(transaction=False)
    for inv_id, _ in found:
        read_hash(read, keys.invocation(inv_id))
    write = client.pipeline(transaction=False)
    for (inv_id, created), raw in zip(found, read.execute(), strict=True):
        fields = unpack_hash(raw) if raw else {}
        if "function" in fields and "status" in fields:  # else its record expired: nothing to list
            function, status = json.loads(fields["function"]), json.loads(fields["status"])
            index = keys.invocation_index(function, status)
            write.zadd(index, {inv_id: created})
            write.expire(index, retention)
            write.sadd(keys.INDEXED_FUNCTIONS, function)
    write.zrem(keys.LEGACY_INDEX_ALL, *[inv_id for inv_id, _ in found])
    write.execute()
    if not client.exists(keys.LEGACY_INDEX_ALL):
        functions = ids(client.smembers(keys.INDEXED_FUNCTIONS))
        client.unlink(
            *[keys.legacy_status_index(s.value) for s in Status],
            *[keys.legacy_function_index(fn) for fn in functions],
        )
    return len(found)
