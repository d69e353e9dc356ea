"""One attempt of an invocation, from its start to its one recorded outcome. Celery-free.

`run_attempt` runs the executor on the invocation the queue message carried, classifies what it
raised, records the attempt's final status (succeeded, skipped, rejected, failed, dead) or its
retry, and advances the flow run the invocation belongs to. The queue package turns the verdict
into Celery's acknowledge or retry and nothing more; the delivery tests call this same function.

An outcome is recorded while the attempt still holds the invocation's execution lease where it
can be (success, and a lost worker's redelivery), so a redelivery never finds the work unrecorded.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from functions.errors import Rejected
from pipeline.errors import LeaseHeld, Skip, Throttled
from pipeline.execution import Executor, WorkerLost
from pipeline.invocation import Invocation, OutputRef, Status
from pipeline.runtime import Runtime
from pipeline.usage import DEFAULT_BILLED_MEMORY_MB, Measured

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    """What became of one delivery of an invocation's message. `status`: the final status
    recorded, or None when the invocation is not finished. `again_in`: send the message again
    after this many seconds (a retry, or a delivery that ran nothing); None: acknowledge it."""

    status: Status | None
    again_in: float | None = None
    counted: bool = True  # an attempt ran (False: throttled, or another delivery holds the lease)

    @property
    def done(self) -> bool:
        return self.again_in is None


def run_attempt(
    runtime: Runtime,
    executor: Executor,
    inv: Invocation,
    worker: str,
    time_limit_errors: tuple[type[BaseException], ...] = (),
) -> Verdict:
    """Run one attempt of `inv` and record its outcome. `time_limit_errors`: what the pool raises
    in the function when its soft time limit passes (recorded as a time-out)."""

    def succeeded(outputs: list[OutputRef], measured: Measured | None) -> None:
        runtime.ledger.invocations.finish(inv.id, Status.SUCCEEDED, outputs=outputs, measured=measured)

    try:
        ran = executor.run(inv, worker, on_success=succeeded)
        verdict = Verdict(Status.SUCCEEDED if ran is not None else None)
    except Throttled:
        # The function's reserved concurrency is used up. The message goes back for a moment (not
        # an attempt: nothing ran), jittered so waiting copies do not return in step. Its new send
        # time tells the reconciler the message is alive, not lost.
        countdown = random.uniform(0.2, 1.0)  # noqa: S311 - jitter
        runtime.ledger.invocations.mark_enqueued(inv.id, due_in=countdown)
        return Verdict(None, countdown, counted=False)
    except LeaseHeld:
        # A duplicate delivery while the first run is alive: look again later rather than run
        # twice. If the first run dies, its lease lapses and this delivery does the work.
        return Verdict(None, runtime.pipeline.config.limits.lease_seconds, counted=False)
    except WorkerLost as exc:
        runtime.ledger.invocations.finish(inv.id, Status.DEAD, error=str(exc), measured=exc.measured)
        verdict = Verdict(Status.DEAD)
    except Exception as exc:
        error: BaseException = exc
        if time_limit_errors and isinstance(exc, time_limit_errors):
            error = TimeoutError(f"time limit of {inv.time_limit:g}s exceeded")
        verdict = record_failure(runtime, inv, error, executor.meter.end())
    if verdict.done and inv.run_id:
        runtime.flows.on_finished(inv.id)  # the hop to the next steps, by this worker
    return verdict


def record_failure(
    runtime: Runtime, inv: Invocation, exc: BaseException, measured: Measured | None = None
) -> Verdict:
    """Record a failed attempt (with what it used): its final status, or its retry after the wait
    the function's retry policy gives (`functions.<name>.retry` in the pipeline file)."""
    ledger = runtime.ledger
    current = ledger.invocations.get(inv.id)
    attempts = current.attempts if current else inv.attempts
    error = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, Skip):
        ledger.invocations.finish(inv.id, Status.SKIPPED, error=str(exc), measured=measured)
        return Verdict(Status.SKIPPED)
    if isinstance(exc, Rejected):
        ledger.invocations.finish(inv.id, Status.REJECTED, error=str(exc), measured=measured)
        return Verdict(Status.REJECTED)
    policy = runtime.pipeline.config.retry_policy(inv.function)
    if not policy.retries(exc):
        ledger.invocations.finish(inv.id, Status.FAILED, error=error, measured=measured)
        log.warning("invocation %s gave up: %s", inv.id, error)
        return Verdict(Status.FAILED)
    if attempts >= inv.max_attempts:
        error = f"{error} (after {attempts} attempts)"
        ledger.invocations.finish(inv.id, Status.DEAD, error=error, measured=measured)
        log.warning("invocation %s gave up: %s", inv.id, error)
        return Verdict(Status.DEAD)
    delay = policy.delay(attempts)
    log.warning("invocation %s attempt %d failed (%s); retrying in %ss", inv.id, attempts, error, delay)
    ledger.invocations.requeue(inv.id, error, due_in=delay, measured=measured)
    return Verdict(None, delay)


def ended_from_outside(runtime: Runtime, inv: Invocation, exc: BaseException) -> Verdict:
    """An attempt the pool ended from outside (killed at the hard time limit): the process took
    its measurements with it, so the time and the memory size it was given still count."""
    hint = runtime.pipeline.config.function_settings(inv.function).memory_mb
    verdict = record_failure(runtime, inv, exc, Measured(memory_mb=hint or DEFAULT_BILLED_MEMORY_MB))
    if verdict.done and inv.run_id:
        runtime.flows.on_finished(inv.id)
    return verdict
