"""Writes collected like a redis-py transaction and applied by one script call.

The intake's group commit records dozens of notifications at once, twenty-odd writes each. In a
MULTI/EXEC pipeline the client packs every command and parses two replies for each (QUEUED, then
its result), which costs more than the writes themselves. Here each write is a few list appends,
the whole batch is one command and one reply, and Redis runs it as atomically as a transaction.
An index's expiry, set by every record written to it, is sent once per batch, after the writes.

The stores' `add` methods take this or a pipeline alike: only the methods below are used on them.
"""

from __future__ import annotations

from collections.abc import Mapping

import redis

from pipeline.ledger.lua import script

Arg = str | bytes | int | float


class ScriptedWrites:
    def __init__(self, client: redis.Redis) -> None:
        self._apply = script(client, "apply_writes")
        self._args: list[Arg] = []
        self._expiries: dict[str, int] = {}
        self.commands = 0

    def _command(self, *args: Arg, reply: bool = False) -> None:
        self._args.append(-len(args) if reply else len(args))
        self._args.extend(args)
        self.commands += 1

    def set(self, name: str, value: Arg, ex: int | None = None, nx: bool = False) -> None:
        self._command("SET", name, value, *(("EX", ex) if ex is not None else ()), *(("NX",) if nx else ()))

    def hset(self, name: str, mapping: Mapping[str, Arg]) -> None:
        fields: list[Arg] = []
        for field, value in mapping.items():
            fields += (field, value)
        self._command("HSET", name, *fields)

    def expire(self, name: str, seconds: int) -> None:
        self._expiries[name] = int(seconds)

    def zadd(self, name: str, mapping: Mapping[str, float]) -> None:
        pairs: list[Arg] = []
        for member, score in mapping.items():
            pairs += (repr(float(score)), member)
        self._command("ZADD", name, *pairs)

    def zrem(self, name: str, *members: str) -> None:
        self._command("ZREM", name, *members)

    def sadd(self, name: str, *members: str) -> None:
        self._command("SADD", name, *members)

    def incr(self, name: str) -> None:
        self._command("INCR", name)

    def lpush(self, name: str, *values: Arg) -> None:
        self._command("LPUSH", name, *values)

    def rpush(self, name: str, *values: Arg) -> None:
        self._command("RPUSH", name, *values)

    def ltrim(self, name: str, start: int, end: int) -> None:
        self._command("LTRIM", name, start, end)

    def zcard(self, name: str) -> None:
        """A read: its reply is among what `execute` returns (after the writes before it)."""
        self._command("ZCARD", name, reply=True)

    def execute(self) -> list[object]:
        """Apply the writes; returns the replies of the reads, in order."""
        for name, seconds in self._expiries.items():
            self._command("EXPIRE", name, seconds)
        replies: list[object] = []
        if self._args:
            replies = list(self._apply(args=self._args) or [])
        self._args, self._expiries = [], {}
        return replies
