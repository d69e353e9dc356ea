"""Helpers for tests that run real processes."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from PIL import Image

from pipeline.embedded import free_port
from pipeline.measure.harness import PipelineProcess, pipeline_env, start_gateway, wait_until

if TYPE_CHECKING:
    import redis

    from functions.spec import FunctionSpec, Output
    from pipeline.ledger.keys import Claim
    from pipeline.runtime import Runtime

__all__ = [
    "BUILT_IN",
    "EVENTS",
    "REPO",
    "THUMBNAILS_ONLY",
    "Proc",
    "ServedApp",
    "assert_reports_declared",
    "broker_copies",
    "built_in_template",
    "consumed_queues",
    "free_port",
    "load_image",
    "need",
    "pipeline_env",
    "pipeline_runtime",
    "plant_claim",
    "start_gateway",
    "wait_until",
]

# The processes are started by the same harness as the benchmarks': one way to start them.
Proc = PipelineProcess

REPO = Path(__file__).resolve().parent.parent
EVENTS = Path(__file__).resolve().parent / "fixtures" / "events"

# What users run: the built-in pipeline file (its `images` and `video` flows). Delivery tests run
# through it as well as through the one-rule file below.
BUILT_IN = (REPO / "pipeline" / "default_pipeline.yaml").read_text("utf-8")


def built_in_template() -> str:
    """The built-in pipeline file as a template for `str.format(bucket=...)`: tests against the S3
    peer give each test a bucket of its own instead of `media`."""
    text = BUILT_IN.replace("{", "{{").replace("}", "}}")
    for plain, templated in (
        ("  - media\n", "  - {bucket}\n"),
        ("bucket: media\n", "bucket: {bucket}\n"),
        ("s3://media/", "s3://{bucket}/"),
    ):
        assert plain in text, plain
        text = text.replace(plain, templated)
    assert "media\n" not in text and "s3://media" not in text
    return text


# One rule, one function: tests of the machinery count exact invocations against this.
THUMBNAILS_ONLY = """
version: 1
buckets: [media]
rules:
  - name: image-thumbnails
    bucket: media
    prefix: uploads/
    content_types: ["image/*"]
    functions:
      - function: thumbnail
        params: {sizes: [256, 1024]}
"""


def need(condition: bool, reason: str) -> None:
    """Skip when a service is missing, except under CI=true, where a missing service is a failure."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"required service missing in CI: {reason}")
    pytest.skip(reason)


def consumed_queues(runtime: Runtime, pid: int) -> set[str] | None:
    """The queues the live worker with process id `pid` takes messages from now, as its own event
    loop answers Celery's `active_queues` (None: not live or no answer yet). A paused queue is
    absent: no message in it can be taken, which proves a negative without waiting."""
    from pipeline.queue.app import create_celery

    live = [w.hostname for w in runtime.ledger.workers.live() if w.pid == pid]
    if not live:
        return None
    app = create_celery(runtime.redis_url, runtime.pipeline)
    try:
        replies = app.control.inspect(destination=live, timeout=1.0).active_queues() or {}
    finally:
        app.close()
    queues = replies.get(live[0])
    return None if queues is None else {q["name"] for q in queues}


def broker_copies(runtime: Runtime, queue: str) -> int:
    """Messages of `queue` the broker still holds: waiting in the queue, or taken by a worker and
    not yet acknowledged (kombu's `unacked` hash, from which it redelivers). 0: no copy can run
    again, however long one waits."""
    return runtime.dispatcher.depth(queue) + int(runtime.redis.hlen("unacked"))


class ServedApp:
    """An ASGI app served by a real uvicorn server on a free loopback port, in a thread."""

    def __init__(self, app: object) -> None:
        import threading

        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")  # type: ignore[arg-type]
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> httpx.Client:
        self.thread.start()
        wait_until(lambda: self.server.started, 10, "uvicorn to start")
        self.client = httpx.Client(base_url=self.url, timeout=10)
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)


def pipeline_runtime(
    config: str, redis_url: str, tmp_path: Path, **settings: object
) -> tuple[Runtime, dict[str, str]]:
    """A runtime for `config` (written to tmp_path/pipeline.yaml), and the environment that makes
    `python -m pipeline ...` child processes use the same pipeline file, data dir and Redis.
    `settings`: more Settings fields for the runtime (not passed to the environment)."""
    from pipeline.config import parse_config
    from pipeline.queue.app import queued_runtime
    from pipeline.registry import build_pipeline
    from pipeline.settings import Settings

    config_path = tmp_path / "pipeline.yaml"
    config_path.write_text(config)
    pipeline = build_pipeline(parse_config(config, str(config_path)), str(config_path))
    runtime_settings = Settings(
        redis_url=redis_url,
        data_dir=tmp_path / "data",
        config=config_path,
        **settings,  # type: ignore[arg-type]
    )
    runtime = queued_runtime(runtime_settings, pipeline, redis_url)
    env = pipeline_env(
        PIPELINE_REDIS_URL=redis_url,
        PIPELINE_DATA_DIR=str(tmp_path / "data"),
        PIPELINE_CONFIG=str(config_path),
    )
    return runtime, env


def load_image(path: Path) -> Image.Image:
    """Decode fully and close the file; keep the format and info for assertions."""
    with Image.open(path) as img:
        img.load()
        copy = img.copy()
        copy.format, copy.info = img.format, dict(img.info)
        return copy


def plant_claim(client: redis.Redis, claim: Claim, seconds_ago: float, suffix: str = "never-rec") -> str:
    """Claim `claim` as an intake that then died would have, `seconds_ago` (a claimant's id begins
    with when it was made). Returns the claimant's id, which has no record."""
    claimant = f"{int((time.time() - seconds_ago) * 1000):012x}{suffix}"
    client.hset(claim.shard, claim.field, claimant)
    return claimant


def assert_reports_declared(spec: FunctionSpec[Any], outputs: Sequence[Output]) -> None:
    """Every field the function put in its outputs' meta is declared in its `reports`, with the
    type of the declared sample (or null): flows check `if` expressions against that declaration."""
    assert spec.reports is not None, f"{spec.name} declares no reports"
    for output in outputs:
        for field, value in output.meta.items():
            assert field in spec.reports, f"{spec.name} reports {field!r} without declaring it"
            sample = spec.reports[field]
            assert value is None or type(value) is type(sample), (
                f"{spec.name}.{field} is {type(value).__name__}, declared {type(sample).__name__}"
            )
