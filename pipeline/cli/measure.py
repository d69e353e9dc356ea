"""`pipeline bench functions | system | ledger | backfill` and `pipeline soak`: figures, with baselines."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from pipeline.measure import SYSTEM_PARTS

F = TypeVar("F", bound=Callable[..., Any])


def write_option(example: str) -> Callable[[F], F]:
    """`--write FILE`: also put the measured figures into a Markdown file (between markers)."""
    return click.option(
        "--write",
        "doc",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=f"Also write the figures into this Markdown file (e.g. {example}).",
    )


@click.group()
def bench() -> None:
    """Benchmarks: ratios against a baseline measured side by side in the same run."""


@bench.command("functions")
@click.option("--repeat", default=5, show_default=True, help="Interleaved runs per contender.")
@write_option("docs/benchmarks.md")
def bench_functions(repeat: int, doc: Path | None) -> None:
    """thumbnail vs Pillow and pyvips; one-pass HLS vs separate encodes; transcode vs bare ffmpeg;
    known-image matching with PDQ vs pHash and dHash."""
    from pipeline.measure import function_bench, hash_bench  # noqa: PLC0415 - keeps `--help` fast

    command = f"pipeline bench functions --repeat {repeat}"
    section = function_bench.render(function_bench.run_function_benchmarks(repeat), command)
    click.echo(section)
    hashes = hash_bench.render(hash_bench.bench_hashes(), command)
    click.echo(hashes)
    if doc:
        function_bench.SECTION.write(doc, section)
        hash_bench.SECTION.write(doc, hashes)
        click.echo(f"written to {doc}")


@bench.command("system")
@click.option("--quick", is_flag=True, help="A quarter of the samples: a smoke run, not figures to keep.")
@click.option(
    "--only",
    type=click.Choice(SYSTEM_PARTS),
    default=None,
    help="Run one part (--write puts its figures in a table of their own).",
)
@write_option("docs/benchmarks.md")
def bench_system(quick: bool, only: str | None, doc: Path | None) -> None:
    """Upload -> thumbnail latency (local store and S3 peer), overhead beside bare Celery, 1 vs 2
    workers, cold start, backfill, gateway ingest."""
    from pipeline.measure import system  # noqa: PLC0415

    command = "pipeline bench system" + (" --quick" if quick else "") + (f" --only {only}" if only else "")
    doc_section = system.part_section(only) if only else system.SECTION
    section = system.render(system.run_system_benchmarks(quick=quick, only=only), command, doc_section)
    click.echo(section)
    if doc:
        doc_section.write(doc, section)
        click.echo(f"written to {doc}")


@bench.command("ledger")
@click.option("--invocations", default=1_000_000, show_default=True, help="The large ledger.")
@click.option("--baseline", default=10_000, show_default=True, help="The small ledger it is compared with.")
@click.option("--rounds", default=20, show_default=True, help="Timed requests per query and ledger.")
@click.option(
    "--redis-server",
    "server",
    type=click.Path(exists=True, dir_okay=False),
    help="The redis-server to run both ledgers on. [default: redis-server on PATH, else the embedded one]",
)
@write_option("docs/benchmarks.md")
def bench_ledger(invocations: int, baseline: int, rounds: int, server: str | None, doc: Path | None) -> None:
    """The ledger at scale: API, dashboard and CLI queries on a large synthetic ledger beside a
    small one, Redis memory per invocation, and retention watched by SLOWLOG."""
    from pipeline.measure import ledger_bench  # noqa: PLC0415

    binary = ledger_bench.server_in_use(server)
    figures, described = ledger_bench.bench_ledger(invocations, baseline, rounds, binary)
    command = f"pipeline bench ledger --invocations {invocations} --baseline {baseline} --rounds {rounds}"
    command += f" --redis-server {server}" if server else ""
    section = ledger_bench.render(figures, command, described)
    click.echo(section)
    if doc:
        ledger_bench.SECTION.write(doc, section)
        click.echo(f"written to {doc}")


@bench.command("backfill")
@click.option("--objects", default=100_000, show_default=True, help="Objects in the bucket to backfill.")
@write_option("docs/benchmarks.md")
def bench_backfill(objects: int, doc: Path | None) -> None:
    """A backfill of a whole bucket: `pipeline reconcile` over OBJECTS objects nobody was notified
    about, interrupted and resumed, while fresh uploads arrive. Takes minutes (about 15 at 100,000)."""
    from pipeline.measure import backfill_scale  # noqa: PLC0415

    figures = backfill_scale.bench_backfill_at_scale(objects)
    section = backfill_scale.render(figures, f"pipeline bench backfill --objects {objects}")
    click.echo(section)
    if doc:
        backfill_scale.SECTION.write(doc, section)
        click.echo(f"written to {doc}")


@click.command()
@click.option("--uploads", default=1000, show_default=True)
@click.option("--kills", default=10, show_default=True, help="Random SIGKILLs of worker processes.")
@click.option(
    "--pipeline",
    "pipeline_file",
    type=click.Choice(["built-in", "one-rule"]),
    default="built-in",
    show_default=True,
    help="The built-in pipeline file (screen, thumbnail, filter per image) or one thumbnail rule.",
)
@write_option("docs/reliability.md")
def soak(uploads: int, kills: int, pipeline_file: str, doc: Path | None) -> None:
    """Many uploads with worker kills, a Redis restart, dropped and duplicated notifications."""
    from pipeline.measure import soak as soak_run  # noqa: PLC0415

    name: Any = pipeline_file  # one of click's choices
    result = soak_run.run_soak(uploads=uploads, kills=kills, pipeline_file=name)
    command = f"pipeline soak --uploads {uploads} --kills {kills} --pipeline {pipeline_file}"
    section = soak_run.render(result, command)
    click.echo(section)
    if doc:
        soak_run.SECTIONS[result.pipeline_file].write(doc, section)
    ok = result.lost == 0 and result.duplicate_outputs == 0 and result.partial_outputs == 0
    sys.exit(0 if ok else 1)


COMMANDS = [bench, soak]
