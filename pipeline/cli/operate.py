"""`pipeline invocations | invocation | retry | reconcile`: what an operator reads and repairs in
the ledger."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import click

from pipeline.cli.runtime import open_runtime
from pipeline.errors import PipelineError
from pipeline.invocation import Status
from pipeline.ledger.backfill import Progress
from pipeline.runtime import Runtime


@click.command()
@click.option("--status", type=click.Choice([s.value for s in Status]), default=None)
@click.option("--function", default=None)
@click.option("--bucket", default=None)
@click.option("--key", default=None)
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def invocations(
    status: str | None, function: str | None, bucket: str | None, key: str | None, limit: int, as_json: bool
) -> None:
    """List invocations from the ledger, newest first."""
    if key is not None and bucket is None:
        raise click.UsageError("--key needs --bucket (an object is a bucket and a key)")
    with open_runtime() as runtime:
        found = runtime.ledger.invocations.query(
            status=status, function=function, bucket=bucket, key=key, limit=limit
        )
    if as_json:
        click.echo(json.dumps([inv.public() for inv in found], indent=2))
        return
    for inv in found:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(inv.created_at))
        took = f"{inv.duration_ms:.0f}ms" if inv.duration_ms is not None else "-"
        click.echo(
            f"{inv.id}  {created}  {inv.function:<10} {inv.status:<9} {took:>7}  "
            f"{inv.bucket}/{inv.key}" + (f"  error: {inv.error}" if inv.error else "")
        )


def _ms(value: float | None) -> str:
    return "-" if value is None else (f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms")


@click.command()
@click.argument("invocation_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def invocation(invocation_id: str, as_json: bool) -> None:
    """One invocation whole: its status, outputs, attempts and what its latest attempt used."""
    with open_runtime() as runtime:
        inv = runtime.ledger.invocations.get(invocation_id)
        attempts = runtime.ledger.invocations.attempts(invocation_id)
    if inv is None:
        raise click.ClickException(f"no invocation {invocation_id}")
    if as_json:
        click.echo(json.dumps({**inv.public(), "attempts": [a.model_dump() for a in attempts]}, indent=2))
        return
    click.echo(f"{inv.id}  {inv.function}  {inv.status}  {inv.bucket}/{inv.key}  (rule {inv.rule})")
    if inv.error:
        click.echo(f"  error    {inv.error}")
    if inv.duration_ms is not None:
        cold = "  cold start" if inv.cold_start else ""
        click.echo(
            f"  time     waited {_ms(inv.queue_wait_ms)}, ran {_ms(inv.duration_ms)}, "
            f"CPU {_ms(inv.cpu_ms)}{cold}"
        )
    if inv.gb_seconds is not None:
        click.echo(
            f"  usage    {inv.gb_seconds:.4f} GB-s at {inv.memory_mb} MB, "
            f"peak {inv.peak_memory_mb or 0:.0f} MB, "
            f"read {inv.bytes_read or 0} B, wrote {inv.bytes_written or 0} B"
        )
    for out in inv.outputs:
        click.echo(f"  output   {out.bucket}/{out.key}  {out.content_type}  {out.size} B")
    for a in attempts:
        click.echo(
            f"  attempt  {a.n}  {a.worker}  {_ms(a.duration_ms)}  {a.outcome}"
            + (f"  {a.error}" if a.error else "")
        )


@click.command()
@click.argument("invocation_id", required=False)
@click.option("--all-dead", is_flag=True, help="Re-queue every dead invocation.")
def retry(invocation_id: str | None, all_dead: bool) -> None:
    """Run a failed, dead, rejected or skipped invocation again (or every dead one)."""
    from pipeline.retry import retry_all_dead, retry_invocation  # noqa: PLC0415 - keeps `--help` fast

    if bool(invocation_id) == all_dead:
        raise click.UsageError("give an invocation id or --all-dead")
    with open_runtime() as runtime:
        try:
            if all_dead:
                done = retry_all_dead(runtime)
                click.echo(f"{len(done)} dead invocations queued again")
                return
            assert invocation_id is not None
            inv = retry_invocation(runtime, invocation_id)
        except PipelineError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"{inv.id} queued again on {inv.queue}")


@click.command()
@click.option("--dry-run", is_flag=True, help="Print what would run; change nothing.")
@click.option("--rate", default=200.0, show_default=True, help="Objects handed to the queue per second.")
@click.option("--window", default=200, show_default=True, help="Messages a backfill lane may hold at once.")
@click.option("--no-resume", is_flag=True, help="Start from the first key even if a pass was interrupted.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def reconcile(dry_run: bool, rate: float, window: int, no_resume: bool, quiet: bool) -> None:
    """Backfill: enqueue every watched object that has no invocation (lost notifications, backlogs,
    rules added later), in the backfill lanes behind fresh uploads; resumes where it stopped."""
    from pipeline.reconcile import reconcile as reconcile_pass  # noqa: PLC0415

    show = None if quiet or dry_run else _progress_line
    with open_runtime() as runtime:
        summary = reconcile_pass(
            runtime, dry_run=dry_run, rate=rate, resume=not no_resume, window=window, on_progress=show
        )
        if show is not None:
            _follow(runtime, show)
    for bucket, key, function in summary.would_run:
        click.echo(f"would run {function} on {bucket}/{key}")
    verb = "would enqueue" if dry_run else "enqueued"
    click.echo(
        f"scanned {summary.scanned} objects; {summary.missing} invocations missing; {verb} "
        f"{summary.missing if dry_run else summary.enqueued}; queued too long, sent again: {summary.resent}"
    )


def _follow(runtime: Runtime, show: Callable[[Progress], None]) -> None:
    """After the listing: the bar goes on until the lanes have drained (Ctrl-C leaves them to
    the workers; nothing is lost)."""
    try:
        while (progress := runtime.ledger.backfill.read()) is not None:
            show(progress)
            if progress.complete or runtime.ledger.workers.live() == []:
                break
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    click.echo(err=True)


def _progress_line(p: Progress) -> None:
    """`[#########-----------]  43%  listed 43,210 · enqueued 86,420 · done 37,000 · 310/s · ETA 2m 20s`"""
    share = p.done / p.enqueued if p.enqueued else 0.0
    bar = "#" * int(share * 24) + "-" * (24 - int(share * 24))
    eta = p.eta_s()
    left = "-" if eta is None else f"{int(eta // 60)}m {int(eta % 60):02d}s"
    listing = "" if p.finished_at else " (listing)"
    line = (
        f"[{bar}] {share:4.0%}  listed {p.listed:,}{listing} · enqueued {p.enqueued:,} · done {p.done:,}"
        f" · {p.rate:,.0f}/s · ETA {left}"
    )
    click.echo("\r" + line, nl=False, err=True)


COMMANDS = [invocations, invocation, retry, reconcile]
