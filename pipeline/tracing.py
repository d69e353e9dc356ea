"""Traces, optional (`pip install 'media-pipeline[otel]'`): one trace per upload, from the
notification through the intake, the queue, the worker and each output upload, to every webhook
delivery about it.

The trace context travels inside what the pipeline already passes along: the queue message (the
invocation's `trace` field, W3C `traceparent`), the invocation's ledger record (the worker's span,
which webhook messages are parented to) and each webhook message. Exporters are configured by the
standard variables (`OTEL_TRACES_EXPORTER`, `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`,
...); a process sets up an exporter only when one of them is set, so installing the extra alone
changes nothing. Without the extra every call here is a no-op.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

log = logging.getLogger(__name__)

try:
    from opentelemetry import propagate, trace

    HAVE_OTEL = True
except ImportError:  # the extra is not installed
    HAVE_OTEL = False

Kind = Literal["internal", "server", "client", "producer", "consumer"]
Carrier = dict[str, str]
_ASKED_FOR = ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def setup(service: str) -> bool:
    """Install a tracer provider that exports as the OTEL_* variables say, if any of them asks
    for traces and the SDK is installed; True if it did."""
    if not HAVE_OTEL or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "otlp" if _endpoint_set() else "none")
    if exporter_name == "none" or not any(os.environ.get(name) for name in _ASKED_FOR):
        return False
    try:
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415 - the SDK is optional
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import (  # noqa: PLC0415
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SpanExporter,
        )
    except ImportError:
        log.warning("OTEL_* asks for traces, but opentelemetry-sdk is not installed (extra `otel`)")
        return False
    exporter: SpanExporter
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    elif exporter_name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415

        exporter = OTLPSpanExporter()  # endpoint, headers and timeout from OTEL_EXPORTER_OTLP_*
    else:
        log.warning("OTEL_TRACES_EXPORTER=%s is not supported here (otlp, console, none)", exporter_name)
        return False
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service)})
    provider = TracerProvider(resource=resource)
    # Batched and sent by a thread: a span costs the traced code microseconds, not a request.
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return True


def _endpoint_set() -> bool:
    return any(os.environ.get(name) for name in _ASKED_FOR[1:])


class SpanHandle:
    """What the traced block may add to its span once it knows (a status code, a size)."""

    def __init__(self, inner: Any = None) -> None:
        self._inner = inner

    def set(self, name: str, value: str | int | float | bool | None) -> None:
        if self._inner is not None and value is not None:
            self._inner.set_attribute(name, value)


@contextmanager
def span(
    name: str,
    kind: Kind = "internal",
    parent: Mapping[str, str] | None = None,
    attributes: Mapping[str, str | int | float | bool | None] | None = None,
) -> Iterator[SpanHandle]:
    """A span around the block (an exception is recorded on it), child of the current span or
    of `parent` (a carrier taken from a message or a record)."""
    if not HAVE_OTEL:
        yield SpanHandle()
        return
    context = propagate.extract(dict(parent)) if parent else None
    attrs = {k: v for k, v in (attributes or {}).items() if v is not None}
    tracer = trace.get_tracer("media-pipeline")
    with tracer.start_as_current_span(name, context=context, kind=_KINDS[kind], attributes=attrs) as current:
        yield SpanHandle(current)


def carrier() -> Carrier | None:
    """The current span's context as W3C headers, to put in a message or a record; None when
    there is no span being recorded."""
    if not HAVE_OTEL:
        return None
    headers: Carrier = {}
    propagate.inject(headers)
    return headers or None


if HAVE_OTEL:
    _KINDS = {
        "internal": trace.SpanKind.INTERNAL,
        "server": trace.SpanKind.SERVER,
        "client": trace.SpanKind.CLIENT,
        "producer": trace.SpanKind.PRODUCER,
        "consumer": trace.SpanKind.CONSUMER,
    }
