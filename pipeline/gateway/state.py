"""What the gateway holds for its lifetime."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis.asyncio
from prometheus_client import CollectorRegistry, Counter

from pipeline.admin.auth import Sessions
from pipeline.events.sns import SignatureVerifier
from pipeline.gateway.group_commit import GroupCommit
from pipeline.ledger import endpoints
from pipeline.notify.notifier import Notifier
from pipeline.queue.control import FunctionControls
from pipeline.runtime import Runtime
from pipeline.settings import Settings


@dataclass
class GatewayMetrics:
    registry: CollectorRegistry
    events: Counter
    invocations: Counter
    runs: Counter


@dataclass
class GatewayState:
    settings: Settings
    runtime: Runtime
    sns_verifier: SignatureVerifier
    metrics: GatewayMetrics
    notifier: Notifier
    sessions: Sessions
    controls: FunctionControls
    group_commit: GroupCommit
    _async_redis: redis.asyncio.Redis | None = field(default=None, init=False)

    def async_redis(self) -> redis.asyncio.Redis:
        """A client for the event loop (subscriptions), made on first use, inside the loop."""
        if self._async_redis is None:
            self._async_redis = endpoints.connect_async(self.runtime.redis_url)
        return self._async_redis
