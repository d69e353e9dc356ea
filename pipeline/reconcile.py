"""The reconciler: the bucket is the source of truth, notifications are only hints.

It lists every bucket/prefix the rules watch and hands each object whose current version has no
invocation yet (a lost notification, a backlog from while the pipeline was down, a rule added
later) to the intake, exactly as a notification would; deduplication makes it safe to run any
time and any number of times. Objects older than the ledger's retention are left alone: their
claims have expired, so the ledger can no longer say whether they were processed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.config import Rule
from pipeline.errors import BrokerUnavailable
from pipeline.events.model import BACKFILL_SOURCE, ObjectEvent
from pipeline.invocation import Status, dedup_key
from pipeline.ledger import EventRecord, keys
from pipeline.ledger.backfill import Progress
from pipeline.ledger.claims import ORPHAN_CLAIM_S
from pipeline.routing import route, route_flows
from pipeline.runtime import Runtime
from pipeline.storage.base import ObjectInfo

log = logging.getLogger(__name__)
CURSOR_KEPT_S = 7 * 86400  # an interrupted backfill resumes where it stopped, within a week
# Messages a backfill lets wait in one lane; more wait until workers have taken some.
LANE_WINDOW = 200
LANE_POLL_S = 0.1
REPORT_EVERY_S = 1.0


@dataclass
class ReconcileSummary:
    scanned: int = 0
    missing: int = 0
    enqueued: int = 0
    resent: int = 0
    steps_applied: int = 0  # finished flow steps their runs had not seen
    would_run: list[tuple[str, str, str]] = field(default_factory=list)  # (bucket, key, function)


def _event(info: ObjectInfo) -> ObjectEvent:
    return ObjectEvent(
        source=BACKFILL_SOURCE,
        event_name="s3:ObjectCreated:Put",
        bucket=info.bucket,
        key=info.key,
        size=info.size,
        etag=info.etag or None,
        version_id=info.version_id,
        content_type=info.content_type if info.content_type != "application/octet-stream" else None,
        metadata=info.metadata,
    )


def watched(runtime: Runtime) -> list[tuple[str, str]]:
    """(bucket, prefix) pairs to list, without listing a prefix twice."""
    pairs = sorted({(r.bucket, r.prefix) for r in runtime.pipeline.config.rules})
    return [(b, p) for b, p in pairs if not any(b == b2 and p != p2 and p.startswith(p2) for b2, p2 in pairs)]


def stuck_after(runtime: Runtime) -> float:
    """How long an invocation may stay queued before its message is presumed lost."""
    config = runtime.pipeline.config
    longest = config.longest_time_limit(list(runtime.pipeline.functions))
    return config.limits.visibility_timeout or longest * 2 + 60


def resend_stuck(runtime: Runtime, *, dry_run: bool = False, older_than: float | None = None) -> int:
    """Send again the messages of invocations queued for longer than `older_than` seconds, and of
    those running that long that no worker holds.

    kombu's Redis transport pops a message and records it as unacknowledged in two steps; if Redis
    goes away in between, the message is gone while the ledger still says `queued`. After a
    failover the unacknowledged record itself can be gone (written to the old master only) while
    the ledger, replicated before it, says `running`: no worker renews its lease, and no
    redelivery comes. A second message is harmless: a finished invocation is never run again, the
    lease keeps two from running at once, and the cut-short attempt is kept as interrupted."""
    limit = time.time() - (older_than if older_than is not None else stuck_after(runtime))
    ledger = runtime.ledger
    resent = 0
    backlog: dict[str, int] = {}
    found = [
        *ledger.invocations.ids_with_status(Status.QUEUED),
        *ledger.invocations.ids_with_status(Status.RUNNING),
    ]
    for inv in ledger.invocations.get_many(found):
        if inv.queue not in backlog:
            backlog[inv.queue] = runtime.dispatcher.depth(inv.queue)
        queued_long = inv.status == Status.QUEUED and (inv.enqueued_at or inv.created_at) < limit
        abandoned = (
            inv.status == Status.RUNNING
            and (inv.started_at or inv.created_at) < limit
            and not ledger.claims.lease_held(inv.id)
        )
        # Messages still waiting in its queue mean a backlog, not a loss: leave them to it.
        if backlog[inv.queue] == 0 and (queued_long or abandoned):
            if not dry_run:
                runtime.intake.enqueue(inv)
                runtime.ledger.invocations.mark_enqueued(inv.id)
            resent += 1
    if resent and not dry_run:
        runtime.ledger.stats.incr("resent", resent)
        log.warning("re-sent %d invocations whose messages were presumed lost", resent)
    return resent


def reconcile(
    runtime: Runtime,
    *,
    dry_run: bool = False,
    rate: float = 200.0,
    resume: bool = True,
    window: int = LANE_WINDOW,
    on_progress: Callable[[Progress], None] | None = None,
) -> ReconcileSummary:
    """One pass: a backfill. Its work goes to the backfill lanes, behind fresh uploads; it waits
    while a lane holds `window` messages, so queues stay bounded however large the bucket; `rate`
    caps objects handed on per second. With `resume`, a pass that was interrupted continues after
    the last key it handled, and its progress counts on. Also re-sends stuck messages."""
    summary = ReconcileSummary(resent=resend_stuck(runtime, dry_run=dry_run))
    if not dry_run:
        summary.steps_applied = runtime.flows.sweep()
        runtime.ledger.backfill.start(resume)
    progress = _Reporter(runtime, on_progress, dry_run)
    oldest = time.time() - runtime.ledger.retention
    for bucket, prefix in watched(runtime):
        cursor_key = keys.reconcile_cursor(bucket, prefix)
        stored = runtime.redis.get(cursor_key) if resume and not dry_run else None
        after = stored.decode() if isinstance(stored, bytes) else (stored or "")
        for info in runtime.store.list(bucket, prefix):
            if after and info.key <= after:
                continue
            summary.scanned += 1
            progress.listed(1)
            if info.last_modified and info.last_modified < oldest:
                continue
            event = _event(info)
            planned = route(runtime.pipeline, event)
            # Done means claimed and recorded: a pass interrupted between the two (Ctrl-C, a
            # killed process) left a claim without a record, and its object is not done.
            missing = [
                p
                for p in planned
                if not runtime.ledger.claims.done(
                    keys.dedup(dedup_key(bucket, info.key, event.version_tag, p.function, p.params_hash))
                )
            ]
            missing_runs = [
                rule
                for rule in route_flows(runtime.pipeline, event)
                if not runtime.ledger.claims.done(
                    keys.run_claim(rule.name, bucket, info.key, event.version_tag), keys.run("")
                )
            ]
            if not missing and not missing_runs:
                continue
            summary.missing += len(missing_runs) + len(missing)
            if dry_run:
                summary.would_run += [(bucket, info.key, f"flow {r.flow}") for r in missing_runs]
                summary.would_run += [(bucket, info.key, p.function) for p in missing]
                continue
            _wait_for_room(
                runtime, [p.function for p in missing] + _first_steps(runtime, missing_runs), window
            )
            record = _accept(runtime, event)
            enqueued = len(record.invocations) + len(record.runs) - record.duplicates
            summary.enqueued += enqueued
            progress.handed_on(enqueued, cursor_key, info.key)
            time.sleep(1.0 / rate if rate > 0 else 0)
        if not dry_run:
            runtime.redis.delete(cursor_key)  # a complete pass starts from the top next time
    progress.flush(final=not dry_run)
    if summary.enqueued:
        runtime.ledger.stats.incr("reconciled", summary.enqueued)
        log.warning("reconciler enqueued %d invocations that had no notification", summary.enqueued)
    return summary


def _accept(runtime: Runtime, event: ObjectEvent) -> EventRecord:
    """Hand one object to the intake. A claim left without its record is refused (503 to a
    notification's sender) until it is old enough to be taken over: the pass waits that out, as a
    sender's retry would, rather than skip the object."""
    deadline = time.monotonic() + ORPHAN_CLAIM_S + 10
    while True:
        try:
            return runtime.intake.accept(event)
        except BrokerUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def _first_steps(runtime: Runtime, rules: list[Rule]) -> list[str]:
    functions = []
    for rule in rules:
        flow = runtime.pipeline.flow(rule.flow or "")
        functions += [flow.steps[name].function for name in flow.roots()]
    return functions


def _wait_for_room(runtime: Runtime, functions: list[str], window: int) -> None:
    """Hold the backfill while any lane it would add to holds `window` messages: the lanes drain
    only as fast as workers are free of fresh work, and a backfill must not pile up a bucket's
    worth of messages in Redis."""
    config = runtime.pipeline.config
    lanes = {config.lane_for(fn, backfill=True) for fn in functions}
    while any(runtime.dispatcher.depth(lane) >= window for lane in lanes):
        time.sleep(LANE_POLL_S)


class _Reporter:
    """Counts into the ledger's backfill progress. Each object handed on moves the cursor and the
    counts in one transaction, so a pass killed at any point resumes with both right; the
    listing's count is added with it (or at the end), and `on_progress` hears about it about once
    a second."""

    def __init__(
        self, runtime: Runtime, on_progress: Callable[[Progress], None] | None, dry_run: bool
    ) -> None:
        self.runtime, self.on_progress, self.dry_run = runtime, on_progress, dry_run
        self._listed = 0
        self._last = time.monotonic()

    def listed(self, n: int) -> None:
        self._listed += n
        if time.monotonic() - self._last >= REPORT_EVERY_S:
            self.flush()

    def handed_on(self, enqueued: int, cursor_key: str, key: str) -> None:
        pipe = self.runtime.redis.pipeline(transaction=True)
        pipe.set(cursor_key, key, ex=CURSOR_KEPT_S)
        self.runtime.ledger.backfill.count(pipe, self._listed, enqueued)
        pipe.execute()
        self._listed = 0
        self._tell()

    def flush(self, final: bool = False) -> None:
        if self.dry_run:
            return
        backfill = self.runtime.ledger.backfill
        pipe = self.runtime.redis.pipeline(transaction=True)
        backfill.count(pipe, self._listed, 0)
        pipe.execute()
        self._listed = 0
        if final:
            backfill.finish()
        self._tell(force=True)

    def _tell(self, force: bool = False) -> None:
        if self.on_progress is None or (not force and time.monotonic() - self._last < REPORT_EVERY_S):
            return
        self._last = time.monotonic()
        current = self.runtime.ledger.backfill.read()
        if current is not None:
            self.on_progress(current)


def reconcile_periodically(
    runtime: Runtime, interval: float, stop: list[bool], say: Callable[[str], None] = log.info
) -> threading.Thread:
    """A reconciler pass every `interval` seconds in a background thread (inside `pipeline up`),
    until `stop[0]` is set: lost notifications get processed anyway."""

    def loop() -> None:
        while not stop[0]:
            try:
                summary = reconcile(runtime)
                if summary.enqueued:
                    say(f"reconciler: {summary.enqueued} invocations had no notification; enqueued them")
            except Exception as exc:  # Redis or the store away: the next pass tries again
                say(f"reconciler pass failed: {exc}")
            deadline = time.monotonic() + interval
            while not stop[0] and time.monotonic() < deadline:
                time.sleep(0.5)

    thread = threading.Thread(target=loop, name="reconciler", daemon=True)
    thread.start()
    return thread
