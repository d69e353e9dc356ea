"""Retrying a finished invocation by hand (CLI and API share this)."""

from __future__ import annotations

import redis

from pipeline.errors import BrokerUnavailable
from pipeline.invocation import Invocation, Status
from pipeline.runtime import Runtime

RETRYABLE = (Status.FAILED, Status.DEAD, Status.REJECTED)


class RetryRefused(Exception):
    """Raised when an invocation is not in a state that can be retried."""


def retry_invocation(runtime: Runtime, invocation_id: str) -> Invocation:
    try:
        inv = runtime.ledger.get(invocation_id)
        if inv is None:
            raise LookupError(f"no invocation {invocation_id}")
        if inv.status not in RETRYABLE:
            raise RetryRefused(
                f"invocation {invocation_id} is {inv.status}; only failed, dead or rejected retry"
            )
        reset = runtime.ledger.reset_for_retry(invocation_id)
        if reset is None:
            raise LookupError(f"no invocation {invocation_id}")
        runtime.intake.enqueue(reset)
        return reset
    except redis.RedisError as exc:
        raise BrokerUnavailable(f"Redis unavailable: {exc}") from exc
