"""`pipeline flows | runs`: the flows of the pipeline file, and their runs in the ledger."""

from __future__ import annotations

import getpass
import json
import os
import socket
import time

import click

from pipeline.cli.runtime import data_file_warnings, load_or_fail, open_runtime
from pipeline.errors import PipelineError
from pipeline.flows.graph import draw
from pipeline.flows.model import Decision, Run, RunStatus, StepStatus
from pipeline.settings import get_settings


@click.command()
def flows() -> None:
    """Each flow of the pipeline file as a small graph, with the rules that start it."""
    pipeline = load_or_fail(get_settings())
    if not pipeline.config.flows:
        click.echo(f"{pipeline.source} has no flows (rules with `flow:` start them; see docs/flows.md)")
        return
    for name, flow in pipeline.config.flows.items():
        rules = [r.name for r in pipeline.config.rules if r.flow == name]
        started = f"started by {', '.join(rules)}" if rules else "no rule starts it"
        click.echo(f"{name}  ({started})" + (f": {flow.description}" if flow.description else ""))
        for line in draw(flow):
            click.echo(f"  {line}")
        config = pipeline.config
        for function in sorted({step.function for step in flow.steps.values()}):
            policy = config.retry_policy(function).describe(config.max_attempts_for(function))
            click.echo(f"  retry {function}: {policy}")
        click.echo("")
    for warning in data_file_warnings(get_settings(), pipeline):
        click.echo(f"warning: {warning}", err=True)


def _when(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else "-"


def _took(run: Run) -> str:
    return f"{(run.finished_at - run.started_at):.1f}s" if run.finished_at else "-"


_MARK = {
    StepStatus.HELD: "||",
    StepStatus.SUCCEEDED: "ok",
    StepStatus.RUNNING: "..",
    StepStatus.WAITING: "  ",
    StepStatus.SKIPPED: "--",
}


def show_run(run: Run) -> None:
    flow = load_or_fail(get_settings()).config.flows.get(run.flow)
    click.echo(f"run {run.id}  {run.status.value}  flow {run.flow} (rule {run.rule})")
    click.echo(f"  source   {run.bucket}/{run.key}  version {run.version or '-'}")
    click.echo(
        f"  started  {_when(run.started_at)}  took {_took(run)}" + (f"  ({run.reason})" if run.reason else "")
    )
    labels = {}
    for name, state in run.steps.items():
        mark = _MARK.get(state.status, "!!")
        took = (
            f" {(state.finished_at - state.started_at) * 1000:.0f}ms"
            if state.finished_at and state.started_at
            else ""
        )
        tail = f"  {state.reason}" if state.reason else ""
        outs = f"  {len(state.outputs)} output(s)" if state.outputs else ""
        labels[name] = f"[{mark} {state.status.value}{took}]{outs}{tail}"
    lines = draw(flow, labels) if flow else [f"{n}: {labels[n]}" for n in run.steps]
    for line in lines:
        click.echo(f"  {line}")
    for name, state in run.steps.items():
        for output in state.outputs:
            click.echo(
                f"  {name} -> {output.bucket}/{output.key}  ({output.content_type}, {output.size} bytes)"
            )


@click.group(invoke_without_command=True)
@click.option("--status", type=click.Choice([s.value for s in RunStatus]), default=None)
@click.option("--flow", default=None)
@click.option("--bucket", default=None)
@click.option("--key", default=None, help="An object key (in --bucket, else in every watched bucket).")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def runs(
    ctx: click.Context,
    status: str | None,
    flow: str | None,
    bucket: str | None,
    key: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List flow runs, newest first (`runs show|redrive|rerun` for one)."""
    if ctx.invoked_subcommand is not None:
        return
    with open_runtime() as runtime:
        # A key alone: that key in each watched bucket.
        buckets = [bucket] if bucket or key is None else runtime.pipeline.config.watched_buckets()
        found: list[Run] = []
        try:
            for b in buckets:
                found += runtime.ledger.runs.query(status=status, flow=flow, bucket=b, key=key, limit=limit)
        except PipelineError as exc:
            raise click.ClickException(str(exc)) from exc
    found = sorted(found, key=lambda r: r.started_at, reverse=True)[:limit]
    if as_json:
        click.echo(json.dumps([run.public() for run in found], indent=2))
        return
    for run in found:
        steps = " ".join(f"{n}:{s.status.value}" for n, s in run.steps.items())
        click.echo(
            f"{run.id}  {_when(run.started_at)}  {run.flow:<10} {run.status.value:<9} {_took(run):>6}  "
            f"{run.bucket}/{run.key}  {steps}"
        )


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def runs_show(run_id: str, as_json: bool) -> None:
    """One run: its graph with each step's status, timing, outputs and reason."""
    with open_runtime() as runtime:
        run = runtime.ledger.runs.get(run_id)
    if run is None:
        raise click.ClickException(f"no run {run_id}")
    if as_json:
        click.echo(json.dumps(run.public(), indent=2))
    else:
        show_run(run)


@runs.command("redrive")
@click.argument("run_id")
def runs_redrive(run_id: str) -> None:
    """Run again the failed steps and what depends on them; succeeded steps are reused."""
    with open_runtime() as runtime:
        try:
            run = runtime.flows.redrive(run_id)
        except PipelineError as exc:
            raise click.ClickException(str(exc)) from exc
    started = [n for n, s in run.steps.items() if s.status == StepStatus.RUNNING]
    click.echo(f"run {run.id} redriven: started {', '.join(started) or 'nothing'}")


@runs.command("rerun")
@click.argument("run_id")
@click.argument("step")
@click.option("--downstream", is_flag=True, help="Also run again every step that depends on it.")
def runs_rerun(run_id: str, step: str, downstream: bool) -> None:
    """Run one finished step of a run again."""
    with open_runtime() as runtime:
        try:
            run = runtime.flows.rerun(run_id, step, downstream)
        except PipelineError as exc:
            raise click.ClickException(str(exc)) from exc
    waiting = [n for n, s in run.steps.items() if s.status == StepStatus.WAITING]
    click.echo(f"run {run.id}: {step} started again" + (f"; then {', '.join(waiting)}" if waiting else ""))


def _decide(run_id: str, action: str, by: str, note: str) -> Run:
    decision = Decision(
        action="approve" if action == "approve" else "reject",
        by=by,
        at=time.time(),
        via="cli",
        note=note,
        login=f"{getpass.getuser()}@{socket.gethostname()}",
    )
    with open_runtime() as runtime:
        flows_ = runtime.flows
        try:
            return (
                flows_.approve(run_id, decision) if action == "approve" else flows_.reject(run_id, decision)
            )
        except PipelineError as exc:
            raise click.ClickException(str(exc)) from exc


_BY = click.option(
    "--by",
    default=lambda: os.environ.get("USER") or "cli",
    show_default="$USER",
    help="Who decides (recorded).",
)
_NOTE = click.option("--note", default="", help="Why (recorded, sent with the webhook).")


@runs.command("approve")
@click.argument("run_id")
@_BY
@_NOTE
def runs_approve(run_id: str, by: str, note: str) -> None:
    """Release the steps of a run held for review (its screening verdict becomes pass)."""
    run = _decide(run_id, "approve", by, note)
    started = [n for n, s in run.steps.items() if s.status == StepStatus.RUNNING]
    click.echo(f"run {run.id} approved by {by}: started {', '.join(started) or 'nothing'}")


@runs.command("reject")
@click.argument("run_id")
@_BY
@_NOTE
def runs_reject(run_id: str, by: str, note: str) -> None:
    """Block a run held for review: its upload is quarantined and object.rejected is sent."""
    run = _decide(run_id, "reject", by, note)
    target = run.screening.quarantine if run.screening else None
    where = f"; quarantined as {target.bucket}/{target.key}" if target else ""
    click.echo(f"run {run.id} rejected by {by}{where}")


COMMANDS = [flows, runs]
