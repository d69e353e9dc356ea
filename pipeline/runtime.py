"""Wiring: settings + pipeline file + Redis + store + intake, built once per process."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.intake import Enqueue, Intake
from pipeline.ledger import Ledger, connect
from pipeline.registry import Pipeline
from pipeline.settings import Settings
from pipeline.storage import ObjectStore, open_store


@dataclass
class Runtime:
    settings: Settings
    pipeline: Pipeline
    redis_url: str
    ledger: Ledger
    store: ObjectStore
    intake: Intake


def build_runtime(settings: Settings, pipeline: Pipeline, redis_url: str, enqueue: Enqueue) -> Runtime:
    ledger = Ledger(connect(redis_url), retention_seconds=settings.retention_days * 86400)
    intake = Intake(pipeline, ledger, enqueue)
    # The local store reports its own writes, as a bucket with notifications configured would.
    store = open_store(settings, on_write=intake.accept)
    return Runtime(settings, pipeline, redis_url, ledger, store, intake)
