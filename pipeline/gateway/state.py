"""What the gateway holds for its lifetime."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from pipeline.admin.auth import Sessions
from pipeline.events.sns import SignatureVerifier
from pipeline.notify.notifier import Notifier
from pipeline.queue.control import FunctionControls
from pipeline.runtime import Runtime
from pipeline.settings import Settings


@dataclass
class GatewayMetrics:
    registry: CollectorRegistry
    events: Counter
    invocations: Counter


@dataclass
class GatewayState:
    settings: Settings
    runtime: Runtime
    sns_verifier: SignatureVerifier
    metrics: GatewayMetrics
    notifier: Notifier
    sessions: Sessions
    controls: FunctionControls
