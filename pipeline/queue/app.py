"""The Celery app: Redis broker, JSON only, one queue per function, late acks, prefetch 1."""

from __future__ import annotations

from typing import Any

import redis
from celery import Celery

from pipeline.invocation import Invocation
from pipeline.ledger import connect, endpoints
from pipeline.queue.lanes import STRATEGY
from pipeline.queue.messages import TASK_NAME, envelope, payload_of, task_options
from pipeline.registry import Pipeline
from pipeline.runtime import Runtime, build_runtime
from pipeline.settings import Settings
from pipeline.tracing import Carrier, carrier, span


def create_celery(redis_url: str, pipeline: Pipeline) -> Celery:
    broker_url, sentinel_options = endpoints.broker(redis_url)
    app = Celery("pipeline", broker=broker_url, set_as_current=False)
    longest = pipeline.config.longest_time_limit(list(pipeline.functions))
    visibility = pipeline.config.limits.visibility_timeout or longest * 2 + 60
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,  # results live in the ledger, not in a Celery result backend
        # Acknowledge after the run, and redeliver if the worker process dies mid-task.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Redis has no native ack deadline: an unacked message is redelivered after the visibility
        # timeout. It must outlast the longest function, or a long run would start a second time.
        # A shorter one is safe too: the execution lease keeps a redelivered copy from running
        # while the first run is alive; the timeout then only bounds how late a lost task returns.
        broker_transport_options={
            "visibility_timeout": int(visibility),
            # kombu sweeps for expired unacknowledged messages only every interval x throttle
            # seconds (100 s by default): sweep at a pace that matches the timeout instead.
            "unacked_restore_interval": max(1, min(10, int(visibility // 3))),
            "unacked_restore_throttle": 1,
            # Function queues round robin, backfill lanes only when they are empty (`lanes`).
            "queue_order_strategy": STRATEGY,
            **sentinel_options,
        },
        broker_connection_retry_on_startup=True,
        task_create_missing_queues=True,
        task_default_queue="fn.default",
        worker_send_task_events=False,
        worker_enable_remote_control=True,
        worker_hijack_root_logger=False,
        # Where Redis is, as the pipeline names it (a Sentinel URL is not a kombu one). The name
        # has SECRET in it so Celery censors it (conf.table(censored=True), `inspect conf`): the
        # URL carries the Redis password.
        pipeline_redis_secret_url=redis_url,
    )
    return app


def queue_depth(client: redis.Redis, queue: str) -> int:
    """Messages waiting in a queue. kombu's Redis transport keeps each queue as a list named after
    it (no priority sub-lists: the pipeline sets no priority steps); taken but unacknowledged
    messages sit elsewhere and are not counted."""
    return int(client.llen(queue))


class CeleryDispatcher:
    """Enqueues invocations on their function's queue. Fails fast when the broker is down, so the
    gateway can answer 503 instead of hanging."""

    retry_policy: dict[str, Any] = {"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2}

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._client: redis.Redis | None = None

    def depth(self, queue: str) -> int:
        if self._client is None:  # made on first use: most dispatchers only enqueue
            self._client = connect(str(self.app.conf.pipeline_redis_secret_url))
        return queue_depth(self._client, queue)

    def enqueue(self, inv: Invocation, countdown: float | None = None) -> None:
        attributes = {"messaging.destination.name": inv.queue, "pipeline.invocation": inv.id}
        with span(f"enqueue {inv.function}", "producer", attributes=attributes):
            self._send(inv, countdown, carrier())

    def _send(self, inv: Invocation, countdown: float | None, trace: Carrier | None) -> None:
        self.app.send_task(
            TASK_NAME,
            args=[payload_of(inv, trace)],
            queue=inv.queue,
            countdown=countdown,
            retry=True,
            retry_policy=self.retry_policy,
            **task_options(inv),
        )

    def stage(self, pipe: redis.client.Pipeline, inv: Invocation) -> None:
        """Put `inv`'s message on `pipe`, the transaction that records it (`messages`)."""
        attributes = {"messaging.destination.name": inv.queue, "pipeline.invocation": inv.id}
        with span(f"enqueue {inv.function}", "producer", attributes=attributes):
            pipe.lpush(inv.queue, envelope(self.app, inv, carrier()))


def queued_runtime(settings: Settings, pipeline: Pipeline, redis_url: str) -> Runtime:
    """The runtime for processes that enqueue work (CLI, demo, gateway, soak): intake -> Celery."""
    return build_runtime(settings, pipeline, redis_url, CeleryDispatcher(create_celery(redis_url, pipeline)))
