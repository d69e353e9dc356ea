"""A run: one flow applied to one version of one object, with the state of each of its steps.

The ledger keeps a run as one JSON document; every change to it is one Redis transaction (see
`runner`), so concurrent workers finishing steps of the same run never lose each other's writes.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from pipeline.invocation import OutputRef


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # nothing was left to do: superseded by a newer version, or its source deleted
    HELD = "held"  # a screening step asked for review: its dependents wait for Approve or Reject
    BLOCKED = "blocked"  # screening (or a reviewer) blocked the upload: its object is quarantined

    @property
    def ended(self) -> bool:
        return self not in (RunStatus.RUNNING, RunStatus.HELD)


class StepStatus(StrEnum):
    WAITING = "waiting"  # for its parents
    RUNNING = "running"  # its invocations are queued or running
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    REJECTED = "rejected"
    SKIPPED = "skipped"
    HELD = "held"  # a screening step it depends on asked for review

    @property
    def finished(self) -> bool:
        return self not in (StepStatus.WAITING, StepStatus.RUNNING, StepStatus.HELD)

    @property
    def failure(self) -> bool:
        return self in (StepStatus.FAILED, StepStatus.DEAD, StepStatus.REJECTED)


# Why a step was skipped; a redrive re-runs the steps skipped because something failed.
SkipCause = Literal["condition", "failure", "disabled", "no-input", "stale", "deleted", "skipped", "blocked"]
Verdict = Literal["pass", "review", "block"]
VERDICTS: tuple[Verdict, ...] = ("pass", "review", "block")
# Fields of a screening report that are not scores (the PDQ hash is an identifier, not a measure).
NOT_SCORES = frozenset({"verdict", "reasons", "pdq"})


class StepState(BaseModel):
    status: StepStatus = StepStatus.WAITING
    needs: list[str] = Field(default_factory=list)
    invocations: list[str] = Field(default_factory=list, description="Every invocation, reruns included.")
    pending: list[str] = Field(default_factory=list, description="This round's unfinished invocations.")
    done: list[str] = Field(default_factory=list, description="This round's finished invocations.")
    outputs: list[OutputRef] = Field(default_factory=list)
    fields: dict[str, Any] = Field(default_factory=dict, description="What the function reported.")
    reason: str | None = None
    skip_cause: SkipCause | None = None
    outcome: StepStatus | None = Field(default=None, description="The worst ending of this round so far.")
    started_at: float | None = None
    finished_at: float | None = None
    rounds: int = Field(default=0, description="How many times the step was started (redrives, reruns).")

    def view(self) -> dict[str, Any]:
        """What `steps.<id>` holds in a condition."""
        outputs = [o.model_dump(mode="json") for o in self.outputs]
        return {**self.fields, "status": self.status.value, "outputs": outputs, "reason": self.reason or ""}


class Decision(BaseModel):
    """A reviewer's decision on a held upload: who, when, what."""

    action: Literal["approve", "reject"]
    by: str
    at: float
    via: str = Field(default="api", description="dashboard, api or cli")
    note: str = ""
    login: str = Field(
        default="",
        description="Who was signed in, beside the name typed in `by`: the dashboard session (its "
        "address and login time), the API token, or the CLI's user on its host.",
    )


class Quarantine(BaseModel):
    """Where a blocked upload goes, and whether it got there."""

    bucket: str
    key: str
    mode: Literal["move", "copy"]
    done_at: float | None = None
    error: str | None = None


class Screening(BaseModel):
    """What a screening step said about the upload (the first step of the run to report a
    `verdict`), and what became of it."""

    step: str
    invocation_id: str
    at: float = Field(description="When the screening step's verdict was applied.")
    screened: Verdict = Field(description="The verdict the screening step gave.")
    verdict: Verdict = Field(description="The verdict now: a reviewer's decision replaces review.")
    reasons: list[str] = Field(default_factory=list)
    scores: dict[str, Any] = Field(default_factory=dict)
    held: list[str] = Field(default_factory=list, description="Steps held for review.")
    quarantine: Quarantine | None = None


class Run(BaseModel):
    id: str
    flow: str
    rule: str
    bucket: str
    key: str
    version: str
    version_id: str | None = None
    etag: str | None = None
    event_id: str | None = None
    status: RunStatus = RunStatus.RUNNING
    reason: str | None = None
    started_at: float = Field(default_factory=time.time)
    finished_at: float | None = None
    order: str = Field(default="", description="The notification's sequencer, padded (see `newer`).")
    source: dict[str, Any] = Field(default_factory=dict, description="Facts `source` holds in conditions.")
    steps: dict[str, StepState] = Field(default_factory=dict)
    redrives: int = 0
    screening: Screening | None = None
    decisions: list[Decision] = Field(default_factory=list)
    backfill: bool = Field(
        default=False, description="Started by a backfill: its steps use the backfill lanes."
    )

    def public(self) -> dict[str, Any]:
        out = self.model_dump(mode="json", exclude={"order"})
        for state in out["steps"].values():
            del state["pending"], state["done"], state["outcome"]
        return out

    def unfinished(self) -> list[str]:
        return [name for name, step in self.steps.items() if not step.status.finished]


def order_of(sequencer: str | None) -> str:
    """S3 sequencers of one key compare as hex numbers of any length: pad, then compare."""
    return sequencer.rjust(32, "0").lower() if sequencer else ""


def newer(a: Run, b: Run) -> bool:
    """True if run `a` is for a newer version of the object than run `b`: by the notifications'
    sequencers when both have one, else by arrival."""
    if a.order and b.order:
        return a.order > b.order
    return a.started_at > b.started_at
