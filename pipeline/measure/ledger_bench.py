"""The ledger at scale: a million invocations loaded quickly, the queries operators and the
dashboard make answered on it beside the same queries on a 10,000-invocation ledger (two Redis
servers side by side, queried in alternation), Redis memory per invocation, and retention removing
a tenth of it in bounded batches, watched by SLOWLOG. The ledgers are `synthetic_ledger.py`'s.
"""

from __future__ import annotations

import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from pipeline.embedded import EmbeddedRedis, free_port
from pipeline.ledger import Ledger, connect, tune
from pipeline.ledger.retention import BATCH, Retention, Swept
from pipeline.measure.docs import DocSection, machine
from pipeline.measure.synthetic_ledger import SPAN_S, Loaded, load
from pipeline.measure.testbed import Figure, figure_rows, ms

SECTION = DocSection("bench:ledger", "The ledger at scale")


def render(figures: list[Figure], command: str, server: str) -> str:
    return SECTION.render(
        f"Command: `{command}`. Machine: {machine()}. Redis: {server}. Both ledgers, both gateways "
        "and the client ran on this machine in one run; each query alternates between the two ledgers.",
        *figure_rows(figures),
    )


# --- the queries, on both ledgers ------------------------------------------------------------------
@dataclass
class Side:
    """One ledger: its Redis, a gateway serving it, and what was loaded."""

    embedded: EmbeddedRedis
    url: str
    client: redis.Redis
    ledger: Ledger
    loaded: Loaded
    gateway: str = ""
    server: Any = None
    thread: threading.Thread | None = None
    sample_key: str = ""

    def serve(self, data_dir: Path) -> None:
        import uvicorn  # noqa: PLC0415

        from pipeline.gateway.app import create_app  # noqa: PLC0415
        from pipeline.settings import Settings  # noqa: PLC0415

        port = free_port()
        settings = Settings(redis_url=self.url, data_dir=data_dir, reconcile_interval=0)
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        self.gateway = f"http://127.0.0.1:{port}"

    def close(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            if self.thread is not None:
                self.thread.join(timeout=10)
        self.embedded.stop()


def _side(root: Path, name: str, invocations: int, now: float, server_binary: str | None) -> Side:
    server = EmbeddedRedis(root / name, persist=False, binary=server_binary)
    url = server.start()
    client = connect(url)
    tune(client)
    ledger = Ledger(client)
    loaded = load(ledger, client, invocations, now)
    side = Side(server, url, client, ledger, loaded)
    # An object the bucket+key query asks for: one of the most recent uploads.
    [newest] = ledger.invocations.query(limit=1)
    side.sample_key = newest.key
    side.serve(root / name / "data")
    return side


QUERIES: list[tuple[str, Callable[[Side], str]]] = [
    ("GET /api/invocations?status=failed", lambda s: "/api/invocations?status=failed"),
    ("GET /api/invocations?function=filter", lambda s: "/api/invocations?function=filter"),
    ("GET /api/invocations?bucket&key", lambda s: f"/api/invocations?bucket=media&key={s.sample_key}"),
    ("dashboard Overview", lambda s: "/admin"),
    ("dashboard Invocations, failed", lambda s: "/admin/invocations?status=failed"),
    ("dashboard Usage", lambda s: "/admin/usage"),
    ("GET /api/runs?status=succeeded", lambda s: "/api/runs?status=succeeded"),
]


def _time_queries(small: Side, large: Side, rounds: int) -> dict[str, tuple[list[float], list[float]]]:
    times: dict[str, tuple[list[float], list[float]]] = {}
    # A client (and a dashboard session) per gateway: cookies do not tell ports apart.
    with httpx.Client(timeout=60) as http_small, httpx.Client(timeout=60) as http_large:
        clients = {id(small): http_small, id(large): http_large}
        for side in (small, large):
            clients[id(side)].post(
                side.gateway + "/admin/login",
                data={"password": "-", "next": "/admin"},
                headers={"origin": side.gateway},
            )
        for name, path in QUERIES:
            pair: tuple[list[float], list[float]] = ([], [])
            for i in range(rounds + 2):
                order = [(small, pair[0]), (large, pair[1])]
                for side, out in order if i % 2 else reversed(order):  # alternate who goes first
                    began = time.perf_counter()
                    clients[id(side)].get(side.gateway + path(side)).raise_for_status()
                    if i >= 2:  # the first rounds warm connections and caches
                        out.append(time.perf_counter() - began)
            times[name] = pair
        # The command as an operator runs it: a process of its own, so its start is in the time.
        pair = ([], [])
        for i in range(rounds + 2):
            for side, out in ((small, pair[0]), (large, pair[1])):
                env = {**os.environ, "PIPELINE_REDIS_URL": side.url}
                began = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "pipeline", "invocations", "--status", "failed"],
                    env=env, capture_output=True, check=True, timeout=120,
                )  # fmt: skip
                if i >= 2:
                    out.append(time.perf_counter() - began)
        times["pipeline invocations --status failed"] = pair
    return times


def _retention(side: Side, now: float) -> tuple[Swept, float]:
    """Sweep what a 5.4-day retention leaves behind (a tenth of a six-day ledger), with SLOWLOG
    catching every command over 1 ms; returns what was swept and the slowest command's seconds."""
    client = side.client
    client.config_set("slowlog-log-slower-than", 1000)
    client.config_set("slowlog-max-len", 100_000)
    client.slowlog_reset()
    sweeper = Retention(client, int(SPAN_S * 0.9))
    swept = sweeper.sweep(now=now)
    slowest = max((entry["duration"] for entry in client.slowlog_get(100_000)), default=0)
    client.config_set("slowlog-log-slower-than", 10_000)
    return swept, slowest / 1e6


def server_in_use(server_binary: str | None) -> str | None:
    """The redis-server the bench runs: the one given, else one on PATH (what a deployment runs,
    with its own allocator), else the embedded one (None)."""
    return server_binary or shutil.which("redis-server")


def bench_ledger(
    large: int = 1_000_000, small: int = 10_000, rounds: int = 20, server_binary: str | None = None
) -> tuple[list[Figure], str]:
    """The figures, and which Redis (version and allocator) held the ledgers."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    now = time.time()
    with tempfile.TemporaryDirectory(prefix="pipeline-ledger-bench-") as tmp:
        root = Path(tmp)
        sides: list[Side] = []
        try:
            sides.append(_side(root, "small", small, now, server_binary))
            sides.append(_side(root, "large", large, now, server_binary))
            low, high = sides
            described = describe_server(low.client)
            times = _time_queries(low, high, rounds)
            figures = [_memory(high, low)]
            for name, (few, many) in times.items():
                ratio = statistics.median(many) / statistics.median(few)
                figures.append(
                    Figure(
                        f"{name}: {high.loaded.invocations:,} invocations vs {low.loaded.invocations:,}",
                        f"p50 {ms(statistics.median(many))} ({ratio:.2f}x)",
                        f"p50 {ms(statistics.median(few))}",
                        "<= 1.5x",
                        ratio <= 1.5,
                    )
                )
            swept, slowest = _retention(high, now)
            figures.append(
                Figure(
                    f"retention: {swept.invocations:,} invocations, {swept.events:,} notifications and "
                    f"{swept.runs:,} runs removed in {swept.batches} batches",
                    (f"slowest command {ms(slowest)}" if slowest else "no command took 1 ms (SLOWLOG empty)")
                    + f"; {swept.seconds:.1f} s in all",
                    f"batches of {BATCH}",
                    "no command over 10 ms",
                    slowest <= 0.010,
                )
            )
            figures.append(
                Figure(
                    f"loading the synthetic ledger ({high.loaded.events:,} notifications, "
                    f"{high.loaded.runs:,} runs)",
                    f"{high.loaded.invocations / high.loaded.seconds:,.0f} invocations/s",
                    f"{high.loaded.seconds:.0f} s for {high.loaded.invocations:,}",
                    "—",
                )
            )
        finally:
            for side in sides:
                side.close()
    return figures, described


def describe_server(client: redis.Redis) -> str:
    info = client.info("server")
    allocator = client.info("memory").get("mem_allocator", "?")
    return f"{info.get('redis_version', '?')} ({allocator})"


def _memory(high: Side, low: Side) -> Figure:
    per = high.loaded.used_memory / high.loaded.invocations
    per_low = low.loaded.used_memory / low.loaded.invocations
    return Figure(
        "Redis memory per invocation, with its share of its notification (raw body once), claims, "
        "join sets, indexes and runs",
        f"{per:,.0f} B at {high.loaded.invocations:,}",
        f"{per_low:,.0f} B at {low.loaded.invocations:,}",
        "<= 1,536 B",
        per <= 1536,
    )
