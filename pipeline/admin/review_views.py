"""The Review page: uploads a screening step held for a person, with a blurred preview, the scores
and the reasons; and the uploads blocked lately, with where they were quarantined."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.flows.model import Run, RunStatus
from pipeline.runtime import Runtime

HELD_SHOWN = 100
BLOCKED_SHOWN = 30


@dataclass
class ReviewItem:
    run: Run
    function: str  # the screening step's function
    preview_bucket: str
    preview_key: str
    kind: str  # image, video or other: how the preview is shown


def _item(runtime: Runtime, run: Run) -> ReviewItem:
    flow = runtime.pipeline.config.flows.get(run.flow)
    screening = run.screening
    step = flow.steps.get(screening.step) if flow and screening else None
    bucket, key = run.bucket, run.key
    target = screening.quarantine if screening else None
    if target is not None and target.done_at and target.mode == "move":
        bucket, key = target.bucket, target.key  # the original is gone: show the quarantined copy
    content_type = str(run.source.get("content_type") or "")
    kind = (
        "image"
        if content_type.startswith("image/")
        else "video"
        if content_type.startswith("video/")
        else "other"
    )
    return ReviewItem(run, step.function if step else "screen", bucket, key, kind)


def review_page(runtime: Runtime) -> dict[str, object]:
    runs = runtime.ledger.runs
    held = runs.query(status=RunStatus.HELD.value, limit=HELD_SHOWN)
    blocked = runs.query(status=RunStatus.BLOCKED.value, limit=BLOCKED_SHOWN)
    return {
        "held": [_item(runtime, run) for run in reversed(held)],  # oldest first: first come, first seen
        "blocked": [_item(runtime, run) for run in blocked],
    }
