"""Sentinel URLs: parsed for the ledger, and named the way kombu's Sentinel transport wants them."""

from __future__ import annotations

import json

import pytest

from pipeline.ledger.endpoints import SentinelURL, broker


def test_a_sentinel_url_names_its_sentinels_master_db_and_password() -> None:
    url = "redis+sentinel://:p%40ss@s1:26380,s2,10.0.0.3:26381/main/2"
    parsed = SentinelURL.parse(url)
    assert parsed == SentinelURL([("s1", 26380), ("s2", 26379), ("10.0.0.3", 26381)], "main", 2, "p@ss")
    broker_url, options = broker(url)
    assert broker_url == (
        "sentinel://:p%40ss@s1:26380/2;sentinel://:p%40ss@s2:26379/2;sentinel://:p%40ss@10.0.0.3:26381/2"
    )
    # The sentinels are asked briefly and without retries: one that is down is skipped at once.
    sentinel_kwargs = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0, "retry": None}
    assert options == {"master_name": "main", "sentinel_kwargs": sentinel_kwargs}
    json.dumps(options)  # Celery answers `inspect conf` in JSON


def test_plain_urls_pass_through_and_a_sentinel_url_without_a_master_is_refused() -> None:
    assert SentinelURL.parse("redis://127.0.0.1:6379/0") is None
    assert broker("redis://127.0.0.1:6379/0") == ("redis://127.0.0.1:6379/0", {})
    with pytest.raises(ValueError, match="master name"):
        SentinelURL.parse("redis+sentinel://s1:26379")
