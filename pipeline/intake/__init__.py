"""Intake: turn `ObjectEvent`s into recorded, deduplicated, enqueued invocations.

The local store and the CLI hand events to `Intake.accept`, the gateway hands batches to
`accept_many` (group commit). It never does media work: it routes, claims each unit of work once,
records it, and enqueues it. If the broker is down it answers `BrokerUnavailable` after undoing
its claims, so the sender can retry the event later.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from pipeline.errors import BrokerUnavailable, EventError, PipelineError
from pipeline.events.model import ObjectEvent
from pipeline.flows.model import Run
from pipeline.flows.runner import Enqueue, FlowRunner
from pipeline.intake.records import Notification, invocation_for, new_record, unavailable
from pipeline.invocation import Invocation, Status, dedup_key
from pipeline.ledger import EventRecord, Ledger, keys
from pipeline.ledger.claims import UNRECORDED
from pipeline.ledger.runs import RunStore
from pipeline.registry import Pipeline
from pipeline.routing import LOOP_GUARD, Planned, route, route_flows, why_unrouted
from pipeline.tracing import span

log = logging.getLogger(__name__)

__all__ = ["Intake", "Notification"]


@dataclass
class _Work:
    """One notification on its way through a batch."""

    note: Notification
    record: EventRecord
    units: list[tuple[str, Invocation]] = field(default_factory=list)
    runs: list[tuple[Run, list[Invocation]]] = field(default_factory=list)
    claimed: list[tuple[Invocation, str]] = field(default_factory=list)
    started: list[tuple[Run, list[Invocation]]] = field(default_factory=list)
    outcome: EventRecord | PipelineError | None = None
    staged_runs: bool = False  # the runs' first messages went with the records


Stage = Callable[[Any, Invocation], None]


class Intake:
    def __init__(
        self,
        pipeline: Pipeline,
        ledger: Ledger,
        enqueue: Enqueue,
        stage: Stage | None = None,
        flows: FlowRunner | None = None,
    ) -> None:
        """`stage`: puts an invocation's queue message on the writes that record it (the
        Celery dispatcher's); without it, messages are sent with `enqueue` after the records.
        `flows`: the runtime's flow runner (by default one without a store)."""
        self.pipeline = pipeline
        self.ledger = ledger
        self.enqueue = enqueue
        self.stage = stage
        self.flows = flows or FlowRunner(pipeline, ledger, enqueue)
        # PIPELINE_REDIS_MIN_REPLICAS: acknowledge a notification only once replicas have it.
        self.min_replicas = 0
        self.replica_timeout_ms = 500

    def accept(self, event: ObjectEvent, raw: str = "", plans: list[Planned] | None = None) -> EventRecord:
        """Take in one event: see `accept_many`. Raises what that would return for it."""
        [outcome] = self.accept_many([Notification(event, raw, plans)])
        if isinstance(outcome, PipelineError):
            raise outcome
        return outcome

    def accept_many(self, notes: list[Notification]) -> list[EventRecord | PipelineError]:
        """Take in a batch of events (group commit): claim all their units of work in one script,
        then record them and put their queue messages in one script call, so a batch costs two
        round trips to Redis whatever its size. Returns, per event, its record or the error to
        answer its sender with (BrokerUnavailable when it must be sent again): one event's
        trouble is its own, except Redis failing, which fails the whole batch."""
        works: list[_Work] = []
        batch_reads: dict[str, set[str]] = {}  # read once a batch, where a run needs them
        for note in notes:
            record = new_record(note)
            work = _Work(note, record)
            if note.event.event_name.startswith("s3:ObjectRemoved") and note.plans is None:
                try:
                    work.outcome = self._removed(note.event, record)
                except redis.RedisError as exc:
                    work.outcome = unavailable(note.event, exc)
            else:
                self._plan(work, batch_reads)
            works.append(work)
        live = [w for w in works if w.outcome is None]
        unsettled: list[Run] = []
        try:
            if live:
                self._claim(live)
                unsettled = self._commit([w for w in live if w.outcome is None])
        except redis.RedisError as exc:
            for work in live:
                if work.outcome is None or isinstance(work.outcome, EventRecord):
                    work.outcome = unavailable(work.note.event, exc)
        for work in live:
            # Staged messages went with the records; what was not staged is sent now.
            unsent = work.claimed or (work.started and not work.staged_runs)
            if isinstance(work.outcome, EventRecord) and unsent:
                self._send_after_commit(work)
        self._settle_batch(unsettled)
        self._await_replicas(works)
        return [w.outcome if w.outcome is not None else w.record for w in works]

    # --- the phases of a batch -------------------------------------------------------------------
    def _settle_batch(self, runs: list[Run]) -> None:
        """After the commit: a new run for an object with other runs ends those of older
        versions, or itself when it is the older one (`FlowRunner.settle_versions`)."""
        for run in runs:
            try:
                self.flows.settle_versions(run)
            except redis.RedisError as exc:  # its steps still check the version before they run
                log.warning("could not compare run %s with other versions' runs: %s", run.id, exc)

    def _plan(self, work: _Work, batch_reads: dict[str, set[str]] | None = None) -> None:
        """What the rules (or the caller's plans) say should run for the event."""
        event, plans = work.note.event, work.note.plans
        unwritable = event.not_utf8()
        if unwritable is not None:
            # Refused alone, before any claim: one bad record must not fail its batch's writes.
            work.outcome = EventError(
                f"{event.bucket}/{event.key!r}: {unwritable} is not valid UTF-8 (a lone surrogate?)"
            )
            return
        try:
            planned = route(self.pipeline, event) if plans is None else plans
            flow_rules = route_flows(self.pipeline, event) if plans is None else []
            # Stamped a moment before the send: the reconciler only asks whether a queued
            # invocation's message has been gone for long.
            now = time.time()
            work.units = [
                (
                    dedup_key(event.bucket, event.key, event.version_tag, plan.function, plan.params_hash),
                    invocation_for(self.pipeline.config, plan, event, work.record.id, enqueued_at=now),
                )
                for plan in planned
            ]
            reads = batch_reads if batch_reads is not None else {}
            if flow_rules and "disabled" not in reads:  # the functions switched off in the dashboard
                reads["disabled"] = self.ledger.flags.members("disabled")
            work.runs = [
                self.flows.plan(event, work.record.id, r.name, r.flow, now, reads.get("disabled"))
                for r in flow_rules
                if r.flow
            ]
        except redis.RedisError as exc:
            work.outcome = unavailable(event, exc)

    def _claim(self, works: list[_Work]) -> None:
        """Claim every unit of work and every run of the batch in one script. Per event: the
        invocations claimed now, the runs started now, the functions switched off; duplicates go
        on its record."""
        claim_units: list[tuple[keys.Claim, str, str, str]] = []
        for work in works:
            claim_units += [
                (keys.dedup(claim), inv.function, inv.id, keys.invocation("")) for claim, inv in work.units
            ]
            # One run per (rule, object version): its claim stands for all of its steps.
            claim_units += [
                (RunStore.claim_key(run), f"flow:{run.flow}", run.id, keys.run("")) for run, _ in work.runs
            ]
        outcomes = iter(self.ledger.claims.claim_all(claim_units))
        in_batch = {claimant for _, _, claimant, _ in claim_units}
        for work in works:
            mine = [next(outcomes) for _ in range(len(work.units) + len(work.runs))]
            self._settle_claims(work, mine, in_batch)

    def _settle_claims(self, work: _Work, outcomes: list[str | bool], in_batch: set[str]) -> None:
        record, event = work.record, work.note.event
        # Claimed earlier in this batch: recorded by the same script call as this event, or not
        # at all (then both are refused), so it is an ordinary duplicate.
        outcomes = [o[1:] if isinstance(o, str) and o[1:] in in_batch else o for o in outcomes]
        unrecorded = [o for o in outcomes if isinstance(o, str) and o.startswith(UNRECORDED)]
        unit_outcomes, run_outcomes = outcomes[: len(work.units)], outcomes[len(work.units) :]
        if unrecorded:
            claimed_here = [
                keys.dedup(c) for (c, _), o in zip(work.units, unit_outcomes, strict=True) if o is True
            ]
            claimed_here += [
                RunStore.claim_key(run)
                for (run, _), o in zip(work.runs, run_outcomes, strict=True)
                if o is True
            ]
            for mine in claimed_here:  # what this call claimed: the retry claims it again
                self.ledger.claims.release(mine)
            # An earlier delivery claimed this work and has not recorded it: it is still being
            # recorded, or it failed there (Redis failed over). Acknowledging now could lose it.
            work.outcome = BrokerUnavailable(
                f"an earlier delivery of the notification for {event.bucket}/{event.key} claimed "
                f"{unrecorded[0][1:]} and has not recorded it yet; send it again"
            )
            return
        for (run, run_invs), outcome in zip(work.runs, run_outcomes, strict=True):
            if outcome is True:
                work.started.append((run, run_invs))
                record.runs.append(run.id)
            else:
                record.duplicates += 1
                record.duplicate_runs += 1
                record.runs.append(str(outcome))
        disabled: list[str] = []
        for (claim, inv), outcome in zip(work.units, unit_outcomes, strict=True):
            if outcome is False:
                disabled.append(inv.function)
            elif outcome is True:
                work.claimed.append((inv, claim))
                record.invocations.append(inv.id)
            else:
                record.duplicates += 1
                record.invocations.append(str(outcome))
        if disabled:
            # Functions switched off in the dashboard get no new work; the record says so.
            record.reason = f"function(s) disabled: {', '.join(sorted(set(disabled)))}"

    def _commit(self, works: list[_Work]) -> list[Run]:
        """Record every event of the batch, its invocations and runs, and put the messages of its
        invocations, in one script call; returns the new runs to compare with other versions'.
        A call Redis refused (out of memory refuses its first write) changed nothing, so its
        claims are released and the retry is new work; one whose answer was lost may have run,
        so its claims stay (a retry is answered 503 until they are found recorded, or old)."""
        pipe = self.ledger.batch()
        counted: list[Run] = []
        for work in works:
            event = work.note.event
            attributes = {
                "pipeline.bucket": event.bucket,
                "pipeline.key": event.key,
                "pipeline.event": event.event_name,
            }
            with span("intake", parent=work.note.trace, attributes=attributes):
                self._stage(pipe, work, counted)
        try:
            runs_per_object = pipe.execute()
        except redis.ResponseError:
            for work in works:
                for _, unit in work.claimed:
                    self.ledger.claims.release(keys.dedup(unit))
                for run, _ in work.started:
                    self.ledger.claims.release(RunStore.claim_key(run))
            raise
        # A new run whose object has others (a new version, or one in this batch too) is settled
        # against them after the commit; the first upload of an object needs nothing more.
        return [run for run, n in zip(counted, runs_per_object, strict=True) if isinstance(n, int) and n > 1]

    def _stage(self, pipe: Any, work: _Work, counted: list[Run]) -> None:
        record, event = work.record, work.note.event
        work.outcome = record
        if not record.invocations and not record.runs:
            reason, matched = (
                (record.reason, True) if record.reason else why_unrouted(self.pipeline.config, event)
            )
            record.reason = reason
            if matched:
                if reason.startswith(LOOP_GUARD):
                    pipe.incr(keys.stat("loops_stopped"))
                self.ledger.events.add(pipe, record)
            else:
                pipe.incr(keys.stat("events:ignored"))
            return
        if work.claimed or work.started:
            record.status = "accepted"
        else:
            record.status, record.reason = "duplicate", "every invocation was already claimed"
        run_invs = [inv for _, invs in work.started for inv in invs]
        started_runs = [run for run, _ in work.started]
        max_bytes = self.pipeline.config.screening.max_bytes
        if work.claimed and event.size is not None and event.size > max_bytes:
            # Checked from the event, before anything is downloaded (a run's first steps are
            # refused by their workers' own check, which the run records as each step's end).
            reason = (
                f"{event.bucket}/{event.key}: {event.size} bytes is over the limit "
                f"of {max_bytes} bytes (screening.max_bytes)"
            )
            update = {"status": Status.REJECTED, "finished_at": time.time(), "error": reason}
            rejected = [inv.model_copy(update=update) for inv, _ in work.claimed]
            self.ledger.stage_intake(pipe, rejected + run_invs, event=record, runs=started_runs)
            work.claimed = []
            return
        self.ledger.stage_intake(
            pipe, [inv for inv, _ in work.claimed] + run_invs, event=record, runs=started_runs
        )
        if self.stage is not None:
            # The messages go with the records: single steps, and each new run's first steps (a
            # run for an older version than one known is cancelled after the commit; its steps'
            # messages then find their invocations skipped, and a worker checks the version too).
            for inv, _ in work.claimed:
                self.stage(pipe, inv)
            for inv in run_invs:
                if inv.status == Status.QUEUED:
                    self.stage(pipe, inv)
            for run in started_runs:
                pipe.zcard(keys.run_object_index(run.bucket, run.key))
                counted.append(run)
            work.claimed = []
            work.staged_runs = True
        log.debug("event %s %s/%s -> %s", record.status, event.bucket, event.key, record.invocations)

    def _send_after_commit(self, work: _Work) -> None:
        try:
            self._send(work.claimed, work.started, work.record, work.note.event)
        except BrokerUnavailable as exc:
            work.outcome = exc
        except redis.RedisError as exc:
            work.outcome = unavailable(work.note.event, exc)

    def _await_replicas(self, works: list[_Work]) -> None:
        """Acknowledge only what a replica has too: a failover then cannot lose an acknowledged
        notification. A duplicate waits as well (its first try may be the one not replicated).
        One WAIT covers the batch: replication keeps the master's order."""
        waiting = [
            w
            for w in works
            if isinstance(w.outcome, EventRecord) and w.outcome.status in ("accepted", "duplicate")
        ]
        if not self.min_replicas or not waiting:
            return
        try:
            acked = self.ledger.replicated(self.min_replicas, self.replica_timeout_ms)
        except redis.RedisError as exc:
            for work in waiting:
                work.outcome = unavailable(work.note.event, exc)
            return
        if acked < self.min_replicas:
            for work in waiting:
                event = work.note.event
                work.outcome = BrokerUnavailable(
                    f"Redis replication: {acked} of {self.min_replicas} replicas confirmed the records of "
                    f"{event.bucket}/{event.key} within {self.replica_timeout_ms} ms; send it again"
                )

    def _send(
        self,
        claimed: list[tuple[Invocation, str]],
        started: list[tuple[Run, list[Invocation]]],
        record: EventRecord,
        event: ObjectEvent,
    ) -> None:
        """Send the single-step invocations, then each new run's first steps (a run first lets
        older versions' runs end, or ends itself when it is the older one). What the queue refuses
        is undone with everything not sent yet, so the sender's retry is not mistaken for a
        duplicate; the event record says what happened."""
        for i, (inv, _claim) in enumerate(claimed):
            try:
                self.enqueue(inv)
            except Exception as exc:
                self.ledger.undo_intake(claimed[i:], started, record, exc)
                raise BrokerUnavailable(
                    f"cannot enqueue {inv.function} for {event.bucket}/{event.key}: {exc}"
                ) from exc
        for i, (run, invs) in enumerate(started):
            try:
                current = self.flows.settle_versions(run)
            except redis.RedisError as exc:  # its steps still check the version before they run
                log.warning("could not compare run %s with other versions' runs: %s", run.id, exc)
                current = True
            try:
                self.flows.send(invs if current else [], tolerant=False)
            except Exception as exc:
                self.ledger.undo_intake([], started[i:], record, exc)
                raise BrokerUnavailable(
                    f"cannot start flow {run.flow} for {run.bucket}/{run.key}: {exc}"
                ) from exc

    def _removed(self, event: ObjectEvent, record: EventRecord) -> EventRecord:
        """The source was deleted: its runs' queued steps are cancelled, and rules that say
        `on_delete: remove-outputs` have what was derived from it deleted."""
        runs, cancelled = self.flows.source_removed(event.bucket, event.key)
        removed = self.flows.remove_outputs(event.bucket, event.key, runs)
        if not runs and not removed:
            self.ledger.stats.incr("events:ignored")
            record.reason = "a deletion of an object the pipeline has no record of"
            return record
        record.status = "accepted"
        record.runs = [r.id for r in runs]
        record.reason = f"source deleted: {cancelled} run(s) cancelled, {removed} derived object(s) removed"
        self.ledger.events.record(record)
        return record
