"""Outgoing webhooks with real parts: Redis, a `pipeline worker --webhooks` Celery process, and a
receiver on loopback that verifies signatures with the `standardwebhooks` library.

Invocations are finished directly in the ledger here, so each test controls exactly what is
announced; tests/integration/test_webhooks_e2e.py runs real uploads through real functions."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from pipeline.event_types import EventType
from pipeline.events.model import ObjectEvent
from pipeline.invocation import Invocation, OutputRef, Status
from pipeline.ledger import keys
from pipeline.notify.notifier import Notifier, notifier_for
from pipeline.notify.payloads import InvocationPayload, ProcessedPayload
from pipeline.notify.subscriptions import SecretEntry, Subscription, callback_id, new_secret
from pipeline.runtime import Runtime
from tests.helpers import Proc, ServedApp, pipeline_runtime, wait_until
from tests.receiver import Receiver, Reply

pytestmark = pytest.mark.integration

CONFIG = """
version: 1
buckets: [media]
rules:
  - name: images
    bucket: media
    prefix: uploads/
    functions:
      - function: thumbnail
      - function: filter
        params: {steps: [{op: grayscale}]}
"""
ALLOW_LOOPBACK = '["127.0.0.1/32"]'


class Hooks:
    def __init__(self, runtime: Runtime, env: dict[str, str], receiver: Receiver, tmp_path: Path) -> None:
        self.runtime, self.env, self.receiver, self.tmp_path = runtime, env, receiver, tmp_path
        self.notifier: Notifier = notifier_for(runtime)
        self.worker: Proc | None = None

    def start_worker(self, **settings: str) -> Proc:
        env = {
            **self.env,
            "PIPELINE_WEBHOOK_ALLOW_NETWORKS": ALLOW_LOOPBACK,
            "PIPELINE_WEBHOOK_RETRY_BASE": "1",
            **{f"PIPELINE_{k.upper()}": v for k, v in settings.items()},
        }
        worker = self.worker = Proc(["worker", "--webhooks"], env, self.tmp_path / "webhooks.log")
        wait_until(
            lambda: (
                any(w.queues == ["webhooks"] for w in self.runtime.ledger.workers.live())
                or not worker.alive()
            ),
            30,
            "the webhook worker",
        )
        assert worker.alive(), worker.output()
        return worker

    def subscribe(self, path: str, events: list[EventType] | None = None) -> Subscription:
        secret = new_secret()
        sub = Subscription(
            id=path.strip("/").replace("/", "-") or "root",
            url=self.receiver.url + path,
            secrets=[SecretEntry(secret=secret)],
            events=events or [],
        )
        assert self.notifier.subs.create(sub)
        self.receiver.secrets[path].append(secret)
        return sub

    def upload_event(self, key: str = "uploads/a.jpg", etag: str = "etag-1") -> list[Invocation]:
        event = ObjectEvent(
            source="api",
            event_name="s3:ObjectCreated:Put",
            bucket="media",
            key=key,
            etag=etag,
            size=1000,
            content_type="image/jpeg",
        )
        record = self.runtime.intake.accept(event)
        return [
            i for i in self.runtime.ledger.invocations.get_many(record.invocations) if i.event_id == record.id
        ]

    def finish(self, inv: Invocation, status: Status = Status.SUCCEEDED, error: str | None = None) -> None:
        ledger = self.runtime.ledger
        ledger.invocations.start_attempt(inv.id, "test-worker")
        outputs = (
            [
                OutputRef(
                    bucket="media",
                    key=f"derived/{inv.key}/{inv.function}/out.jpg",
                    content_type="image/jpeg",
                    size=1234,
                )
            ]
            if status == Status.SUCCEEDED
            else []
        )
        ledger.invocations.finish(inv.id, status, outputs=outputs, error=error)


@pytest.fixture
def hooks(redis_url: str, tmp_path: Path) -> Iterator[Hooks]:
    runtime, env = pipeline_runtime(CONFIG, redis_url, tmp_path)
    with Receiver() as receiver:
        h = Hooks(runtime, env, receiver, tmp_path)
        try:
            yield h
        finally:
            if h.worker is not None:
                rc = h.worker.stop()
                assert rc == 0, h.worker.output()[-3000:]


def eventually(predicate: Callable[[], object], timeout: float = 15, what: str = "webhook") -> None:
    wait_until(predicate, timeout, what)


def settled(hooks: Hooks, timeout: float = 15) -> None:
    """Wait until the worker has nothing left to do: every finished invocation announced (the
    outbox empties only after its entries made their messages) and no message due, in flight or
    waiting for a retry (each stays in the due set until it is delivered or given up). After
    this, what the receiver got is all it will get, with no sleep to prove a negative."""
    messages = hooks.notifier.messages
    wait_until(
        lambda: hooks.runtime.ledger.outbox.length() == 0 and messages.due_count() == 0,
        timeout,
        "the webhook worker to settle",
    )


def test_delivery_is_signed_and_matches_the_documented_payload(hooks: Hooks) -> None:
    hooks.start_worker()
    hooks.subscribe("/all")
    inv = hooks.upload_event()[0]
    hooks.finish(inv)
    eventually(lambda: hooks.receiver.at("/all", "invocation.succeeded"))
    got = hooks.receiver.at("/all", "invocation.succeeded")[0]
    assert got.verified, got.verify_error
    assert got.headers["webhook-id"].startswith("msg_")
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 30
    payload = InvocationPayload.model_validate_json(got.body)
    assert payload.data.id == inv.id and payload.data.key == "uploads/a.jpg"
    assert payload.data.outputs[0].key.endswith("/out.jpg")
    msg = hooks.notifier.messages.get(got.webhook_id)
    assert msg is not None
    eventually(lambda: hooks.notifier.messages.get(got.webhook_id).state == "delivered")  # type: ignore[union-attr]
    attempts = hooks.notifier.messages.attempts(got.webhook_id)
    assert [a.status_code for a in attempts] == [200] and attempts[0].response == "ok"


def test_retries_back_off_with_the_same_webhook_id(hooks: Hooks) -> None:
    hooks.start_worker()
    hooks.subscribe("/flaky", events=[EventType.INVOCATION_FAILED])
    hooks.receiver.script("/flaky", Reply(500), Reply(503))
    inv = hooks.upload_event()[0]
    hooks.finish(inv, Status.FAILED, error="MediaError: truncated file")
    eventually(lambda: len(hooks.receiver.at("/flaky")) == 3, 30, "three attempts")
    got = hooks.receiver.at("/flaky")
    assert len({r.webhook_id for r in got}) == 1, "webhook-id must be stable across retries"
    assert all(r.verified for r in got)
    gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
    assert all(gap >= 0.9 for gap in gaps), f"retried sooner than the base delay: {gaps}"
    assert got[0].json["data"]["error"] == "MediaError: truncated file"
    msg_id = got[0].webhook_id
    eventually(lambda: hooks.notifier.messages.get(msg_id).state == "delivered")  # type: ignore[union-attr]
    codes = [a.status_code for a in hooks.notifier.messages.attempts(msg_id)]
    assert codes == [500, 503, 200]
    first = hooks.notifier.messages.attempts(msg_id)[0]
    assert first.next_attempt_at is not None and first.next_attempt_at > first.at
    settled(hooks)
    assert len(hooks.receiver.at("/flaky")) == 3, "a delivered message is not sent again"


def test_429_retry_after_is_honoured(hooks: Hooks) -> None:
    hooks.start_worker()
    hooks.subscribe("/busy")
    hooks.receiver.script("/busy", Reply(429, headers={"Retry-After": "3"}))
    hooks.finish(hooks.upload_event()[0])
    eventually(lambda: len(hooks.receiver.at("/busy")) == 2, 30, "the retry after 429")
    first, second = hooks.receiver.at("/busy")
    # The backoff alone would wait 1 s (base): waiting 3 s means Retry-After was obeyed.
    assert second.at - first.at >= 2.9
    assert first.webhook_id == second.webhook_id


def test_410_disables_the_subscription_and_tells_the_operator(hooks: Hooks) -> None:
    hooks.start_worker()
    sub = hooks.subscribe("/gone")
    hooks.receiver.script("/gone", Reply(410))
    invs = hooks.upload_event()
    hooks.finish(invs[0])
    eventually(lambda: not hooks.notifier.subs.get(sub.id).enabled)  # type: ignore[union-attr]
    disabled = hooks.notifier.subs.get(sub.id)
    assert disabled is not None and "410" in (disabled.disabled_reason or "")
    assert any(sub.id in str(n["text"]) and "410" in str(n["text"]) for n in hooks.notifier.notices.recent())
    hooks.finish(invs[1])
    settled(hooks)
    assert len(hooks.receiver.at("/gone")) == 1, "a disabled subscription receives nothing more"


def test_redirects_are_not_followed(hooks: Hooks) -> None:
    hooks.start_worker()
    hooks.subscribe("/moved")
    hooks.receiver.script("/moved", Reply(302, headers={"Location": f"{hooks.receiver.url}/elsewhere"}))
    hooks.finish(hooks.upload_event()[0])
    eventually(lambda: hooks.receiver.at("/moved"))
    msg_id = hooks.receiver.at("/moved")[0].webhook_id
    eventually(lambda: hooks.notifier.messages.get(msg_id).state == "failed")  # type: ignore[union-attr]
    msg = hooks.notifier.messages.get(msg_id)
    assert msg is not None and "redirect" in (msg.error or "") and "not followed" in (msg.error or "")
    settled(hooks)
    assert not hooks.receiver.at("/elsewhere")
    assert len(hooks.receiver.at("/moved")) == 1


def test_a_slow_receiver_does_not_hold_up_the_others(hooks: Hooks) -> None:
    hooks.start_worker(webhook_timeout="2")
    hooks.subscribe("/slow")
    hooks.subscribe("/fast")
    hooks.receiver.script("/slow", Reply(200, delay=5), Reply(200, delay=5), Reply(200, delay=5))
    started = time.monotonic()
    for i in range(3):
        hooks.finish(hooks.upload_event(key=f"uploads/{i}.jpg")[0])
    eventually(lambda: len(hooks.receiver.at("/fast", "invocation.succeeded")) == 3, 10, "fast deliveries")
    assert time.monotonic() - started < 4, "fast deliveries waited for the slow receiver"
    # The slow receiver's attempts time out (2 s) and are retried until it answers in time.
    eventually(
        lambda: all(m.state == "delivered" for m in hooks.notifier.messages.list("slow")),
        40,
        "slow deliveries after retries",
    )
    errors = [
        a.error for m in hooks.notifier.messages.list("slow") for a in hooks.notifier.messages.attempts(m.id)
    ]
    assert sum(1 for e in errors if e and "timed out" in e) == 3


def test_a_receiver_trickling_its_headers_gets_a_deadline_and_one_send_at_a_time(hooks: Hooks) -> None:
    """httpx's time-outs are per read: a receiver sending its headers a byte at a time would hold
    the delivery thread for as long as it liked, and the message would go out again in parallel."""
    hooks.start_worker(webhook_timeout="1")
    hooks.subscribe("/trickle")
    hooks.receiver.script("/trickle", Reply(200, trickle=20), Reply(200, trickle=20))
    hooks.finish(hooks.upload_event()[0])

    def delivered() -> bool:
        msgs = hooks.notifier.messages.list("trickle")
        return bool(msgs) and all(m.state == "delivered" for m in msgs)

    eventually(delivered, 30, "delivery")
    [msg] = hooks.notifier.messages.list("trickle")
    failed = [a for a in hooks.notifier.messages.attempts(msg.id) if a.status_code is None]
    assert len(failed) == 2 and all("timed out" in (a.error or "") for a in failed)
    assert all(a.latency_ms < 2500 for a in failed), [a.latency_ms for a in failed]
    assert hooks.receiver.most_in_flight["/trickle"] == 1, "the same message was sent twice at once"


def test_object_processed_fires_once_after_all_invocations(hooks: Hooks) -> None:
    hooks.start_worker()
    hooks.subscribe("/done", events=[EventType.OBJECT_PROCESSED])
    first, second = hooks.upload_event()
    again = hooks.upload_event()  # a duplicated notification claims nothing new
    assert again == []
    hooks.finish(first)
    settled(hooks)
    assert not hooks.receiver.at("/done"), "object.processed before every invocation finished"
    hooks.finish(second, Status.DEAD, error="OSError: disk full (after 3 attempts)")
    eventually(lambda: hooks.receiver.at("/done"))
    hooks.upload_event()  # and another duplicate after the fact
    # Announcing the same outcome again (as after a crash between verdict and announcement).
    hooks.runtime.redis.rpush(keys.OUTBOX, json.dumps({"id": second.id, "status": "dead"}))
    settled(hooks)
    got = hooks.receiver.at("/done")
    assert len(got) == 1
    payload = ProcessedPayload.model_validate_json(got[0].body)
    assert payload.data.key == "uploads/a.jpg" and payload.data.succeeded is False
    assert {i.function for i in payload.data.invocations} == {"thumbnail", "filter"}
    assert [f.id for f in payload.data.failures] == [second.id]
    assert [o.key for o in payload.data.outputs] == [f"derived/uploads/a.jpg/{first.function}/out.jpg"]


def test_rotation_signs_with_both_secrets_and_redelivery_keeps_the_id(hooks: Hooks) -> None:
    from pipeline.gateway.app import create_app

    hooks.start_worker()
    settings = hooks.runtime.settings.model_copy(update={"webhook_allow_networks": ["127.0.0.1/32"]})
    app = create_app(settings, dataclasses.replace(hooks.runtime, settings=settings))
    with ServedApp(app) as api:
        created = api.post(
            "/api/webhooks", json={"url": f"{hooks.receiver.url}/rot", "events": ["invocation.succeeded"]}
        )
        assert created.status_code == 201, created.text
        old = created.json()["secret"]
        assert old.startswith("whsec_")
        listed = api.get("/api/webhooks").json()["items"]
        assert old not in json.dumps(listed), "secrets are shown once, never listed"
        rotated = api.post(f"/api/webhooks/{created.json()['id']}/rotate").json()
        new = rotated["secret"]
        assert new != old and len(rotated["secrets"]) == 2
        hooks.finish(hooks.upload_event()[0])
        eventually(lambda: hooks.receiver.at("/rot"))
        got = hooks.receiver.at("/rot")[0]
        assert len(got.headers["webhook-signature"].split(" ")) == 2
        for secret in (old, new):  # receivers on either secret accept it during the grace period
            hooks.receiver.secrets["/rot"] = [secret]
            hooks.receiver._record("/rot", got.headers, got.body)
            assert hooks.receiver.requests[-1].verified
        hooks.receiver.secrets["/rot"] = ["whsec_" + "A" * 40]
        hooks.receiver._record("/rot", got.headers, got.body)
        assert not hooks.receiver.requests[-1].verified
        hooks.receiver.secrets["/rot"] = [new]
        deliveries = api.get(f"/api/webhooks/{created.json()['id']}/deliveries").json()["items"]
        assert deliveries[0]["id"] == got.webhook_id
        eventually(lambda: api.get(f"/api/webhooks/messages/{got.webhook_id}").json()["state"] == "delivered")
        before = len(hooks.receiver.at("/rot"))
        assert api.post(f"/api/webhooks/messages/{got.webhook_id}/redeliver").status_code == 202
        eventually(lambda: len(hooks.receiver.at("/rot")) == before + 1)
        assert hooks.receiver.at("/rot")[-1].webhook_id == got.webhook_id
        assert hooks.receiver.at("/rot")[-1].verified
        # The receiver has the request a moment before the sender records and counts the attempt.
        eventually(
            lambda: len(api.get(f"/api/webhooks/messages/{got.webhook_id}").json()["attempt_log"]) == 2
        )
        log = api.get(f"/api/webhooks/messages/{got.webhook_id}").json()["attempt_log"]
        assert [a["status_code"] for a in log] == [200, 200]
        eventually(lambda: 'pipeline_webhook_messages{outcome="delivered"} 2.0' in api.get("/metrics").text)
        metrics = api.get("/metrics").text
        assert 'pipeline_webhook_subscriptions{state="enabled"} 1.0' in metrics


def test_the_api_refuses_private_destinations(hooks: Hooks) -> None:
    from pipeline.gateway.app import create_app

    with ServedApp(create_app(hooks.runtime.settings, hooks.runtime)) as api:
        for url in (
            "http://127.0.0.1:9/",
            "http://[::1]/",
            "http://10.0.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://localhost/",
        ):
            response = api.post("/api/webhooks", json={"url": url})
            assert response.status_code == 422, (url, response.text)
            assert "refused" in response.json()["detail"]
        assert api.get("/api/webhooks").json()["items"] == []


def test_delivery_time_guard_refuses_without_connecting(hooks: Hooks) -> None:
    hooks.start_worker(webhook_allow_networks="[]")
    # Stored directly: as if the address behind a name changed after the subscription was made.
    hooks.notifier.subs.create(
        Subscription(
            id="internal", url=f"{hooks.receiver.url}/internal", secrets=[SecretEntry(secret=new_secret())]
        )
    )
    hooks.finish(hooks.upload_event()[0])
    eventually(lambda: any(m.state == "failed" for m in hooks.notifier.messages.list("internal")))
    msg = hooks.notifier.messages.list("internal")[0]
    assert "refused" in (msg.error or "") and "loopback" in (msg.error or "")
    assert not hooks.receiver.at("/internal")


def test_an_endpoint_failing_for_long_is_disabled(hooks: Hooks) -> None:
    # A long max age keeps retries going past 2.5 s whatever the jitter; with a short one the
    # message could be given up before any attempt lands after the disable threshold.
    hooks.start_worker(webhook_disable_after="2.5", webhook_max_age="60")
    sub = hooks.subscribe("/down")
    hooks.receiver.script("/down", *[Reply(500)] * 20)
    hooks.finish(hooks.upload_event()[0])
    eventually(lambda: not hooks.notifier.subs.get(sub.id).enabled, 30, "the endpoint to be disabled")  # type: ignore[union-attr]
    reason = hooks.notifier.subs.get(sub.id).disabled_reason  # type: ignore[union-attr]
    assert reason and "failed for" in reason
    assert any("disabled" in str(n["text"]) for n in hooks.notifier.notices.recent())
    msg = hooks.notifier.messages.list(sub.id)[0]
    eventually(lambda: hooks.notifier.messages.get(msg.id).state == "failed", 30)  # type: ignore[union-attr]


def test_a_webhook_worker_killed_mid_send_loses_nothing(hooks: Hooks) -> None:
    """SIGKILL while an attempt is in flight: the message's lease in the schedule runs out and a
    new webhook worker sends it again, with the same webhook-id."""
    first = hooks.start_worker(webhook_timeout="2")
    hooks.subscribe("/crash")
    hooks.receiver.script("/crash", Reply(200, delay=1.5))
    hooks.finish(hooks.upload_event()[0])
    eventually(lambda: hooks.receiver.at("/crash"), 15, "the first attempt to arrive")
    os.killpg(first.popen.pid, signal.SIGKILL)
    first.popen.wait()
    first.stop()
    hooks.worker = None
    msg_id = hooks.receiver.at("/crash")[0].webhook_id
    assert hooks.notifier.messages.get(msg_id).state == "pending"  # type: ignore[union-attr]
    # The dead worker's attempt holds two leases of 2 x timeout + 10 s = 14 s: its claim in the
    # schedule (the message is due again then) and its send lock. Rather than wait that long, the
    # clock is moved on for this message: both end now, as they would 14 s later.
    r = hooks.runtime.redis
    leased_until = r.zscore(keys.WEBHOOK_DUE, msg_id)
    assert leased_until is not None and leased_until - time.time() >= 10, "leased for 14 s from its claim"
    assert r.pttl(keys.webhook_sending(msg_id)) >= 10_000, "one attempt in flight at a time"
    r.zadd(keys.WEBHOOK_DUE, {msg_id: time.time()})
    r.delete(keys.webhook_sending(msg_id))
    hooks.start_worker(webhook_timeout="2")
    eventually(lambda: hooks.notifier.messages.get(msg_id).state == "delivered", 30, "redelivery")  # type: ignore[union-attr]
    got = hooks.receiver.at("/crash")
    assert len(got) == 2 and {r.webhook_id for r in got} == {msg_id} and all(r.verified for r in got)


def test_callbacks_have_their_own_secrets_a_bound_and_an_expiry(redis_url: str, tmp_path: Path) -> None:
    config = CONFIG + "callbacks: {max_per_rule: 2, ttl_seconds: 120}\n"
    runtime, env = pipeline_runtime(config, redis_url, tmp_path)
    with Receiver() as receiver:
        hooks = Hooks(runtime, env, receiver, tmp_path)
        hooks.start_worker()
        try:
            urls = {path: f"{receiver.url}{path}" for path in ("/cb1", "/cb2", "/cb3")}
            for path, url in urls.items():
                receiver.secrets[path].append(hooks.notifier.callback_secret(url))
                first, second = hooks.upload_event(key=f"uploads{path}.jpg")
                for inv in (first, second):
                    runtime.ledger.invocations.set_callback(inv.id, url)
                    hooks.finish(inv)
            eventually(
                lambda: receiver.at("/cb1", "object.processed") and receiver.at("/cb2", "object.processed")
            )
            [one] = receiver.at("/cb1", "object.processed")
            assert one.verified, one.verify_error
            with pytest.raises(WebhookVerificationError):  # not replayable to another destination
                Webhook(hooks.notifier.callback_secret(urls["/cb2"])).verify(one.body, one.headers)
            settled(hooks)
            assert not receiver.at("/cb3"), "a third destination beyond max_per_rule got a callback"
            assert any("max_per_rule" in str(n["text"]) for n in hooks.notifier.notices.recent())
            ttl = redis.Redis.from_url(redis_url).ttl(keys.webhook_subscription(callback_id(urls["/cb1"])))
            assert 0 < ttl <= 120, "a callback destination must age out"
        finally:
            assert hooks.worker is not None and hooks.worker.stop() == 0
