"""Reading sorted-set indexes newest first, with the filters an index cannot apply itself.

A query may span several indexes (invocations are indexed by function and status together, so
"all failed" is the failed index of every function): their ids are merged newest first, each index
read a chunk at a time, so a page costs one round trip per chunk, never a read of a whole index.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import TypeVar

import redis

T = TypeVar("T")

# Records a query looks at beyond its offset and limit when a filter skips records (the same
# bound as the API's largest offset).
UNINDEXED_WINDOW = 10_000


def ids(values: Iterable[object]) -> list[str]:
    """Redis replies as str (decode_responses=True); the client's types also allow bytes."""
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def ids_scored(values: Iterable[tuple[object, float]]) -> list[tuple[str, float]]:
    """`ids` of a reply WITHSCORES."""
    return [(ids([member])[0], float(score)) for member, score in values]


def merged(client: redis.Redis, indexes: list[str], chunk: int) -> Iterator[str]:
    """The members of `indexes`, newest (highest score) first across all of them."""
    start = dict.fromkeys(indexes, 0)
    pending: dict[str, list[tuple[object, float]]] = {}
    exhausted: set[str] = set()

    def read(names: list[str]) -> None:
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.zrevrange(name, start[name], start[name] + chunk - 1, withscores=True)
        for name, got in zip(names, pipe.execute(), strict=True):
            start[name] += chunk
            pending[name] = list(reversed(got))  # popped from the end: newest first
            if len(got) < chunk:
                exhausted.add(name)

    read(indexes)
    heads = [(-pending[name][-1][1], name) for name in indexes if pending[name]]
    heapq.heapify(heads)
    while heads:
        _, name = heapq.heappop(heads)
        member, _ = pending[name].pop()
        yield ids([member])[0]
        if not pending[name] and name not in exhausted:
            read([name])
        if pending[name]:
            heapq.heappush(heads, (-pending[name][-1][1], name))


def newest_first(
    client: redis.Redis,
    index: str | list[str],
    load: Callable[[list[str]], list[T]],
    keep: Callable[[T], bool],
    limit: int,
    offset: int,
) -> list[T]:
    """Up to `limit` records of `index` (or several, merged) that `keep` accepts, skipping the
    first `offset` of them. Ids are read a page at a time (twice the limit, at least 100), so a
    selective index costs one page and a loose filter a few. A filter the index cannot answer
    (a bucket beside a status, a bucket of runs) looks at the newest `offset + limit +
    UNINDEXED_WINDOW` records at most: a filter that matches nothing never reads the whole ledger."""
    page = max(limit * 2, 100)
    found = merged(client, [index] if isinstance(index, str) else index, page)
    out: list[T] = []
    skipped = 0
    budget = offset + limit + UNINDEXED_WINDOW
    while len(out) < limit and budget > 0:
        batch = list(islice(found, min(page, budget)))
        budget -= len(batch)
        if not batch:
            break
        for record in load(batch):
            if not keep(record):
                continue
            if skipped < offset:
                skipped += 1
                continue
            out.append(record)
            if len(out) == limit:
                break
    return out
