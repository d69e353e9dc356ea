"""Scheduling: due messages handed to the delivery queue, and a message sent again on request."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pipeline.errors import Conflict, NotFound
from pipeline.notify.messages import Message, MessageStore
from pipeline.notify.policy import DeliveryPolicy
from pipeline.notify.subscriptions import SubscriptionStore

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, subs: SubscriptionStore, messages: MessageStore, policy: DeliveryPolicy) -> None:
        self.subs, self.messages, self.policy = subs, messages, policy

    def schedule_due(self, send: Callable[[str], None]) -> int:
        """Hand due messages to the delivery queue."""
        ids = self.messages.claim_due(self.policy.in_flight_seconds)
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
