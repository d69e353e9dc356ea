"""Redis with two replicas and Sentinel, the master killed under load: about 100 notifications/s
for 30 s to a real gateway (`PIPELINE_REDIS_URL=redis+sentinel://...`, `PIPELINE_REDIS_MIN_REPLICAS=1`)
and a real worker. Notifications during the failover get 503 and are sent again, as MinIO and SNS
do; every acknowledged notification is processed exactly once; the gateway and the worker follow
the promoted replica by themselves."""

from __future__ import annotations

import copy
import json
import signal
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest
from PIL import Image

from pipeline.embedded import free_port, redis_server_binary
from pipeline.ledger import Ledger, connect
from pipeline.queue.app import queued_runtime
from pipeline.reconcile import resend_stuck
from pipeline.registry import load_pipeline
from pipeline.settings import Settings
from pipeline.storage import LocalStore
from tests.helpers import EVENTS, Proc, pipeline_env, wait_until

pytestmark = pytest.mark.integration

TOKEN = "failover-token"
CONFIG = """
version: 1
buckets: [media]
functions:
  copy: {concurrency: 2, max_attempts: 5}
rules:
  - {name: copies, bucket: media, prefix: uploads/, functions: [{function: copy}]}
"""
RATE = 100
SECONDS = 30
KILL_AT = 10


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
        self._start("sentinel", [str(conf), "--sentinel"])
        url = f"redis+sentinel://127.0.0.1:{self.sentinel_port}/main/0"
        client = connect(url)
        wait_until(lambda: _replicas(client) == 2, 30, "both replicas in sync")
        return url

    def kill_master(self) -> None:
        self.procs["redis0"].send_signal(signal.SIGKILL)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)


def _replicas(client: Any) -> int:
    try:
        return int(client.info("replication").get("connected_slaves", 0))
    except Exception:
        return 0


def _body(key: str, etag: str, size: int) -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(json.loads((EVENTS / "minio-put.json").read_text()))
    body["Key"] = f"media/{key}"
    record = body["Records"][0]
    record["s3"]["bucket"]["name"] = "media"
    record["s3"]["object"].update(key=quote_plus(key), eTag=etag, size=size)
    return body


@pytest.mark.timeout(480)
def test_a_failover_under_load_loses_and_repeats_nothing(tmp_path: Path) -> None:
    group = RedisGroup(tmp_path / "redis")
    try:
        url = group.start()
    except BaseException:
        group.stop()
        raise
    config = tmp_path / "pipeline.yaml"
    config.write_text(CONFIG)
    data = tmp_path / "data"
    store = LocalStore(data / "store")  # the objects exist; the notifications are what we send
    store.ensure_bucket("media")
    image = tmp_path / "tile.png"
    Image.new("RGB", (48, 48), (120, 30, 60)).save(image)
    total = RATE * SECONDS
    infos = {
        f"uploads/{i:05d}.png": store.put_file("media", f"uploads/{i:05d}.png", image) for i in range(total)
    }
    port = free_port()
    env = pipeline_env(
        PIPELINE_REDIS_URL=url,
        PIPELINE_REDIS_MIN_REPLICAS="1",
        PIPELINE_CONFIG=str(config),
        PIPELINE_DATA_DIR=str(data),
        PIPELINE_WEBHOOK_TOKEN=TOKEN,
        PIPELINE_RECONCILE_INTERVAL="0",
    )
    gateway = Proc(["gateway", "--port", str(port)], env, tmp_path / "gateway.log")
    worker = Proc(["worker", "--functions", "copy", "--concurrency", "2"], env, tmp_path / "worker.log")
    ledger = Ledger(connect(url))
    gateway_url = f"http://127.0.0.1:{port}"
    statuses: Counter[int | str] = Counter()
    acked: dict[str, float] = {}
    lock = threading.Lock()
    try:
        wait_until(lambda: _up(gateway_url) or not gateway.alive(), 30, "the gateway")
        wait_until(lambda: ledger.workers.live() or not worker.alive(), 30, "the worker")
        start = time.monotonic()

        def send(i: int, key: str) -> None:
            time.sleep(max(0.0, start + i / RATE - time.monotonic()))
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
                        statuses[answer] += 1
                    if isinstance(answer, int) and answer < 300:
                        with lock:
                            acked[key] = time.monotonic() - start
                        return
                    time.sleep(0.5)  # as a store's retry would, later

        killer = threading.Timer(KILL_AT, group.kill_master)
        killer.start()
        with ThreadPoolExecutor(max_workers=64) as pool:
            for future in [pool.submit(send, i, key) for i, key in enumerate(infos)]:
                future.result()
        killer.join()
        assert gateway.alive() and worker.alive(), "a process did not survive the failover"

        # A message a worker popped in the instant before the kill can be gone from the promoted
        # replica while the ledger (replicated before the 2xx) still has its invocation queued:
        # the reconciler sends such messages again, as it does any message lost in the broker.
        runtime = queued_runtime(
            Settings(redis_url=url, data_dir=data, config=config), load_pipeline(Settings(config=config)), url
        )
        last_resend = [time.monotonic()]

        def drained() -> bool:
            counts = ledger.invocations.counts()
            waiting = counts["queued"] + counts["running"]
            if waiting and time.monotonic() - last_resend[0] > 10:
                last_resend[0] = time.monotonic()
                resent.append(resend_stuck(runtime, older_than=10))
            return waiting == 0 and sum(counts[s] for s in ("succeeded", "failed", "dead")) >= len(acked)

        resent: list[int] = []
        try:
            wait_until(drained, 240, "every acknowledged notification processed", interval=1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {ledger.invocations.counts()}, resent {resent}") from None
        outcome = Counter[str]()
        for key in acked:
            invs = ledger.invocations.for_object("media", key)
            outcome["lost"] += not invs or invs[0].status.value != "succeeded"
            outcome["duplicated"] += len(invs) > 1
            outcome["outputs"] += store.stat("media", f"derived/{key}/copy/original.png").size > 0
    finally:
        gateway.stop()
        worker.stop()
        group.stop()
    report = {
        "sent": total,
        "acknowledged": len(acked),
        "answers": dict(statuses),
        "resent by the reconciler": sum(resent),
        **outcome,
    }
    print(report)
    assert len(acked) == total, report  # every notification was acknowledged in the end
    assert statuses[503] > 0, report  # the failover was seen: some were refused and sent again
    assert outcome["lost"] == 0 and outcome["duplicated"] == 0 and outcome["outputs"] == total, report


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
