"""`pipeline upload | download`: objects in and out of the configured store."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipeline.cli.runtime import default_bucket, load_or_fail, open_runtime
from pipeline.errors import PipelineError
from pipeline.flows.model import RunStatus
from pipeline.invocation import Invocation, Status
from pipeline.settings import get_settings


@click.command()
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--bucket", default=None, help="Bucket (default: the pipeline's first bucket).")
@click.option("--key", default=None, help="Object key (one file only). Default: uploads/<file name>.")
@click.option("--prefix", default="uploads/", show_default=True, help="Key prefix when --key is not given.")
@click.option("--wait", is_flag=True, help="Follow the invocations until they finish; exit 1 if one failed.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait with --wait.")
def upload(
    files: tuple[Path, ...], bucket: str | None, key: str | None, prefix: str, wait: bool, timeout: float
) -> None:
    """Upload files into the configured store; the pipeline processes them."""
    from pipeline.uploads import succeeded, upload_file, wait_for  # noqa: PLC0415 - keeps `--help` fast

    if key and len(files) > 1:
        raise click.UsageError("--key names one object; give one file or use --prefix")
    with open_runtime() as runtime:
        bucket = bucket or default_bucket(runtime.pipeline)
        uploads = []
        for path in files:
            done = upload_file(runtime, path, bucket, key or f"{prefix}{path.name}")
            uploads.append(done)
            work = done.invocation_ids + [f"run {r}" for r in done.run_ids]
            what = ", ".join(work) if work else "no rule matched"
            click.echo(f"uploaded {path} -> {bucket}/{done.info.key} ({done.info.size} bytes): {what}")
        if not wait:
            return
        served = {q for w in runtime.ledger.workers.live() for q in w.queues}
        started = runtime.ledger.invocations.get_many(i for u in uploads for i in u.invocation_ids)
        for queue in sorted({inv.queue for inv in started} - served):
            click.echo(f"note: no worker serves {queue} yet; its work waits in the queue (run `pipeline up`)")

        def progress(inv: Invocation) -> None:
            detail = f" ({inv.error})" if inv.error else ""
            if inv.status == Status.RUNNING and inv.progress and inv.progress.get("percent") is not None:
                speed = inv.progress.get("speed")
                detail = f" {inv.progress['percent']:.0f}%" + (f" at {speed:g}x" if speed else "")
            step = f" ({inv.step})" if inv.step and inv.step != inv.function else ""
            click.echo(f"  {inv.key} {inv.function}{step}: {inv.status}{detail}")

        finished = wait_for(runtime, uploads, timeout, on_change=progress)
        runs = runtime.ledger.runs.get_many(r for u in uploads for r in u.run_ids)
    failed = False
    for run in runs:
        if run.status == RunStatus.HELD:
            click.echo(f"{run.key} held for review ({run.reason}): approve or reject it (Review page)")
        elif run.status == RunStatus.BLOCKED:
            failed = True
            click.echo(f"{run.key} blocked: {run.reason}", err=True)
        elif run.status == RunStatus.FAILED:
            failed = True
            click.echo(f"{run.key} run {run.flow} {run.reason}", err=True)
            # A step can fail with no invocation to show it (its `if` could not be evaluated).
            for name, state in run.steps.items():
                if state.status.failure and not state.invocations:
                    click.echo(f"{run.key} {name}: {state.status}: {state.reason}", err=True)
    for inv in finished:
        if succeeded(inv):
            for out in inv.outputs:
                click.echo(f"{inv.key} -> {out.bucket}/{out.key} ({out.content_type}, {out.size} bytes)")
        else:
            failed = True
            reason = inv.error or "did not finish in time"
            click.echo(f"{inv.key} {inv.function} {inv.status}: {reason}", err=True)
    sys.exit(1 if failed else 0)


@click.command()
@click.argument("key")
@click.option("--bucket", default=None, help="Bucket (default: the pipeline's first bucket).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, help="File to write.")
def download(key: str, bucket: str | None, output: Path | None) -> None:
    """Download an object (e.g. an output) from the configured store."""
    from pipeline.storage import open_store  # noqa: PLC0415

    settings = get_settings()
    bucket = bucket or default_bucket(load_or_fail(settings))
    dest = output or Path(key.rsplit("/", 1)[-1])
    try:
        info = open_store(settings).get_file(bucket, key, dest)
    except PipelineError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{bucket}/{key} -> {dest} ({info.size} bytes, {info.content_type})")


COMMANDS = [upload, download]
