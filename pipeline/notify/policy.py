"""How webhook deliveries are retried and given up: the time-outs, the backoff, and which answers
are worth another attempt."""

from __future__ import annotations

from dataclasses import dataclass

from redis.backoff import FullJitterBackoff

from pipeline.notify.sender import Outcome
from pipeline.settings import Settings


@dataclass(frozen=True)
class DeliveryPolicy:
    timeout: float = 10.0
    max_age: float = 86400.0
    retry_base: int = 5
    retry_max: int = 3600
    disable_after: float = 3 * 86400.0

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryPolicy:
        return cls(
            timeout=settings.webhook_timeout,
            max_age=settings.webhook_max_age,
            retry_base=settings.webhook_retry_base,
            retry_max=settings.webhook_retry_max,
            disable_after=settings.webhook_disable_after,
        )

    @property
    def in_flight_seconds(self) -> float:
        """How long an attempt in flight keeps its message from being scheduled again."""
        return self.timeout * 2 + 10

    def backoff(self, attempts: int) -> float:
        """Exponential with full jitter (redis-py's), never sooner than the base delay."""
        jittered = FullJitterBackoff(cap=self.retry_max, base=self.retry_base).compute(attempts - 1)
        return max(float(self.retry_base), jittered)


def retryable(outcome: Outcome) -> bool:
    code = outcome.status_code
    return code is None or code == 429 or code >= 500
