"""A bare Celery app with one empty task: the baseline `pipeline bench system` measures the
pipeline's overhead against. Same broker, serializer, acks and prefetch as the pipeline's own app,
none of the pipeline: no intake, no ledger, no lease.

Run by the benchmark as `celery -A pipeline.measure.bare_celery worker -Q bench.bare`; the task records
when it started in a Redis list the benchmark waits on. (`celery -A` needs the app at import.)
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

QUEUE = "bench.bare"
STARTED = "bench:bare:started"
TASK_NAME = "bench.bare.started"


def make_app(broker_url: str) -> Celery:
    bare = Celery("bare", broker=broker_url, set_as_current=False)
    bare.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    return bare


# The worker's app (`celery -A pipeline.measure.bare_celery worker`), on the broker in PIPELINE_REDIS_URL.
app = make_app(os.environ.get("PIPELINE_REDIS_URL", "redis://127.0.0.1:6379/0"))
_client: redis.Redis | None = None


@app.task(name=TASK_NAME)
def started(sent_at: float) -> None:
    global _client  # noqa: PLW0603 - one connection per worker process, made on first use
    now = time.time()
    if _client is None:
        _client = redis.Redis.from_url(app.conf.broker_url)
    _client.rpush(STARTED, now - sent_at)


def send_and_wait(publisher: Celery, client: redis.Redis, timeout: float = 10.0) -> float:
    """Send one empty task and return seconds from send to the task's first line."""
    publisher.send_task(TASK_NAME, args=[time.time()], queue=QUEUE)
    got = client.blpop([STARTED], timeout=timeout)
    if got is None:
        raise TimeoutError("the bare Celery worker did not run the task")
    return float(got[1])
