"""What outgoing webhooks say: versioned JSON bodies, one pydantic model per event type.

Every body follows Standard Webhooks: `{"type", "timestamp", "data"}`, plus `version` (the payload
schema version; fields are only ever added within one version). docs/webhooks.md publishes the JSON
schema generated from these models and example bodies; a test keeps the two in sync.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from pipeline.event_types import EventType
from pipeline.flows.model import NOT_SCORES, Decision, Run, RunStatus, Verdict
from pipeline.invocation import Invocation, OutputRef, Status

PAYLOAD_VERSION: Literal[1] = 1


# Which finished status announces which event (skipped invocations announce nothing: they are
# stale or looping work, not an outcome an application waits for).
STATUS_EVENTS = {
    Status.SUCCEEDED: EventType.INVOCATION_SUCCEEDED,
    Status.FAILED: EventType.INVOCATION_FAILED,
    Status.DEAD: EventType.INVOCATION_DEAD,
    Status.REJECTED: EventType.OBJECT_REJECTED,
}


class OutputData(BaseModel):
    bucket: str
    key: str
    size: int
    content_type: str
    url: str | None = Field(default=None, description="Presigned GET URL, when configured.")


class InvocationData(BaseModel):
    """One function run on one object version."""

    id: str
    function: str
    status: Status
    bucket: str
    key: str
    version: str = Field(description="Version id or ETag of the source object.")
    rule: str
    attempts: int
    duration_ms: float | None = None
    outputs: list[OutputData] = Field(default_factory=list)
    error: str | None = None


class QuarantineData(BaseModel):
    bucket: str
    key: str
    mode: Literal["move", "copy"] = Field(description="move: the original was deleted; copy: kept, tagged.")


class DecisionData(BaseModel):
    action: Literal["approve", "reject"]
    by: str
    at: datetime
    via: str
    note: str = ""
    login: str = Field(default="", description="Who was signed in (the session, API token or CLI user).")


class ScreeningData(BaseModel):
    """What a screening step (the `screen` function) said about an upload, and what became of it."""

    bucket: str
    key: str
    version: str
    rule: str
    function: str
    invocation_id: str = Field(description="The screening invocation.")
    run_id: str | None = Field(default=None, description="The flow run, when screening is a step of one.")
    flow: str | None = None
    step: str | None = None
    verdict: Verdict = Field(description="The verdict now (a reviewer's decision replaces review).")
    screened: Verdict = Field(description="The verdict the screening step gave.")
    reasons: list[str]
    scores: dict[str, Any] = Field(description="What the checks measured (hash distance, nsfw, malware...).")
    held_steps: list[str] = Field(default_factory=list, description="Steps waiting for a reviewer.")
    quarantine: QuarantineData | None = Field(default=None, description="Where a blocked upload goes.")
    decision: DecisionData | None = Field(default=None, description="The reviewer's decision, if any.")


class RejectedData(BaseModel):
    """Screening refused an object: nothing ran on it. Or a reviewer rejected a held upload
    (`screening` says which, who and why)."""

    bucket: str
    key: str
    version: str
    function: str
    invocation_id: str
    reason: str
    run_id: str | None = None
    screening: ScreeningData | None = None


class RunStepData(BaseModel):
    function: str
    status: str = Field(description="waiting | running | succeeded | failed | dead | rejected | skipped")
    needs: list[str]
    invocations: list[str]
    outputs: list[OutputData]
    reason: str | None = None


class RunData(BaseModel):
    """One flow run: a graph of steps applied to one object version."""

    id: str
    flow: str
    rule: str
    bucket: str
    key: str
    version: str
    status: RunStatus
    reason: str | None = None
    started_at: datetime
    finished_at: datetime | None = None
    steps: dict[str, RunStepData]
    outputs: list[OutputData] = Field(description="Every step's outputs.")


class ProcessedData(BaseModel):
    """Every invocation and flow run started by one upload has finished."""

    bucket: str
    key: str
    version: str
    event_id: str = Field(description="The notification that started this processing.")
    succeeded: bool = Field(description="True when every invocation and every run succeeded.")
    invocations: list[InvocationData] = Field(description="The upload's single-step invocations.")
    outputs: list[OutputData] = Field(description="All outputs of all invocations and runs.")
    failures: list[InvocationData] = Field(description="Invocations that did not succeed.")
    runs: list[RunData] = Field(default_factory=list, description="The flow runs the upload started.")


class _Envelope(BaseModel):
    version: Literal[1] = PAYLOAD_VERSION
    timestamp: datetime


class InvocationPayload(_Envelope):
    type: Literal["invocation.succeeded", "invocation.failed", "invocation.dead"]
    data: InvocationData


class RejectedPayload(_Envelope):
    type: Literal["object.rejected"] = "object.rejected"
    data: RejectedData


class ScreeningPayload(_Envelope):
    type: Literal["object.blocked", "object.held"]
    data: ScreeningData


class ProcessedPayload(_Envelope):
    type: Literal["object.processed"] = "object.processed"
    data: ProcessedData


class RunPayload(_Envelope):
    type: Literal["run.completed", "run.failed"]
    data: RunData


Payload = InvocationPayload | RejectedPayload | ScreeningPayload | ProcessedPayload | RunPayload
RUN_EVENTS = {RunStatus.SUCCEEDED: EventType.RUN_COMPLETED, RunStatus.FAILED: EventType.RUN_FAILED}

Presign = Any  # Callable[[str, str], str | None]; kept loose so payloads need no storage import


def _stamp(at: float | None) -> datetime:
    return datetime.fromtimestamp(at, tz=UTC) if at else datetime.now(tz=UTC)


def _outputs(outputs: list[OutputRef], presign: Presign) -> list[OutputData]:
    return [
        OutputData(
            bucket=o.bucket,
            key=o.key,
            size=o.size,
            content_type=o.content_type,
            url=presign(o.bucket, o.key) if presign else None,
        )
        for o in outputs
    ]


def run_data(run: Run, functions: dict[str, str], presign: Presign = None) -> RunData:
    """`functions`: each step's function, from the flow."""
    steps = {
        name: RunStepData(
            function=functions.get(name, ""),
            status=state.status.value,
            needs=state.needs,
            invocations=state.invocations,
            outputs=_outputs(state.outputs, presign),
            reason=state.reason,
        )
        for name, state in run.steps.items()
    }
    return RunData(
        id=run.id,
        flow=run.flow,
        rule=run.rule,
        bucket=run.bucket,
        key=run.key,
        version=run.version,
        status=run.status,
        reason=run.reason,
        started_at=_stamp(run.started_at),
        finished_at=_stamp(run.finished_at) if run.finished_at else None,
        steps=steps,
        outputs=[o for step in steps.values() for o in step.outputs],
    )


def run_payload(run: Run, functions: dict[str, str], presign: Presign = None) -> RunPayload:
    return RunPayload(
        type=RUN_EVENTS[run.status].value,
        timestamp=_stamp(run.finished_at),
        data=run_data(run, functions, presign),
    )


def invocation_data(inv: Invocation, presign: Presign = None) -> InvocationData:
    return InvocationData(
        id=inv.id,
        function=inv.function,
        status=inv.status,
        bucket=inv.bucket,
        key=inv.key,
        version=inv.version,
        rule=inv.rule,
        attempts=inv.attempts,
        duration_ms=inv.duration_ms,
        outputs=_outputs(inv.outputs, presign),
        error=inv.error,
    )


def invocation_payload(inv: Invocation, presign: Presign = None) -> InvocationPayload | RejectedPayload:
    event = STATUS_EVENTS[inv.status]
    if event is EventType.OBJECT_REJECTED:
        data = RejectedData(
            bucket=inv.bucket,
            key=inv.key,
            version=inv.version,
            function=inv.function,
            invocation_id=inv.id,
            reason=inv.error or "rejected by screening",
        )
        return RejectedPayload(timestamp=_stamp(inv.finished_at), data=data)
    return InvocationPayload(
        type=event.value,
        timestamp=_stamp(inv.finished_at),
        data=invocation_data(inv, presign),
    )


def _decision(d: Decision) -> DecisionData:
    return DecisionData(action=d.action, by=d.by, at=_stamp(d.at), via=d.via, note=d.note, login=d.login)


def run_screening_data(run: Run, function: str) -> ScreeningData:
    """The screening of a flow run: its verdict, scores, held steps, quarantine and last decision."""
    screening = run.screening
    if screening is None:
        raise ValueError(f"run {run.id} has not been screened")
    target = screening.quarantine
    last = run.decisions[-1] if run.decisions else None
    return ScreeningData(
        bucket=run.bucket,
        key=run.key,
        version=run.version,
        rule=run.rule,
        function=function,
        invocation_id=screening.invocation_id,
        run_id=run.id,
        flow=run.flow,
        step=screening.step,
        verdict=screening.verdict,
        screened=screening.screened,
        reasons=screening.reasons,
        scores=screening.scores,
        held_steps=screening.held,
        quarantine=QuarantineData(bucket=target.bucket, key=target.key, mode=target.mode) if target else None,
        decision=_decision(last) if last else None,
    )


def run_screening_payload(run: Run, event: EventType, function: str) -> ScreeningPayload | RejectedPayload:
    data = run_screening_data(run, function)
    at = _stamp(run.decisions[-1].at if run.decisions else run.screening.at if run.screening else None)
    if event is EventType.OBJECT_REJECTED:
        reason = run.reason or "rejected by a reviewer"
        rejected = RejectedData(
            bucket=run.bucket,
            key=run.key,
            version=run.version,
            function=function,
            invocation_id=data.invocation_id,
            reason=reason,
            run_id=run.id,
            screening=data,
        )
        return RejectedPayload(timestamp=at, data=rejected)
    return ScreeningPayload(type=event.value, timestamp=at, data=data)


def invocation_screening_payload(inv: Invocation) -> ScreeningPayload | None:
    """object.blocked / object.held for a screening invocation outside a flow (nothing to hold or
    quarantine there: the application decides)."""
    report = next((o.meta for o in inv.outputs if o.meta.get("verdict") in ("review", "block")), None)
    if report is None:
        return None
    verdict = report["verdict"]
    data = ScreeningData(
        bucket=inv.bucket,
        key=inv.key,
        version=inv.version,
        rule=inv.rule,
        function=inv.function,
        invocation_id=inv.id,
        verdict=verdict,
        screened=verdict,
        reasons=[str(r) for r in report.get("reasons") or []],
        scores={k: v for k, v in report.items() if k not in NOT_SCORES},
    )
    event = EventType.OBJECT_BLOCKED if verdict == "block" else EventType.OBJECT_HELD
    return ScreeningPayload(type=event.value, timestamp=_stamp(inv.finished_at), data=data)


def processed_payload(
    event_id: str,
    invocations: list[Invocation],
    presign: Presign = None,
    runs: list[RunData] | None = None,
) -> ProcessedPayload:
    """`invocations`: the upload's single-step invocations; `runs`: its flow runs."""
    runs = runs or []
    first = invocations[0] if invocations else None
    datas = [invocation_data(inv, presign) for inv in invocations]
    finished = [inv.finished_at or 0 for inv in invocations]
    finished += [r.finished_at.timestamp() for r in runs if r.finished_at]
    return ProcessedPayload(
        timestamp=_stamp(max(finished, default=0) or None),
        data=ProcessedData(
            bucket=first.bucket if first else runs[0].bucket,
            key=first.key if first else runs[0].key,
            version=first.version if first else runs[0].version,
            event_id=event_id,
            succeeded=all(d.status == Status.SUCCEEDED for d in datas)
            and all(r.status == RunStatus.SUCCEEDED for r in runs),
            invocations=datas,
            outputs=[o for d in datas for o in d.outputs] + [o for r in runs for o in r.outputs],
            failures=[d for d in datas if d.status != Status.SUCCEEDED],
            runs=runs,
        ),
    )
