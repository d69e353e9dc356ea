"""`pipeline up` and `pipeline demo`: start the gateway and workers as child processes, watch them,
and shut them down cleanly (SIGTERM = Celery's warm shutdown: running tasks finish first)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import httpx
import redis

from pipeline.embedded import env_with_redis
from pipeline.ledger import Ledger


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0


@dataclass
class Supervisor:
    redis_url: str
    quiet_workers: bool = False
    children: list[Child] = field(default_factory=list)
    # A restart must never start a child after stop() has collected them: spawn and stop share a
    # lock, and nothing is spawned once stopping has begun.
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: bool = False

    def add_worker(self, functions: list[str], concurrency: int) -> Child:
        argv = ["worker", "--functions", ",".join(functions), "--concurrency", str(concurrency)]
        if self.quiet_workers:
            argv += ["--loglevel", "WARNING"]
        child = Child(name=f"worker[{','.join(functions)}]", argv=argv)
        self.children.append(child)
        return child

    def add_webhook_worker(self) -> Child:
        argv = ["worker", "--webhooks"]
        if self.quiet_workers:
            argv += ["--loglevel", "WARNING"]
        child = Child(name="worker[webhooks]", argv=argv)
        self.children.append(child)
        return child

    def add_gateway(self, host: str, port: int) -> Child:
        child = Child(name="gateway", argv=["gateway", "--host", host, "--port", str(port)])
        self.children.append(child)
        return child

    def _spawn(self, child: Child) -> None:
        with self._lock:
            if self._stopping:
                return
            self._spawn_locked(child)

    def _spawn_locked(self, child: Child) -> None:
        child.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", *child.argv],
            env=env_with_redis(self.redis_url),
            # Own process group: Ctrl-C reaches only the supervisor, which stops children in order.
            start_new_session=True,
        )
        child.started_at = time.monotonic()

    def start(self) -> None:
        for child in self.children:
            self._spawn(child)

    def wait_workers(self, ledger: Ledger, timeout: float = 30.0) -> bool:
        """Wait until every worker child has registered its heartbeat (i.e. consumes its queues).
        False if they have not within `timeout` (Redis away, say): they register once they can,
        and the caller carries on either way. A child that exits meanwhile is restarted."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.restart_exited()
            pids = {c.process.pid for c in self.children if c.process and c.name.startswith("worker")}
            try:
                if pids <= {w.pid for w in ledger.workers.live()}:
                    return True
            except redis.RedisError:
                pass  # Redis away: the workers cannot register either; keep waiting
            time.sleep(0.05)
        return False

    def wait_gateway(self, url: str, timeout: float = 30.0) -> bool:
        """Wait until the gateway answers at all: 503 from /healthz (Redis away) counts, since it
        then answers notifications with 503 and the senders retry."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.restart_exited()
            try:
                if httpx.get(f"{url}/healthz", timeout=1.0).status_code in (200, 503):
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        return False

    def restart_exited(self, should_stop: list[bool] | None = None) -> None:
        """Restart children that exited, with backoff for one that keeps crashing."""
        for child in self.children:
            proc = child.process
            if proc is not None and proc.poll() is not None and not (should_stop and should_stop[0]):
                delay = min(30.0, 0.5 * 2**child.restarts)
                if time.monotonic() - child.started_at > 60:
                    child.restarts, delay = 0, 0.5  # it ran fine for a while: not a crash loop
                print(f"{child.name} exited ({proc.returncode}); restarting in {delay:g}s", flush=True)
                time.sleep(delay)
                child.restarts += 1
                self._spawn(child)

    def watch(self, should_stop: list[bool]) -> None:
        """Keep children running until `should_stop[0]`; a crashed child is restarted with backoff."""
        while not should_stop[0]:
            self.restart_exited(should_stop)
            time.sleep(0.2)

    def stop(self, timeout: float = 30.0) -> None:
        with self._lock:
            self._stopping = True
        running = [c.process for c in self.children if c.process is not None and c.process.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in running:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def install_stop_handlers(flag: list[bool]) -> None:
    def handler(signum: int, _frame: object) -> None:
        flag[0] = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
