"""`pipeline usage`: requests, GB-seconds, CPU seconds, bytes and cost per function, rule or bucket,
read from the hourly usage counters (kept 400 days, longer than the ledger's records)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import cast

import click

from pipeline.cli.runtime import open_runtime
from pipeline.errors import ConfigError
from pipeline.usage import DIMENSIONS, Dimension, UsageReport, UsageRow, load_prices, period


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def _utc(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(at))


def print_report(report: UsageReport) -> None:
    start, end = int(report.since // 3600) * 3600, (int(report.until // 3600) + 1) * 3600
    click.echo(f"Usage by {report.by}, {_utc(start)} -> {_utc(end)} UTC (whole hours)")
    cost_head = f"  {'cost (' + report.currency + ')':>12}" if report.currency else ""
    click.echo(
        f"{report.by:<24} {'requests':>9} {'GB-s':>11} {'CPU s':>10} {'read':>10} {'written':>10}{cost_head}"
    )

    def line(row: UsageRow) -> str:
        cost = f"  {row.cost:>12.6f}" if row.cost is not None else ""
        return (
            f"{row.name[:24]:<24} {row.requests:>9} {row.gb_seconds:>11.3f} {row.cpu_seconds:>10.2f} "
            f"{_bytes(row.bytes_read):>10} {_bytes(row.bytes_written):>10}{cost}"
        )

    for row in report.rows:
        click.echo(line(row))
    if not report.rows:
        click.echo("(nothing ran in this period)")
    click.echo(line(report.total))


@click.command()
@click.option(
    "--since", default="24h", show_default=True, help="A span (24h, 7d, 30m) or a date (2026-11-01, UTC)."
)
@click.option("--until", "until_", default=None, help="End of the period (a date); default now.")
@click.option("--by", type=click.Choice(DIMENSIONS), default="function", show_default=True)
@click.option(
    "--prices",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="YAML or JSON with per_million_requests, per_gb_second, per_gb_written (and currency).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def usage(since: str, until_: str | None, by: str, prices: Path | None, as_json: bool) -> None:
    """What the functions used, like a FaaS bill: one row per function, rule or bucket.

    Every attempt a worker ran counts as a request (a retried attempt too, as Lambda bills it).
    GB-seconds are each function's memory_mb hint (128 MB without one) x its duration."""
    try:
        start, end = period(since, until_, time.time())
        unit_prices = load_prices(prices) if prices else None
    except (ValueError, ConfigError) as exc:
        raise click.UsageError(str(exc)) from exc
    with open_runtime() as runtime:
        report = runtime.ledger.usage.report(start, end, cast(Dimension, by), unit_prices)
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        print_report(report)


COMMANDS = [usage]
