"""Pure transitions of a run: which steps start, finish, are skipped, and what runs next.

Nothing here touches Redis or a queue: each function takes a run (a copy it may change) and
returns the invocations to launch. `runner` applies them in one Redis transaction per change.
"""

from __future__ import annotations

import time
from typing import Any

from pipeline.errors import Conflict, NotFound
from pipeline.flows.conditions import ConditionError, Undecided, source_facts
from pipeline.flows.graph import ancestors, descendants
from pipeline.flows.launch import Launch, inputs, launch
from pipeline.flows.model import (
    NOT_SCORES,
    VERDICTS,
    Decision,
    Quarantine,
    Run,
    RunStatus,
    Screening,
    SkipCause,
    StepState,
    StepStatus,
)
from pipeline.invocation import Invocation, Status
from pipeline.output_target import prefixed_key
from pipeline.registry import Pipeline

# A worker that finds a step's `if` false says so with this prefix; the step is then skipped for
# its condition (not re-run by a redrive).
CONDITION_FALSE = "condition not met: "
# A step of a function switched off in the dashboard is held with this reason; a redrive runs it.
FUNCTION_DISABLED = "held: function "

_STEP_STATUS = {
    Status.SUCCEEDED: StepStatus.SUCCEEDED,
    Status.FAILED: StepStatus.FAILED,
    Status.DEAD: StepStatus.DEAD,
    Status.REJECTED: StepStatus.REJECTED,
    Status.SKIPPED: StepStatus.SKIPPED,
}
# When a step's invocations end differently, the step shows the worst of them.
_SEVERITY = [
    StepStatus.DEAD,
    StepStatus.FAILED,
    StepStatus.REJECTED,
    StepStatus.SUCCEEDED,
    StepStatus.SKIPPED,
]


def new_run(
    pipeline: Pipeline, *, run_id: str, flow: str, rule: str, bucket: str, key: str, **fields: Any
) -> Run:
    steps = {name: StepState(needs=list(s.needs)) for name, s in pipeline.flow(flow).steps.items()}
    return Run(id=run_id, flow=flow, rule=rule, bucket=bucket, key=key, steps=steps, **fields)


def start(pipeline: Pipeline, run: Run, now: float | None = None) -> list[Launch]:
    """The steps without `needs`, on the uploaded object."""
    now = now or time.time()
    launches: list[Launch] = []
    for name in pipeline.flow(run.flow).roots():
        launches += _ready(pipeline, run, name, now)
    return launches + _after(pipeline, run, now)  # dependents of roots skipped at once


def invocation_finished(
    pipeline: Pipeline, run: Run, inv: Invocation, now: float | None = None
) -> list[Launch]:
    """Apply one finished invocation of `run` (a second time does nothing) and start whatever
    became ready."""
    now = now or time.time()
    step = run.steps.get(inv.step or "")
    if run.status != RunStatus.RUNNING or step is None or inv.id not in step.pending:
        return []
    step.pending.remove(inv.id)
    step.done.append(inv.id)
    if inv.bucket == run.bucket and inv.key == run.key and inv.media and not run.source.get("screened"):
        # The first screening of the upload gives the facts later conditions read.
        run.source = source_facts(run.bucket, run.key, None, None, inv.media, run.source.get("metadata"))
    step.outputs += inv.outputs
    for output in inv.outputs:
        step.fields.update(output.meta)
    outcome = _STEP_STATUS.get(inv.status, StepStatus.FAILED)
    if outcome == StepStatus.SKIPPED and inv.error:
        step.reason = step.reason or inv.error
        step.skip_cause = (
            "condition"
            if inv.error.startswith(CONDITION_FALSE)
            else "disabled"
            if inv.error.startswith(FUNCTION_DISABLED)
            else "skipped"
        )
    elif outcome.failure:
        step.reason = step.reason or f"{inv.function} {inv.status.value}: {inv.error or ''}".strip()
    if step.outcome is None or _SEVERITY.index(outcome) < _SEVERITY.index(step.outcome):
        step.outcome = outcome
    if step.pending:
        return []
    step.status, step.finished_at = step.outcome, now
    if step.status != StepStatus.SKIPPED:
        step.skip_cause = None
        if not step.status.failure:
            step.reason = None
    if step.status == StepStatus.SUCCEEDED and _screened(pipeline, run, inv, step, now):
        return []
    return _after(pipeline, run, now)


def _screened(pipeline: Pipeline, run: Run, inv: Invocation, step: StepState, now: float) -> bool:
    """A step that reports a `verdict` screens the upload (the first such step of the run): block
    ends the run, review holds the steps that depend on it. True if the run was blocked."""
    verdict = step.fields.get("verdict")
    name = inv.step or ""
    if verdict not in VERDICTS or (run.screening is not None and run.screening.step != name):
        return False
    run.screening = Screening(
        step=name,
        invocation_id=inv.id,
        at=now,
        screened=verdict,
        verdict=verdict,
        reasons=[str(r) for r in step.fields.get("reasons") or []],
        scores={k: v for k, v in step.fields.items() if k not in NOT_SCORES},
    )
    why = "; ".join(run.screening.reasons) or verdict
    if verdict == "block":
        _block(pipeline, run, f"blocked by {name}: {why}", now)
        return True
    if verdict == "review":
        held = sorted(
            d for d in descendants(pipeline.flow(run.flow), name) if not run.steps[d].status.finished
        )
        for d in held:
            run.steps[d].status, run.steps[d].reason = StepStatus.HELD, f"held for review: {why}"
        run.screening.held = held
    return False


def _block(pipeline: Pipeline, run: Run, reason: str, now: float) -> None:
    """End the run as blocked: every unfinished step is skipped (its queued invocations are left in
    `pending` for the runner to cancel) and the upload is to be quarantined."""
    for state in run.steps.values():
        if not state.status.finished:
            _skip(state, "blocked", reason, now)
    policy = pipeline.config.screening
    if run.screening is not None:
        run.screening.verdict = "block"
        run.screening.quarantine = Quarantine(
            bucket=run.bucket, key=prefixed_key(policy.quarantine_prefix, run.key), mode=policy.on_block
        )
    run.status, run.reason, run.finished_at = RunStatus.BLOCKED, reason, now


def blocked_pending(run: Run) -> list[str]:
    """The invocations a block left queued or running: the runner cancels those still queued."""
    return [i for s in run.steps.values() if s.skip_cause == "blocked" for i in s.pending]


def _decide(run: Run, decision: Decision) -> tuple[Screening, list[str]]:
    held = [n for n, s in run.steps.items() if s.status == StepStatus.HELD]
    if run.screening is None or not held:
        raise Conflict(f"run {run.id} holds no step for review (status {run.status.value})")
    run.decisions.append(decision)
    return run.screening, held


def approve(pipeline: Pipeline, run: Run, decision: Decision) -> list[Launch]:
    """A reviewer passed a held upload: the screening step's verdict becomes pass and the held
    steps run (their `if` now reads the new verdict)."""
    screening, held = _decide(run, decision)
    screening.verdict = "pass"
    gate = run.steps[screening.step]
    gate.fields["verdict"] = "pass"
    gate.fields["reviewed"] = f"approved by {decision.by}"
    _reset(run, set(held))
    return _after(pipeline, run, decision.at)


def reject(pipeline: Pipeline, run: Run, decision: Decision) -> list[Launch]:
    """A reviewer refused a held upload: it is blocked (quarantined) as screening would have."""
    screening, _ = _decide(run, decision)
    gate = run.steps[screening.step]
    gate.fields["verdict"] = "block"
    gate.fields["reviewed"] = f"rejected by {decision.by}"
    note = f": {decision.note}" if decision.note else ""
    _block(pipeline, run, f"rejected by {decision.by}{note}", decision.at)
    return []


def _after(pipeline: Pipeline, run: Run, now: float) -> list[Launch]:
    """Start each waiting step whose needs have all finished; finish the run when nothing is left."""
    launches: list[Launch] = []
    flow = pipeline.flow(run.flow)
    progress = True
    while progress:  # a skipped step can make its own dependents ready at once
        progress = False
        for name, state in run.steps.items():
            if state.status == StepStatus.WAITING and all(
                run.steps[n].status.finished for n in flow.steps[name].needs
            ):
                launches += _ready(pipeline, run, name, now)
                progress = progress or state.status.finished
    _maybe_finish(pipeline, run, now)
    return launches


def _skip(state: StepState, cause: SkipCause, reason: str, now: float) -> None:
    state.status, state.skip_cause, state.reason = StepStatus.SKIPPED, cause, reason
    state.finished_at = state.finished_at or now


def _ready(pipeline: Pipeline, run: Run, name: str, now: float) -> list[Launch]:
    flow = pipeline.flow(run.flow)
    step = flow.steps[name]
    state = run.steps[name]
    for need in step.needs:
        parent = run.steps[need]
        if parent.status.failure and flow.steps[need].on_failure == "stop":
            _skip(state, "failure", f"{need} {parent.status.value}", now)
            return []
        if parent.status == StepStatus.SKIPPED and parent.skip_cause != "no-input":
            cause: SkipCause = "failure" if parent.skip_cause == "failure" else parent.skip_cause or "skipped"
            _skip(state, cause, f"{need} was skipped", now)
            return []
    deferred = None
    condition = pipeline.conditions.get((run.flow, name))
    if condition is not None:
        data = {"source": run.source, "steps": {n: run.steps[n].view() for n in ancestors(flow, name)}}
        try:
            if not condition.evaluate(data):
                _skip(state, "condition", f"{CONDITION_FALSE}{condition.text}", now)
                return []
        except Undecided as exc:
            if step.needs:
                state.status, state.reason, state.finished_at = StepStatus.FAILED, str(exc), now
                return []
            deferred = condition.text  # a root step: its worker screens the upload, then decides
        except ConditionError as exc:
            state.status, state.reason, state.finished_at = StepStatus.FAILED, str(exc), now
            return []
    found = inputs(run, step)
    if not found:
        _skip(state, "no-input", f"no output of {', '.join(step.needs)} matches this step's use", now)
        return []
    launches = [launch(pipeline, run, name, step, bucket, key, deferred) for bucket, key in found]
    state.status, state.reason, state.skip_cause = StepStatus.RUNNING, None, None
    state.started_at, state.finished_at = now, None
    state.pending = [launch.inv_id for launch in launches]
    state.done, state.outputs, state.fields, state.outcome = [], [], {}, None
    state.invocations += state.pending
    state.rounds += 1
    return launches


def _maybe_finish(pipeline: Pipeline, run: Run, now: float) -> None:
    if run.status != RunStatus.RUNNING:
        return
    unfinished = run.unfinished()
    if unfinished:
        if all(run.steps[n].status == StepStatus.HELD for n in unfinished):
            run.status, run.reason = RunStatus.HELD, f"held for review: {', '.join(unfinished)}"
        return
    flow = pipeline.flow(run.flow)
    failed = [n for n, s in run.steps.items() if s.status.failure and flow.steps[n].on_failure == "stop"]
    held = [n for n, s in run.steps.items() if (s.reason or "").startswith(FUNCTION_DISABLED)]
    if failed:
        run.status, run.reason = RunStatus.FAILED, f"failed: {', '.join(failed)}"
    elif held:
        run.status, run.reason = RunStatus.FAILED, f"held, their function is disabled: {', '.join(held)}"
    elif all(s.status == StepStatus.SKIPPED for s in run.steps.values()):
        run.status, run.reason = RunStatus.SKIPPED, "every step was skipped"
    else:
        run.status, run.reason = RunStatus.SUCCEEDED, None
    run.finished_at = now


def cancel(run: Run, cause: SkipCause, reason: str, now: float | None = None) -> list[str]:
    """End a running run: its unfinished steps are skipped. Returns the invocations to cancel."""
    now = now or time.time()
    if run.status.ended:
        return []
    pending: list[str] = []
    for state in run.steps.values():
        if not state.status.finished:
            pending += state.pending
            _skip(state, cause, reason, now)
            state.pending = []
    run.status, run.reason, run.finished_at = RunStatus.SKIPPED, reason, now
    return pending


def _reset(run: Run, names: set[str]) -> None:
    for name in names:
        state = run.steps[name]
        state.status, state.reason, state.skip_cause = StepStatus.WAITING, None, None
        state.pending, state.done, state.outputs, state.fields, state.outcome = [], [], [], {}, None
        state.started_at = state.finished_at = None
    run.status, run.reason, run.finished_at = RunStatus.RUNNING, None, None


def redrive(pipeline: Pipeline, run: Run, now: float | None = None) -> list[Launch]:
    """Run again the steps that failed (or died, or were refused) and those skipped because of
    them, reusing the outputs of every step that succeeded."""
    now = now or time.time()
    if run.status == RunStatus.RUNNING:
        raise Conflict(f"run {run.id} is still running; redrive it once it has finished")
    if run.status == RunStatus.HELD:
        raise Conflict(f"run {run.id} is held for review: approve or reject it")
    if run.status == RunStatus.BLOCKED or (run.screening is not None and run.screening.verdict == "block"):
        # A step that failed beside the screening step would otherwise run on the blocked upload.
        raise Conflict(f"run {run.id} was blocked by screening; a blocked upload is never processed again")
    flow = pipeline.flow(run.flow)
    failed = {n for n, s in run.steps.items() if s.status.failure or s.skip_cause in ("failure", "disabled")}
    if not failed:
        raise Conflict(f"run {run.id} has no failed step to redrive")
    targets = set(failed)
    for name in failed:
        targets |= descendants(flow, name)
    _reset(run, targets)
    run.redrives += 1
    return _after(pipeline, run, now)


def rerun(
    pipeline: Pipeline, run: Run, step: str, downstream: bool, now: float | None = None
) -> list[Launch]:
    """Run one finished step again (and, with `downstream`, everything that depends on it)."""
    now = now or time.time()
    flow = pipeline.flow(run.flow)
    if step not in run.steps:
        raise NotFound(f"run {run.id} has no step {step!r} (steps: {', '.join(run.steps)})")
    if run.status in (RunStatus.HELD, RunStatus.BLOCKED):
        raise Conflict(f"run {run.id} is {run.status.value} by screening; a rerun would bypass it")
    if not run.steps[step].status.finished:
        raise Conflict(f"step {step} of run {run.id} has not finished; rerun it once it has")
    if any(not run.steps[n].status.finished for n in ancestors(flow, step)):
        raise Conflict(f"step {step} of run {run.id} still waits for its needs")
    targets = {step} | (descendants(flow, step) if downstream else set())
    busy = [n for n in targets if run.steps[n].status == StepStatus.RUNNING]
    if busy:
        raise Conflict(f"steps {', '.join(sorted(busy))} of run {run.id} are running")
    _reset(run, targets)
    return _after(pipeline, run, now)
