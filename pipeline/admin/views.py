"""What each dashboard page shows, assembled from the ledger, the pipeline and the webhook store.
No HTTP here: the gateway's admin routes render these with the templates next to this module."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from pipeline.admin.flow_views import RunView, StepView, flow_dry_run, run_views
from pipeline.events.model import ObjectEvent
from pipeline.flows.model import RunStatus
from pipeline.invocation import Invocation, Status
from pipeline.ledger import AttemptRecord, EventRecord
from pipeline.notify.messages import Message
from pipeline.notify.notifier import Notifier
from pipeline.registry import presets_for
from pipeline.routing import content_type_of, is_output_key, output_key, route, route_flows, rule_matches
from pipeline.runtime import Runtime


@dataclass
class InvocationView:
    inv: Invocation
    attempts: list[AttemptRecord]


@dataclass
class Timeline:
    bucket: str
    key: str
    events: list[EventRecord]
    invocations: list[InvocationView]
    messages: list[Message]
    runs: list[RunView] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return all(v.inv.status.finished for v in self.invocations) and all(
            r.run.status != RunStatus.RUNNING for r in self.runs
        )


def timeline(runtime: Runtime, notifier: Notifier, bucket: str, key: str) -> Timeline:
    ledger = runtime.ledger
    invs = sorted(ledger.invocations.for_object(bucket, key), key=lambda i: i.created_at)
    runs = ledger.runs.for_object(bucket, key)
    steps = ledger.invocations.get_many(i for r in runs for s in r.steps.values() for i in s.invocations)
    return Timeline(
        bucket=bucket,
        key=key,
        events=ledger.events.for_object(bucket, key),
        invocations=[InvocationView(inv, ledger.invocations.attempts(inv.id)) for inv in invs],
        messages=notifier.messages.for_object(bucket, key),
        runs=run_views(runtime.pipeline, runs, steps),
    )


def search_uploads(runtime: Runtime, query: str, limit: int = 50, outputs: bool = False) -> list[EventRecord]:
    """Recent notifications whose key contains `query` (newest first, one per object); the
    pipeline's own outputs only when asked for."""
    config = runtime.pipeline.config
    seen: set[tuple[str, str]] = set()
    found: list[EventRecord] = []
    for record in runtime.ledger.events.recent(limit=1000):
        ident = (record.bucket, record.key)
        if ident in seen or (query and query.lower() not in record.key.lower()):
            continue
        if not outputs and is_output_key(config, record.bucket, record.key):
            continue
        seen.add(ident)
        found.append(record)
        if len(found) == limit:
            break
    return found


@dataclass
class InvocationFilter:
    status: str | None = None
    function: str | None = None
    bucket: str | None = None
    prefix: str = ""
    since_minutes: int | None = None

    def apply(self, runtime: Runtime, limit: int = 100) -> list[Invocation]:
        status = Status(self.status) if self.status else None
        # The key prefix and the time window are filtered here: read more candidates only for them.
        wanted = 1000 if self.prefix or self.since_minutes else limit
        candidates = runtime.ledger.invocations.query(
            status=status, function=self.function or None, bucket=self.bucket or None, limit=wanted
        )
        cutoff = time.time() - self.since_minutes * 60 if self.since_minutes else 0.0
        out = [i for i in candidates if i.key.startswith(self.prefix) and i.created_at >= cutoff]
        return out[:limit]


@dataclass
class FunctionView:
    name: str
    summary: str
    accepts: list[str]
    queue: str
    depth: int
    concurrency: int
    time_limit: float
    max_attempts: int
    retry: str  # the retry policy, in one line
    presets: dict[str, dict[str, Any]]
    paused: bool
    disabled: bool
    held_by_config: str = ""  # why the pipeline file holds it back, if it does
    memory_mb: int | None = None
    reserved_concurrency: int | None = None
    running: int = 0  # reserved-concurrency slots in use now
    workers: list[str] = field(default_factory=list)


def functions(runtime: Runtime) -> list[FunctionView]:
    config, ledger = runtime.pipeline.config, runtime.ledger
    paused, disabled = ledger.flags.members("paused"), ledger.flags.members("disabled")
    workers = ledger.workers.live()
    out = []
    for name, spec in sorted(runtime.pipeline.functions.items()):
        queue = config.queue_for(name)
        fn = config.function_settings(name)
        held = fn.held_reason() and f"{fn.held_reason()} in the pipeline file"
        out.append(
            FunctionView(
                name=name,
                summary=spec.summary,
                accepts=list(spec.accepts),
                queue=queue,
                depth=runtime.dispatcher.depth(queue),
                concurrency=fn.concurrency,
                time_limit=config.time_limit_for(name),
                max_attempts=config.max_attempts_for(name),
                retry=config.retry_policy(name).describe(config.max_attempts_for(name)),
                presets=presets_for(config, name, spec),
                paused=name in paused or bool(held),
                disabled=name in disabled,
                held_by_config=held,
                memory_mb=fn.memory_mb,
                reserved_concurrency=fn.reserved_concurrency,
                running=ledger.claims.slots_taken(name) if fn.reserved_concurrency else 0,
                workers=[f"{w.hostname} (x{w.concurrency})" for w in workers if queue in w.queues],
            )
        )
    return out


@dataclass
class DryRunStep:
    rule: str
    function: str
    params: dict[str, Any]
    output_bucket: str
    output_example: str


@dataclass
class DryRun:
    bucket: str
    key: str
    content_type: str
    matched_rules: list[str]
    steps: list[DryRunStep]
    note: str = ""
    flows: list[tuple[str, str, list[list[StepView]]]] = field(default_factory=list)  # rule, flow, steps
    screened: bool = False  # whether an earlier screening of the object gave its media facts


def dry_run(runtime: Runtime, bucket: str, key: str, content_type: str) -> DryRun:
    """Which functions an upload would fire and which keys they would write: the routing code
    itself, on a made-up event."""
    event = ObjectEvent(
        source="api",
        event_name="s3:ObjectCreated:Put",
        bucket=bucket,
        key=key,
        content_type=content_type or None,
    )
    config = runtime.pipeline.config
    matched = [rule.name for rule in config.rules if rule_matches(rule, event)]
    note = ""
    if is_output_key(config, bucket, key):
        note = "this key is under an output prefix: outputs never trigger rules (loop guard)"
    elif not matched:
        note = "no rule matches this bucket, key and content type"
    steps = [
        DryRunStep(
            rule=plan.rule,
            function=plan.function,
            params=plan.params,
            output_bucket=plan.output_bucket,
            output_example=output_key(plan.output_template, key, plan.function, "<name>"),
        )
        for plan in route(runtime.pipeline, event)
    ]
    known = [i.media for i in runtime.ledger.invocations.for_object(bucket, key) if i.media]
    media = known[-1] if known else None
    flows = [
        (
            rule.name,
            rule.flow,
            flow_dry_run(runtime.pipeline, rule.flow, bucket, key, content_type_of(event), media),
        )
        for rule in route_flows(runtime.pipeline, event)
        if rule.flow
    ]
    return DryRun(bucket, key, content_type, matched, steps, note, flows, screened=media is not None)
