"""What outgoing webhooks say: versioned JSON bodies, one pydantic model per event type.

Every body follows Standard Webhooks: `{"type", "timestamp", "data"}`, plus `version` (the payload
schema version; fields are only ever added within one version). docs/webhooks.md publishes the JSON
schema generated from these models and example bodies; a test keeps the two in sync.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from pipeline.event_types import EventType
from pipeline.flows.model import Run, RunStatus, StepStatus
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


class RejectedData(BaseModel):
    """Screening refused an object: nothing ran on it."""

    bucket: str
    key: str
    version: str
    function: str
    invocation_id: str
    reason: str


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


class ProcessedPayload(_Envelope):
    type: Literal["object.processed"] = "object.processed"
    data: ProcessedData


class RunPayload(_Envelope):
    type: Literal["run.completed", "run.failed"]
    data: RunData


Payload = InvocationPayload | RejectedPayload | ProcessedPayload | RunPayload
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


def payload_schemas() -> dict[str, dict[str, Any]]:
    """JSON schema of each event type's body, for docs/webhooks.md."""
    return {
        "invocation.*": InvocationPayload.model_json_schema(),
        EventType.OBJECT_REJECTED.value: RejectedPayload.model_json_schema(),
        EventType.OBJECT_PROCESSED.value: ProcessedPayload.model_json_schema(),
        "run.*": RunPayload.model_json_schema(),
    }


def example_payloads() -> dict[str, Payload]:
    """One example body per event type, built by the same code as real ones (for the docs)."""
    common: dict[str, Any] = {
        "bucket": "media",
        "key": "uploads/cat.jpg",
        "version": "3a92975425fdb3f119a1439480c0c4a7",
        "rule": "images",
        "params": {},
        "params_hash": "44136fa355b3678a",
        "queue": "fn.thumbnail",
        "event_id": "019ac5e2b7a1f3c9d2e4b6a8",
        "attempts": 1,
        "finished_at": 1795000000.25,
    }
    thumb = Invocation(
        id="019ac5e2b7b24d1e8f3a9c0b",
        function="thumbnail",
        status=Status.SUCCEEDED,
        duration_ms=41.7,
        outputs=[
            {
                "bucket": "media",
                "key": "derived/uploads/cat.jpg/thumbnail/256.jpg",
                "content_type": "image/jpeg",
                "size": 9812,
            },
            {
                "bucket": "media",
                "key": "derived/uploads/cat.jpg/thumbnail/1024.jpg",
                "content_type": "image/jpeg",
                "size": 88310,
            },
        ],
        **common,
    )
    failed = Invocation(
        id="019ac5e2b7b35e2f904bad1c",
        function="filter",
        status=Status.FAILED,
        duration_ms=12.0,
        error="MediaError: image file is truncated (3 bytes not processed)",
        **{**common, "queue": "fn.filter"},
    )
    dead = failed.model_copy(
        update={
            "status": Status.DEAD,
            "attempts": 3,
            "error": "StorageError: S3 endpoint unreachable (after 3 attempts)",
        }
    )
    rejected = failed.model_copy(
        update={
            "status": Status.REJECTED,
            "duration_ms": None,
            "error": "media/uploads/cat.jpg: content is text/plain, which is not allowed (screening.allow)",
        }
    )
    return {
        EventType.INVOCATION_SUCCEEDED.value: invocation_payload(thumb),
        EventType.INVOCATION_FAILED.value: invocation_payload(failed),
        EventType.INVOCATION_DEAD.value: invocation_payload(dead),
        EventType.OBJECT_REJECTED.value: invocation_payload(rejected),
        EventType.OBJECT_PROCESSED.value: processed_payload(common["event_id"], [thumb, failed]),
        EventType.RUN_COMPLETED.value: run_payload(_example_run(), _EXAMPLE_FUNCTIONS),
        EventType.RUN_FAILED.value: run_payload(_example_failed_run(), _EXAMPLE_FUNCTIONS),
    }


_EXAMPLE_FUNCTIONS = {"poster": "transcode", "thumbs": "thumbnail"}


def _example_failed_run() -> Run:
    run = _example_run()
    poster, thumbs = run.steps["poster"], run.steps["thumbs"]
    poster.status, poster.outputs = StepStatus.FAILED, []
    poster.reason = "transcode failed: MediaError: no frame could be read for the poster"
    thumbs.status, thumbs.invocations, thumbs.outputs = StepStatus.SKIPPED, [], []
    thumbs.reason = "poster failed"
    run.status, run.reason = RunStatus.FAILED, "failed: poster"
    return run


def _example_run() -> Run:
    poster = OutputRef(
        bucket="media",
        key="derived/uploads/clip.mp4/transcode/poster.jpg",
        content_type="image/jpeg",
        size=48211,
    )
    thumb = OutputRef(
        bucket="media",
        key="derived/uploads/clip.mp4/transcode/poster.jpg/thumbnail/320.jpg",
        content_type="image/jpeg",
        size=8120,
    )
    return Run.model_validate(
        {
            "id": "019ac5e2c0d14e2a8b7f6c31",
            "flow": "video",
            "rule": "video-renditions",
            "bucket": "media",
            "key": "uploads/clip.mp4",
            "version": "5d41402abc4b2a76b9719d911017c592",
            "status": "succeeded",
            "started_at": 1764547200.0,
            "finished_at": 1764547203.4,
            "steps": {
                "poster": {
                    "status": "succeeded",
                    "invocations": ["019ac5e2c0d2a1b2c3d4e5f6"],
                    "outputs": [poster],
                },
                "thumbs": {
                    "status": "succeeded",
                    "needs": ["poster"],
                    "invocations": ["019ac5e2c41f0a9b8c7d6e5f"],
                    "outputs": [thumb],
                },
            },
        }
    )


def docs_section() -> str:
    """The generated part of docs/webhooks.md: example bodies and JSON schemas."""
    parts = ["### Example bodies\n"]
    for name, payload in example_payloads().items():
        parts.append(f"`{name}`\n\n```json\n{payload.model_dump_json(indent=2)}\n```\n")
    parts.append("### JSON schema\n")
    for name, schema in payload_schemas().items():
        body = json.dumps(schema, indent=2)
        parts.append(f"<details><summary><code>{name}</code></summary>\n\n```json\n{body}\n```\n</details>\n")
    return "\n".join(parts)
