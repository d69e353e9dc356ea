"""The benchmarks' test bed: an embedded Redis, the benchmark's pipeline file, a runtime to enqueue
with, child processes, and the S3 peer; and the arithmetic every figure uses."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from functions.thumbnail import ThumbnailParams
from pipeline.config import parse_config
from pipeline.embedded import EmbeddedRedis
from pipeline.events.model import ObjectEvent
from pipeline.flows.model import RunStatus
from pipeline.invocation import Invocation, Status
from pipeline.measure.harness import ChildProcess, PipelineProcess, start_gateway
from pipeline.measure.samples import make_photo
from pipeline.queue.app import queued_runtime
from pipeline.registry import build_pipeline
from pipeline.settings import Settings
from pipeline.storage import LocalStore

TOKEN = "bench-token"  # noqa: S105 - a throwaway gateway on loopback
THUMBNAIL = ThumbnailParams(sizes=[256, 1024], format="jpeg", quality=82)
CONFIG = """
version: 1
buckets: [media]
functions:
  thumbnail: {concurrency: 2, time_limit: 60, max_attempts: 3}
rules:
  - name: image-thumbnails
    bucket: media
    prefix: uploads/
    content_types: ["image/*"]
    functions:
      - function: thumbnail
        params: {sizes: [256, 1024], format: jpeg, quality: 82}
  - {name: chains, bucket: media, prefix: chain/, content_types: ["image/*"], flow: chain}
flows:
  # Five steps of next to no work each (a copy of a 64 px PNG): what is left is the hops.
  chain:
    steps:
      s1: {function: copy}
      s2: {function: copy, needs: [s1]}
      s3: {function: copy, needs: [s2]}
      s4: {function: copy, needs: [s3]}
      s5: {function: copy, needs: [s4]}
"""


@dataclass
class Figure:
    what: str
    measured: str
    baseline: str
    goal: str
    met: bool | None = None


def figure_rows(figures: list[Figure]) -> tuple[list[str], list[tuple[str, ...]]]:
    """The columns and rows of a table of figures, for `DocSection.render`."""

    def met(f: Figure) -> str:
        return "—" if f.met is None else ("yes" if f.met else "**no**")

    columns = ["figure", "measured", "baseline, same run", "goal", "met"]
    return columns, [(f.what, f.measured, f.baseline, f.goal, met(f)) for f in figures]


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the value below which `q` of the samples lie."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 0.1 else f"{seconds * 1000:.0f} ms"


def dist(values: list[float]) -> str:
    p50, p95, p99 = (ms(pct(values, q)) for q in (0.5, 0.95, 0.99))
    return f"p50 {p50} · p95 {p95} · p99 {p99} (n={len(values)})"


def rss_mb(pids: list[int]) -> float:
    """The resident memory of these processes together, in MiB (those gone count nothing)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class Testbed:
    """An embedded Redis, the benchmark's pipeline file, a runtime to enqueue with, child processes."""

    def __init__(self, tmp: Path, config: str = CONFIG, *, persist: bool = True) -> None:
        self.tmp = tmp
        config_path = tmp / "pipeline.yaml"
        config_path.write_text(config)
        self.redis = EmbeddedRedis(tmp / "data", persist=persist)
        self.url = self.redis.start()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
        self.env.update(
            PIPELINE_REDIS_URL=self.url,
            PIPELINE_CONFIG=str(config_path),
            PIPELINE_DATA_DIR=str(tmp / "data"),
            PIPELINE_EVENTS_TOKEN=TOKEN,
        )
        self.pipeline = build_pipeline(parse_config(config, str(config_path)), str(config_path))
        settings = Settings(redis_url=self.url, data_dir=tmp / "data", config=config_path, s3_endpoint=None)
        self.runtime = queued_runtime(settings, self.pipeline, self.url)
        self.ledger = self.runtime.ledger
        self.silent = LocalStore(tmp / "data" / "store")  # writes without notifying: we time the notice
        self.silent.ensure_bucket("media")
        self.photo = make_photo(tmp / "photo-1mp.jpg")
        self.small = tmp / "small.png"
        Image.new("RGB", (64, 64), (90, 120, 150)).save(self.small)
        self.procs: list[ChildProcess] = []
        self._n = 0

    def _log(self) -> Path:
        self._n += 1
        return self.tmp / f"proc-{self._n}.log"

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> ChildProcess:
        """Any command (the bare Celery baseline); `pipeline` commands: `run`."""
        proc = ChildProcess(argv, env or self.env, self._log())
        self.procs.append(proc)
        return proc

    def run(self, args: list[str], env: dict[str, str] | None = None) -> PipelineProcess:
        """`python -m pipeline <args>`, stopped with the bed."""
        proc = PipelineProcess(args, env or self.env, self._log())
        self.procs.append(proc)
        return proc

    def gateway(self, *args: str, env: dict[str, str] | None = None) -> tuple[PipelineProcess, str]:
        """A gateway on a free port once it answers (`args`: more options); and its base URL."""
        proc, url = start_gateway(env or self.env, self._log(), *args)
        self.procs.append(proc)
        return proc, url

    def worker(
        self, concurrency: int, env: dict[str, str] | None = None, functions: str = "thumbnail"
    ) -> PipelineProcess:
        args = [
            "worker",
            "--functions",
            functions,
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "WARNING",
        ]
        return self.run(args, env)

    def wait_worker(self, proc: ChildProcess, timeout: float = 60) -> float:
        """Wait for the worker's first heartbeat (sent when it is ready); returns that time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for info in self.ledger.workers.live():
                if info.pid == proc.pid:
                    return info.started_at
            if not proc.alive():
                raise RuntimeError(f"worker exited with {proc.popen.returncode}; see {self.tmp}")
            time.sleep(0.005)
        raise TimeoutError("the worker did not come up")

    def stop(self, proc: ChildProcess) -> None:
        proc.stop(timeout=30)
        for info in self.ledger.workers.live():
            if info.pid == proc.pid:
                self.ledger.workers.gone(info.hostname)

    def close(self) -> None:
        for proc in self.procs:
            self.stop(proc)
        self.redis.stop()

    def event_for(self, key: str, path: Path, content_type: str) -> ObjectEvent:
        """Store an object without a notification and return the notification it would make."""
        return self.silent.put_file("media", key, path, content_type=content_type).event("local")

    def accept(self, event: ObjectEvent) -> list[str]:
        return list(self.runtime.intake.accept(event).invocations)

    def wait_done(self, ids: list[str], timeout: float = 120, poll: float = 0.001) -> list[Invocation]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            invs = self.ledger.invocations.get_many(ids)
            if all(inv.status.finished for inv in invs):
                bad = [inv for inv in invs if inv.status != Status.SUCCEEDED]
                if bad:
                    raise RuntimeError(f"{bad[0].key}: {bad[0].status} {bad[0].error}")
                return invs
            time.sleep(poll)
        raise TimeoutError(f"invocations did not finish within {timeout:g}s")

    def wait_run(self, run_id: str, timeout: float = 120, poll: float = 0.001) -> list[Invocation]:
        """Wait for a flow run to succeed; its steps' invocations in the flow's order."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.ledger.runs.get(run_id)
            if run is not None and run.status != RunStatus.RUNNING:
                if run.status != RunStatus.SUCCEEDED:
                    raise RuntimeError(f"run {run_id} of {run.key}: {run.status} {run.reason}")
                return self.ledger.invocations.get_many(i for s in run.steps.values() for i in s.invocations)
            time.sleep(poll)
        raise TimeoutError(f"run {run_id} did not finish within {timeout:g}s")


def stamp(inv: Invocation, field: str) -> float:
    value = getattr(inv, field)
    assert value is not None, f"{inv.id} has no {field}"
    return float(value)


@contextlib.contextmanager
def s3_peer(bed: Testbed) -> Iterator[tuple[dict[str, str], Any]]:
    """moto's server with bucket `media` notifying an SNS topic subscribed by a gateway over HTTP."""
    import boto3  # noqa: PLC0415 - the bench extra
    from moto.server import ThreadedMotoServer  # noqa: PLC0415

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = dict(
        bed.env,
        PIPELINE_S3_ENDPOINT=endpoint,
        PIPELINE_S3_ACCESS_KEY="bench",
        PIPELINE_S3_SECRET_KEY="bench",  # noqa: S106 - moto accepts any
        PIPELINE_S3_REGION="us-east-1",
        PIPELINE_SNS_VERIFY_SIGNATURE="false",  # moto signs with a fake key
    )
    gateway, gateway_url = bed.gateway(env=env)
    try:
        kw: dict[str, Any] = {
            "endpoint_url": endpoint,
            "region_name": "us-east-1",
            "aws_access_key_id": "bench",
            "aws_secret_access_key": "bench",
        }
        s3, sns = boto3.client("s3", **kw), boto3.client("sns", **kw)
        s3.create_bucket(Bucket="media")
        topic = sns.create_topic(Name="media-events")["TopicArn"]
        sns.subscribe(
            TopicArn=topic,
            Protocol="http",
            Endpoint=f"{gateway_url}/events/sns?token={TOKEN}",
        )
        s3.put_bucket_notification_configuration(
            Bucket="media",
            NotificationConfiguration={
                "TopicConfigurations": [
                    {
                        "TopicArn": topic,
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "uploads/"}]}},
                    }
                ]
            },
        )
        yield env, s3
    finally:
        bed.stop(gateway)
        server.stop()
