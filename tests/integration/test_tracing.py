"""One trace per upload (extra `otel`): the span tree from the notification's HTTP request through
the intake, the queue message, a real Celery worker consuming Redis, each output upload and the
webhook delivery, collected by the SDK's in-memory exporter.

The gateway (uvicorn), the worker (Celery's embedded worker, a real consumer of the Redis broker)
and the webhook sender run in this process so that one exporter sees every span; across processes
the context travels the same way, inside the queue message and the ledger records."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.gateway.app import create_app
from pipeline.invocation import Status
from pipeline.measure.samples import generate
from pipeline.notify.notifier import notifier_for
from tests.helpers import REPO, ServedApp, need, pipeline_runtime, wait_until
from tests.receiver import Receiver

pytestmark = pytest.mark.integration

try:  # the `otel` extra (part of the test extra): skipped without it, except under CI=true
    from opentelemetry import trace as otel_trace
    from opentelemetry.sdk import trace as sdk_trace
    from opentelemetry.sdk.trace import export
    from opentelemetry.sdk.trace.export import in_memory_span_exporter as in_memory

    HAVE_OTEL = True
except ImportError:
    HAVE_OTEL = False

CONFIG = """
version: 1
buckets: [media]
rules:
  - name: thumbs
    bucket: media
    prefix: uploads/
    functions:
      - {function: thumbnail, params: {sizes: [64, 128]}}
"""


@pytest.fixture(scope="module")
def spans() -> Iterator[Any]:
    """The process's tracer provider (set once per process, as the API allows), exporting here."""
    need(HAVE_OTEL, "the `otel` extra is not installed (pip install -e '.[otel]')")
    provider = otel_trace.get_tracer_provider()
    if not isinstance(provider, sdk_trace.TracerProvider):
        provider = sdk_trace.TracerProvider()
        otel_trace.set_tracer_provider(provider)
    exporter = in_memory.InMemorySpanExporter()
    provider.add_span_processor(export.SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


def minio_body(bucket: str, key: str, etag: str, size: int) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((REPO / "tests/fixtures/events/minio-put.json").read_text())
    body["Key"] = f"{bucket}/{key}"
    record = body["Records"][0]["s3"]
    record["bucket"]["name"] = bucket
    record["object"].update(key=key, eTag=etag, size=size, contentType="image/jpeg")
    return body


def test_one_upload_is_one_trace_from_notification_to_webhook(
    spans: Any, redis_url: str, tmp_path: Path
) -> None:
    from celery.contrib.testing.worker import start_worker

    from pipeline.queue.app import create_celery
    from pipeline.queue.worker import WorkerContext, register_task

    runtime, _env = pipeline_runtime(CONFIG, redis_url, tmp_path, webhook_allow_networks=["127.0.0.1/32"])
    runtime.store.ensure_bucket("media")
    runtime.store.on_write = None  # type: ignore[attr-defined]  # notifications arrive over HTTP only
    image = generate(tmp_path / "samples")[0]
    stored = runtime.store.put_file("media", "uploads/traced.jpg", image, content_type="image/jpeg")
    notifier = notifier_for(runtime)
    app = create_celery(redis_url, runtime.pipeline)
    register_task(app, WorkerContext(runtime.settings, runtime.pipeline, redis_url, app))
    with (
        Receiver() as receiver,
        ServedApp(create_app(runtime.settings, runtime)) as client,
        start_worker(app, pool="solo", perform_ping_check=False, queues=["fn.thumbnail"], loglevel="WARNING"),
    ):
        hook = client.post(
            "/api/webhooks", json={"url": f"{receiver.url}/app", "events": ["object.processed"]}
        )
        assert hook.status_code == 201, hook.text
        spans.clear()
        body = minio_body("media", "uploads/traced.jpg", stored.etag or "", stored.size)
        assert client.post("/events/minio", json=body).status_code == 200
        [inv] = runtime.ledger.invocations.for_object("media", "uploads/traced.jpg")
        wait_until(
            lambda: (runtime.ledger.invocations.get(inv.id) or inv).status.finished, 60, "the thumbnail"
        )
        done = runtime.ledger.invocations.get(inv.id)
        assert done is not None and done.status == Status.SUCCEEDED and len(done.outputs) == 2

        def send(msg_id: str) -> None:
            notifier.deliver(msg_id)

        def delivered() -> bool:
            notifier.drain()
            notifier.schedule_due(send)  # what the webhook worker's scheduler and task do
            return bool(receiver.requests)

        wait_until(delivered, 30, "the webhook")

    finished = spans.get_finished_spans()

    def children(parent: Any, name: str) -> list[Any]:
        return [
            s
            for s in finished
            if s.parent is not None and s.parent.span_id == parent.context.span_id and s.name == name
        ]

    def child(parent: Any, name: str) -> Any:
        found = children(parent, name)
        assert len(found) == 1, (
            f"{len(found)} spans {name!r} under {parent.name}: {sorted(s.name for s in finished)}"
        )
        return found[0]

    by_id = {s.context.span_id: s for s in finished}
    [accepted] = [s for s in finished if s.name == "accept notification"]
    request = by_id[accepted.parent.span_id]
    while request.parent is not None:  # up to FastAPI's own span of the request, the trace's root
        request = by_id[request.parent.span_id]
    assert request.kind == otel_trace.SpanKind.SERVER and "/events/minio" in request.name
    root = accepted
    intake = child(root, "intake")
    assert intake.attributes["pipeline.key"] == "uploads/traced.jpg"
    enqueue = child(intake, "enqueue thumbnail")
    assert enqueue.kind == otel_trace.SpanKind.PRODUCER
    invoke = child(enqueue, "invoke thumbnail")
    assert invoke.kind == otel_trace.SpanKind.CONSUMER and invoke.attributes["pipeline.invocation"] == inv.id
    for step in ("download", "admit", "run thumbnail"):
        child(invoke, step)
    uploads = [
        s for s in finished if s.name.startswith("upload ") and s.parent.span_id == invoke.context.span_id
    ]
    assert sorted(s.attributes["pipeline.key"] for s in uploads) == sorted(o.key for o in done.outputs)
    webhook = child(invoke, "webhook object.processed")
    assert (
        webhook.kind == otel_trace.SpanKind.CLIENT and webhook.attributes["http.response.status_code"] == 200
    )
    tree = [request, accepted, intake, enqueue, invoke, webhook, *uploads]
    assert {s.context.trace_id for s in tree} == {root.context.trace_id}
    # The receiver got the upload's message; the trace travelled in the queue message and records.
    assert receiver.requests[0].json["type"] == "object.processed"
