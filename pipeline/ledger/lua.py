"""The ledger's Lua scripts (`scripts/*.lua`, each headed by its KEYS and ARGV), read once per
process and registered per client; redis-py runs them by SHA and loads them again after a restart."""

from __future__ import annotations

from functools import cache
from importlib import resources

import redis
from redis.commands.core import Script


@cache
def source(name: str) -> str:
    return resources.files(__package__).joinpath("scripts", f"{name}.lua").read_text()


def script(client: redis.Redis, name: str) -> Script:
    return client.register_script(source(name))
