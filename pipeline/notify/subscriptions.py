"""Webhook subscriptions: who hears about what, with which secrets.

Three sources share one store in Redis (a hash per subscription, one JSON value per field so concurrent
partial updates, such as a 410 disabling an endpoint while an operator edits it, never clobber
each other):
- `api`: created through `/api/webhooks` or `pipeline webhooks add`;
- `config`: the `webhooks:` list of pipeline.yaml, synced into the store at start;
- `callback`: a per-upload callback URL taken from object metadata, created on first use.

Secrets follow Standard Webhooks: `whsec_` + base64 of random bytes. Rotation keeps the previous
secret valid for a grace period, and every message is signed with each valid secret.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from typing import Any, Literal

import redis
from pydantic import BaseModel, Field

from pipeline.config import WebhookConfig
from pipeline.errors import ConfigError
from pipeline.event_types import EventType
from pipeline.ledger import keys
from pipeline.ledger.json_hash import JsonHash, encode

SubscriptionSource = Literal["api", "config", "callback"]
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def secret_hint(secret: str) -> str:
    """Enough to tell secrets apart in a list, never enough to use one."""
    return f"whsec_...{secret[-4:]}"


class SecretEntry(BaseModel):
    secret: str
    expires_at: float | None = None


class Subscription(BaseModel):
    id: str
    url: str
    events: list[EventType] = Field(default_factory=list, description="Empty: every event type.")
    bucket: str | None = None
    prefix: str = ""
    functions: list[str] = Field(default_factory=list, description="Empty: every function.")
    enabled: bool = True
    description: str = ""
    source: SubscriptionSource = "api"
    secrets: list[SecretEntry] = Field(default_factory=list)
    created_at: float = Field(default_factory=time.time)
    disabled_reason: str | None = None
    disabled_at: float | None = None
    failing_since: float | None = None

    def wants(self, event: EventType, bucket: str, key: str, functions: list[str]) -> bool:
        """`functions`: the function(s) the event is about (all of an upload's for object.processed)."""
        if self.events and event not in self.events:
            return False
        if self.bucket is not None and bucket != self.bucket:
            return False
        if not key.startswith(self.prefix):
            return False
        return not self.functions or any(f in self.functions for f in functions)

    def signing_secrets(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        return [s.secret for s in self.secrets if s.expires_at is None or s.expires_at > now]

    def public(self) -> dict[str, Any]:
        """The API view: secrets are shown once, when created or rotated, and only hinted after."""
        data = self.model_dump(mode="json", exclude={"secrets"})
        data["secrets"] = [{"hint": secret_hint(s.secret), "expires_at": s.expires_at} for s in self.secrets]
        return data


_HASH = JsonHash(Subscription)


def callback_id(url: str) -> str:
    return "callback-" + hashlib.sha256(url.encode()).hexdigest()[:16]


class SubscriptionStore:
    def __init__(self, client: redis.Redis, retention_seconds: float = 7 * 86400) -> None:
        self.r = client
        self.retention = int(retention_seconds)

    def put(self, sub: Subscription, ttl: float | None = None) -> None:
        """`ttl`: seconds the subscription lives unless put again (callbacks age out)."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(keys.webhook_subscription(sub.id), mapping=_HASH.dump(sub))
        pipe.sadd(keys.WEBHOOK_SUBSCRIPTIONS, sub.id)
        if ttl is not None:
            pipe.expire(keys.webhook_subscription(sub.id), int(ttl))
        pipe.execute()

    def create(self, sub: Subscription) -> bool:
        """Store a new subscription; False if the id is taken."""
        if not self.r.sadd(keys.WEBHOOK_SUBSCRIPTIONS, sub.id):
            return False
        self.put(sub)
        return True

    def update(self, sub_id: str, **fields: Any) -> Subscription | None:
        if not self.r.exists(keys.webhook_subscription(sub_id)):
            return None
        values = Subscription.model_validate({**self._raw(sub_id), **fields}).model_dump(mode="json")
        self.r.hset(keys.webhook_subscription(sub_id), mapping=encode({k: values[k] for k in fields}))
        return self.get(sub_id)

    def _raw(self, sub_id: str) -> dict[str, Any]:
        return _HASH.decode(self.r.hgetall(keys.webhook_subscription(sub_id)))

    def get(self, sub_id: str) -> Subscription | None:
        raw = self._raw(sub_id)
        return Subscription.model_validate(raw) if raw else None

    def all(self) -> list[Subscription]:
        ids = sorted(str(i) for i in self.r.smembers(keys.WEBHOOK_SUBSCRIPTIONS))
        subs = [self.get(i) for i in ids]
        live = [s for s in subs if s is not None]
        gone = [i for i, s in zip(ids, subs, strict=True) if s is None]
        if gone:
            self.r.srem(keys.WEBHOOK_SUBSCRIPTIONS, *gone)
        return live

    def delete(self, sub_id: str) -> bool:
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(keys.webhook_subscription(sub_id))
        pipe.srem(keys.WEBHOOK_SUBSCRIPTIONS, sub_id)
        return bool(pipe.execute()[0])

    def rotate(self, sub_id: str, grace_seconds: float) -> tuple[Subscription, str] | None:
        """A new secret signs from now on; the current one keeps signing for `grace_seconds`, so
        receivers can switch without dropping a message. Older secrets are dropped."""
        sub = self.get(sub_id)
        if sub is None:
            return None
        secret = new_secret()
        keep = [
            SecretEntry(secret=s.secret, expires_at=time.time() + grace_seconds)
            for s in sub.secrets[:1]
            if grace_seconds > 0
        ]
        updated = self.update(sub_id, secrets=[SecretEntry(secret=secret), *keep])
        assert updated is not None
        return updated, secret

    def disable(self, sub_id: str, reason: str) -> None:
        self.update(sub_id, enabled=False, disabled_reason=reason, disabled_at=time.time())

    def enable(self, sub_id: str) -> Subscription | None:
        return self.update(sub_id, enabled=True, disabled_reason=None, disabled_at=None, failing_since=None)

    def note_result(self, sub_id: str, ok: bool) -> float | None:
        """Track how long an endpoint has been failing; returns since when (None if healthy)."""
        name = keys.webhook_subscription(sub_id)
        if ok:
            self.r.hset(name, "failing_since", "null")
            return None
        # HSETNX cannot compare to "null", so read, then set only if still unset.
        current = json.loads(self.r.hget(name, "failing_since") or "null")
        if current is None:
            current = time.time()
            self.r.hset(name, "failing_since", json.dumps(current))
        return float(current)


def sync_config(store: SubscriptionStore, webhooks: list[WebhookConfig], environ: dict[str, str]) -> None:
    """Make the store's `config` subscriptions match pipeline.yaml. Runtime state survives a sync:
    an endpoint disabled by a 410 stays disabled until an operator enables it, and a generated
    secret stays the same across restarts."""
    wanted = {w.id for w in webhooks}
    for sub in store.all():
        if sub.source == "config" and sub.id not in wanted:
            store.delete(sub.id)
    for w in webhooks:
        existing = store.get(w.id)
        if existing is not None and existing.source != "config":
            raise ConfigError(f"webhooks: id {w.id!r} is already used by a subscription made through the API")
        secrets = [SecretEntry(secret=_env_secret(environ, name, w.id)) for name in w.secret_envs()]
        if not secrets:
            secrets = (
                existing.secrets if existing and existing.secrets else [SecretEntry(secret=new_secret())]
            )
        disabled_reason = existing.disabled_reason if existing and not existing.enabled else None
        if not w.enabled:
            disabled_reason = "disabled in the pipeline file"
        store.put(
            Subscription(
                id=w.id,
                url=w.url,
                events=list(w.events),
                bucket=w.bucket,
                prefix=w.prefix,
                functions=list(w.functions),
                enabled=disabled_reason is None,
                description=w.description,
                source="config",
                secrets=secrets,
                created_at=existing.created_at if existing else time.time(),
                disabled_reason=disabled_reason,
                disabled_at=existing.disabled_at if existing and disabled_reason else None,
                failing_since=existing.failing_since if existing else None,
            )
        )


def _env_secret(environ: dict[str, str], name: str, sub_id: str) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise ConfigError(f"webhooks: {sub_id}: environment variable {name} (its secret) is not set")
    return value
