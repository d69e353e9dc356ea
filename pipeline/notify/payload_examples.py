"""The published face of the webhook payloads: one example body per event type (built by the same
code as real ones) and the JSON schemas, for docs/webhooks.md and `pipeline webhooks schema`."""

from __future__ import annotations

import json
from typing import Any

from pipeline.event_types import EventType
from pipeline.flows.model import Quarantine, Run, RunStatus, Screening, StepState, StepStatus, Verdict
from pipeline.invocation import Invocation, OutputRef, Status
from pipeline.notify.payloads import (
    InvocationPayload,
    Payload,
    ProcessedPayload,
    RejectedPayload,
    RunPayload,
    ScreeningPayload,
    invocation_payload,
    processed_payload,
    run_payload,
    run_screening_payload,
)


def payload_schemas() -> dict[str, dict[str, Any]]:
    """JSON schema of each event type's body, for docs/webhooks.md."""
    return {
        "invocation.*": InvocationPayload.model_json_schema(),
        EventType.OBJECT_REJECTED.value: RejectedPayload.model_json_schema(),
        "object.blocked, object.held": ScreeningPayload.model_json_schema(),
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
        EventType.OBJECT_BLOCKED.value: run_screening_payload(
            _example_screened("block"), EventType.OBJECT_BLOCKED, "screen"
        ),
        EventType.OBJECT_HELD.value: run_screening_payload(
            _example_screened("review"), EventType.OBJECT_HELD, "screen"
        ),
        EventType.OBJECT_PROCESSED.value: processed_payload(common["event_id"], [thumb, failed]),
        EventType.RUN_COMPLETED.value: run_payload(_example_run(), _EXAMPLE_FUNCTIONS),
        EventType.RUN_FAILED.value: run_payload(_example_failed_run(), _EXAMPLE_FUNCTIONS),
    }


_EXAMPLE_FUNCTIONS = {"poster": "transcode", "thumbs": "thumbnail"}


def _example_screened(verdict: Verdict) -> Run:
    run = _example_run().model_copy(update={"key": "uploads/cat.jpg", "flow": "images", "rule": "images"})
    screen = StepState(status=StepStatus.SUCCEEDED, invocations=["019ac5e2c0d2a1b2c3d4e5f7"])
    thumbs = StepState(needs=["screen"], status=StepStatus.HELD, reason="held for review")
    run.steps = {"screen": screen, "thumbs": thumbs}
    reason = (
        "the image matches 'incident-4411.jpg' in s3://media/.pipeline/hashes/known-bad.txt "
        "(12 of 256 bits differ; at most 80 match)"
        if verdict == "block"
        else "the image: nudity score 0.91 is at or over review_at 0.6"
    )
    scores: dict[str, Any] = (
        {"hash_match": "incident-4411.jpg", "hash_distance": 12, "nsfw": None}
        if verdict == "block"
        else {"hash_match": None, "hash_distance": None, "nsfw": 0.91}
    )
    run.screening = Screening(
        step="screen",
        invocation_id="019ac5e2c0d2a1b2c3d4e5f7",
        at=1764547200.8,
        screened=verdict,
        verdict=verdict,
        reasons=[reason],
        scores=scores,
        held=["thumbs"] if verdict == "review" else [],
    )
    if verdict == "block":
        thumbs.status, thumbs.reason = StepStatus.SKIPPED, f"blocked by screen: {reason}"
        run.screening.quarantine = Quarantine(bucket="media", key="quarantine/uploads/cat.jpg", mode="move")
        run.status, run.reason = RunStatus.BLOCKED, f"blocked by screen: {reason}"
    else:
        run.status, run.reason, run.finished_at = RunStatus.HELD, "held for review: thumbs", None
    return run


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
