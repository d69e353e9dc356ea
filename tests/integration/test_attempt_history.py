"""An invocation's attempts live in its record: the latest is described by the record's own
fields, the ones before it (retried, cut short by a dead worker, or before an operator's retry)
by a list in the record. No key of its own per invocation."""

from __future__ import annotations

import pytest

from pipeline.invocation import Status
from pipeline.ledger import Ledger
from pipeline.usage import Measured
from tests.integration.test_ledger_intake import event, make

pytestmark = pytest.mark.integration


def history(ledger: Ledger, inv_id: str) -> list[tuple[int, str, str, str | None]]:
    return [(a.n, a.worker, a.outcome, a.error) for a in ledger.invocations.attempts(inv_id)]


def test_a_retried_attempt_and_the_one_that_succeeded(redis_url: str) -> None:
    intake, ledger, sent = make(redis_url)
    intake.accept(event())
    [inv] = sent.sent
    assert ledger.invocations.attempts(inv.id) == []  # queued, never started
    assert ledger.invocations.start_attempt(inv.id, "w1") is not None
    assert history(ledger, inv.id) == [(1, "w1", "running", None)]
    ledger.invocations.requeue(inv.id, "StorageError: timed out", measured=Measured(cpu_ms=3.0))
    assert history(ledger, inv.id) == [(1, "w1", "retrying", "StorageError: timed out")]
    assert ledger.invocations.start_attempt(inv.id, "w2") is not None
    ledger.invocations.finish(inv.id, Status.SUCCEEDED)
    first, second = ledger.invocations.attempts(inv.id)
    assert (first.n, first.outcome, second.n, second.worker, second.outcome) == (
        1,
        "retrying",
        2,
        "w2",
        "succeeded",
    )
    assert first.finished_at is not None and first.duration_ms is not None
    assert first.finished_at <= second.started_at
    done = ledger.invocations.get(inv.id)
    assert (
        done is not None and second.finished_at == done.finished_at and second.duration_ms == done.duration_ms
    )


def test_an_attempt_whose_worker_died_is_kept_as_interrupted(redis_url: str) -> None:
    intake, ledger, sent = make(redis_url)
    intake.accept(event())
    [inv] = sent.sent
    assert ledger.invocations.start_attempt(inv.id, "w1") is not None
    # The message comes back while the record still says running: the first worker is gone.
    assert ledger.invocations.start_attempt(inv.id, "w2") is not None
    assert history(ledger, inv.id) == [(1, "w1", "interrupted", None), (2, "w2", "running", None)]
    ledger.invocations.finish(inv.id, Status.FAILED, error="MediaError: truncated")
    assert history(ledger, inv.id) == [
        (1, "w1", "interrupted", None),
        (2, "w2", "failed", "MediaError: truncated"),
    ]


def test_an_operators_retry_keeps_the_attempts_before_it(redis_url: str) -> None:
    intake, ledger, sent = make(redis_url)
    intake.accept(event())
    [inv] = sent.sent
    assert ledger.invocations.start_attempt(inv.id, "w1") is not None
    ledger.invocations.finish(inv.id, Status.FAILED, error="MediaError: truncated")  # packed now
    assert ledger.invocations.reset_for_retry(inv.id, (Status.FAILED,)) is not None
    assert history(ledger, inv.id) == [(1, "w1", "failed", "MediaError: truncated")]
    assert ledger.invocations.start_attempt(inv.id, "w2") is not None
    ledger.invocations.finish(inv.id, Status.SUCCEEDED)
    assert history(ledger, inv.id) == [
        (1, "w1", "failed", "MediaError: truncated"),
        (1, "w2", "succeeded", None),
    ]
