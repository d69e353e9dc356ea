"""Worker heartbeats in the ledger: who is online, serving which queues, with what concurrency.
Function workers and the webhook worker both beat from their main process, and deregister on
shutdown."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from celery.signals import worker_shutdown

from pipeline.ledger import Ledger, WorkerInfo

log = logging.getLogger(__name__)

HEARTBEAT_S = 10


def start_heartbeat(
    ledger: Ledger, hostname: str, queues: list[str], concurrency: int, also: Callable[[], None] | None = None
) -> None:
    """Beat every HEARTBEAT_S seconds (running `also` each time) until the worker shuts down."""
    info = WorkerInfo(
        hostname=hostname,
        queues=queues,
        concurrency=concurrency,
        pid=os.getpid(),
        started_at=time.time(),
        seen_at=time.time(),
    )
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            try:
                ledger.workers.beat(info.model_copy(update={"seen_at": time.time()}), ttl=HEARTBEAT_S * 3)
                if also is not None:
                    also()
            except Exception as exc:  # Redis restarting: the next beat may work
                log.warning("heartbeat failed: %s", exc)
            stop.wait(HEARTBEAT_S)

    threading.Thread(target=beat, name="pipeline-heartbeat", daemon=True).start()

    @worker_shutdown.connect(weak=False)
    def _gone(**_: Any) -> None:
        stop.set()
        try:
            ledger.workers.gone(hostname)
        except Exception as exc:
            log.warning("could not deregister worker: %s", exc)
