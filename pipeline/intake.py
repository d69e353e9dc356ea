"""Intake: turn one `ObjectEvent` into recorded, deduplicated, enqueued invocations.

The gateway, the local store and the CLI all hand events to `Intake.accept`. It never does media
work: it routes, claims each unit of work once, records it, and enqueues it. If the broker is down
it raises `BrokerUnavailable` after undoing its claims, so the sender can retry the event later.
"""

from __future__ import annotations

import logging
import time

import redis

from pipeline.errors import BrokerUnavailable
from pipeline.events.model import BACKFILL_SOURCE, ObjectEvent
from pipeline.flows.model import Run
from pipeline.flows.runner import Enqueue, FlowRunner
from pipeline.invocation import Invocation, Status, dedup_key
from pipeline.ledger import EventRecord, Ledger, keys
from pipeline.ledger.claims import UNRECORDED
from pipeline.ledger.records import RAW_EVENT_CHARS
from pipeline.registry import Pipeline
from pipeline.routing import (
    Planned,
    content_type_of,
    generation_of,
    is_output_key,
    route,
    route_flows,
    rule_matches,
)
from pipeline.tracing import span

log = logging.getLogger(__name__)


class Intake:
    def __init__(self, pipeline: Pipeline, ledger: Ledger, enqueue: Enqueue) -> None:
        self.pipeline = pipeline
        self.ledger = ledger
        self.enqueue = enqueue
        self.flows = FlowRunner(pipeline, ledger, enqueue)
        # PIPELINE_REDIS_MIN_REPLICAS: acknowledge a notification only once replicas have it.
        self.min_replicas = 0
        self.replica_timeout_ms = 500

    def accept(self, event: ObjectEvent, raw: str = "", plans: list[Planned] | None = None) -> EventRecord:
        """`raw`: the notification as received, kept (first 16 KB) for the dashboard's timeline.
        `plans`: run these instead of what the rules say (a function invoked over HTTP)."""
        try:
            attributes = {
                "pipeline.bucket": event.bucket,
                "pipeline.key": event.key,
                "pipeline.event": event.event_name,
            }
            with span("intake", attributes=attributes):
                record = self._accept(event, raw[:RAW_EVENT_CHARS], plans)
            if self.min_replicas and record.status in ("accepted", "duplicate"):
                self._replicated(event)
            return record
        except redis.RedisError as exc:
            raise BrokerUnavailable(
                f"Redis unavailable, event for {event.bucket}/{event.key} not accepted"
            ) from exc

    def _replicated(self, event: ObjectEvent) -> None:
        """Acknowledge only what a replica has too: a failover then cannot lose an acknowledged
        notification. A duplicate waits as well (its first try may be the one not replicated)."""
        acked = self.ledger.replicated(self.min_replicas, self.replica_timeout_ms)
        if acked < self.min_replicas:
            raise BrokerUnavailable(
                f"Redis replication: {acked} of {self.min_replicas} replicas confirmed the records of "
                f"{event.bucket}/{event.key} within {self.replica_timeout_ms} ms; send it again"
            )

    def _why_unrouted(self, event: ObjectEvent) -> tuple[str, bool]:
        """Why nothing runs for `event`, and whether a rule matched it (worth a record) or not
        (worth only a counter: a notification may carry any number of records nobody wants)."""
        config = self.pipeline.config
        generation = generation_of(event)
        if generation and any(rule_matches(r, event) for r in config.rules):
            self.ledger.stats.incr("loops_stopped")
            return f"loop guard: written by the pipeline (generation {generation})", True
        if is_output_key(config, event.bucket, event.key):
            return "a pipeline output (outputs never trigger rules)", False
        return "no rule matches", False

    def _invocation(self, plan: Planned, event: ObjectEvent, event_id: str, enqueued_at: float) -> Invocation:
        config = self.pipeline.config
        return Invocation(
            id=Invocation.new_id(),
            function=plan.function,
            params=plan.params,
            params_hash=plan.params_hash,
            rule=plan.rule,
            queue=config.lane_for(plan.function, backfill=event.source == BACKFILL_SOURCE),
            bucket=event.bucket,
            key=event.key,
            version=event.version_tag,
            version_id=event.version_id,
            etag=event.etag,
            event_id=event_id,
            output_bucket=plan.output_bucket,
            output_template=plan.output_template,
            max_attempts=config.max_attempts_for(plan.function),
            time_limit=config.time_limit_for(plan.function),
            enqueued_at=enqueued_at,
        )

    def _accept(self, event: ObjectEvent, raw: str, plans: list[Planned] | None) -> EventRecord:
        """Two round trips to Redis whatever the fan-out, then one message per invocation: claim
        every unit of work (skipping functions switched off), record the invocations with the
        event and the upload's join set, enqueue. Notifications are many and small; each round
        trip counts."""
        config = self.pipeline.config
        record = EventRecord(
            id=Invocation.new_id(),
            received_at=time.time(),
            source=event.source,
            event_name=event.event_name,
            bucket=event.bucket,
            key=event.key,
            version=event.version_tag,
            size=event.size,
            content_type=content_type_of(event),
            status="ignored",
            raw=raw,
        )
        if event.event_name.startswith("s3:ObjectRemoved") and plans is None:
            return self._removed(event, record)
        planned = route(self.pipeline, event) if plans is None else plans
        flow_rules = route_flows(self.pipeline, event) if plans is None else []
        # Stamped a moment before the send: the reconciler only asks whether a queued
        # invocation's message has been gone for long.
        now = time.time()
        units = [
            (
                dedup_key(event.bucket, event.key, event.version_tag, plan.function, plan.params_hash),
                self._invocation(plan, event, record.id, enqueued_at=now),
            )
            for plan in planned
        ]
        runs = [self.flows.plan(event, record.id, r.name, r.flow, now) for r in flow_rules if r.flow]
        claimed, started, disabled = self._claim(units, runs, record)
        if disabled:
            # Functions switched off in the dashboard get no new work; the record says so.
            record.reason = f"function(s) disabled: {', '.join(sorted(set(disabled)))}"
        if not record.invocations and not record.runs:
            reason, matched = (record.reason, True) if record.reason else self._why_unrouted(event)
            record.reason = reason
            if matched:
                self.ledger.events.record(record)
            else:
                self.ledger.stats.incr("events:ignored")
            return record
        if claimed or started:
            record.status = "accepted"
        else:
            record.status, record.reason = "duplicate", "every invocation was already claimed"
        run_invs = [inv for _, invs in started for inv in invs]
        started_runs = [run for run, _ in started]
        if claimed and event.size is not None and event.size > config.screening.max_bytes:
            # Checked from the event, before anything is downloaded (a run's first steps are
            # refused by their workers' own check, which the run records as each step's end).
            reason = (
                f"{event.bucket}/{event.key}: {event.size} bytes is over the limit "
                f"of {config.screening.max_bytes} bytes (screening.max_bytes)"
            )
            update = {"status": Status.REJECTED, "finished_at": time.time(), "error": reason}
            rejected = [inv.model_copy(update=update) for inv, _ in claimed]
            self.ledger.record_intake(rejected + run_invs, event=record, runs=started_runs)
            self._send([], started, record, event)
            return record
        self.ledger.record_intake([inv for inv, _ in claimed] + run_invs, event=record, runs=started_runs)
        self._send(claimed, started, record, event)
        log.debug("event %s %s/%s -> %s", record.status, event.bucket, event.key, record.invocations)
        return record

    def _claim(
        self,
        units: list[tuple[str, Invocation]],
        runs: list[tuple[Run, list[Invocation]]],
        record: EventRecord,
    ) -> tuple[list[tuple[Invocation, str]], list[tuple[Run, list[Invocation]]], list[str]]:
        """Claim every unit of work and every run in one script. Returns the invocations claimed
        now, the runs started now, and the functions switched off; duplicates go on the record."""
        claim_units = [(keys.dedup(claim), inv.function, inv.id, keys.invocation("")) for claim, inv in units]
        # One run per (rule, object version): its claim stands for all of its steps.
        claim_units += [
            (FlowRunner.claim_key(run), f"flow:{run.flow}", run.id, keys.run("")) for run, _ in runs
        ]
        outcomes = self.ledger.claims.claim_all(claim_units)
        unrecorded = [o for o in outcomes if isinstance(o, str) and o.startswith(UNRECORDED)]
        if unrecorded:
            for (claim_key, _, _, _), outcome in zip(claim_units, outcomes, strict=True):
                if outcome is True:  # what this call claimed: the retry claims it again
                    self.ledger.claims.release_key(claim_key)
            # An earlier delivery claimed this work and has not recorded it: it is still being
            # recorded, or it failed there (Redis failed over). Acknowledging now could lose it.
            raise BrokerUnavailable(
                f"an earlier delivery of this notification claimed {unrecorded[0][1:]} and has not "
                "recorded it yet; send it again"
            )
        started: list[tuple[Run, list[Invocation]]] = []
        for (run, run_invs), outcome in zip(runs, outcomes[len(units) :], strict=True):
            if outcome is True:
                started.append((run, run_invs))
                record.runs.append(run.id)
            else:
                record.duplicates += 1
                record.runs.append(str(outcome))
        claimed: list[tuple[Invocation, str]] = []
        disabled: list[str] = []
        for (claim, inv), outcome in zip(units, outcomes[: len(units)], strict=True):
            if outcome is False:
                disabled.append(inv.function)
            elif outcome is True:
                claimed.append((inv, claim))
                record.invocations.append(inv.id)
            else:
                record.duplicates += 1
                record.invocations.append(str(outcome))
        return claimed, started, disabled

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
                self._undo(claimed[i:], started, record, exc)
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
                self._undo([], started[i:], record, exc)
                raise BrokerUnavailable(
                    f"cannot start flow {run.flow} for {run.bucket}/{run.key}: {exc}"
                ) from exc

    def _undo(
        self,
        claimed: list[tuple[Invocation, str]],
        started: list[tuple[Run, list[Invocation]]],
        record: EventRecord,
        exc: Exception,
    ) -> None:
        for inv, claim in claimed:
            self.ledger.invocations.delete(inv)
            self.ledger.claims.release(claim)
            self.ledger.outbox.leave_join(record.id, inv.id)
        for run, invs in started:  # a run is undone whole, its first message sent or not
            for inv in invs:
                self.ledger.invocations.delete(inv)
            self.ledger.runs.delete(run)
            self.ledger.claims.release_key(FlowRunner.claim_key(run))
            self.ledger.outbox.leave_join(record.id, keys.join_member_for_run(run.id))
        undone = {inv.id for inv, _ in claimed} | {run.id for run, _ in started}
        record.invocations = [x for x in record.invocations if x not in undone]
        record.runs = [x for x in record.runs if x not in undone]
        record.status = "unavailable"
        record.reason = f"the queue refused the work, the sender will retry: {exc}"
        self.ledger.events.amend(record)

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
