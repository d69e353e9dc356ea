"""The webhook API: subscriptions, their delivery log, redelivery, secret rotation."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from pipeline.errors import Conflict, NotFound
from pipeline.event_types import EventType
from pipeline.gateway.deps import StateDep
from pipeline.notify.subscriptions import ID_PATTERN, SecretEntry, Subscription, new_secret

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"])  # the API token: checked by the gate

Limit = Annotated[int, Query(ge=1, le=500)]
# Deep offsets walk an index from its start; past this, narrow the filters instead.
Offset = Annotated[int, Query(ge=0, le=10_000)]


class WebhookCreate(BaseModel):
    url: str = Field(pattern=r"^https?://", max_length=2048)
    events: list[EventType] = Field(default_factory=list, description="Empty: every event type.")
    secret: str | None = Field(default=None, pattern=r"^whsec_[A-Za-z0-9+/=]{16,}$")
    id: str | None = Field(default=None, pattern=ID_PATTERN.pattern)
    bucket: str | None = None
    prefix: str = ""
    functions: list[str] = Field(default_factory=list)
    enabled: bool = True
    description: str = Field(default="", max_length=500)


class WebhookUpdate(BaseModel):
    url: str | None = Field(default=None, pattern=r"^https?://", max_length=2048)
    events: list[EventType] | None = None
    bucket: str | None = None
    prefix: str | None = None
    functions: list[str] | None = None
    enabled: bool | None = None
    description: str | None = Field(default=None, max_length=500)


def _check_destination(state: StateDep, url: str) -> None:
    """Refuse what the guard would refuse at delivery (DestinationRefused, 422), so a typo shows up
    now, not in a log."""
    state.notifier.guard.resolve(url)


def _get(state: StateDep, sub_id: str) -> Subscription:
    sub = state.notifier.subs.get(sub_id)
    if sub is None:
        raise NotFound(f"no webhook subscription {sub_id}")
    return sub


@router.post("", status_code=status.HTTP_201_CREATED)
def create_webhook(body: WebhookCreate, state: StateDep) -> dict[str, Any]:
    _check_destination(state, body.url)
    secret = body.secret or new_secret()
    sub = Subscription(
        id=body.id or f"wh_{uuid.uuid4().hex[:12]}",
        url=body.url,
        events=body.events,
        bucket=body.bucket,
        prefix=body.prefix,
        functions=body.functions,
        enabled=body.enabled,
        description=body.description,
        secrets=[SecretEntry(secret=secret)],
    )
    if not state.notifier.subs.create(sub):
        raise Conflict(f"webhook subscription {sub.id} exists")
    return {**sub.public(), "secret": secret}


@router.get("")
def list_webhooks(state: StateDep) -> dict[str, Any]:
    subs = state.notifier.subs.all()
    return {"items": [s.public() for s in subs if s.source != "callback"]}


@router.get("/notices")
def list_notices(state: StateDep, limit: Limit = 50) -> dict[str, Any]:
    """What the operator was told (endpoints disabled, and why)."""
    return {"items": state.notifier.notices.recent(limit)}


@router.get("/messages/{msg_id}")
def get_message(msg_id: str, state: StateDep) -> dict[str, Any]:
    msg = state.notifier.messages.get(msg_id)
    if msg is None:
        raise NotFound(f"no webhook message {msg_id}")
    return msg.public(state.notifier.messages.attempts(msg_id))


@router.post("/messages/{msg_id}/redeliver", status_code=status.HTTP_202_ACCEPTED)
def redeliver(msg_id: str, state: StateDep) -> dict[str, Any]:
    return state.notifier.redeliver(msg_id).public()


@router.get("/{sub_id}")
def get_webhook(sub_id: str, state: StateDep) -> dict[str, Any]:
    return _get(state, sub_id).public()


@router.patch("/{sub_id}")
def update_webhook(sub_id: str, body: WebhookUpdate, state: StateDep) -> dict[str, Any]:
    sub = _get(state, sub_id)
    changes = body.model_dump(exclude_unset=True)
    if sub.source == "config" and set(changes) - {"enabled"}:
        raise Conflict(f"{sub_id} is defined in the pipeline file; edit it there")
    if "url" in changes:
        _check_destination(state, changes["url"])
    subs = state.notifier.subs
    if changes.pop("enabled", None) is True:
        subs.enable(sub_id)
    elif body.enabled is False:
        subs.disable(sub_id, "disabled by an operator")
    updated = subs.update(sub_id, **changes) if changes else subs.get(sub_id)
    assert updated is not None
    return updated.public()


@router.delete("/{sub_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_webhook(sub_id: str, state: StateDep) -> None:
    sub = _get(state, sub_id)
    if sub.source == "config":
        raise Conflict(f"{sub_id} is defined in the pipeline file; remove it there")
    state.notifier.subs.delete(sub_id)


@router.post("/{sub_id}/rotate")
def rotate_secret(sub_id: str, state: StateDep) -> dict[str, Any]:
    """A new secret; the previous one keeps signing for PIPELINE_WEBHOOK_ROTATION_GRACE seconds."""
    sub = _get(state, sub_id)
    if sub.source == "config":
        raise Conflict(
            f"{sub_id} is defined in the pipeline file; rotate with secret_env and previous_secret_env"
        )
    rotated = state.notifier.subs.rotate(sub_id, state.settings.webhook_rotation_grace)
    assert rotated is not None
    updated, secret = rotated
    return {**updated.public(), "secret": secret}


@router.get("/{sub_id}/deliveries")
def list_deliveries(sub_id: str, state: StateDep, limit: Limit = 50, offset: Offset = 0) -> dict[str, Any]:
    _get(state, sub_id)
    messages = state.notifier.messages
    items = [m.public(messages.attempts(m.id)) for m in messages.list(sub_id, limit, offset)]
    return {"items": items, "limit": limit, "offset": offset}
