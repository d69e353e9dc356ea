"""What the intake makes of a notification before anything is claimed: its record, the
invocations its rules plan, and the answer when Redis cannot take it."""

from __future__ import annotations

import time
from dataclasses import dataclass

from pipeline.config import PipelineConfig
from pipeline.errors import BrokerUnavailable
from pipeline.events.model import BACKFILL_SOURCE, ObjectEvent
from pipeline.invocation import Invocation
from pipeline.ledger import EventRecord
from pipeline.ledger.records import RAW_EVENT_CHARS
from pipeline.routing import Planned, content_type_of
from pipeline.tracing import Carrier


@dataclass
class Notification:
    """One object event to take in. `raw`: the notification as received, kept (first 16 KB) for
    the dashboard's timeline. `plans`: run these instead of what the rules say (a function invoked
    over HTTP). `trace`: the span the intake's own span continues (the request's, across the
    thread that commits a batch)."""

    event: ObjectEvent
    raw: str = ""
    plans: list[Planned] | None = None
    trace: Carrier | None = None


def new_record(note: Notification) -> EventRecord:
    """The notification's record, `ignored` until something is claimed for it."""
    event = note.event
    return EventRecord(
        id=Invocation.new_id(),
        received_at=time.time(),
        source=event.source,
        event_name=event.event_name,
        bucket=event.bucket,
        key=event.key,
        version=event.version_tag,
        size=event.size,
        content_type=content_type_of(event),
        status="ignored",
        raw=note.raw[:RAW_EVENT_CHARS],
    )


def invocation_for(
    config: PipelineConfig, plan: Planned, event: ObjectEvent, event_id: str, enqueued_at: float
) -> Invocation:
    """The invocation a rule's plan makes of the event (a single step, not a flow's)."""
    return Invocation(
        id=Invocation.new_id(),
        function=plan.function,
        params=plan.params,
        params_hash=plan.params_hash,
        rule=plan.rule,
        queue=config.lane_for(plan.function, backfill=event.source == BACKFILL_SOURCE),
        bucket=event.bucket,
        key=event.key,
        version=event.version_tag,
        version_id=event.version_id,
        etag=event.etag,
        event_id=event_id,
        output_bucket=plan.output_bucket,
        output_template=plan.output_template,
        max_attempts=config.max_attempts_for(plan.function),
        time_limit=config.time_limit_for(plan.function),
        enqueued_at=enqueued_at,
    )


def unavailable(event: ObjectEvent, exc: Exception) -> BrokerUnavailable:
    """The answer when Redis cannot take the event: its sender sends it again (503)."""
    error = BrokerUnavailable(f"Redis unavailable, event for {event.bucket}/{event.key} not accepted")
    error.__cause__ = exc
    return error
