"""A running pipeline against the S3 peer: gateway and worker as real subprocesses."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from minio import Minio

from pipeline.ledger import Ledger, connect
from pipeline.measure.samples import generate
from tests.helpers import Proc, free_port, pipeline_env, wait_until

TOKEN = "e2e-webhook-token"

PIPELINE_YAML = """
version: 1
buckets: [{bucket}]
functions:
  thumbnail: {{concurrency: 1, time_limit: 60, max_attempts: 2}}
rules:
  - name: thumbs
    bucket: {bucket}
    prefix: uploads/
    content_types: ["image/*"]
    callback: true
    functions:
      - function: thumbnail
        params: {{sizes: [64, 200], format: jpeg}}
      - function: filter
        params:
          steps:
            - {{op: resize, width: 300}}
            - {{op: watermark, image: "s3://{bucket}/brand/logo.png", width: 0.2, position: top-left, margin: 0, opacity: 1}}
          format: png
  - name: videos
    bucket: {bucket}
    prefix: uploads/
    content_types: ["video/*"]
    functions:
      - {{function: transcode, preset: mp4, params: {{heights: [360, 180]}}}}
      - {{function: transcode, preset: hls, params: {{heights: [360, 180], segment_seconds: 1}}}}
      - {{function: transcode, preset: poster}}
      - {{function: transcode, preset: probe}}
  - name: archive
    bucket: {bucket}
    prefix: uploads/
    functions:
      - function: copy
        output: {{bucket: {bucket}-archive, template: "{{key}}"}}
outputs:
  prefix: derived/
"""


@dataclass
class Stack:
    bucket: str
    gateway_url: str
    redis_url: str
    s3_endpoint: str
    minio: Minio
    ledger: Ledger
    gateway: Proc
    worker: Proc
    env: dict[str, str]


@pytest.fixture(scope="session")
def sample_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {p.name: p for p in generate(tmp_path_factory.mktemp("samples"))}


@pytest.fixture
def stack(moto_endpoint: str, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    with open_stack(moto_endpoint, redis_url, tmp_path, PIPELINE_YAML) as running:
        yield running


@contextmanager
def open_stack(
    moto_endpoint: str, redis_url: str, tmp_path: Path, pipeline_yaml: str, concurrency: int = 1
) -> Iterator[Stack]:
    """A gateway and a worker (every function) on a fresh bucket of the S3 peer; `pipeline_yaml`
    is formatted with the bucket's name."""
    bucket = f"media-{uuid.uuid4().hex[:10]}"
    config = tmp_path / "pipeline.yaml"
    config.write_text(pipeline_yaml.format(bucket=bucket))
    port = free_port()
    env = pipeline_env(
        PIPELINE_REDIS_URL=redis_url,
        PIPELINE_S3_ENDPOINT=moto_endpoint,
        PIPELINE_S3_ACCESS_KEY="test",
        PIPELINE_S3_SECRET_KEY="test",
        PIPELINE_S3_REGION="us-east-1",
        PIPELINE_CONFIG=str(config),
        PIPELINE_DATA_DIR=str(tmp_path / "data"),
        PIPELINE_EVENTS_TOKEN=TOKEN,
        PIPELINE_SNS_VERIFY_SIGNATURE="false",  # moto's signatures are fake
        PIPELINE_WEBHOOK_ALLOW_NETWORKS='["127.0.0.1/32"]',  # the test receivers listen on loopback
        PIPELINE_WEBHOOK_PRESIGN_SECONDS="600",
    )
    endpoint = urlsplit(moto_endpoint).netloc
    minio = Minio(endpoint, access_key="test", secret_key="test", secure=False, region="us-east-1")
    minio.make_bucket(bucket)
    ledger = Ledger(connect(redis_url))
    gateway = Proc(["gateway", "--port", str(port)], env, tmp_path / "gateway.log")
    worker = Proc(["worker", "--concurrency", str(concurrency)], env, tmp_path / "worker.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _healthy(url) or not gateway.alive(), 30, "the gateway")
        assert gateway.alive(), gateway.output()
        wait_until(lambda: ledger.workers.live() or not worker.alive(), 30, "the worker")
        assert worker.alive(), worker.output()
        yield Stack(bucket, url, redis_url, moto_endpoint, minio, ledger, gateway, worker, env)
    finally:
        worker_rc = worker.stop()
        gateway.stop()
    assert worker_rc == 0, f"worker did not shut down cleanly:\n{worker.output()[-3000:]}"


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
