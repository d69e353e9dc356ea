"""`pipeline doctor | health | settings`: the environment, a container probe, the settings."""

from __future__ import annotations

import sys
import time

import click

from pipeline.settings import get_settings, redacted


@click.command()
def doctor() -> None:
    """Check packages, ffmpeg, Redis, the object store and the pipeline file."""
    from pipeline.doctor import run_checks  # noqa: PLC0415 - keeps `pipeline --help` fast

    checks = run_checks(get_settings())
    for level, what, detail in checks:
        click.echo(f"{level:<4}  {what}: {detail}")
    sys.exit(1 if any(level == "FAIL" for level, _, _ in checks) else 0)


@click.command()
@click.option("--worker", "as_worker", is_flag=True, help="Also need a live worker heartbeat from this host.")
@click.option("--max-age", default=35.0, show_default=True, help="Seconds a worker heartbeat may be old.")
def health(as_worker: bool, max_age: float) -> None:
    """Exit 0 if Redis answers (and, with --worker, a worker on this host beats): a container probe."""
    import socket  # noqa: PLC0415

    from pipeline.ledger import Ledger, connect  # noqa: PLC0415

    settings = get_settings()
    if not settings.redis_url:
        raise click.ClickException("PIPELINE_REDIS_URL is not set")
    try:
        ledger = Ledger(connect(settings.redis_url))
        ledger.ping()
        workers = ledger.workers.live() if as_worker else []
    except Exception as exc:
        raise click.ClickException(f"Redis at {redacted(settings.redis_url)} does not answer: {exc}") from exc
    if as_worker:
        host = socket.gethostname()
        mine = [w for w in workers if w.hostname.endswith(f"@{host}") and time.time() - w.seen_at <= max_age]
        if not mine:
            raise click.ClickException(f"no worker on {host} sent a heartbeat in the last {max_age:g}s")
        click.echo(f"ok: {', '.join(w.hostname for w in mine)}")
        return
    click.echo("ok: Redis answers")


@click.command("settings")
@click.option("--markdown", is_flag=True, help="Print the configuration table for the README.")
def settings_cmd(markdown: bool) -> None:
    """Show the settings in effect (secrets hidden), or the README table of all settings."""
    from pipeline.settings_doc import markdown_table  # noqa: PLC0415

    if markdown:
        click.echo(markdown_table())
        return
    for name, value in get_settings().model_dump().items():
        shown = redacted(value) if name == "redis_url" else value  # its password is a secret too
        click.echo(f"PIPELINE_{name.upper()}={shown if shown is not None else ''}")


COMMANDS = [doctor, health, settings_cmd]
