"""The worker side: the one generic task, its retry policy, and `pipeline worker`."""

from __future__ import annotations

import collections
import logging
import os
import random
import socket
import warnings
from typing import Any

import redis
from celery import Celery, Task
from celery.exceptions import Reject, SecurityWarning, SoftTimeLimitExceeded, TimeLimitExceeded
from celery.signals import task_failure, worker_process_init, worker_ready
from celery.utils.time import get_exponential_backoff_interval

from functions.errors import Rejected
from pipeline.config import PipelineConfig
from pipeline.errors import LeaseHeld, Skip, Throttled
from pipeline.execution import Executor, clean_abandoned_work_dirs, is_permanent
from pipeline.invocation import Invocation, Status
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
from pipeline.usage import DEFAULT_BILLED_MEMORY_MB, Measured

log = logging.getLogger(__name__)

BACKOFF_FACTOR_S = 2
BACKOFF_MAX_S = 300


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
                if payload.get("run_id"):
                    # The hop to the next steps: recorded and sent by the worker that ended this one.
                    ctx.get()[0].intake.flows.on_finished(str(payload["id"]))
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
            _attempt(self, runtime, executor, inv)

    def _attempt(self: Task[Any, Any], runtime: Runtime, executor: Executor, inv: Invocation) -> None:
        try:
            executor.run(inv, worker=str(self.request.hostname))
        except Throttled:
            # The function's reserved concurrency is used up. Put the message back for a moment
            # (not an attempt: nothing ran), jittered so waiting copies do not return in step. Its
            # new send time tells the reconciler the message is alive, not lost.
            countdown = random.uniform(0.2, 1.0)  # noqa: S311 - jitter
            runtime.ledger.invocations.mark_enqueued(inv.id, due_in=countdown)
            raise _again(self, countdown) from None
        except LeaseHeld:
            # A duplicate delivery while the first run is alive: look again later rather than run
            # twice. If the first run dies, its lease lapses and this retry does the work.
            raise _again(self, ctx.pipeline.config.limits.lease_seconds) from None
        except SoftTimeLimitExceeded:
            error = TimeoutError(f"time limit of {inv.time_limit:g}s exceeded")
            _failed(self, runtime, inv, error, executor.meter.end())
        except Exception as exc:
            _failed(self, runtime, inv, exc, executor.meter.end())

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
        # The killed process took its measurements with it: the time and memory size still count.
        hint = ctx.pipeline.config.function_settings(inv.function).memory_mb
        delay = _record_failure(runtime, inv, error, Measured(memory_mb=hint or DEFAULT_BILLED_MEMORY_MB))
        if delay is not None:
            CeleryDispatcher(app).enqueue(inv, countdown=delay)
        elif inv.run_id:
            runtime.intake.flows.on_finished(inv.id)


def _again(task: Task[Any, Any], countdown: float) -> Exception:
    """The retry to raise: the same message later, still named by its short argsrepr (monitors
    and log lines show it; Celery would otherwise render the whole payload)."""
    retry: Any = task.retry  # its **options (passed on to apply_async) are missing from the stubs
    name = getattr(task.request, "argsrepr", None)
    exc: Exception = retry(countdown=countdown, max_retries=None, exc=None, argsrepr=name, kwargsrepr="")
    return exc


def _record_failure(
    runtime: Runtime, inv: Invocation, exc: BaseException, measured: Measured | None = None
) -> float | None:
    """Record a failed attempt (with what it used). Returns the backoff delay if it should run
    again, else None."""
    ledger = runtime.ledger
    current = ledger.invocations.get(inv.id)
    attempts = current.attempts if current else inv.attempts
    error = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, Skip):
        ledger.invocations.finish(inv.id, Status.SKIPPED, error=str(exc), measured=measured)
    elif isinstance(exc, Rejected):
        ledger.invocations.finish(inv.id, Status.REJECTED, error=str(exc), measured=measured)
    elif is_permanent(exc):
        ledger.invocations.finish(inv.id, Status.FAILED, error=error, measured=measured)
    elif attempts >= inv.max_attempts:
        error = f"{error} (after {attempts} attempts)"
        ledger.invocations.finish(inv.id, Status.DEAD, error=error, measured=measured)
    else:
        delay = float(
            get_exponential_backoff_interval(BACKOFF_FACTOR_S, attempts - 1, BACKOFF_MAX_S, full_jitter=True)
        )
        log.warning("invocation %s attempt %d failed (%s); retrying in %ss", inv.id, attempts, error, delay)
        ledger.invocations.requeue(inv.id, error, due_in=delay, measured=measured)
        return delay
    log.warning("invocation %s gave up: %s", inv.id, error)
    return None


def _failed(
    task: Task[Any, Any], runtime: Runtime, inv: Invocation, exc: BaseException, measured: Measured | None
) -> None:
    delay = _record_failure(runtime, inv, exc, measured)
    if delay is not None:
        raise _again(task, delay)


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
