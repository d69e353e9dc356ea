"""Where Redis is: a plain URL (`redis://`, `rediss://`, `unix://`), or Redis Sentinel,
`redis+sentinel://[:password@]host:26379[,host:26379...]/<master name>[/<db>]`, for the ledger and
Celery alike. With Sentinel every client asks the sentinels for the current master and asks again
after a failover, so the gateway and the workers follow a promoted replica by themselves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379
_CLIENT: dict[str, Any] = {
    "socket_timeout": 5.0,
    "socket_connect_timeout": 2.0,
    "health_check_interval": 30,
    "decode_responses": True,
}


@dataclass(frozen=True)
class SentinelURL:
    sentinels: list[tuple[str, int]]
    master: str
    db: int
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SentinelURL | None:
        """None for a URL that is not a Sentinel one; ValueError for a malformed one."""
        if not url.startswith(f"{SCHEME}://"):
            return None
        parts = urlsplit(url.replace(f"{SCHEME}://", "http://", 1))
        hostlist = parts.netloc.rsplit("@", 1)[-1]
        password = unquote(parts.password) if parts.password else None
        sentinels = []
        for item in hostlist.split(","):
            host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
            sentinels.append((host or item, int(port) if port else DEFAULT_SENTINEL_PORT))
        path = [p for p in parts.path.split("/") if p]
        if not sentinels or not path:
            raise ValueError(
                f"{SCHEME} URL needs sentinels and a master name: {SCHEME}://host:26379/mymaster/0"
            )
        return cls(sentinels, path[0], int(path[1]) if len(path) > 1 else 0, password)

    def kombu(self) -> tuple[str, dict[str, Any]]:
        """The same place as kombu's Sentinel transport names it: a URL per sentinel, and the
        master's name as a transport option."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        url = ";".join(f"sentinel://{auth}{host}:{port}/{self.db}" for host, port in self.sentinels)
        return url, {"master_name": self.master, "sentinel_kwargs": _sentinel_kwargs()}


def _sentinel_kwargs() -> dict[str, Any]:
    """How a client talks to the sentinels themselves: briefly, and without retrying. A client's
    default retries with a backoff of seconds, so a sentinel that is down (as one of several may
    be) cost seconds on every discovery of the master, for every new connection. (`None`, not a
    Retry: Celery's configuration holds these, and its `inspect conf` answers in JSON.)"""
    return {"socket_timeout": 1.0, "socket_connect_timeout": 1.0, "retry": None}


def connect(url: str) -> redis.Redis:
    found = SentinelURL.parse(url)
    if found is None:
        return redis.Redis.from_url(url, **_CLIENT)
    sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        found.sentinels, socket_timeout=1.0, socket_connect_timeout=1.0, sentinel_kwargs=_sentinel_kwargs()
    )
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        found.master, db=found.db, password=found.password, **_CLIENT
    )
    return client


def connect_async(url: str) -> redis.asyncio.Redis:
    found = SentinelURL.parse(url)
    if found is None:
        return redis.asyncio.Redis.from_url(url, decode_responses=True)
    sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        found.sentinels, socket_timeout=1.0, sentinel_kwargs=_sentinel_kwargs()
    )
    client: redis.asyncio.Redis = sentinel.master_for(
        found.master, db=found.db, password=found.password, decode_responses=True
    )
    return client


def broker(url: str) -> tuple[str, dict[str, Any]]:
    """Celery's broker URL and extra transport options for `url`."""
    found = SentinelURL.parse(url)
    return found.kombu() if found else (url, {})
