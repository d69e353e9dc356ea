from __future__ import annotations

import re
import time
from typing import cast

import pytest
import redis

from pipeline.config import parse_config
from pipeline.errors import BrokerUnavailable
from pipeline.events import ObjectEvent
from pipeline.intake import Intake
from pipeline.invocation import Invocation, OutputRef, Status
from pipeline.ledger import Ledger, connect, keys
from pipeline.registry import build_pipeline
from tests.helpers import THUMBNAILS_ONLY, plant_claim

pytestmark = pytest.mark.integration


class Recorder:
    def __init__(self) -> None:
        self.sent: list[Invocation] = []

    def __call__(self, inv: Invocation) -> None:
        self.sent.append(inv)


def make(redis_url: str) -> tuple[Intake, Ledger, Recorder]:
    config, source = parse_config(THUMBNAILS_ONLY, "test.yaml"), "test.yaml"
    ledger = Ledger(connect(redis_url))
    sent = Recorder()
    return Intake(build_pipeline(config, source), ledger, sent), ledger, sent


def event(key: str = "uploads/cat.jpg", etag: str = "e1", size: int | None = 10) -> ObjectEvent:
    return ObjectEvent(
        source="minio",
        event_name="s3:ObjectCreated:Put",
        bucket="media",
        key=key,
        etag=etag,
        size=size,
        content_type="image/jpeg",
    )


def test_accept_records_and_enqueues(redis_url: str) -> None:
    intake, ledger, sent = make(redis_url)
    record = intake.accept(event())
    assert record.status == "accepted" and len(record.invocations) == 1
    [inv] = sent.sent
    stored = ledger.invocations.get(inv.id)
    assert stored is not None and stored.status == Status.QUEUED and stored.queue == "fn.thumbnail"
    assert stored.event_id == record.id
    assert ledger.events.get(record.id) == record


def test_duplicates_are_claimed_once_and_counted(redis_url: str) -> None:
    intake, ledger, sent = make(redis_url)
    first = intake.accept(event())
    again = intake.accept(event())
    assert again.status == "duplicate" and again.invocations == first.invocations
    assert len(sent.sent) == 1
    assert ledger.invocations.counts()["duplicates"] == 1
    intake.accept(event(etag="e2"))  # a new version is new work
    assert len(sent.sent) == 2


def test_unmatched_event_is_only_counted(redis_url: str) -> None:
    """A record no rule wants leaves a counter behind, nothing else (a notification may carry any
    number of them)."""
    intake, ledger, sent = make(redis_url)
    record = intake.accept(event(key="elsewhere/cat.jpg"), raw="x" * 20000)
    assert record.status == "ignored" and record.reason == "no rule matches"
    assert sent.sent == [] and ledger.events.recent() == []
    assert ledger.stats.get("events:ignored") == 1


def test_oversize_object_is_rejected_from_the_event(redis_url: str) -> None:
    intake, ledger, sent = make(redis_url)
    record = intake.accept(event(size=3 * 1024**3))
    [inv] = ledger.invocations.get_many(record.invocations)
    assert inv.status == Status.REJECTED and "screening.max_bytes" in (inv.error or "")
    assert "media/uploads/cat.jpg" in (inv.error or "")
    assert sent.sent == []


def test_broker_failure_undoes_the_claim(redis_url: str) -> None:
    config, source = parse_config(THUMBNAILS_ONLY, "test.yaml"), "test.yaml"
    ledger = Ledger(connect(redis_url))

    def broken(inv: Invocation) -> None:
        raise ConnectionError("broker down")

    intake = Intake(build_pipeline(config, source), ledger, broken)
    with pytest.raises(BrokerUnavailable, match=r"cannot enqueue thumbnail for media/uploads/cat\.jpg"):
        intake.accept(event())
    assert ledger.invocations.query() == []  # nothing recorded as queued
    [refused] = ledger.events.recent()
    assert refused.status == "unavailable" and "broker down" in (refused.reason or "")
    assert refused.invocations == []
    intake.enqueue = Recorder()
    assert intake.accept(event()).status == "accepted"  # the retry is not taken for a duplicate


def test_an_orphaned_claim_is_taken_over_once_it_is_old(redis_url: str) -> None:
    """An intake that died between claiming and recording left a claim with no invocation: the
    resent notification takes it over once no live intake call could still be recording it."""
    from pipeline.invocation import dedup_key
    from pipeline.ledger.claims import ORPHAN_CLAIM_S

    intake, ledger, sent = make(redis_url)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    intake.accept(event(key="uploads/probe.jpg"))  # the rule's params hash, as the intake computes it
    plan_hash = sent.sent[0].params_hash
    claim = keys.dedup(dedup_key("media", "uploads/cat.jpg", "e1", "thumbnail", plan_hash))
    orphan = plant_claim(client, claim, seconds_ago=1)
    # A fresh claim may belong to an intake call still recording, or to one that failed there: the
    # sender is told to try again (503), never told the work is recorded.
    with pytest.raises(BrokerUnavailable, match=f"claimed {orphan} and has not recorded it yet"):
        intake.accept(event())
    plant_claim(client, claim, seconds_ago=ORPHAN_CLAIM_S + 5)  # the claim is now old
    taken = intake.accept(event())
    assert taken.status == "accepted" and len(sent.sent) == 2
    assert ledger.claims.claimant(claim) == sent.sent[1].id
    assert intake.accept(event()).status == "duplicate", "and it is an ordinary claim again"


def test_attempts_lifecycle_and_query_filters(redis_url: str) -> None:
    intake, ledger, sent = make(redis_url)
    intake.accept(event("uploads/a.jpg"))
    intake.accept(event("uploads/b.jpg"))
    a, b = sent.sent
    running = ledger.invocations.start_attempt(a.id, "w1")
    assert running is not None and running.attempts == 1 and running.status == Status.RUNNING
    ledger.invocations.finish(
        a.id,
        Status.SUCCEEDED,
        outputs=[OutputRef(bucket="media", key="k", content_type="image/jpeg", size=1)],
    )
    done = ledger.invocations.get(a.id)
    assert done is not None and done.status == Status.SUCCEEDED and done.duration_ms is not None
    assert done.outputs[0].key == "k" and done.worker == "w1"
    assert ledger.invocations.start_attempt(a.id, "w2") is None  # finished work is never run again
    assert [i.id for i in ledger.invocations.query(status="succeeded")] == [a.id]
    assert [i.id for i in ledger.invocations.query(status="queued")] == [b.id]
    assert [i.id for i in ledger.invocations.query(bucket="media", key="uploads/b.jpg")] == [b.id]
    assert [i.id for i in ledger.invocations.query(function="thumbnail")] == [b.id, a.id]  # newest first
    assert ledger.invocations.query(function="nope") == []
    assert ledger.invocations.counts()["succeeded"] == 1 and ledger.invocations.counts()["queued"] == 1


def test_records_carry_a_ttl_a_day_past_retention_as_a_safety_net(redis_url: str) -> None:
    intake, _, sent = make(redis_url)
    intake.accept(event())
    ttl = redis.Redis.from_url(redis_url).ttl(keys.invocation(sent.sent[0].id))
    assert 7 * 86400 < ttl <= 8 * 86400


def test_retention_removes_old_records_with_their_index_entries_and_no_slow_command(redis_url: str) -> None:
    """20,000 synthetic invocations over six days, a retention of three: about half are removed,
    from every index, in batches. SLOWLOG records every command of the sweep: none names more
    than one batch, and none is of a kind that walks a whole key (ZREMRANGEBYSCORE, KEYS, SCAN),
    so none grows with the ledger. How long the slowest takes is measured by `pipeline bench
    ledger` on a quiet machine at a million invocations: here, parallel tests load both cores and
    any command can be descheduled for tens of milliseconds."""
    from pipeline.ledger.retention import BATCH
    from pipeline.measure.synthetic_ledger import load

    client = connect(redis_url)
    ledger = Ledger(client, retention_seconds=3 * 86400)
    now = time.time()
    loaded = load(ledger, client, 20_000, now)
    cutoff = now - 3 * 86400
    invocation_indexes = ledger.invocations.indexes()
    assert len(invocation_indexes) == 2 * len(Status)  # thumbnail and filter, by status
    scored = [
        entry
        for index in invocation_indexes
        for entry in cast(list[tuple[str, float]], client.zrange(index, 0, -1, withscores=True))
    ]
    kept = [member for member, created in scored if created >= cutoff]
    client.config_set("slowlog-max-len", 200_000)
    client.config_set("slowlog-log-slower-than", 0)  # every command
    client.slowlog_reset()
    swept = ledger.retention_sweeper.sweep(now=now)
    client.config_set("slowlog-log-slower-than", -1)
    commands = client.slowlog_get(200_000)
    client.config_set("slowlog-log-slower-than", 10_000)
    names = [c["command"].split()[0].upper() for c in commands]
    assert len(commands) > swept.batches * 3
    assert not {b"ZREMRANGEBYSCORE", b"KEYS", b"SCAN", b"ZRANGE"} & set(names), set(names)
    sizes = [_arguments(c["command"]) for c in commands]
    assert max(sizes) > BATCH // 2  # the batches are there, and SLOWLOG shows how big they are
    assert max(sizes) <= BATCH + 6, max(sizes)  # ZREM key 500 ids, ZRANGEBYSCORE ... LIMIT 0 500
    assert swept.done and swept.batches > 10
    assert 0.4 * loaded.invocations < swept.invocations < 0.6 * loaded.invocations
    assert swept.invocations + len(kept) == loaded.invocations
    indexes = [*invocation_indexes, keys.bucket_index("media"), keys.EVENTS_INDEX, keys.RUNS_INDEX]
    for index in indexes:  # nothing older than the cutoff is named by any index
        assert client.zrangebyscore(index, "-inf", cutoff) == [], index
    assert sum(client.zcard(index) for index in invocation_indexes) == len(kept)
    assert sum(ledger.invocations.counts()[s.value] for s in Status) == len(kept)
    old_id = ledger.invocations.query(limit=1)  # a kept one still loads
    assert old_id and old_id[0].created_at >= cutoff
    survivors = {k.split(":")[-1] for k in client.scan_iter(f"{keys.invocation('')}*", count=5000)}
    assert survivors == set(kept)
    # Claims went with their records: every claim left names a record that is left.
    claimants = [
        c for shard in client.scan_iter(f"{keys.PREFIX}claims:*", count=5000) for c in client.hvals(shard)
    ]
    assert len(claimants) > len(kept) // 2
    runs_left = {k.split(":")[-1] for k in client.scan_iter(f"{keys.run('')}*", count=5000)}
    assert set(claimants) <= survivors | runs_left
    assert ledger.retention_sweeper.sweep(now=now).invocations == 0  # nothing left to do


def _arguments(command: bytes) -> int:
    """How many words a SLOWLOG entry's command had (it keeps 32 and counts the rest)."""
    words = command.split()
    more = re.search(rb"\.\.\. \((\d+) more arguments\)$", command)
    return len(words) - 4 + int(more.group(1)) if more else len(words)


def test_ids_sort_by_creation_and_never_collide() -> None:
    spaced = []
    for _ in range(5):
        spaced.append(Invocation.new_id())
        time.sleep(0.002)
    assert spaced == sorted(spaced)
    assert len({Invocation.new_id() for _ in range(10_000)}) == 10_000


FLOW_AND_FUNCTIONS = """
version: 1
buckets: [media]
flows:
  two: {steps: {a: {function: copy}, b: {function: thumbnail, needs: [a]}}}
rules:
  - {name: thumbs, bucket: media, prefix: uploads/, functions: [{function: thumbnail}]}
  - {name: flows, bucket: media, prefix: uploads/, flow: two}
"""


def test_broker_failure_undoes_the_runs_too_and_an_orphaned_run_claim_is_taken_over(redis_url: str) -> None:
    from pipeline.ledger.claims import ORPHAN_CLAIM_S
    from pipeline.ledger.runs import RunStore

    ledger = Ledger(connect(redis_url))
    pipeline = build_pipeline(parse_config(FLOW_AND_FUNCTIONS, "test.yaml"), "test.yaml")

    def broken(inv: Invocation) -> None:
        raise ConnectionError("broker down")

    intake = Intake(pipeline, ledger, broken)
    with pytest.raises(BrokerUnavailable):
        intake.accept(event())
    assert ledger.invocations.query() == [] and ledger.runs.query() == []  # nothing left half-started
    [refused] = ledger.events.recent()
    assert refused.status == "unavailable" and refused.invocations == [] and refused.runs == []
    sent = Recorder()
    intake.enqueue = intake.flows.enqueue = sent
    accepted = intake.accept(event())
    assert accepted.status == "accepted" and len(accepted.runs) == 1  # the retry starts the run afresh
    assert sorted(inv.function for inv in sent.sent) == ["copy", "thumbnail"]

    # A run claim whose run was never recorded (its intake died in between) is taken over once old.
    [run] = ledger.runs.query()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    orphan = RunStore.claim_key(run.model_copy(update={"version": "e9"}))
    never = plant_claim(client, orphan, seconds_ago=1, suffix="run-never")
    with pytest.raises(BrokerUnavailable, match=never):
        intake.accept(event(etag="e9"))  # a fresh claim may belong to a live intake: try again
    plant_claim(client, orphan, seconds_ago=ORPHAN_CLAIM_S + 5, suffix="run-never")
    taken = intake.accept(event(etag="e9"))
    assert taken.status == "accepted" and ledger.claims.claimant(orphan) == taken.runs[0]
    assert ledger.runs.get(taken.runs[0]) is not None


def test_an_objects_notifications_and_invocations_share_one_index(redis_url: str) -> None:
    intake, ledger, sent = make(redis_url)
    accepted = intake.accept(event())
    intake.accept(event())  # a duplicate notification: recorded, starts nothing
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    members = set(cast(list[str], client.zrange(keys.object_index("media", "uploads/cat.jpg"), 0, -1)))
    [inv] = sent.sent
    assert inv.id in members and keys.object_event(accepted.id) in members and len(members) == 3
    assert ledger.invocations.query(bucket="media", key="uploads/cat.jpg") == ledger.invocations.get_many(
        [inv.id]
    )
    assert [e.status for e in ledger.events.for_object("media", "uploads/cat.jpg")] == [
        "accepted",
        "duplicate",
    ]
