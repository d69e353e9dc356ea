"""How a function's failed attempts are retried: the policy as data, per function in the pipeline
file (`functions.<name>.retry`), in the shape Temporal's RetryPolicy and Celery's
`autoretry_for` / `retry_backoff` use. The defaults are what every function got before it could be
set: up to `limits.max_attempts` attempts, 2 s before the second, doubling, at most 300 s, with
full jitter.

Which errors end an invocation at once is said where they are raised: an error whose `permanent`
attribute is true (every `FunctionError`; a function may raise one with `permanent=False`), or
one named in the policy's `non_retryable` (its class or any base class, by name).
"""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict, Field


class RetryPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int | None = Field(
        default=None,
        ge=1,
        le=50,
        description="Attempts in all, the first included. Default: the function's max_attempts, "
        "else limits.max_attempts.",
    )
    initial: float = Field(default=2.0, gt=0, le=3600, description="Seconds before the second attempt.")
    multiplier: float = Field(default=2.0, ge=1, le=10, description="Each wait is this times the last.")
    max_interval: float = Field(default=300.0, gt=0, le=86_400, description="The longest wait, in seconds.")
    jitter: bool = Field(
        default=True,
        description="Full jitter: wait a random time between 0 and the computed one, so the retries "
        "of many invocations that failed together do not return together.",
    )
    non_retryable: list[str] = Field(
        default_factory=list,
        description="Error class names (the class or a base class) that end the invocation `failed` "
        "at once, e.g. [TimeoutError].",
    )

    def interval(self, attempts: int) -> float:
        """The wait after `attempts` failed attempts, before jitter."""
        return float(min(self.max_interval, self.initial * self.multiplier ** max(0, attempts - 1)))

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """The wait before the next attempt, jitter applied."""
        interval = self.interval(attempts)
        return (rng or _RNG).uniform(0, interval) if self.jitter else interval

    def retries(self, exc: BaseException) -> bool:
        """Whether an attempt that raised `exc` is worth another."""
        if getattr(exc, "permanent", False):
            return False
        names = {cls.__name__ for cls in type(exc).__mro__}
        return not names.intersection(self.non_retryable)

    def describe(self, max_attempts: int) -> str:
        """One line for the Functions page and `pipeline flows`."""
        waits = f"{self.initial:g} s x{self.multiplier:g} up to {self.max_interval:g} s"
        text = f"{max_attempts} attempts, {waits}{', full jitter' if self.jitter else ''}"
        return text + (f"; never retried: {', '.join(self.non_retryable)}" if self.non_retryable else "")


_RNG = random.Random()  # noqa: S311 - spreads retries in time, not a secret
