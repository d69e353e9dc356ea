"""Invocations: one function run on one object version, as queued, recorded and shown in the API."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a permanent error: retrying the same input cannot help
    DEAD = "dead"  # transient errors until max attempts ran out
    SKIPPED = "skipped"
    REJECTED = "rejected"  # screening refused the input; nothing ran

    @property
    def finished(self) -> bool:
        return self not in (Status.QUEUED, Status.RUNNING)


class OutputRef(BaseModel):
    bucket: str
    key: str
    content_type: str
    size: int
    meta: dict[str, Any] = Field(default_factory=dict)


class AttemptRecord(BaseModel):
    """One try of an invocation: who ran it, how long, and how it ended."""

    n: int
    worker: str
    started_at: float
    finished_at: float | None = None
    duration_ms: float | None = None
    outcome: str = "running"
    error: str | None = None


class Invocation(BaseModel):
    """The queue payload and the ledger record share this shape (JSON only, never pickle)."""

    id: str
    function: str
    params: dict[str, Any]
    params_hash: str
    rule: str
    queue: str
    bucket: str
    key: str
    version: str = Field(description="Version id or ETag of the source object this run is for.")
    version_id: str | None = None
    etag: str | None = None
    event_id: str | None = None
    output_bucket: str | None = None
    output_template: str = "derived/{key}/{function}/{name}"
    status: Status = Status.QUEUED
    attempts: int = 0
    max_attempts: int = 3
    time_limit: float = 300
    created_at: float = Field(default_factory=time.time)
    enqueued_at: float | None = Field(
        default=None, description="When its message was last sent, or when a delayed retry falls due."
    )
    started_at: float | None = None
    finished_at: float | None = None
    duration_ms: float | None = None
    cpu_ms: float | None = Field(default=None, description="CPU time of the function, ffmpeg included.")
    queue_wait_ms: float | None = Field(
        default=None, description="Sent (or due, for a delayed retry) -> started, of the latest attempt."
    )
    peak_memory_mb: float | None = Field(
        default=None, description="Peak resident memory of the worker process plus its largest child."
    )
    memory_mb: int | None = Field(default=None, description="The memory the function is billed at.")
    gb_seconds: float | None = Field(default=None, description="memory_mb / 1024 x duration.")
    bytes_read: int | None = Field(default=None, description="Input and asset bytes downloaded.")
    bytes_written: int | None = Field(default=None, description="Output bytes uploaded.")
    cold_start: bool | None = Field(default=None, description="The first invocation of a new worker process.")
    outputs: list[OutputRef] = Field(default_factory=list)
    error: str | None = None
    earlier_attempts: list[AttemptRecord] = Field(
        default_factory=list,
        description="Attempts before the latest, oldest first: retried, or cut short when their worker "
        "died. The latest is the record's own worker, started_at, finished_at, duration_ms, status and "
        "error (`attempt_history`).",
    )
    worker: str | None = None
    progress: dict[str, float | None] | None = None
    callback_url: str | None = Field(
        default=None, description="Per-upload webhook URL from the object's metadata (rules with callback)."
    )
    media: dict[str, Any] | None = Field(
        default=None, description="What screening found out about the input."
    )
    run_id: str | None = Field(default=None, description="The flow run this invocation is a step of.")
    step: str | None = Field(default=None, description="Its step in that run's flow.")
    condition: str | None = Field(
        default=None, description="The step's `if`, decided by the worker once it has screened the input."
    )
    trace: dict[str, str] | None = Field(
        default=None,
        description="W3C trace context (optional tracing): in the queue message, the sender's span; "
        "in the ledger, the span of the attempt that ran last, which its webhooks continue.",
    )
    key_in_outputs: str | None = Field(
        default=None, description="The key output names are made from, when not the input's own."
    )

    @staticmethod
    def new_id() -> str:
        # Time-ordered prefix so ids sort by creation, random suffix so they never collide.
        return f"{time.time_ns() // 1_000_000:012x}{uuid.uuid4().hex[:12]}"

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def latest_attempt(self, outcome: str | None = None) -> AttemptRecord | None:
        """The attempt the record's own fields describe, if one started after the earlier ones
        (`outcome` overrides how it ended, for one that is being closed now)."""
        earlier = self.earlier_attempts
        if (
            self.started_at is None
            or (earlier and self.started_at <= earlier[-1].started_at)  # it is the last earlier one
            or (self.status == Status.QUEUED and not outcome)
        ):
            return None
        finished = self.status.finished
        return AttemptRecord(
            n=self.attempts,
            worker=self.worker or "",
            started_at=self.started_at,
            finished_at=self.finished_at if finished else None,
            duration_ms=self.duration_ms if finished else None,
            outcome=outcome or (self.status.value if finished else "running"),
            error=self.error if finished else None,
        )

    def attempt_history(self) -> list[AttemptRecord]:
        """Every attempt kept, oldest first."""
        latest = self.latest_attempt()
        return [*self.earlier_attempts, *([latest] if latest else [])]


def params_hash(params: dict[str, Any]) -> str:
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def dedup_key(bucket: str, key: str, version: str, function: str, p_hash: str) -> str:
    """Identity of a unit of work: the same object version through the same function and params."""
    raw = json.dumps([bucket, key, version, function, p_hash], separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()
