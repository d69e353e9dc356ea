"""The pipeline file's `flows:` section: named graphs of steps that a rule starts with `flow:`.

A step without `needs` takes the uploaded object; a step with `needs` runs once per output file
of its parents (narrowed by `use`) once all of them have finished.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipeline.output_target import OutputTarget

STEP_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class UseFilter(_Strict):
    """Which of the parents' output files a step runs on (empty lists: all of them)."""

    suffixes: list[str] = Field(default_factory=list, description="Key endings, case-insensitive.")
    content_types: list[str] = Field(default_factory=list, description="Patterns such as image/*.")


class FlowStep(_Strict):
    function: str
    preset: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    needs: list[str] = Field(default_factory=list, description="Steps whose outputs this one runs on.")
    input: Literal["outputs", "source"] = Field(
        default="outputs",
        description="outputs: run on the files the needed steps made; source: wait for them (and "
        "read what they found in `if`), then run once on the uploaded object itself.",
    )
    use: UseFilter = UseFilter()
    condition: str | None = Field(
        default=None,
        alias="if",
        description="A CEL expression over `source` and `steps`; false skips the step and its dependents.",
    )
    on_failure: Literal["stop", "continue"] = Field(
        default="stop",
        description="stop: dependents are skipped and the run fails; continue: dependents run on "
        "the outputs the other parents made and the run can still succeed.",
    )
    max_attempts: int | None = Field(default=None, ge=1, le=50, description="Default: the function's.")
    time_limit: float | None = Field(default=None, gt=0, description="Seconds; default: the function's.")
    output: OutputTarget = OutputTarget()

    @field_validator("needs")
    @classmethod
    def _unique_needs(cls, needs: list[str]) -> list[str]:
        if len(set(needs)) != len(needs):
            raise ValueError(f"a step is named twice in needs: {needs}")
        return needs


class Flow(_Strict):
    description: str = ""
    steps: dict[str, FlowStep] = Field(min_length=1)

    @field_validator("steps")
    @classmethod
    def _step_names(cls, steps: dict[str, FlowStep]) -> dict[str, FlowStep]:
        for name in steps:
            if not STEP_NAME.match(name):
                raise ValueError(f"step name {name!r}: use lower-case letters, digits, - and _")
        return steps

    def dependents(self, step: str) -> list[str]:
        return [name for name, s in self.steps.items() if step in s.needs]

    def roots(self) -> list[str]:
        return [name for name, s in self.steps.items() if not s.needs]
