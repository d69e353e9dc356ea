"""The dashboard's pictures of flows: a run as a graph of steps in columns (each column after the
ones its steps need), and a flow's dry run with which `if`s would hold for an object."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.flows.conditions import ConditionError, Undecided, source_facts
from pipeline.flows.graph import check_graph
from pipeline.flows.model import Run, StepState
from pipeline.flows.spec import Flow
from pipeline.invocation import Invocation
from pipeline.registry import Pipeline


@dataclass
class StepView:
    name: str
    function: str
    preset: str | None
    needs: list[str]
    condition: str | None
    dependents: list[str] = field(default_factory=list)
    state: StepState | None = None
    verdict: str = ""  # a dry run: whether its `if` would hold

    @property
    def took_ms(self) -> float | None:
        s = self.state
        return (s.finished_at - s.started_at) * 1000 if s and s.finished_at and s.started_at else None


@dataclass
class RunView:
    run: Run
    columns: list[list[StepView]]
    invocations: dict[str, Invocation] = field(default_factory=dict)

    @property
    def redrivable(self) -> bool:
        return self.run.status.value == "failed" or any(
            s.status.failure or s.skip_cause in ("failure", "disabled") for s in self.run.steps.values()
        )


def columns(flow: Flow) -> list[list[StepView]]:
    """Steps by depth: a step sits one column after the deepest step it needs."""
    depth: dict[str, int] = {}
    for name in check_graph(flow):
        depth[name] = 1 + max((depth[n] for n in flow.steps[name].needs), default=-1)
    out: list[list[StepView]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for name, step in flow.steps.items():
        view = StepView(
            name, step.function, step.preset, list(step.needs), step.condition, flow.dependents(name)
        )
        out[depth[name]].append(view)
    return out


def run_views(pipeline: Pipeline, runs: list[Run], invocations: list[Invocation]) -> list[RunView]:
    by_id = {inv.id: inv for inv in invocations}
    views = []
    for run in sorted(runs, key=lambda r: r.started_at, reverse=True):
        flow = pipeline.config.flows.get(run.flow)
        cols = (
            columns(flow) if flow else [[StepView(n, "?", None, s.needs, None) for n, s in run.steps.items()]]
        )
        for col in cols:
            for view in col:
                view.state = run.steps.get(view.name)
        mine = {i: by_id[i] for s in run.steps.values() for i in s.invocations if i in by_id}
        views.append(RunView(run, cols, mine))
    return views


def flow_dry_run(
    pipeline: Pipeline,
    flow_name: str,
    bucket: str,
    key: str,
    content_type: str | None,
    media: dict[str, Any] | None,
) -> list[list[StepView]]:
    """Each step of a flow with whether its `if` would hold for this object. `media`: what an
    earlier screening of the object found, if any (else conditions on it wait for screening)."""
    flow = pipeline.flow(flow_name)
    facts = source_facts(bucket, key, None, content_type, media, None)
    cols = columns(flow)
    for col in cols:
        for view in col:
            condition = pipeline.conditions.get((flow_name, view.name))
            if condition is None:
                view.verdict = "runs" if not view.needs else f"runs on the outputs of {', '.join(view.needs)}"
            elif condition.steps_named():
                view.verdict = "decided when its needs have finished"
            else:
                try:
                    view.verdict = (
                        "if holds"
                        if condition.evaluate({"source": facts, "steps": {}})
                        else "if does not hold: skipped"
                    )
                except Undecided:
                    view.verdict = "decided once the upload is screened"
                except ConditionError as exc:
                    view.verdict = f"error: {exc}"
    return cols
