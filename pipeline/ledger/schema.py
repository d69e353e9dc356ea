"""The layout version of the ledger, kept in Redis (`keys.SCHEMA`), so that a change of layout
comes with an explicit upgrade instead of readers that guess which layout a key was written in.

Every process that opens the ledger checks the version once (`Runtime`):
- no version yet (a new Redis): this one's is written;
- an older one: each upgrade from it to this version runs in order, one process at a time (the
  others wait for the lock), and the version moves up after each;
- a newer one: refused, naming both. A process of an older release must not write a layout it
  does not know (roll the upgrade forward, or restore Redis from before it).

An upgrade is a function from one version to the next in `UPGRADES`, with a test that writes the
old layout and reads it back through this version's stores. There is none yet: 1 is the first
layout that carries a version.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import redis

from pipeline.errors import LedgerSchemaError
from pipeline.ledger import keys

log = logging.getLogger(__name__)

VERSION = 1

# UPGRADES[n] brings a ledger from version n to n + 1 (idempotent: it may be cut short and rerun).
UPGRADES: Mapping[int, Callable[[redis.Redis], None]] = {}

LOCK_S = 600  # longest an upgrade may hold the lock; a process that died holding it frees it then


def stored_version(client: redis.Redis) -> int | None:
    raw = client.get(keys.SCHEMA)
    return int(raw) if raw is not None else None


def ensure(
    client: redis.Redis,
    version: int = VERSION,
    upgrades: Mapping[int, Callable[[redis.Redis], None]] = UPGRADES,
) -> int:
    """Bring the ledger to `version` (see the module's docstring); returns the version it was at."""
    if client.set(keys.SCHEMA, version, nx=True):
        return version
    found = stored_version(client) or version
    if found > version:
        raise LedgerSchemaError(
            f"the ledger in Redis has layout {found}, newer than this version's {version}: "
            "run the release that wrote it (or a later one)"
        )
    if found == version:
        return found
    with client.lock(keys.SCHEMA_LOCK, timeout=LOCK_S, blocking_timeout=LOCK_S):
        current = stored_version(client) or version  # another process may have upgraded meanwhile
        for step in range(current, version):
            if step not in upgrades:
                raise LedgerSchemaError(f"no upgrade of the ledger from layout {step} to {step + 1}")
            log.warning("upgrading the ledger from layout %d to %d", step, step + 1)
            upgrades[step](client)
            client.set(keys.SCHEMA, step + 1)
    return found
