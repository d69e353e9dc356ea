"""`pipeline webhooks ...`: manage subscriptions and deliveries from the shell (same store as the API)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import click

from pipeline.cli.runtime import open_runtime
from pipeline.errors import DestinationRefused, PipelineError
from pipeline.event_types import EventType
from pipeline.notify.notifier import Notifier, notifier_for
from pipeline.notify.payload_examples import docs_section, payload_schemas
from pipeline.notify.subscriptions import SecretEntry, Subscription, new_secret
from pipeline.settings import get_settings


@contextmanager
def _notifier() -> Iterator[Notifier]:
    with open_runtime() as runtime:
        notifier = notifier_for(runtime)
        notifier.sync()
        yield notifier


def _when(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else "-"


@click.group("webhooks")
def webhooks() -> None:
    """Outgoing webhook subscriptions and their deliveries."""


@webhooks.command("list")
def list_cmd() -> None:
    """Subscriptions, with their state."""
    with _notifier() as notifier:
        subs = [s for s in notifier.subs.all() if s.source != "callback"]
    for sub in subs:
        state = "enabled" if sub.enabled else f"DISABLED ({sub.disabled_reason})"
        events = ",".join(sub.events) or "all events"
        click.echo(f"{sub.id:<20} {sub.source:<7} {state:<10} {events:<40} {sub.url}")
    if not subs:
        click.echo("no webhook subscriptions (add one with `pipeline webhooks add URL`)")


@webhooks.command("add")
@click.argument("url")
@click.option("--event", "events", multiple=True, type=click.Choice([e.value for e in EventType]))
@click.option("--bucket", default=None)
@click.option("--prefix", default="")
@click.option("--function", "functions", multiple=True)
@click.option("--secret", default=None, help="whsec_... (default: generated)")
@click.option("--id", "sub_id", default=None)
def add_cmd(
    url: str,
    events: tuple[str, ...],
    bucket: str | None,
    prefix: str,
    functions: tuple[str, ...],
    secret: str | None,
    sub_id: str | None,
) -> None:
    """Subscribe URL; prints the signing secret (shown only now)."""
    with _notifier() as notifier:
        try:
            notifier.guard.resolve(url)
        except DestinationRefused as exc:
            raise click.ClickException(str(exc)) from exc
        secret = secret or new_secret()
        sub = Subscription(
            id=sub_id or f"wh_{uuid.uuid4().hex[:12]}",
            url=url,
            events=[EventType(e) for e in events],
            bucket=bucket,
            prefix=prefix,
            functions=list(functions),
            secrets=[SecretEntry(secret=secret)],
        )
        if not notifier.subs.create(sub):
            raise click.ClickException(f"webhook subscription {sub.id} exists")
    click.echo(f"{sub.id} subscribed {url}\nsecret: {secret}")


@webhooks.command("remove")
@click.argument("sub_id")
def remove_cmd(sub_id: str) -> None:
    with _notifier() as notifier:
        sub = notifier.subs.get(sub_id)
        if sub is None:
            raise click.ClickException(f"no webhook subscription {sub_id}")
        if sub.source == "config":
            raise click.ClickException(f"{sub_id} is defined in the pipeline file; remove it there")
        notifier.subs.delete(sub_id)
    click.echo(f"{sub_id} removed")


@webhooks.command("enable")
@click.argument("sub_id")
def enable_cmd(sub_id: str) -> None:
    """Enable a subscription again (after a 410, a long failure, or an operator's disable)."""
    with _notifier() as notifier:
        if notifier.subs.enable(sub_id) is None:
            raise click.ClickException(f"no webhook subscription {sub_id}")
    click.echo(f"{sub_id} enabled")


@webhooks.command("disable")
@click.argument("sub_id")
def disable_cmd(sub_id: str) -> None:
    with _notifier() as notifier:
        if notifier.subs.get(sub_id) is None:
            raise click.ClickException(f"no webhook subscription {sub_id}")
        notifier.subs.disable(sub_id, "disabled by an operator")
    click.echo(f"{sub_id} disabled")


@webhooks.command("secret")
@click.argument("sub_id", required=False)
@click.option(
    "--rotate", is_flag=True, help="Make a new secret; the old one keeps signing for a grace period."
)
@click.option(
    "--callback",
    "callback_url",
    default=None,
    metavar="URL",
    help="Print the secret that signs callbacks to URL.",
)
def secret_cmd(sub_id: str | None, rotate: bool, callback_url: str | None) -> None:
    """Print a subscription's current signing secret (or rotate it), or a callback URL's secret."""
    with _notifier() as notifier:
        if callback_url:
            click.echo(notifier.callback_secret(callback_url))
            return
        sub = notifier.subs.get(sub_id) if sub_id else None
        if sub is None:
            raise click.ClickException(f"no webhook subscription {sub_id}")
        if rotate:
            if sub.source != "api":
                raise click.ClickException(f"{sub_id} is defined in the pipeline file; rotate it there")
            rotated = notifier.subs.rotate(sub.id, get_settings().webhook_rotation_grace)
            assert rotated is not None
            sub = rotated[0]
        click.echo(sub.secrets[0].secret)


@webhooks.command("deliveries")
@click.argument("sub_id", required=False)
@click.option("--limit", default=20, show_default=True)
def deliveries_cmd(sub_id: str | None, limit: int) -> None:
    """Recent messages (of one subscription, or all) with their attempts."""
    with _notifier() as notifier:
        msgs = notifier.messages.list(sub_id, limit)
        for msg in msgs:
            click.echo(
                f"{msg.id}  {_when(msg.created_at)}  {msg.event_type.value:<22} {msg.state:<9} "
                f"attempts={msg.attempts} last={msg.last_status or '-'}  {msg.bucket}/{msg.key} -> {msg.url}"
            )
            for att in notifier.messages.attempts(msg.id):
                outcome = att.status_code or att.error
                click.echo(f"    {_when(att.at)}  {outcome}  {att.latency_ms:.0f} ms")
    if not msgs:
        click.echo("no webhook messages yet")


@webhooks.command("redeliver")
@click.argument("msg_id")
def redeliver_cmd(msg_id: str) -> None:
    """Send a message again, with the same webhook-id."""
    with _notifier() as notifier:
        try:
            msg = notifier.redeliver(msg_id)
        except PipelineError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"{msg.id} scheduled for redelivery to {msg.url}")


@webhooks.command("schema")
@click.option("--markdown", is_flag=True, help="Print the generated section of docs/webhooks.md.")
def schema_cmd(markdown: bool) -> None:
    """Print the JSON schema of every event type's payload."""
    click.echo(docs_section() if markdown else json.dumps(payload_schemas(), indent=2))


COMMANDS = [webhooks]
