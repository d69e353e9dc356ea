"""What the ledger keeps besides invocations: notifications, attempts and worker heartbeats."""

from __future__ import annotations

from pydantic import BaseModel, Field

from pipeline.invocation import AttemptRecord

__all__ = ["AttemptRecord", "EventRecord", "WorkerInfo"]

# The start of a notification's body kept for the dashboard's timeline.
RAW_EVENT_CHARS = 16384


class EventRecord(BaseModel):
    id: str
    received_at: float
    source: str
    event_name: str
    bucket: str
    key: str
    version: str = ""
    size: int | None = None
    content_type: str | None = None
    status: str = Field(description="accepted | ignored | duplicate | unavailable")
    reason: str = ""
    invocations: list[str] = Field(default_factory=list)
    runs: list[str] = Field(default_factory=list, description="The flow runs it started (or found).")
    duplicates: int = Field(default=0, description="Units of work (invocations and runs) already claimed.")
    duplicate_runs: int = Field(default=0, description="How many of `duplicates` are runs.")
    raw: str = Field(default="", description="The notification as received (first 16 KB), for the dashboard.")
    raw_digest: str = Field(default="", description="Where `raw` is stored: once per notification.")


class WorkerInfo(BaseModel):
    hostname: str
    queues: list[str]
    concurrency: int
    pid: int
    started_at: float
    seen_at: float
