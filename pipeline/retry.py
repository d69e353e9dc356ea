"""Retrying finished invocations by hand (CLI and API share this).

Each retry is an atomic status change (failed/dead/rejected -> queued) before the enqueue, so a
retry-all racing new failures, or two operators clicking at once, loses nothing and runs nothing
twice: an invocation is enqueued only by whoever won its status change. New failures that land
after the snapshot of dead invocations stay dead, ready for the next retry.
"""

from __future__ import annotations

import redis

from pipeline.errors import BrokerUnavailable, NotFound, PipelineError, RetryRefused
from pipeline.invocation import Invocation, Status
from pipeline.runtime import Runtime

RETRYABLE = (Status.FAILED, Status.DEAD, Status.REJECTED, Status.SKIPPED)


def _requeue(runtime: Runtime, invocation_id: str, allowed: tuple[Status, ...]) -> Invocation | None:
    reset = runtime.ledger.invocations.reset_for_retry(invocation_id, allowed)
    if reset is None:
        return None
    try:
        runtime.intake.enqueue(reset)
        runtime.ledger.invocations.mark_enqueued(invocation_id)
    except Exception as exc:
        # Put it back as it was, so the dead letter is not lost between ledger and broker.
        runtime.ledger.invocations.transition(
            invocation_id, (Status.QUEUED,), Status.DEAD, error=f"retry failed: {exc}"
        )
        raise BrokerUnavailable(f"cannot enqueue {invocation_id}: {exc}") from exc
    return reset


def retry_invocation(runtime: Runtime, invocation_id: str) -> Invocation:
    try:
        inv = runtime.ledger.invocations.get(invocation_id)
        if inv is None:
            raise NotFound(f"no invocation {invocation_id}")
        if inv.run_id:
            # Run again on its own, a step's result would reach no run: the run decides.
            raise RetryRefused(
                f"invocation {invocation_id} is step {inv.step} of run {inv.run_id}: redrive the run "
                f"(POST /api/runs/{inv.run_id}/redrive) or rerun the step "
                f"(POST /api/runs/{inv.run_id}/steps/{inv.step}/rerun)"
            )
        if inv.status not in RETRYABLE:
            raise RetryRefused(
                f"invocation {invocation_id} is {inv.status}; only failed, dead, rejected or skipped retry"
            )
        done = _requeue(runtime, invocation_id, RETRYABLE)
        if done is None:
            raise RetryRefused(
                f"invocation {invocation_id} changed state meanwhile (someone else retried it)"
            )
        return done
    except redis.RedisError as exc:
        raise BrokerUnavailable(f"Redis unavailable: {exc}") from exc


def retry_all_dead(runtime: Runtime) -> list[Invocation]:
    """Re-queue every dead invocation once; returns those this call re-queued. Dead steps of
    flow runs are run again by redriving their runs (which also re-runs what they held up)."""
    try:
        requeued = []
        runs: set[str] = set()
        dead = runtime.ledger.invocations.get_many(runtime.ledger.invocations.ids_with_status(Status.DEAD))
        for inv in dead:
            if inv.run_id:
                runs.add(inv.run_id)
                continue
            done = _requeue(runtime, inv.id, (Status.DEAD,))
            if done is not None:
                requeued.append(done)
        for run_id in sorted(runs):
            try:
                run = runtime.flows.redrive(run_id)
            except PipelineError:  # still running, redriven meanwhile, or expired
                continue
            pending = [i for state in run.steps.values() for i in state.pending]
            requeued += runtime.ledger.invocations.get_many(pending)
        return requeued
    except redis.RedisError as exc:
        raise BrokerUnavailable(f"Redis unavailable: {exc}") from exc
