"""Inbound notifications: MinIO webhook bodies and SNS HTTP push.

A notification is answered 2xx only once its invocations are recorded and enqueued; if Redis is
down the answer is 503, so MinIO (queue_dir) or SNS keeps the event and sends it again.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pipeline.errors import (
    BadGateway,
    BodyTooLarge,
    BrokerUnavailable,
    EventError,
    Unauthorized,
    UnauthorizedEvent,
)
from pipeline.events import ObjectEvent, is_test_event, parse_envelope, parse_records
from pipeline.events.sns import SnsEnvelope, is_aws_sns_url
from pipeline.gateway.deps import bearer, get_state, read_body, tokens_match
from pipeline.gateway.state import GatewayState
from pipeline.intake import Notification
from pipeline.ledger.records import RAW_EVENT_CHARS
from pipeline.tracing import carrier, span

log = logging.getLogger(__name__)

CLOCK_SKEW_S = 300  # how far ahead of ours a sender's clock may be


def _check_token(state: GatewayState, given: str | None) -> None:
    expected = state.settings.events_token
    if expected is not None and not tokens_match(given, expected.get_secret_value()):
        state.metrics.events.labels(source="auth", status="unauthorized").inc()
        raise Unauthorized("missing or wrong webhook token")


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EventError(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise EventError("body must be a JSON object")
    return data


async def _accept(state: GatewayState, events: list[ObjectEvent], source: str, body: bytes) -> dict[str, Any]:
    cap = state.settings.max_event_records
    if len(events) > cap:
        state.metrics.events.labels(source=source, status="too_many_records").inc()
        raise BodyTooLarge(
            f"the notification carries {len(events)} records; at most {cap} are accepted "
            "(PIPELINE_MAX_EVENT_RECORDS)"
        )
    raw = body[:RAW_EVENT_CHARS].decode("utf-8", "replace")
    invocations: list[str] = []
    runs: list[str] = []
    duplicates = 0
    # One trace per upload, under FastAPI's request span; the batch's thread continues it.
    with span("accept notification", attributes={"pipeline.source": source}):
        notes = [Notification(event, raw, trace=carrier()) for event in events]
        outcomes = await state.group_commit.accept(notes)
    refused: Exception | None = None
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            refused = refused or outcome
            status = "unavailable" if isinstance(outcome, BrokerUnavailable) else "error"
            state.metrics.events.labels(source=source, status=status).inc()
            continue
        invocations.extend(outcome.invocations)
        runs.extend(outcome.runs)
        duplicates += outcome.duplicates
        state.metrics.events.labels(source=source, status=outcome.status).inc()
        # `duplicates` counts runs and single steps alike: each list is counted with its own.
        duplicate_steps = outcome.duplicates - outcome.duplicate_runs
        state.metrics.invocations.inc(len(outcome.invocations) - duplicate_steps)
        state.metrics.runs.labels(status="started").inc(len(outcome.runs) - outcome.duplicate_runs)
        state.metrics.runs.labels(status="duplicate").inc(outcome.duplicate_runs)
    if refused is not None:  # 503 (BrokerUnavailable): the sender retries later
        log.error("refusing notification: %s", refused)
        raise refused
    return {
        "status": "accepted",
        "events": len(events),
        "invocations": invocations,
        "runs": runs,
        "duplicates": duplicates,
    }


async def minio_webhook(request: Request) -> JSONResponse:
    state = get_state(request)
    _check_token(state, bearer(request.headers.get("authorization")))
    body = await read_body(request, state.settings.max_event_bytes)
    if not body.strip():
        return JSONResponse({"status": "ok"})  # MinIO's ping when the webhook target is configured
    data = _json(body)
    if is_test_event(data):
        return JSONResponse({"status": "ignored", "reason": "s3:TestEvent"})
    return JSONResponse(await _accept(state, parse_records(data, "minio"), "minio", body))


async def sns_push(request: Request) -> JSONResponse:
    state = get_state(request)
    # SNS cannot send headers: the subscription URL carries the token.
    _check_token(state, request.query_params.get("token"))
    body = await read_body(request, state.settings.max_event_bytes)
    data = _json(body)  # SNS posts JSON as text/plain, so the content type is not checked
    try:
        envelope = parse_envelope(data)
        if state.settings.sns_verify_signature:
            await run_in_threadpool(state.sns_verifier.verify, envelope)
    except UnauthorizedEvent:
        state.metrics.events.labels(source="sns", status="unauthorized").inc()
        raise
    if envelope.type == "Notification":
        _check_origin(state, envelope)
    if envelope.type == "SubscriptionConfirmation":
        return JSONResponse(await _confirm(state, envelope.topic_arn, str(data.get("SubscribeURL") or "")))
    if envelope.type == "UnsubscribeConfirmation":
        return JSONResponse({"status": "ignored", "reason": "unsubscribe confirmation"})
    inner = envelope.inner_json()
    if is_test_event(inner):
        return JSONResponse({"status": "ignored", "reason": "s3:TestEvent"})
    return JSONResponse(await _accept(state, parse_records(inner, "sns"), "sns", body))


# Plain Starlette routes, matched before any other: a notification skips FastAPI's dependency
# solving and response validation (about 1.4x the notifications/s beside GET /healthz, measured
# by `pipeline bench system --only ingest`; docs/benchmarks.md). They take no parameters FastAPI
# would check, so they are not in the OpenAPI description; the README describes them.
routes = [
    Route("/events/minio", minio_webhook, methods=["POST"]),
    Route("/events/sns", sns_push, methods=["POST"]),
]


def _check_origin(state: GatewayState, envelope: SnsEnvelope) -> None:
    """Only the topics the operator listed, and only fresh messages: a captured notification sent
    again later (a replay) is refused. The Timestamp is part of what SNS signs."""
    topics = state.settings.sns_topics
    if topics and envelope.topic_arn not in topics:
        state.metrics.events.labels(source="sns", status="unauthorized").inc()
        raise UnauthorizedEvent(f"topic {envelope.topic_arn} is not allowed (PIPELINE_SNS_TOPICS)")
    age = time.time() - envelope.sent_at()
    if age > state.settings.sns_max_age or age < -CLOCK_SKEW_S:
        state.metrics.events.labels(source="sns", status="unauthorized").inc()
        raise UnauthorizedEvent(
            f"SNS message {envelope.message_id} was sent {age:.0f}s ago, outside the "
            f"{state.settings.sns_max_age:g}s window (PIPELINE_SNS_MAX_AGE): refused as a replay"
        )


async def _confirm(state: GatewayState, topic_arn: str, subscribe_url: str) -> dict[str, Any]:
    if topic_arn not in state.settings.sns_topics:
        log.warning("not confirming SNS subscription for topic %s (not in PIPELINE_SNS_TOPICS)", topic_arn)
        raise UnauthorizedEvent(f"topic {topic_arn} is not allowed (PIPELINE_SNS_TOPICS)")
    if not is_aws_sns_url(subscribe_url):
        raise EventError("SubscribeURL is not an https sns.*.amazonaws.com URL")
    async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
        response = await client.get(subscribe_url)
    if response.status_code != 200:
        raise BadGateway(f"SNS answered {response.status_code} to the confirmation")
    log.info("confirmed SNS subscription for %s", topic_arn)
    return {"status": "confirmed", "topic": topic_arn}
