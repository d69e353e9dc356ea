"""Delivering: one signed attempt of one message, and what comes next: delivered, retried later
(5xx, 429, time-outs, connection errors), or given up; a 410 disables the subscription, and so
does an endpoint failing for too long."""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

from pipeline.errors import DestinationRefused
from pipeline.ledger.workers import Stats
from pipeline.notify.guard import Guard
from pipeline.notify.messages import Attempt, Message, MessageStore
from pipeline.notify.notices import Notices
from pipeline.notify.policy import DeliveryPolicy, retryable
from pipeline.notify.sender import Outcome, post
from pipeline.notify.subscriptions import Subscription, SubscriptionStore
from pipeline.tracing import span

log = logging.getLogger(__name__)


class Deliverer:
    def __init__(
        self,
        subs: SubscriptionStore,
        messages: MessageStore,
        guard: Guard,
        policy: DeliveryPolicy,
        stats: Stats,
        notices: Notices,
    ) -> None:
        self.subs, self.messages, self.guard, self.policy = subs, messages, guard, policy
        self.stats, self.notices = stats, notices

    def deliver(self, msg_id: str) -> Attempt | None:
        """One attempt. None when there was nothing to do (delivered already, or in flight)."""
        msg = self.messages.get(msg_id)
        if msg is None or msg.state != "pending":
            self.messages.unschedule(msg_id)
            return None
        if not self.messages.lock_send(msg_id, self.policy.in_flight_seconds):
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
            attributes = {
                "http.request.method": "POST",
                "server.address": urlsplit(sub.url).hostname,
                "pipeline.webhook": msg.id,
            }
            with span(
                f"webhook {msg.event_type.value}", "client", parent=msg.trace, attributes=attributes
            ) as sent:
                outcome = post(dest, msg.id, msg.body, sub.signing_secrets(), self.policy.timeout)
                sent.set("http.response.status_code", outcome.status_code)
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
            self.stats.incr("webhooks:delivered")
            return attempt
        error = self._describe(outcome)
        if outcome.status_code == 410:
            self.subs.disable(sub.id, f"the endpoint answered 410 Gone to {msg.id}")
            self.notices.add(
                f"webhook subscription {sub.id} ({sub.url}) disabled: the endpoint answered 410 Gone"
            )
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
            self.stats.incr("webhooks:retried")
        self._note_failure(sub, now)
        return attempt

    def _give_up(self, msg: Message, error: str, status_code: int | None = None) -> None:
        self.messages.update(
            msg.id, state="failed", error=error, last_status=status_code, next_attempt_at=None
        )
        self.messages.unschedule(msg.id)
        self.stats.incr("webhooks:failed")
        log.warning("webhook %s to %s failed: %s", msg.id, msg.url, error)

    def _note_failure(self, sub: Subscription, now: float) -> None:
        since = self.subs.note_result(sub.id, ok=False)
        if since is not None and now - since >= self.policy.disable_after and sub.enabled:
            hours = (now - since) / 3600
            reason = f"every attempt failed for {hours:.1f} h"
            self.subs.disable(sub.id, reason)
            self.notices.add(f"webhook subscription {sub.id} ({sub.url}) disabled: {reason}")

    @staticmethod
    def _describe(outcome: Outcome) -> str:
        if outcome.status_code is None:
            return outcome.error or "no response"
        if 300 <= outcome.status_code < 400:
            return f"HTTP {outcome.status_code}: redirect to {outcome.location or '?'} not followed"
        return f"HTTP {outcome.status_code}"
