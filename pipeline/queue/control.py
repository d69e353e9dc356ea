"""Pausing and resuming a function: its queue keeps filling while no worker takes from it.

A function is held when the pipeline file says `paused: true` or `reserved_concurrency: 0`, or when
an operator paused it. The operator's switch lives in the ledger (its `paused` function flag), so workers
started later respect it too. Live workers serving the queue are told at once through Celery's
remote control (`cancel_consumer`, `add_consumer`); each worker also re-reads the switch with its
heartbeat, so a missed broadcast is corrected within seconds.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from pipeline.config import PipelineConfig
from pipeline.ledger import Ledger
from pipeline.queue.app import create_celery
from pipeline.registry import Pipeline

log = logging.getLogger(__name__)


def set_paused(app: Celery, ledger: Ledger, config: PipelineConfig, name: str, paused: bool) -> None:
    ledger.flags.switch("paused", name, paused)
    if not paused and name in config.held_by_config():
        return  # the pipeline file still holds it: resuming here would be undone by the followers
    for queue in (config.queue_for(name), config.lane_for(name, backfill=True)):
        targets = [w.hostname for w in ledger.workers.live() if queue in w.queues]
        if targets:
            command = app.control.cancel_consumer if paused else app.control.add_consumer
            command(queue, destination=targets)


class PauseFollower:
    """Keeps one worker's consumers in line with the paused switches."""

    def __init__(
        self, app: Celery, ledger: Ledger, config: PipelineConfig, hostname: str, queues: list[str]
    ) -> None:
        self.app, self.ledger, self.config, self.hostname = app, ledger, config, hostname
        self.queues = queues
        self.consuming = set(queues)

    def start(self, consumer: Any) -> None:
        """At worker start, before its event loop takes a message: leave paused queues alone. (A
        broadcast would arrive only after the loop had started, possibly with a task taken.)"""
        for queue in self._paused() & set(self.queues):
            consumer.cancel_task_queue(queue)
            self.consuming.discard(queue)

    def _paused(self) -> set[str]:
        held = self.ledger.flags.members("paused") | self.config.held_by_config()
        return {self.config.lane_for(n, backfill) for n in held for backfill in (False, True)}

    def follow(self) -> None:
        paused = self._paused()
        for queue in self.queues:
            if queue in paused and queue in self.consuming:
                self.app.control.cancel_consumer(queue, destination=[self.hostname])
                self.consuming.discard(queue)
                log.info("paused: not taking work from %s", queue)
            elif queue not in paused and queue not in self.consuming:
                self.app.control.add_consumer(queue, destination=[self.hostname])
                self.consuming.add(queue)
                log.info("resumed: taking work from %s", queue)


class FunctionControls:
    """Pause and resume for processes that are not workers (the gateway's dashboard)."""

    def __init__(self, redis_url: str, pipeline: Pipeline, ledger: Ledger) -> None:
        self.redis_url, self.pipeline, self.ledger = redis_url, pipeline, ledger
        self._app: Celery | None = None

    def set_paused(self, name: str, paused: bool) -> None:
        if self._app is None:
            self._app = create_celery(self.redis_url, self.pipeline)
        set_paused(self._app, self.ledger, self.pipeline.config, name, paused)
