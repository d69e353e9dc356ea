"""The webhook worker: a Celery worker on the `webhooks` queue with a pool of threads.

Deliveries are network waits, not CPU work, so threads serve them: a slow receiver holds one
thread for at most the webhook timeout while the others go on. Beside the pool, a scheduler thread
announces finished invocations (the ledger's outbox), hands due messages to the queue, and once a
minute removes what is past the retention period (`ledger/retention.py`). Any
number of webhook workers can run; the outbox has one drainer at a time, and each due message is
claimed by one scheduler.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from pipeline.ledger.retention import Swept
from pipeline.notify.notifier import Notifier, notifier_for
from pipeline.queue.app import CeleryDispatcher, create_celery
from pipeline.queue.heartbeat import start_heartbeat
from pipeline.registry import Pipeline
from pipeline.runtime import build_runtime
from pipeline.settings import Settings

log = logging.getLogger(__name__)

WEBHOOK_TASK = "pipeline.deliver_webhook"
WEBHOOK_QUEUE = "webhooks"
SCHEDULER_PAUSE_S = 0.1
RETENTION_EVERY_S = 60.0


def send_delivery(app: Celery, msg_id: str) -> None:
    app.send_task(
        WEBHOOK_TASK,
        args=[msg_id],
        queue=WEBHOOK_QUEUE,
        retry=True,
        retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2},
    )


def _scheduler(
    notifier: Notifier, app: Celery, stop: threading.Event, synced: bool, sweep: Callable[[], Swept]
) -> None:
    next_sweep = time.monotonic()
    while not stop.is_set():
        busy = 0
        try:
            if not synced:  # the pipeline file's subscriptions, once Redis answers
                notifier.sync()
                synced = True
            busy = notifier.drain()
            busy += notifier.schedule_due(lambda msg_id: send_delivery(app, msg_id))
            if time.monotonic() >= next_sweep:  # retention, in bounded batches (one sweeper at a time)
                next_sweep = time.monotonic() + RETENTION_EVERY_S
                swept = sweep()
                if swept.invocations or swept.events or swept.runs:
                    log.info("retention: removed %s", swept.as_dict())
        except Exception as exc:  # Redis restarting: keep trying, nothing is lost meanwhile
            log.warning("webhook scheduler: %s", exc)
            stop.wait(1.0)
        if not busy:
            stop.wait(SCHEDULER_PAUSE_S)


def run_webhook_worker(
    *,
    settings: Settings,
    pipeline: Pipeline,
    redis_url: str,
    concurrency: int,
    loglevel: str = "INFO",
    quiet: bool = False,
) -> None:
    # One line per delivery is the attempt log's job (in the ledger), not httpx's.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    app = create_celery(redis_url, pipeline)
    runtime = build_runtime(settings, pipeline, redis_url, CeleryDispatcher(app))
    notifier = notifier_for(runtime)
    try:
        notifier.sync()  # a wrong pipeline file stops the worker here, with its reason
        synced = True
    except redis.RedisError as exc:  # Redis away: the scheduler syncs once it answers
        log.warning("webhook subscriptions not synced yet: %s", exc)
        synced = False

    @app.task(name=WEBHOOK_TASK, ignore_result=True)
    def deliver_webhook(msg_id: str) -> None:
        # Acknowledged on receipt: if this worker dies mid-send, the message's lease in the due
        # set runs out and the scheduler sends it again.
        notifier.deliver(msg_id)

    hostname = f"webhooks.{os.getpid()}@{socket.gethostname()}"
    # JSON logs: no banner or greeting on stdout either, so every line a log shipper reads parses.
    json_logs = settings.log_format == "json"
    stop = threading.Event()

    @worker_ready.connect(weak=False)
    def _ready(**_: Any) -> None:
        threading.Thread(
            target=_scheduler,
            args=(notifier, app, stop, synced, runtime.ledger.retention_sweeper.sweep),
            name="webhook-scheduler",
            daemon=True,
        ).start()
        start_heartbeat(runtime.ledger, hostname, [WEBHOOK_QUEUE], concurrency)
        ready = f"webhook worker {hostname} ready: queue {WEBHOOK_QUEUE}, {concurrency} threads"
        if json_logs:
            log.info(ready)
        elif not quiet:
            print(ready, flush=True)

    @worker_shutdown.connect(weak=False)
    def _stop_scheduler(**_: Any) -> None:
        stop.set()

    argv = [
        *(["--quiet"] if quiet or json_logs else []),
        "worker",
        f"--queues={WEBHOOK_QUEUE}",
        f"--hostname={hostname}",
        f"--loglevel={loglevel}",
        "--pool=threads",
        f"--concurrency={concurrency}",
        "--without-mingle",
        "--without-gossip",
    ]
    app.worker_main(argv)
