"""Applying the flow engine: each change of a run is one Redis transaction that also records the
invocations it launches (and, when the run ends, its announcement); the messages are sent after
it commits.

If a process dies between the commit and the send, the invocations are in the ledger as queued
and the reconciler re-sends them, as it does any lost message. If it dies before it applied a
finished invocation to its run, the reconciler's `sweep` finds the invocation finished while its
step still waits for it, and applies it then. Applying one twice does nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from pipeline.errors import NotFound
from pipeline.events.model import BACKFILL_SOURCE, ObjectEvent
from pipeline.flows import engine
from pipeline.flows.conditions import source_facts
from pipeline.flows.launch import Launch
from pipeline.flows.model import Decision, Run, RunStatus, SkipCause, newer, order_of
from pipeline.flows.quarantine import quarantine
from pipeline.invocation import Invocation, Status
from pipeline.ledger import Ledger
from pipeline.registry import Pipeline
from pipeline.routing import content_type_of
from pipeline.storage.base import ObjectStore

log = logging.getLogger(__name__)

Enqueue = Callable[[Invocation], None]


class FlowRunner:
    def __init__(
        self, pipeline: Pipeline, ledger: Ledger, enqueue: Enqueue, store: ObjectStore | None = None
    ) -> None:
        """`store`: where blocked uploads are quarantined and derived objects removed (None: a
        runner that does neither, for tests of the engine's bookkeeping). Its writes notify
        nothing: quarantine copies and removed outputs are never routed."""
        self.pipeline = pipeline
        self.ledger = ledger
        self.enqueue = enqueue
        self.store = store

    # --- starting ------------------------------------------------------------------------------
    def plan(
        self,
        event: ObjectEvent,
        event_id: str,
        rule: str,
        flow: str,
        now: float,
        disabled: set[str] | None = None,
    ) -> tuple[Run, list[Invocation]]:
        """A new run of `flow` for `event` and the invocations of its first steps (recorded by
        the intake in the notification's own transaction). `disabled`: the functions switched
        off, where the caller has read them for a whole batch."""
        run = engine.new_run(
            self.pipeline,
            run_id=Invocation.new_id(),
            flow=flow,
            rule=rule,
            bucket=event.bucket,
            key=event.key,
            version=event.version_tag,
            version_id=event.version_id,
            etag=event.etag,
            event_id=event_id,
            started_at=now,
            order=order_of(event.sequencer),
            backfill=event.source == BACKFILL_SOURCE,
            source=source_facts(
                event.bucket, event.key, event.size, content_type_of(event), None, event.metadata or None
            ),
        )
        launches = engine.start(self.pipeline, run, now)
        return run, self._invocations(run, launches, now, disabled)

    def _invocations(
        self, run: Run, launches: list[Launch], now: float, disabled: set[str] | None = None
    ) -> list[Invocation]:
        """The launches as invocations to record. A step of a function switched off in the
        dashboard gets no new work: its invocation is recorded `skipped` with the reason (applied
        to the run at once), and a redrive runs it once the function is enabled again."""
        if disabled is None:
            disabled = self.ledger.flags.members("disabled") if launches else set()
        out: list[Invocation] = []
        while launches:
            more: list[Launch] = []
            for launch in launches:
                inv = self._invocation(run, launch, now)
                if launch.function in disabled:
                    error = f"{engine.FUNCTION_DISABLED}{launch.function} is disabled"
                    inv = inv.model_copy(
                        update={"status": Status.SKIPPED, "error": error, "finished_at": now}
                    )
                    more += engine.invocation_finished(self.pipeline, run, inv, now)
                out.append(inv)
            launches = more
        return out

    def _invocation(self, run: Run, launch: Launch, now: float) -> Invocation:
        on_source = (launch.bucket, launch.key) == (run.bucket, run.key)
        return Invocation(
            id=launch.inv_id,
            function=launch.function,
            params=launch.params,
            params_hash=launch.params_hash,
            rule=run.rule,
            queue=self.pipeline.config.lane_for(launch.function, backfill=run.backfill),
            bucket=launch.bucket,
            key=launch.key,
            version=run.version if on_source else "",
            version_id=run.version_id if on_source else None,
            etag=run.etag if on_source else None,
            event_id=run.event_id,
            output_bucket=launch.output_bucket,
            output_template=launch.output_template,
            max_attempts=launch.max_attempts,
            time_limit=launch.time_limit,
            created_at=now,
            enqueued_at=now,
            run_id=run.id,
            step=launch.step,
            condition=launch.condition,
            key_in_outputs=launch.key_in_outputs,
        )

    # --- changing a run ------------------------------------------------------------------------
    def _change(
        self, run_id: str, step: Callable[[Run], list[Launch] | None]
    ) -> tuple[Run | None, list[Invocation]]:
        """One transaction: `step` changes the run (None: leave it alone) and says what to launch;
        the launches are recorded with it, and sent once it has committed."""
        now = time.time()
        launched: list[Invocation] = []

        def decide(run: Run) -> Callable[[Any], None] | None:
            launched.clear()
            before = run.status
            verdict_before = (run.screening.verdict if run.screening else None, len(run.decisions))
            launches = step(run)
            if launches is None:
                return None
            launched.extend(self._invocations(run, launches, now))
            screen_event = _screen_event(run, verdict_before)

            def also(pipe: Any) -> None:
                for inv in launched:
                    self.ledger.invocations.add(pipe, inv)
                if screen_event:
                    self.ledger.outbox.announce_screening(pipe, run.id, screen_event, len(run.decisions))
                if not before.ended and run.status.ended:
                    self.ledger.outbox.announce_run(pipe, run.id, run.status.value)

            return also

        run = self.ledger.runs.change(run_id, decide)
        self.send(launched)
        if run is not None and run.status == RunStatus.BLOCKED:
            self._after_block(run)
        return run, launched

    def send(self, invs: list[Invocation], *, tolerant: bool = True) -> None:
        """Send the recorded steps that are to run (a held step has nothing to run). `tolerant`:
        a refused message is left to the reconciler (it is recorded as queued) instead of raised."""
        for inv in invs:
            if inv.status != Status.QUEUED:
                continue
            try:
                self.enqueue(inv)
            except Exception as exc:
                if not tolerant:
                    raise
                log.warning("flow step %s of run %s recorded but not sent yet: %s", inv.step, inv.run_id, exc)

    def on_finished(self, inv_id: str) -> Run | None:
        """An invocation of a run has finished: apply it and start what became ready."""
        inv = self.ledger.invocations.get(inv_id)
        if inv is None or inv.run_id is None or not inv.status.finished:
            return None

        def apply(run: Run) -> list[Launch] | None:
            state = run.steps.get(inv.step or "")
            if run.status != RunStatus.RUNNING or state is None or inv.id not in state.pending:
                return None  # applied already, or the run has ended (superseded, cancelled)
            return engine.invocation_finished(self.pipeline, run, inv)

        run, _ = self._change(inv.run_id, apply)
        return run

    # --- screening ----------------------------------------------------------------------------
    def approve(self, run_id: str, decision: Decision) -> Run:
        run, _ = self._change(run_id, lambda r: engine.approve(self.pipeline, r, decision))
        if run is None:
            raise NotFound(f"no run {run_id}")
        return run

    def reject(self, run_id: str, decision: Decision) -> Run:
        run, _ = self._change(run_id, lambda r: engine.reject(self.pipeline, r, decision))
        if run is None:
            raise NotFound(f"no run {run_id}")
        return run

    def _after_block(self, run: Run) -> None:
        """A blocked run's queued steps are cancelled and its upload quarantined (both safe to
        repeat: the reconciler's sweep does them again for a run whose worker died first)."""
        target = run.screening.quarantine if run.screening else None
        quarantine_due = target is not None and not (target.done_at or target.error)
        if not engine.blocked_pending(run) and not quarantine_due:
            return  # done already (a late step of the run finished, or the sweep looked again)
        reason = run.reason or "blocked"
        for inv_id in engine.blocked_pending(run):
            self.ledger.invocations.transition(
                inv_id, (Status.QUEUED,), Status.SKIPPED, error=reason, finished_at=time.time()
            )
        store = self.store
        outcome = None
        if target is not None and quarantine_due and store is not None:
            outcome = quarantine(store, run, target)

        def record(current: Run) -> Callable[[Any], None] | None:
            changed = False
            for state in current.steps.values():
                if state.skip_cause == "blocked" and state.pending:
                    state.pending, changed = [], True
            now_target = current.screening.quarantine if current.screening else None
            if now_target is not None and outcome is not None and not now_target.done_at:
                if isinstance(outcome, str):
                    now_target.error = outcome
                else:
                    now_target.done_at, now_target.error = outcome, None
                changed = True
            return (lambda pipe: None) if changed else None

        self.ledger.runs.change(run.id, record)

    def redrive(self, run_id: str) -> Run:
        run, _ = self._change(run_id, lambda r: engine.redrive(self.pipeline, r))
        if run is None:
            raise NotFound(f"no run {run_id}")
        return run

    def rerun(self, run_id: str, step: str, downstream: bool) -> Run:
        run, _ = self._change(run_id, lambda r: engine.rerun(self.pipeline, r, step, downstream))
        if run is None:
            raise NotFound(f"no run {run_id}")
        return run

    def cancel(self, run_id: str, cause: SkipCause, reason: str) -> Run | None:
        """End a running run; its queued invocations are skipped before a worker takes them."""
        pending: list[str] = []

        def stop(run: Run) -> list[Launch] | None:
            if run.status.ended:
                if cause == "stale" and run.status == RunStatus.SKIPPED and run.reason != reason:
                    # Its first steps were staged with its record: a worker's own version check
                    # may have skipped them before the intake settled it. Say why, all the same.
                    run.reason = reason
                    return []
                return None
            pending.extend(engine.cancel(run, cause, reason))
            return []

        run, _ = self._change(run_id, stop)
        for inv_id in pending:
            self.ledger.invocations.transition(
                inv_id, (Status.QUEUED,), Status.SKIPPED, error=reason, finished_at=time.time()
            )
        return run

    # --- versions and deletions ----------------------------------------------------------------
    def settle_versions(self, run: Run) -> bool:
        """One version of an object is processed at a time per rule: a newer version's run ends
        the older ones (their unfinished steps are skipped as stale); a run that arrives for an
        older version than one already known ends itself. True if `run` is the current one."""
        others = [
            other
            for other in self.ledger.runs.for_object(run.bucket, run.key)
            if other.id != run.id and other.rule == run.rule and other.version != run.version
        ]
        newest: Run | None = None
        for other in others:
            newest = other if newest is None or newer(other, newest) else newest
        if newest is not None and newer(newest, run):
            self.cancel(run.id, "stale", f"stale: run {newest.id} is for a newer version")
            return False
        for other in others:
            if not other.status.ended:
                self.cancel(other.id, "stale", f"superseded by run {run.id} (a newer version)")
        return True

    def source_removed(self, bucket: str, key: str) -> tuple[list[Run], int]:
        """The source was deleted: its running runs end and their queued steps are cancelled.
        Returns every run of the object (whose outputs a rule may remove) and how many ended."""
        runs = self.ledger.runs.for_object(bucket, key)
        cancelled = 0
        for run in runs:
            if not run.status.ended:
                self.cancel(run.id, "deleted", f"the source {bucket}/{key} was deleted")
                cancelled += 1
        return runs, cancelled

    def remove_outputs(self, bucket: str, key: str, runs: list[Run]) -> int:
        """Delete what was derived from a deleted source, for the rules that say
        `on_delete: remove-outputs`. Returns how many objects were deleted."""
        removing = {r.name for r in self.pipeline.config.rules if r.on_delete == "remove-outputs"}
        store = self.store
        if not removing or store is None:
            return 0
        outputs = {
            (o.bucket, o.key)
            for run in runs
            if run.rule in removing
            for inv in self.ledger.invocations.get_many(i for s in run.steps.values() for i in s.invocations)
            for o in inv.outputs
        }
        outputs |= {
            (o.bucket, o.key)
            for inv in self.ledger.invocations.for_object(bucket, key)
            if inv.rule in removing
            for o in inv.outputs
        }
        for out_bucket, out_key in sorted(outputs):
            store.delete(out_bucket, out_key)
        if outputs:
            log.info("removed %d objects derived from deleted %s/%s", len(outputs), bucket, key)
        return len(outputs)

    # --- repair --------------------------------------------------------------------------------
    def sweep(self) -> int:
        """Apply finished invocations that their runs have not seen (the process that ran them
        died in between). Returns how many were applied."""
        applied = 0
        for run in self.ledger.runs.get_many(self.ledger.runs.ids_with_status(RunStatus.RUNNING)):
            pending = [inv_id for state in run.steps.values() for inv_id in state.pending]
            for inv in self.ledger.invocations.get_many(pending):
                if inv.status.finished:
                    self.on_finished(inv.id)
                    applied += 1
        if applied:
            log.warning("applied %d finished flow steps their runs had not seen", applied)
        for run in self.ledger.runs.get_many(self.ledger.runs.ids_with_status(RunStatus.BLOCKED)):
            self._after_block(run)  # nothing to do for a run whose block is complete
        return applied


def _screen_event(run: Run, before: tuple[str | None, int]) -> str | None:
    """The webhook a change of the run's screening verdict sends: held, blocked or rejected."""
    if run.screening is None or (run.screening.verdict, len(run.decisions)) == before:
        return None
    if run.screening.verdict == "review":
        return "object.held"
    if run.screening.verdict == "block":
        return (
            "object.rejected" if run.decisions and run.decisions[-1].action == "reject" else "object.blocked"
        )
    return None
