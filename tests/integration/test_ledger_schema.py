"""The ledger's layout version: written on a new Redis, upgraded step by step (once, however many
processes start together), refused when newer than this version; and a process refuses to start
on a layout it does not know, through the same runtime every process builds."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from pipeline.errors import LedgerSchemaError
from pipeline.ledger import keys, schema
from tests.helpers import THUMBNAILS_ONLY, pipeline_env, pipeline_runtime

pytestmark = pytest.mark.integration


def test_a_new_ledger_gets_this_versions_layout(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    assert schema.stored_version(client) is None
    assert schema.ensure(client) == schema.VERSION
    assert schema.stored_version(client) == schema.VERSION
    assert schema.ensure(client) == schema.VERSION  # the next process finds it and does nothing


def test_an_older_layout_is_upgraded_one_version_at_a_time(redis_url: str) -> None:
    """Layout 1 kept attempts in a list of their own, layout 2 counts them in a hash, layout 3
    renames the hash: each upgrade sees the layout the one before it wrote."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.set(keys.SCHEMA, 1)
    client.rpush("pl:test:att:a", "x", "y")

    def one_to_two(r: redis.Redis) -> None:
        r.hset("pl:test:attempts", "a", r.llen("pl:test:att:a"))
        r.delete("pl:test:att:a")

    def two_to_three(r: redis.Redis) -> None:
        r.rename("pl:test:attempts", "pl:test:attempt-counts")

    assert schema.ensure(client, version=3, upgrades={1: one_to_two, 2: two_to_three}) == 1
    assert schema.stored_version(client) == 3
    assert client.hgetall("pl:test:attempt-counts") == {"a": "2"}
    assert not client.exists("pl:test:att:a", "pl:test:attempts")
    # Upgraded once: a later start finds layout 3 and runs nothing (a rename would fail now).
    assert schema.ensure(client, version=3, upgrades={1: one_to_two, 2: two_to_three}) == 3


def test_processes_starting_together_upgrade_once(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set(keys.SCHEMA, 1)
    ran: list[str] = []

    def slow_upgrade(r: redis.Redis) -> None:
        ran.append(threading.current_thread().name)
        time.sleep(0.2)  # long enough that the other starts find the lock taken

    threads = [
        threading.Thread(
            target=schema.ensure,
            args=(redis.Redis.from_url(redis_url), 2, {1: slow_upgrade}),
            name=f"start-{n}",
        )
        for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(ran) == 1 and schema.stored_version(client) == 2


def test_a_missing_upgrade_stops_where_it_is(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set(keys.SCHEMA, 1)
    with pytest.raises(LedgerSchemaError, match="no upgrade of the ledger from layout 2 to 3"):
        schema.ensure(client, version=3, upgrades={1: lambda r: None})
    assert schema.stored_version(client) == 2  # what was done stays done


def test_a_newer_layout_is_refused_by_the_runtime_and_by_a_process(redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set(keys.SCHEMA, schema.VERSION + 1)
    with pytest.raises(LedgerSchemaError, match=f"newer than this version's {schema.VERSION}"):
        pipeline_runtime(THUMBNAILS_ONLY, redis_url, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "invocations"],
        env=_env(redis_url, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert f"newer than this version's {schema.VERSION}" in result.stderr
    assert "Traceback" not in result.stderr
    assert schema.stored_version(client) == schema.VERSION + 1  # left as it was


def _env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    return pipeline_env(PIPELINE_REDIS_URL=redis_url, PIPELINE_DATA_DIR=str(tmp_path / "data"))
