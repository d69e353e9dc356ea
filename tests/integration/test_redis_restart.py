"""docs/reliability.md row 6: the broker restarts mid-run. A Redis of its own with an append-only file
(never the shared one); a real Celery worker; uploads before, during and after the restart. Every
accepted event is processed; an event refused while Redis was down is sent again, as MinIO and
SNS do after a 503."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from PIL import Image

from pipeline.config import parse_config
from pipeline.embedded import free_port, redis_server_binary
from pipeline.errors import BrokerUnavailable
from pipeline.events import ObjectEvent
from pipeline.invocation import Status
from pipeline.ledger import Ledger, connect
from pipeline.measure.ingest import minio_body
from pipeline.measure.pipelines import PIPELINES, PipelineName, pipeline_under_test, tally
from pipeline.measure.soak import send_until_accepted
from pipeline.queue.app import queued_runtime
from pipeline.reconcile import reconcile
from pipeline.registry import build_pipeline
from pipeline.runtime import Runtime
from pipeline.settings import Settings
from pipeline.storage import LocalStore
from pipeline.supervisor import Supervisor
from tests.helpers import THUMBNAILS_ONLY, Proc, pipeline_env, wait_until

pytestmark = pytest.mark.integration

CONFIG = THUMBNAILS_ONLY + "limits:\n  visibility_timeout: 5\n  lease_seconds: 3\n"
_KEYS = [("before", i) for i in range(10)] + [("during", i) for i in range(10, 15)]
_KEYS += [("after", i) for i in range(15, 30)]


class AofRedis:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [redis_server_binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(self.alive, 10, "redis to start")

    def alive(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_connect_timeout=0.2).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # SIGTERM: Redis flushes its append-only file and exits
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[AofRedis]:
    server = AofRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def submit(runtime: Runtime, path: Path, key: str, refused: threading.Event | None = None) -> None:
    """Store the object; if the notification is refused (Redis down), send it again until accepted.
    `refused` is set when it was."""
    try:
        runtime.store.put_file("media", key, path, content_type="image/png")
        return
    except BrokerUnavailable:
        if refused is not None:
            refused.set()
    info = runtime.store.stat("media", key)
    event = ObjectEvent(
        source="local", event_name="s3:ObjectCreated:Put", bucket="media", key=key,
        etag=info.etag, version_id=info.version_id, size=info.size, content_type="image/png",
    )  # fmt: skip
    send_until_accepted(runtime, event, time.monotonic() + 30)


@pytest.mark.parametrize("pipeline_file", PIPELINES)
def test_redis_restart_mid_run_loses_nothing(
    aof_redis: AofRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pipeline_file: PipelineName
) -> None:
    under_test = pipeline_under_test(pipeline_file, {"visibility_timeout": 5, "lease_seconds": 3})
    config_path = tmp_path / "pipeline.yaml"
    config_path.write_text(under_test.text)
    pipeline = build_pipeline(parse_config(under_test.text, str(config_path)), str(config_path))
    settings = Settings(redis_url=aof_redis.url, data_dir=tmp_path / "data", config=config_path)
    runtime = queued_runtime(settings, pipeline, aof_redis.url)
    runtime.store.ensure_bucket("media")
    # The worker runs supervised, as under `pipeline up`: Celery 5.7's worker can exit when its
    # broker restarts (kombu restores unacknowledged messages through the closed connection), and
    # the supervisor starts it again; its unacknowledged tasks come back after the visibility timeout.
    monkeypatch.setenv("PIPELINE_CONFIG", str(config_path))  # the supervisor's children inherit these
    monkeypatch.setenv("PIPELINE_DATA_DIR", str(tmp_path / "data"))
    supervisor = Supervisor(aof_redis.url, quiet_workers=True)
    supervisor.add_worker(list(under_test.functions), 2)
    stop = [False]
    watcher = threading.Thread(target=supervisor.watch, args=(stop,), daemon=True)
    try:
        supervisor.start()
        supervisor.wait_workers(runtime.ledger)
        watcher.start()
        images = []
        for i in range(30):
            path = tmp_path / f"{i}.png"
            Image.new("RGB", (400, 300), (i * 8, 100, 200)).save(path)
            images.append(path)
        for i in range(10):
            submit(runtime, images[i], f"uploads/before-{i}.png")
        aof_redis.stop()  # mid-run: some queued, some running

        # Uploads while Redis is down: stored in the bucket, notifications refused and sent again.
        refused = threading.Event()

        def send_during() -> None:
            for i in range(10, 15):
                submit(runtime, images[i], f"uploads/during-{i}.png", refused)

        during = threading.Thread(target=send_during)
        during.start()
        assert refused.wait(30), "a notification sent while Redis is down was not refused"
        aof_redis.start()
        during.join(timeout=60)
        for i in range(15, 30):
            submit(runtime, images[i], f"uploads/after-{i}.png")

        keys = [f"uploads/{when}-{i}.png" for when, i in _KEYS]

        def finished() -> bool:
            reconcile(runtime, rate=0)  # what `pipeline up` runs periodically
            return tally(runtime.ledger, under_test, keys).processed == 30

        try:
            wait_until(finished, 90, "all 30 uploads to be processed", interval=0.5)
        except AssertionError:
            states = sorted(
                (i.key, i.function, i.status.value, i.attempts, (i.error or "")[:80])
                for i in runtime.ledger.invocations.query(bucket="media", limit=200)
            )
            raise AssertionError(
                f"{len(states)} invocations: {[s for s in states if s[2] != 'succeeded']}"
            ) from None
        found = tally(runtime.ledger, under_test, keys)
        assert (found.processed, found.lost, found.twice) == (30, 0, 0)
        outputs = {i.key for i in runtime.store.list("media", "derived/")}
        assert outputs == {out for key in keys for out in under_test.outputs_of(key)}  # none missing
    finally:
        stop[0] = True
        watcher.join(timeout=5)
        supervisor.stop()


def test_pipeline_up_rides_out_redis_going_away_while_it_starts(aof_redis: AofRedis, tmp_path: Path) -> None:
    """Redis goes away in the first seconds of `pipeline up`, while it waits for its workers:
    `up` keeps running, the gateway answers 503 meanwhile, and everything carries on by itself
    once Redis is back."""
    config = tmp_path / "pipeline.yaml"
    config.write_text(CONFIG)
    env = pipeline_env(
        PIPELINE_REDIS_URL=aof_redis.url,
        PIPELINE_CONFIG=str(config),
        PIPELINE_DATA_DIR=str(tmp_path / "data"),
        PIPELINE_RECONCILE_INTERVAL="0",  # the notification alone, not the reconciler, must bring it in
    )
    photo = tmp_path / "cat.png"
    Image.new("RGB", (64, 48), (200, 100, 50)).save(photo)
    stored = LocalStore(tmp_path / "data" / "store")  # written without a notification: we send it
    stored.ensure_bucket("media")
    info = stored.put_file("media", "uploads/cat.png", photo, content_type="image/png")
    body = minio_body("uploads/cat.png", info.size).replace(f"{info.size:032x}".encode(), info.etag.encode())
    port = free_port()
    up = Proc(["up", "--port", str(port)], env, tmp_path / "up.log")
    try:
        time.sleep(0.5)
        aof_redis.stop()  # while `up` waits for its gateway and workers
        url = f"http://127.0.0.1:{port}/events/minio"
        headers = {"Content-Type": "application/json"}
        # `up` got its gateway going without Redis and is now waiting for its workers: alive.
        wait_until(
            lambda: _status(url, body, headers) == 503 or not up.alive(),
            30,
            "the gateway to answer 503 while Redis is away",
        )
        assert up.alive(), up.output()[-3000:]
        aof_redis.start()
        wait_until(lambda: _status(url, body, headers) == 200, 60, "the notification to be accepted")
        ledger = Ledger(connect(aof_redis.url))
        wait_until(
            lambda: [i.status for i in ledger.invocations.query()] == [Status.SUCCEEDED], 90, "the thumbnails"
        )
        assert up.alive() and "Traceback" not in up.output(), up.output()[-3000:]
    finally:
        up.interrupt(signal.SIGINT, 60)


def _status(url: str, body: bytes, headers: dict[str, str]) -> int | None:
    try:
        return httpx.post(url, content=body, headers=headers, timeout=5).status_code
    except httpx.HTTPError:
        return None
