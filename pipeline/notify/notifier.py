"""The notifier: outgoing webhooks, one object per process holding the stores and the jobs.

- announcing (`announcer.py`): finished invocations -> messages for the subscriptions that want them;
- scheduling (`scheduler.py`): due messages -> the delivery queue; redelivery on request;
- delivering (`delivery.py`): one signed attempt, then delivered, retried later, or given up;
- notices (`notices.py`): what the operator is told.
Celery only carries message ids from the scheduler to the delivery threads (`queue/webhooks.py`).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import redis

from pipeline.config import PipelineConfig
from pipeline.ledger import Ledger
from pipeline.notify.announcer import Announcer, Presign
from pipeline.notify.delivery import Deliverer
from pipeline.notify.guard import Guard
from pipeline.notify.messages import Attempt, Message, MessageStore
from pipeline.notify.notices import Notices
from pipeline.notify.policy import DeliveryPolicy
from pipeline.notify.scheduler import Scheduler
from pipeline.notify.subscriptions import SubscriptionStore, sync_config
from pipeline.runtime import Runtime
from pipeline.settings import Settings


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
        self.config = config
        self.guard = guard
        self.policy = policy
        self.subs = SubscriptionStore(client, ledger.retention)
        self.messages = MessageStore(client, ledger.retention)
        self.notices = Notices(client)
        self.announcer = Announcer(ledger, client, config, self.subs, self.messages, self.notices, presign)
        self.scheduler = Scheduler(self.subs, self.messages, policy)
        self.deliverer = Deliverer(self.subs, self.messages, guard, policy, ledger.stats, self.notices)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        config: PipelineConfig,
        ledger: Ledger,
        client: redis.Redis,
        presign: Presign | None,
    ) -> Notifier:
        guard = Guard.from_settings(
            settings.webhook_allow_private, settings.webhook_allow_networks, settings.webhook_ports
        )
        return cls(ledger, client, config, guard, DeliveryPolicy.from_settings(settings), presign)

    def sync(self) -> None:
        """Make the pipeline file's subscriptions the store's `config` subscriptions."""
        sync_config(self.subs, self.config.webhooks, dict(os.environ))

    def drain(self, batch: int = 200) -> int:
        return self.announcer.drain(batch)

    def callback_secret(self, url: str) -> str:
        return self.announcer.callback_secret(url)

    def schedule_due(self, send: Callable[[str], None]) -> int:
        return self.scheduler.schedule_due(send)

    def redeliver(self, msg_id: str) -> Message:
        return self.scheduler.redeliver(msg_id)

    def deliver(self, msg_id: str) -> Attempt | None:
        return self.deliverer.deliver(msg_id)


def notifier_for(runtime: Runtime) -> Notifier:
    settings = runtime.settings
    seconds = settings.webhook_presign_seconds

    def presign(bucket: str, key: str) -> str | None:
        return runtime.store.presigned_get(bucket, key, seconds) if seconds > 0 else None

    return Notifier.from_settings(settings, runtime.pipeline.config, runtime.ledger, runtime.redis, presign)
