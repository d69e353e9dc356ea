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


class StepStatus(StrEnum):
    WAITING = "waiting"  # for its parents
    RUNNING = "running"  # its invocations are queued or running
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    REJECTED = "rejected"
    SKIPPED = "skipped"

    @property
    def finished(self) -> bool:
        return self not in (StepStatus.WAITING, StepStatus.RUNNING)

    @property
    def failure(self) -> bool:
        return self in (StepStatus.FAILED, StepStatus.DEAD, StepStatus.REJECTED)


# Why a step was skipped; a redrive re-runs the steps skipped because something failed.
SkipCause = Literal["condition", "failure", "disabled", "no-input", "stale", "deleted", "skipped"]


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
