"""The ledger's compact forms. Finished invocation records are packed (one deflated field beside
the status and attempts) and still behave as records: read back whole, retried, finished again,
counted in usage, and records written before packing keep working. An upload's join set closes
once, and leaves no marker behind."""

from __future__ import annotations

from typing import cast

import pytest
import redis

from pipeline.invocation import Invocation, OutputRef, Status
from pipeline.ledger import Ledger, connect, keys
from pipeline.ledger.json_hash import JsonHash
from pipeline.ledger.packing import PACKED_FIELD
from pipeline.usage import Measured
from tests.integration.test_ledger_intake import event, make

pytestmark = pytest.mark.integration

# What an attempt sets; everything else must read back as the intake recorded it.
ATTEMPT = {
    "status", "attempts", "outputs", "started_at", "finished_at", "worker", "duration_ms", "cpu_ms",
    "queue_wait_ms", "gb_seconds", "memory_mb", "bytes_read", "bytes_written", "peak_memory_mb",
    "cold_start", "trace",
}  # fmt: skip
OUTPUT = OutputRef(bucket="media", key="derived/cat/256.jpg", content_type="image/jpeg", size=4096)


def fields_of(redis_url: str, inv_id: str) -> set[bytes]:
    return set(cast(list[bytes], redis.Redis.from_url(redis_url).hkeys(keys.invocation(inv_id))))


def run(ledger: Ledger, inv_id: str, status: Status, error: str | None = None) -> None:
    assert ledger.invocations.start_attempt(inv_id, "w1") is not None
    outputs = [OUTPUT] if status == Status.SUCCEEDED else []
    ledger.invocations.finish(inv_id, status, outputs=outputs, error=error, measured=Measured(cpu_ms=12.0))


def test_a_finished_record_is_packed_and_reads_back_whole(redis_url: str) -> None:
    intake, ledger, sent = make(redis_url)
    intake.accept(event())
    [queued] = sent.sent
    assert PACKED_FIELD.encode() not in fields_of(redis_url, queued.id)  # it still changes field by field
    run(ledger, queued.id, Status.SUCCEEDED)
    assert fields_of(redis_url, queued.id) == {b"status", b"attempts", PACKED_FIELD.encode()}
    done = ledger.invocations.get(queued.id)
    assert done is not None and done.status == Status.SUCCEEDED and done.attempts == 1
    assert done.outputs == [OUTPUT] and done.cpu_ms == 12.0 and done.worker == "w1"
    assert done.model_dump(exclude=ATTEMPT) == queued.model_dump(exclude=ATTEMPT)  # the rest as recorded
    assert ledger.invocations.query(status="succeeded", bucket="media", key="uploads/cat.jpg") == [done]
    assert redis.Redis.from_url(redis_url).ttl(keys.invocation(queued.id)) > 0  # the safety net stays


def test_a_packed_record_is_retried_finished_again_and_counted(redis_url: str) -> None:
    intake, ledger, sent = make(redis_url)
    intake.accept(event())
    [inv] = sent.sent
    run(ledger, inv.id, Status.FAILED, error="MediaError: truncated")
    assert ledger.invocations.reset_for_retry(inv.id, (Status.FAILED,)) is not None
    retried = ledger.invocations.get(inv.id)
    assert retried is not None and retried.status == Status.QUEUED and retried.error is None
    assert retried.attempts == 0 and retried.function == "thumbnail"  # the reset wins over the packed
    run(ledger, inv.id, Status.SUCCEEDED)
    done = ledger.invocations.get(inv.id)
    assert done is not None and done.status == Status.SUCCEEDED and done.error is None
    assert done.attempts == 1 and done.outputs == [OUTPUT]
    assert fields_of(redis_url, inv.id) == {b"status", b"attempts", PACKED_FIELD.encode()}
    counted = ledger.usage.totals()["thumbnail"].invocations  # both attempts, by the function's name
    assert counted == {"failed": 1, "succeeded": 1}
    assert ledger.invocations.ids_with_status(Status.SUCCEEDED) == [inv.id]


def test_a_record_written_before_packing_still_reads_retries_and_is_packed(redis_url: str) -> None:
    ledger = Ledger(connect(redis_url))
    old = Invocation(
        id=Invocation.new_id(), function="thumbnail", params={"sizes": [64]}, params_hash="h", rule="r",
        queue="fn.thumbnail", bucket="media", key="uploads/old.jpg", version="v1", etag="v1", event_id="ev",
        output_bucket="media", output_template="t/{key}", status=Status.DEAD, attempts=3, error="gone",
    )  # fmt: skip
    pipe = redis.Redis.from_url(redis_url, decode_responses=True).pipeline(transaction=True)
    pipe.hset(keys.invocation(old.id), mapping=JsonHash(Invocation).dump(old, always=("status",)))
    pipe.zadd(keys.invocation_index("thumbnail", "dead"), {old.id: old.created_at})
    pipe.sadd(keys.INDEXED_FUNCTIONS, "thumbnail")
    pipe.execute()
    assert ledger.invocations.get(old.id) == old
    assert ledger.invocations.reset_for_retry(old.id, (Status.DEAD,)) is not None
    run(ledger, old.id, Status.SUCCEEDED)
    done = ledger.invocations.get(old.id)
    assert done is not None and done.status == Status.SUCCEEDED and done.error is None and done.key == old.key
    assert fields_of(redis_url, old.id) == {b"status", b"attempts", PACKED_FIELD.encode()}


def test_an_upload_closes_once_when_its_last_member_finishes(redis_url: str) -> None:
    """`object.processed` fires once per upload: for the member whose finish emptied its join
    set, not for a repeated finish, nor for one that comes after (a retried invocation), and the
    closed upload leaves no key behind."""
    client = connect(redis_url)
    ledger = Ledger(client)
    pipe = client.pipeline(transaction=True)
    ledger.outbox.open_join(pipe, "ev1", ["a", "b", "run:r1"])
    pipe.execute()
    assert [ledger.outbox.close_join("ev1", m) for m in ("a", "a", "run:r1")] == [False, False, False]
    assert ledger.outbox.close_join("ev1", "b") is True
    assert ledger.outbox.close_join("ev1", "b") is False  # redelivered
    assert ledger.outbox.close_join("ev1", "a") is False  # retried, finished again
    assert not redis.Redis.from_url(redis_url).keys("*ev1*")


def test_a_write_while_finishing_leaves_the_record_whole_unpacked(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The verdict rewrites the record packed only if nothing wrote to it since it was read; a
    last progress report landing in between (injected here) makes the verdict fall back to a plain
    write, and the record keeps both."""
    from pipeline.ledger import invocations as store
    from pipeline.ledger.attempts import ended_attempt as real

    intake, ledger, sent = make(redis_url)
    intake.accept(event())
    [inv] = sent.sent
    assert ledger.invocations.start_attempt(inv.id, "w1") is not None

    def with_a_late_report(*args: object, **kwargs: object) -> object:
        ledger.invocations.set_progress(inv.id, 99.0, None)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "ended_attempt", with_a_late_report)
    ledger.invocations.finish(inv.id, Status.SUCCEEDED, outputs=[OUTPUT], measured=Measured(cpu_ms=5.0))
    assert PACKED_FIELD.encode() not in fields_of(redis_url, inv.id)
    done = ledger.invocations.get(inv.id)
    assert done is not None and done.status == Status.SUCCEEDED and done.outputs == [OUTPUT]
    assert done.progress is not None and done.progress["percent"] == 99.0 and done.cpu_ms == 5.0
    assert ledger.invocations.ids_with_status(Status.SUCCEEDED) == [inv.id]
    assert ledger.usage.totals()["thumbnail"].invocations == {"succeeded": 1}
