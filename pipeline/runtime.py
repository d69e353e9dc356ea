"""Wiring: settings + pipeline file + Redis + store + flow runner + intake, built once per process."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from pipeline.flows.runner import FlowRunner
from pipeline.intake import Intake
from pipeline.invocation import Invocation
from pipeline.ledger import Ledger, connect, schema, tune
from pipeline.registry import Pipeline
from pipeline.settings import Settings
from pipeline.storage import ObjectStore, open_store

log = logging.getLogger(__name__)


class Dispatcher(Protocol):
    """Where invocations go to be run: the queue package's Celery dispatcher, or a stand-in."""

    def enqueue(self, inv: Invocation) -> None: ...

    def stage(self, pipe: Any, inv: Invocation) -> None:
        """Put `inv`'s message on `pipe`, the Redis transaction that records it."""
        ...

    def depth(self, queue: str) -> int:
        """Messages waiting in a function's queue."""
        ...


@dataclass
class Runtime:
    settings: Settings
    pipeline: Pipeline
    redis_url: str
    redis: redis.Redis
    ledger: Ledger
    store: ObjectStore
    intake: Intake
    dispatcher: Dispatcher
    flows: FlowRunner


def build_runtime(settings: Settings, pipeline: Pipeline, redis_url: str, dispatcher: Dispatcher) -> Runtime:
    client = connect(redis_url)
    with contextlib.suppress(redis.RedisError):  # Redis away at start: the next process tunes it
        if refused := tune(client):
            log.warning("%s", refused)
        schema.ensure(client)  # a layout this version cannot use stops it here (LedgerSchemaError)
    ledger = Ledger(
        client, retention_seconds=settings.retention_days * 86400, record_usage=settings.record_usage
    )
    # Built in the order each needs the last: a store whose writes notify nothing for the flow
    # runner (quarantine copies, removed outputs), the intake, and then the store everyone else
    # writes through, which (the local one) reports its writes to the intake, as a bucket with
    # notifications configured would. Nothing refers back up this chain.
    silent = open_store(settings)
    flows = FlowRunner(pipeline, ledger, dispatcher.enqueue, silent)
    intake = Intake(pipeline, ledger, dispatcher.enqueue, dispatcher.stage, flows)
    intake.min_replicas = settings.redis_min_replicas
    intake.replica_timeout_ms = settings.redis_replica_timeout_ms
    store = silent.notifying(intake.accept)
    return Runtime(settings, pipeline, redis_url, client, ledger, store, intake, dispatcher, flows)
