"""The webhook event types applications subscribe to: a leaf module, so the pipeline file can name
them without the pipeline file's loader depending on the notifier."""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    INVOCATION_SUCCEEDED = "invocation.succeeded"
    INVOCATION_FAILED = "invocation.failed"
    INVOCATION_DEAD = "invocation.dead"
    OBJECT_REJECTED = "object.rejected"
    OBJECT_BLOCKED = "object.blocked"
    OBJECT_HELD = "object.held"
    OBJECT_PROCESSED = "object.processed"
    RUN_COMPLETED = "run.completed"
    RUN_FAILED = "run.failed"
