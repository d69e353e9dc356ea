from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from pipeline.embedded import EmbeddedRedis
from pipeline.settings import Settings
from tests.helpers import need


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`make unit` deselects the integration marker: a module under tests/integration that forgot
    it would slip real processes into the unit run, so its absence is an error."""
    for item in items:
        if "integration" in item.path.parts and item.get_closest_marker("integration") is None:
            raise pytest.UsageError(
                f"{item.path} runs real processes: add pytestmark = pytest.mark.integration"
            )


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis of this test session's own (the embedded server the project ships, nothing kept on
    disk), stopped when the session ends: parallel sessions never share a database."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), persist=False)
    try:
        url = server.start()
    except Exception as exc:
        need(False, f"cannot start a Redis for the tests: {exc}")
        raise
    yield url
    server.stop()


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """The session's Redis, emptied before and after each test."""
    client = redis.Redis.from_url(redis_server, socket_connect_timeout=1)
    client.flushall()
    yield redis_server
    client.flushall()
    client.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", redis_url=None)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3/SNS server, the S3 protocol peer for tests (no MinIO server can run here)."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        need(False, "moto[server] is not installed (pip install -e '.[test]')")
        raise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
