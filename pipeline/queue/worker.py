"""The worker side: the one generic task and `pipeline worker`. What came of an
attempt is decided and recorded by `pipeline/attempt.py`; this turns its verdict into Celery's
acknowledge or retry."""

from __future__ import annotations

import collections
import logging
import os
import socket
import warnings
from typing import Any

import redis
from celery import Celery, Task
from celery.exceptions import Reject, SecurityWarning, SoftTimeLimitExceeded, TimeLimitExceeded
from celery.signals import task_failure, worker_process_init, worker_ready

from pipeline.attempt import ended_from_outside, run_attempt
from pipeline.config import PipelineConfig
from pipeline.execution import Executor, clean_abandoned_work_dirs
from pipeline.invocation import Invocation
from pipeline.logs import InvocationFields, about_invocation, remember_task
from pipeline.queue.app import CeleryDispatcher, create_celery
from pipeline.queue.control import PauseFollower
from pipeline.queue.heartbeat import start_heartbeat
from pipeline.queue.messages import TASK_NAME
from pipeline.queue.warmup import preload, warm_functions
from pipeline.registry import Pipeline
from pipeline.runtime import Runtime, build_runtime
from pipeline.settings import Settings
from pipeline.tracing import span

log = logging.getLogger(__name__)


class WorkerContext:
    """Per-process runtime: built lazily after fork, so no connection is shared between processes."""

    def __init__(self, settings: Settings, pipeline: Pipeline, redis_url: str, app: Celery) -> None:
        self.settings, self.pipeline, self.redis_url, self.app = settings, pipeline, redis_url, app
        self._pid = -1
        self._runtime: Runtime | None = None
        self._executor: Executor | None = None

    def get(self) -> tuple[Runtime, Executor]:
        if self._runtime is None or self._executor is None or self._pid != os.getpid():
            dispatcher = CeleryDispatcher(self.app)
            self._runtime = build_runtime(self.settings, self.pipeline, self.redis_url, dispatcher)
            self._executor = Executor(
                self.pipeline, self._runtime.store, self._runtime.ledger, self.settings.data_dir / "tmp"
            )
            self._pid = os.getpid()
        return self._runtime, self._executor


def register_task(app: Celery, ctx: WorkerContext) -> None:
    @app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)
    def run_invocation(self: Task[Any, Any], payload: dict[str, Any]) -> None:
        name = f"invoke {payload.get('function')}"
        attributes = {"pipeline.invocation": payload.get("id"), "faas.trigger": "pubsub"}
        try:
            with span(name, "consumer", parent=payload.get("trace"), attributes=attributes):
                _run(self, payload)
        except redis.RedisError as exc:
            # The outcome could not be recorded (Redis is down or restarting). Acknowledging now
            # would lose the invocation, so hand the message back: requeued, or, if even that
            # fails, restored by the broker after the visibility timeout. The rerun is idempotent.
            raise Reject(f"ledger unavailable, message requeued: {exc}", requeue=True) from exc

    def _run(self: Task[Any, Any], payload: dict[str, Any]) -> None:
        runtime, executor = ctx.get()
        inv = Invocation.model_validate(payload)
        fields = InvocationFields(inv.id, inv.function, inv.bucket, inv.key)
        remember_task(str(self.request.id), fields)
        with about_invocation(fields):
            verdict = run_attempt(
                runtime,
                executor,
                inv,
                str(self.request.hostname),
                time_limit_errors=(SoftTimeLimitExceeded,),
            )
        if not verdict.done:
            raise _again(self, verdict.again_in or 0.0)

    handled: collections.deque[str] = collections.deque(maxlen=1000)

    @task_failure.connect(sender=run_invocation, weak=False)
    def _hard_time_limit(
        task_id: str = "", exception: BaseException | None = None, args: Any = None, **_: Any
    ) -> None:
        # Runs in the worker's main process after it killed a child that outlived the hard limit.
        # Celery acknowledges that message, so the retry (or the verdict) is ours to record.
        # Celery can report one timeout twice (timeout handler and pool error path): act once.
        if not isinstance(exception, TimeLimitExceeded) or not args or task_id in handled:
            return
        handled.append(task_id)
        runtime, _executor = ctx.get()
        inv = Invocation.model_validate(args[0])
        error = TimeoutError(f"killed at the hard time limit ({inv.time_limit:g}s + margin)")
        verdict = ended_from_outside(runtime, inv, error)
        if not verdict.done:
            CeleryDispatcher(app).enqueue(inv, countdown=verdict.again_in)


def _again(task: Task[Any, Any], countdown: float) -> Exception:
    """The retry to raise: the same message later, still named by its short argsrepr (monitors
    and log lines show it; Celery would otherwise render the whole payload)."""
    retry: Any = task.retry  # its **options (passed on to apply_async) are missing from the stubs
    name = getattr(task.request, "argsrepr", None)
    exc: Exception = retry(countdown=countdown, max_retries=None, exc=None, argsrepr=name, kwargsrepr="")
    return exc


def _start_heartbeat(
    ctx: WorkerContext, hostname: str, queues: list[str], concurrency: int, consumer: Any
) -> None:
    runtime, _ = ctx.get()
    pauses = PauseFollower(ctx.app, runtime.ledger, ctx.pipeline.config, hostname, queues)
    try:
        pauses.start(consumer)
    except redis.RedisError as exc:  # Redis away at start: the heartbeat's follow() corrects it
        log.warning("cannot read the paused functions yet: %s", exc)
    start_heartbeat(runtime.ledger, hostname, queues, concurrency, also=pauses.follow)


def max_memory_per_child_kib(config: PipelineConfig, functions: list[str]) -> int | None:
    """The largest memory hint among the functions served, for Celery's max_memory_per_child."""
    hints = [config.function_settings(f).memory_mb or 0 for f in functions]
    return max(hints) * 1024 if any(hints) else None


def run_worker(
    *,
    settings: Settings,
    pipeline: Pipeline,
    redis_url: str,
    functions: list[str],
    concurrency: int,
    autoscale: str | None = None,
    loglevel: str = "INFO",
    quiet: bool = False,
) -> None:
    if autoscale:
        concurrency = int(autoscale.split(",")[0])  # the heartbeat tells the most it may run
    app = create_celery(redis_url, pipeline)
    ctx = WorkerContext(settings, pipeline, redis_url, app)
    register_task(app, ctx)
    removed = clean_abandoned_work_dirs(settings.data_dir / "tmp")
    if removed:
        log.warning("removed %d work directories left by worker processes that were killed", removed)
    preload(functions)

    @worker_process_init.connect(weak=False)
    def _connect(**_: Any) -> None:
        # Each pool process builds its runtime (Redis pool, object store client) and runs its
        # functions once as it starts, not inside its first invocation.
        ctx.get()
        warm_functions(pipeline, functions, settings.data_dir / "tmp")

    queues = pipeline.consumed_queues(functions)
    # JSON logs: no banner or greeting on stdout either, so every line a log shipper reads parses.
    json_logs = settings.log_format == "json"
    hostname = f"{'+'.join(functions)}.{os.getpid()}@{socket.gethostname()}"

    @worker_ready.connect(weak=False)
    def _ready(sender: Any = None, **_: Any) -> None:
        _start_heartbeat(ctx, hostname, queues, concurrency, sender)
        ready = f"worker {hostname} ready: queues {', '.join(queues)}, concurrency {concurrency}"
        if json_logs:
            log.info(ready)
        elif not quiet:
            print(ready, flush=True)

    if quiet:
        # Quiet workers (the demo's) run as whatever user started them; Celery's advice to drop
        # root is for deployments, where the image runs as a non-root user anyway.
        warnings.filterwarnings("ignore", category=SecurityWarning)
    argv = [
        *(["--quiet"] if quiet or json_logs else []),
        "worker",
        f"--queues={','.join(queues)}",
        f"--hostname={hostname}",
        f"--loglevel={loglevel}",
        "--pool=prefork",
        # No cluster chatter at start: a new worker takes its first task at once.
        "--without-mingle",
        "--without-gossip",
        "-O",
        "fair",
    ]
    argv.append(f"--autoscale={autoscale}" if autoscale else f"--concurrency={concurrency}")
    memory = max_memory_per_child_kib(pipeline.config, functions)
    if memory:
        argv.append(f"--max-memory-per-child={memory}")
    app.worker_main(argv)
