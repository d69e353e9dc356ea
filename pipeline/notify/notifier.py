"""The notifier: announces finished invocations to subscriptions and delivers each message.

Announcing reads the ledger's outbox (finished invocations, written with their verdict) and turns
each into messages for the subscriptions that want it; when the last invocation of an upload
finishes it also announces `object.processed`, exactly once per upload. Delivering makes one signed
attempt and decides what comes next: delivered, retried later (5xx, 429, time-outs, connection
errors), or given up; a 410 disables the subscription, and so does an endpoint failing for too long.
Celery only carries message ids from the scheduler to the delivery threads (`queue/webhooks.py`).
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis
from redis.backoff import FullJitterBackoff

from pipeline.config import PipelineConfig
from pipeline.errors import Conflict, DestinationRefused, NotFound
from pipeline.event_types import EventType
from pipeline.invocation import Status
from pipeline.ledger import Ledger, keys
from pipeline.notify.guard import Guard
from pipeline.notify.messages import Attempt, Message, MessageStore, message_id
from pipeline.notify.payloads import (
    STATUS_EVENTS,
    Payload,
    invocation_payload,
    processed_payload,
)
from pipeline.notify.sender import Outcome, post
from pipeline.notify.subscriptions import (
    SecretEntry,
    Subscription,
    SubscriptionStore,
    callback_id,
    new_secret,
    sync_config,
)
from pipeline.runtime import Runtime
from pipeline.settings import Settings

log = logging.getLogger(__name__)

Presign = Callable[[str, str], str | None]
NOTICES_KEPT = 200


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
    def lease(self) -> float:
        """How long an attempt in flight keeps its message from being scheduled again."""
        return self.timeout * 2 + 10

    def backoff(self, attempts: int) -> float:
        """Exponential with full jitter (redis-py's), never sooner than the base delay."""
        jittered = FullJitterBackoff(cap=self.retry_max, base=self.retry_base).compute(attempts - 1)
        return max(float(self.retry_base), jittered)


def retryable(outcome: Outcome) -> bool:
    code = outcome.status_code
    return code is None or code == 429 or code >= 500


class Notifier:
    def __init__(
        self,
        ledger: Ledger,
        client: redis.Redis,
        config: PipelineConfig,
        guard: Guard,
        policy: DeliveryPolicy,
        presign: Presign | None = None,
    ) -> None:
        self.ledger = ledger
        self.r = client
        self.config = config
        self.guard = guard
        self.policy = policy
        self.presign = presign
        self.subs = SubscriptionStore(client, ledger.retention)
        self.messages = MessageStore(client, ledger.retention)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        config: PipelineConfig,
        ledger: Ledger,
        client: redis.Redis,
        presign: Presign | None,
    ) -> Notifier:
        guard = Guard.from_settings(settings.webhook_allow_private, settings.webhook_allow_networks)
        return cls(ledger, client, config, guard, DeliveryPolicy.from_settings(settings), presign)

    def sync(self) -> None:
        sync_config(self.subs, self.config.webhooks, dict(os.environ))

    # --- announcing ---------------------------------------------------------------------------
    def drain(self, batch: int = 200) -> int:
        """Announce up to `batch` finished invocations. One drainer at a time; a drainer that dies
        midway leaves its entries for the next, and announcing twice creates no second message."""
        token = uuid.uuid4().hex
        lock = keys.WEBHOOK_DRAIN_LOCK
        if not self.r.set(lock, token, nx=True, px=30_000):
            return 0
        try:
            items = self.ledger.outbox.read(batch)
            if items:
                subs = [s for s in self.subs.all() if s.enabled and s.source != "callback"]
                for inv_id, status in items:
                    self._announce(inv_id, status, subs)
                self.ledger.outbox.done(len(items))
            return len(items)
        finally:
            if self.r.get(lock) == token:
                self.r.delete(lock)

    def _announce(self, inv_id: str, status: Status, subs: list[Subscription]) -> None:
        inv = self.ledger.invocations.get(inv_id)
        if inv is None:
            return
        inv = inv.model_copy(update={"status": status})
        event = STATUS_EVENTS.get(status)
        if event is not None:
            payload = invocation_payload(inv, self._presign)
            subject = f"{inv.id}:{inv.finished_at}"
            self._fan_out(
                event, payload, inv.bucket, inv.key, [inv.function], subject, subs, inv.callback_url
            )
        if inv.event_id and self.ledger.outbox.close_join(inv.event_id, inv.id):
            # The event record may not be written yet (intake records it last): the object's own
            # index finds the upload's invocations either way.
            upload = [
                i
                for i in self.ledger.invocations.for_object(inv.bucket, inv.key)
                if i.event_id == inv.event_id
            ]
            upload = [inv if i.id == inv.id else i for i in upload] or [inv]
            callback = next((i.callback_url for i in upload if i.callback_url), None)
            self._fan_out(
                EventType.OBJECT_PROCESSED,
                processed_payload(inv.event_id, upload, self._presign),
                inv.bucket,
                inv.key,
                [i.function for i in upload],
                inv.event_id,
                subs,
                callback,
            )

    def _presign(self, bucket: str, key: str) -> str | None:
        return self.presign(bucket, key) if self.presign else None

    def _fan_out(
        self,
        event: EventType,
        payload: Payload,
        bucket: str,
        key: str,
        functions: list[str],
        subject: str,
        subs: list[Subscription],
        callback_url: str | None,
    ) -> None:
        targets = [s for s in subs if s.wants(event, bucket, key, functions)]
        if callback_url and event in self.config.callbacks.events:
            targets.append(self.callback_subscription(callback_url))
        body = payload.model_dump_json()
        for sub in targets:
            msg = Message(
                id=message_id(sub.id, event, subject),
                subscription_id=sub.id,
                event_type=event,
                body=body,
                bucket=bucket,
                key=key,
                url=sub.url,
            )
            if self.messages.add(msg):
                log.debug("webhook %s %s -> %s", msg.id, event.value, sub.url)

    def callback_subscription(self, url: str) -> Subscription:
        sub_id = callback_id(url)
        existing = self.subs.get(sub_id)
        if existing is not None:
            return existing
        sub = Subscription(
            id=sub_id,
            url=url,
            events=list(self.config.callbacks.events),
            source="callback",
            description="per-upload callback from object metadata",
            secrets=[SecretEntry(secret=self.callback_secret())],
        )
        self.subs.put(sub)
        return sub

    def callback_secret(self) -> str:
        """The secret that signs per-upload callbacks: from the environment, else generated once."""
        name = self.config.callbacks.secret_env
        if name and os.environ.get(name):
            return os.environ[name]
        self.r.set(keys.WEBHOOK_CALLBACK_SECRET, new_secret(), nx=True)
        return str(self.r.get(keys.WEBHOOK_CALLBACK_SECRET))

    # --- scheduling ---------------------------------------------------------------------------
    def schedule_due(self, send: Callable[[str], None]) -> int:
        """Hand due messages to the delivery queue."""
        ids = self.messages.claim_due(self.policy.lease)
        for n, msg_id in enumerate(ids):
            try:
                send(msg_id)
            except Exception as exc:  # broker hiccup: try these again in a second
                log.warning("cannot queue webhook deliveries: %s", exc)
                for later in ids[n:]:
                    self.messages.schedule(later, time.time() + 1)
                return n
        return len(ids)

    def redeliver(self, msg_id: str) -> Message:
        """Send a message again (same webhook-id), whatever became of it."""
        msg = self.messages.get(msg_id)
        if msg is None:
            raise NotFound(f"no webhook message {msg_id}")
        sub = self.subs.get(msg.subscription_id)
        if sub is None:
            raise NotFound(f"subscription {msg.subscription_id} of {msg_id} no longer exists")
        if not sub.enabled:
            raise Conflict(f"subscription {sub.id} is disabled ({sub.disabled_reason}); enable it first")
        now = time.time()
        self.messages.update(msg_id, state="pending", error=None, next_attempt_at=now, redelivered_at=now)
        self.messages.schedule(msg_id, time.time())
        updated = self.messages.get(msg_id)
        assert updated is not None
        return updated

    # --- delivering ---------------------------------------------------------------------------
    def deliver(self, msg_id: str) -> Attempt | None:
        """One attempt. None when there was nothing to do (delivered already, or in flight)."""
        msg = self.messages.get(msg_id)
        if msg is None or msg.state != "pending":
            self.messages.unschedule(msg_id)
            return None
        if not self.messages.lock_send(msg_id, self.policy.lease):
            return None
        try:
            return self._attempt(msg)
        finally:
            self.messages.unlock_send(msg_id)

    def _attempt(self, msg: Message) -> Attempt | None:
        sub = self.subs.get(msg.subscription_id)
        if sub is None or not sub.enabled:
            why = "subscription deleted" if sub is None else f"subscription disabled: {sub.disabled_reason}"
            self._give_up(msg, why)
            return None
        refused = False
        try:
            dest = self.guard.resolve(sub.url)
        except DestinationRefused as exc:
            outcome, refused = Outcome(None, 0.0, error=str(exc)), True
        else:
            outcome = post(dest, msg.id, msg.body, sub.signing_secrets(), self.policy.timeout)
        now = time.time()
        attempt = Attempt(
            at=now,
            status_code=outcome.status_code,
            latency_ms=outcome.latency_ms,
            response=outcome.response,
            error=outcome.error,
        )
        attempts = msg.attempts + 1
        if outcome.ok:
            self.messages.add_attempt(msg.id, attempt)
            self.messages.update(
                msg.id, state="delivered", delivered_at=now, last_status=outcome.status_code, error=None
            )
            self.messages.unschedule(msg.id)
            self.subs.note_result(sub.id, ok=True)
            self.ledger.stats.incr("webhooks:delivered")
            return attempt
        error = self._describe(outcome)
        if outcome.status_code == 410:
            self.subs.disable(sub.id, f"the endpoint answered 410 Gone to {msg.id}")
            self.notice(f"webhook subscription {sub.id} ({sub.url}) disabled: the endpoint answered 410 Gone")
            final = True
        elif refused or not retryable(outcome):
            final = True
        else:
            delay = self.policy.backoff(attempts)
            if outcome.retry_after is not None:
                delay = max(delay, min(outcome.retry_after, float(self.policy.retry_max)))
            window_start = msg.redelivered_at or msg.created_at
            final = now + delay - window_start > self.policy.max_age
            if final:
                error += f"; gave up after {attempts} attempts over {now - window_start:.0f}s"
            else:
                attempt.next_attempt_at = now + delay
        self.messages.add_attempt(msg.id, attempt)
        if final:
            self._give_up(msg, error, outcome.status_code)
        else:
            assert attempt.next_attempt_at is not None
            self.messages.update(
                msg.id, last_status=outcome.status_code, error=error, next_attempt_at=attempt.next_attempt_at
            )
            self.messages.schedule(msg.id, attempt.next_attempt_at)
            self.ledger.stats.incr("webhooks:retried")
        self._note_failure(sub, now)
        return attempt

    def _give_up(self, msg: Message, error: str, status_code: int | None = None) -> None:
        self.messages.update(
            msg.id, state="failed", error=error, last_status=status_code, next_attempt_at=None
        )
        self.messages.unschedule(msg.id)
        self.ledger.stats.incr("webhooks:failed")
        log.warning("webhook %s to %s failed: %s", msg.id, msg.url, error)

    def _note_failure(self, sub: Subscription, now: float) -> None:
        since = self.subs.note_result(sub.id, ok=False)
        if since is not None and now - since >= self.policy.disable_after and sub.enabled:
            hours = (now - since) / 3600
            reason = f"every attempt failed for {hours:.1f} h"
            self.subs.disable(sub.id, reason)
            self.notice(f"webhook subscription {sub.id} ({sub.url}) disabled: {reason}")

    @staticmethod
    def _describe(outcome: Outcome) -> str:
        if outcome.status_code is None:
            return outcome.error or "no response"
        if 300 <= outcome.status_code < 400:
            return f"HTTP {outcome.status_code}: redirect to {outcome.location or '?'} not followed"
        return f"HTTP {outcome.status_code}"

    def notice(self, text: str) -> None:
        """Tell the operator: the log, and the notices list the API and dashboard show."""
        log.warning("%s", text)
        pipe = self.r.pipeline(transaction=True)
        pipe.lpush(keys.WEBHOOK_NOTICES, json.dumps({"at": time.time(), "text": text}))
        pipe.ltrim(keys.WEBHOOK_NOTICES, 0, NOTICES_KEPT - 1)
        pipe.execute()

    def notices(self, limit: int = 50) -> list[dict[str, object]]:
        return [json.loads(raw) for raw in self.r.lrange(keys.WEBHOOK_NOTICES, 0, limit - 1)]

    def notice_count(self) -> int:
        return int(self.r.llen(keys.WEBHOOK_NOTICES))


def notifier_for(runtime: Runtime) -> Notifier:
    settings = runtime.settings
    seconds = settings.webhook_presign_seconds

    def presign(bucket: str, key: str) -> str | None:
        return runtime.store.presigned_get(bucket, key, seconds) if seconds > 0 else None

    return Notifier.from_settings(settings, runtime.pipeline.config, runtime.ledger, runtime.redis, presign)
