"""Reading a sorted-set index newest first, with the filters an index cannot apply itself."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import redis

T = TypeVar("T")


def ids(values: Iterable[object]) -> list[str]:
    """Redis replies as str (decode_responses=True); the client's types also allow bytes."""
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def newest_first(
    client: redis.Redis,
    index: str,
    load: Callable[[list[str]], list[T]],
    keep: Callable[[T], bool],
    limit: int,
    offset: int,
) -> list[T]:
    """Up to `limit` records of `index` that `keep` accepts, skipping the first `offset` of them.
    Ids are read a page at a time (twice the limit, at least 100), so a selective index costs one
    page and a loose filter a few."""
    out: list[T] = []
    skipped, start, page = 0, 0, max(limit * 2, 100)
    while len(out) < limit:
        found = ids(client.zrevrange(index, start, start + page - 1))
        if not found:
            break
        start += page
        for record in load(found):
            if not keep(record):
                continue
            if skipped < offset:
                skipped += 1
                continue
            out.append(record)
            if len(out) == limit:
                break
    return out
