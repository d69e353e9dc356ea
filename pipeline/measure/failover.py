"""Redis failing over under load: a master, two replicas and a sentinel (each a real redis-server
process), a real gateway (`PIPELINE_REDIS_URL=redis+sentinel://...`, `PIPELINE_REDIS_MIN_REPLICAS=1`)
and a real worker, with the built-in pipeline file (each image: screen, then thumbnail and filter)
or the one-rule file (one thumbnail invocation). About 100 notifications/s are sent for 30 s and
the master is SIGKILLed after 10 s. A notification refused during the failover (503, or no answer)
is sent again half a second later, as MinIO and SNS do. Afterwards every acknowledged notification
must have been processed exactly once. `tests/integration/test_failover.py` holds it to that;
`pipeline bench system` reports its figures."""

from __future__ import annotations

import copy
import os
import secrets
import signal
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import httpx
import redis
from PIL import Image

from pipeline.embedded import free_port, redis_server_binary
from pipeline.ledger import Ledger, connect
from pipeline.measure.harness import PipelineProcess, WaitTimedOut, start_gateway, wait_until
from pipeline.measure.pipelines import PipelineName, PipelineUnderTest, pipeline_under_test, tally
from pipeline.measure.testbed import Figure
from pipeline.queue.app import queued_runtime
from pipeline.reconcile import resend_stuck
from pipeline.registry import load_pipeline
from pipeline.settings import Settings
from pipeline.storage import LocalStore

TOKEN = secrets.token_urlsafe(16)  # the gateway's notification token, this run's own
# A MinIO notification of one upload (its key, ETag and size are filled in per object).
NOTIFICATION: dict[str, Any] = {
    "EventName": "s3:ObjectCreated:Put",
    "Key": "",
    "Records": [
        {
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "eventName": "s3:ObjectCreated:Put",
            "s3": {"bucket": {"name": "media"}, "object": {"key": "", "size": 0, "eTag": ""}},
        }
    ],
}


class RedisGroup:
    """A master, two replicas and one sentinel (quorum 1), each a redis-server process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.binary = redis_server_binary()
        self.ports = [free_port() for _ in range(3)]
        self.sentinel_port = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def _start(self, name: str, args: list[str]) -> None:
        home = self.root / name
        home.mkdir(parents=True, exist_ok=True)
        with (home / "log").open("wb") as log:  # the child keeps its own handle
            self.procs[name] = subprocess.Popen(
                [self.binary, *args, "--dir", str(home)], stdout=log, stderr=subprocess.STDOUT
            )

    def start(self) -> str:
        """Start them all and wait until both replicas are in sync; returns the sentinel URL."""
        master = self.ports[0]
        for i, port in enumerate(self.ports):
            args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            self._start(f"redis{i}", args + (["--replicaof", "127.0.0.1", str(master)] if i else []))
        conf = self.root / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\n"
            f"sentinel monitor main 127.0.0.1 {master} 1\n"
            "sentinel down-after-milliseconds main 1000\n"
            "sentinel failover-timeout main 5000\n"
            "sentinel parallel-syncs main 2\n"
        )
        master_client = redis.Redis(host="127.0.0.1", port=master)
        wait_until(lambda: _replicas(master_client) == 2, 30, "both replicas in sync")
        # The sentinel learns of replicas from the master's INFO, at its first look and then
        # every 10 s: started once they are in sync, it knows them at once. A master killed
        # before it knows any leaves it nothing to promote ("failover-abort-no-good-slave").
        self._start("sentinel", [str(conf), "--sentinel"])
        url = f"redis+sentinel://127.0.0.1:{self.sentinel_port}/main/0"
        sentinel = redis.Redis(host="127.0.0.1", port=self.sentinel_port, decode_responses=True)
        wait_until(lambda: _known_replicas(sentinel) == 2, 30, "the sentinel to know both replicas")
        return url

    def kill_master(self) -> None:
        self.procs["redis0"].send_signal(signal.SIGKILL)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)


def _known_replicas(sentinel: redis.Redis) -> int:
    """Replicas of `main` the sentinel knows and could promote (not down, not disconnected)."""
    try:
        replicas = sentinel.sentinel_slaves("main")
    except redis.RedisError:
        return 0
    bad = ("is_sdown", "is_odown", "is_disconnected")
    return sum(1 for r in replicas if r.get("is_slave") and not any(r.get(flag) for flag in bad))


def _replicas(client: Any) -> int:
    try:
        return int(client.info("replication").get("connected_slaves", 0))
    except Exception:
        return 0


@dataclass
class Outcome:
    sent: int
    pipeline_file: PipelineName = "built-in"
    acknowledged: int = 0
    answers: Counter[int | str] = field(default_factory=Counter)  # status code or error -> count
    processed: int = 0  # acknowledged uploads whose every function succeeded, each once
    lost: int = 0  # acknowledged, and never (fully) processed
    duplicated: int = 0  # acknowledged, and a function (or a run) of it ran more than once
    outputs: int = 0  # uploads whose every output is in the bucket
    resent: int = 0  # queue messages the reconciler sent again
    worker_restarts: int = 0  # the worker exited and was started again, as `pipeline up` does
    longest_gap_s: float = 0.0  # the longest time without an acknowledgement, after the kill

    @property
    def refused(self) -> int:
        return sum(n for answer, n in self.answers.items() if not (isinstance(answer, int) and answer < 300))


def _body(key: str, etag: str, size: int) -> dict[str, Any]:
    body = copy.deepcopy(NOTIFICATION)
    body["Key"] = f"media/{key}"
    body["Records"][0]["s3"]["object"].update(key=quote_plus(key), eTag=etag, size=size)
    return body


def run_failover(
    root: Path,
    rate: int = 100,
    seconds: int = 30,
    kill_at: float = 10,
    pipeline_file: PipelineName = "built-in",
) -> Outcome:
    """Send `rate` notifications/s for `seconds`, kill the master after `kill_at` s, and count."""
    root.mkdir(parents=True, exist_ok=True)
    group = RedisGroup(root / "redis")
    try:
        url = group.start()
        return _under_load(root, group, url, (rate, seconds, kill_at), pipeline_under_test(pipeline_file))
    finally:
        group.stop()


def _under_load(
    root: Path, group: RedisGroup, url: str, load: tuple[int, int, float], under_test: PipelineUnderTest
) -> Outcome:
    rate, seconds, kill_at = load
    config = root / "pipeline.yaml"
    config.write_text(under_test.text)
    data = root / "data"
    store, infos = _objects(root, data, rate * seconds)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(
        PIPELINE_REDIS_URL=url,
        PIPELINE_REDIS_MIN_REPLICAS="1",
        PIPELINE_CONFIG=str(config),
        PIPELINE_DATA_DIR=str(data),
        PIPELINE_EVENTS_TOKEN=TOKEN,
        PIPELINE_RECONCILE_INTERVAL="0",
    )
    gateway, gateway_url = start_gateway(env, root / "gateway.log", port=port, timeout=30)
    worker = _SupervisedWorker(
        ["worker", "--functions", ",".join(under_test.functions), "--concurrency", "2"],
        env,
        root / "worker.log",
    )
    ledger = Ledger(connect(url))
    outcome = Outcome(sent=len(infos), pipeline_file=under_test.name)
    acked: dict[str, float] = {}
    lock = threading.Lock()
    try:
        wait_until(lambda: ledger.workers.live() or not worker.proc.alive(), 30, "the worker")
        worker.start_watching()
        start = time.monotonic()

        def send(i: int, key: str) -> None:
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            body = _body(key, infos[key].etag, infos[key].size)
            deadline = time.monotonic() + 120  # MinIO and SNS retry for longer still
            with httpx.Client(timeout=5) as http:
                while time.monotonic() < deadline:
                    answer: int | str
                    try:
                        answer = http.post(
                            f"{gateway_url}/events/minio",
                            json=body,
                            headers={"Authorization": f"Bearer {TOKEN}"},
                        ).status_code
                    except httpx.HTTPError as exc:
                        answer = type(exc).__name__
                    with lock:
                        outcome.answers[answer] += 1
                        if isinstance(answer, int) and answer < 300:
                            acked[key] = time.monotonic() - start
                            return
                    time.sleep(0.5)  # as a store's retry would, later

        killer = threading.Timer(kill_at, group.kill_master)
        killer.start()
        with ThreadPoolExecutor(max_workers=64) as pool:
            for future in [pool.submit(send, i, key) for i, key in enumerate(infos)]:
                future.result()
        killer.join()
        if not gateway.alive():
            raise RuntimeError(f"the gateway did not survive the failover; see {root}")
        outcome.resent = _drain(ledger, url, data, config, len(acked) * len(under_test.functions))
        _count(outcome, acked, ledger, store, kill_at, under_test)
    finally:
        gateway.stop(timeout=60)
        outcome.worker_restarts = worker.stop()
    return outcome


class _SupervisedWorker:
    """The worker as `pipeline up` runs it: started again when it exits. Celery's worker can exit
    when its broker fails over (kombu restores a rejected message through a connection that is
    gone); its unacknowledged messages come back after the visibility timeout either way."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.argv, self.env, self.log = argv, env, log
        self.proc = PipelineProcess(argv, env, log)
        self.restarts = 0
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)

    def start_watching(self) -> None:
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            if not self.proc.alive():
                self.proc.stop()  # reaped, its log closed
                self.restarts += 1
                self.proc = PipelineProcess(
                    self.argv, self.env, self.log.with_suffix(f".{self.restarts}.log")
                )

    def stop(self) -> int:
        """Stop watching and the worker; returns how many times it was started again."""
        self._stop.set()
        if self._watcher.is_alive():
            self._watcher.join(timeout=5)
        self.proc.stop(timeout=60)
        return self.restarts


def _objects(root: Path, data: Path, n: int) -> tuple[LocalStore, dict[str, Any]]:
    """`n` stored objects (nobody is notified: the notifications are what the run sends)."""
    store = LocalStore(data / "store")
    store.ensure_bucket("media")
    image = root / "tile.png"
    Image.new("RGB", (48, 48), (120, 30, 60)).save(image)
    return store, {
        f"uploads/{i:05d}.png": store.put_file("media", f"uploads/{i:05d}.png", image) for i in range(n)
    }


def _count(
    outcome: Outcome,
    acked: dict[str, float],
    ledger: Ledger,
    store: LocalStore,
    kill_at: float,
    under_test: PipelineUnderTest,
) -> None:
    """What became of the acknowledged notifications, and how long acknowledgements stopped."""
    outcome.acknowledged = len(acked)
    times = sorted(t for t in acked.values() if t >= kill_at)
    outcome.longest_gap_s = max((b - a for a, b in zip([kill_at, *times], times, strict=False)), default=0.0)
    found = tally(ledger, under_test, list(acked))
    outcome.processed, outcome.lost, outcome.duplicated = found.processed, found.lost, found.twice
    present = {o.key for o in store.list("media", "derived/")}
    outcome.outputs = sum(under_test.outputs_of(key) <= present for key in acked)


def _drain(ledger: Ledger, url: str, data: Path, config: Path, expected: int) -> int:
    """Wait until the `expected` invocations of the acknowledged notifications have finished (and
    every run has ended); returns how many
    queue messages the reconciler sent again. A message a worker popped in the instant before the
    kill can be gone from the promoted replica while the ledger (replicated before the 2xx) still
    has its invocation queued: the reconciler resends it, as it does any message lost in a broker."""
    settings = Settings(redis_url=url, data_dir=data, config=config)
    runtime = queued_runtime(settings, load_pipeline(Settings(config=config)), url)
    resent: list[int] = []
    last = [time.monotonic()]

    def drained() -> bool:
        counts = ledger.invocations.counts()
        waiting = counts["queued"] + counts["running"]
        if waiting and time.monotonic() - last[0] > 10:
            last[0] = time.monotonic()
            resent.append(resend_stuck(runtime, older_than=10))
        finished = sum(counts[s] for s in ("succeeded", "failed", "dead"))
        return waiting == 0 and finished >= expected and ledger.runs.counts()["running"] == 0

    try:
        wait_until(drained, 240, "every acknowledged notification processed", interval=1)
    except WaitTimedOut as exc:
        raise WaitTimedOut(f"{exc}: {ledger.invocations.counts()}, resent {resent}") from None
    return sum(resent)


# (notifications/s, seconds, kill after s) per file: the built-in one makes three invocations of
# each upload, screening the slowest, so it runs at a rate its worker drains in about a minute.
LOADS: dict[PipelineName, tuple[int, int, float]] = {"built-in": (30, 20, 8.0), "one-rule": (100, 30, 10.0)}


def bench_failover(root: Path) -> list[Figure]:
    """`pipeline bench system`'s failover part: the built-in pipeline file and the one-rule file."""
    figures: list[Figure] = []
    for name in ("built-in", "one-rule"):
        rate, seconds, kill_at = LOADS[name]
        o = run_failover(root / name, rate, seconds, kill_at, pipeline_file=name)
        lost_or_twice = o.lost + o.duplicated
        figures += [
            Figure(
                f"Redis master killed under {rate} notifications/s, {name} pipeline file (Sentinel, "
                "PIPELINE_REDIS_MIN_REPLICAS=1): acknowledged / processed / lost / processed twice",
                f"{o.acknowledged:,} / {o.processed:,} / {o.lost} / {o.duplicated}",
                f"{o.sent:,} sent; {o.refused} refused during the failover and sent again; "
                f"{o.resent} message(s) resent by the reconciler; worker restarted {o.worker_restarts}x",
                "every acknowledged one processed once",
                lost_or_twice == 0 and o.processed == o.acknowledged == o.sent,
            ),
            Figure(
                f"longest time without an acknowledgement after the kill ({name})",
                f"{o.longest_gap_s:.1f} s",
                "sentinel down-after 1 s",
                "—",
                None,
            ),
        ]
    return figures
