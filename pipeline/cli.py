"""The `pipeline` command."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from pipeline.errors import ConfigError, PipelineError
from pipeline.invocation import Invocation, Status
from pipeline.registry import Pipeline, load_pipeline
from pipeline.settings import Settings, get_settings, is_loopback

F = TypeVar("F", bound=Callable[..., Any])


def _load(settings: Settings) -> Pipeline:
    try:
        return load_pipeline(settings)
    except ConfigError as exc:
        raise click.ClickException(f"invalid pipeline file:\n{exc}") from exc


def _default_bucket(pipeline: Pipeline) -> str:
    buckets = pipeline.config.watched_buckets()
    return buckets[0] if buckets else "media"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
def cli(verbose: bool) -> None:
    """Event-driven media processing: uploads trigger functions through a queue."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@cli.command()
@click.option("--samples", type=click.Path(path_type=Path), default=Path("samples/media"), show_default=True)
@click.option("--bucket", default=None, help="Bucket to upload into (default: the pipeline's first bucket).")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for all invocations.")
def demo(samples: Path, bucket: str | None, timeout: float) -> None:
    """Upload the sample media, run every function on real workers, print inputs -> outputs."""
    from pipeline.demo import run_demo  # noqa: PLC0415 - keeps `pipeline --help` fast

    settings = get_settings()
    pipeline = _load(settings)
    sys.exit(run_demo(settings, pipeline, samples, bucket or _default_bucket(pipeline), timeout))


@cli.command()
@click.option("--host", default=None, help="Gateway address (default PIPELINE_GATEWAY_HOST).")
@click.option("--port", type=int, default=None, help="Gateway port (default PIPELINE_GATEWAY_PORT).")
def up(host: str | None, port: int | None) -> None:
    """Run the gateway and one worker per function in the foreground (Ctrl-C stops all)."""
    from pipeline.embedded import RedisLease  # noqa: PLC0415
    from pipeline.ledger import Ledger, connect  # noqa: PLC0415
    from pipeline.supervisor import Supervisor, install_stop_handlers  # noqa: PLC0415

    settings = get_settings()
    pipeline = _load(settings)
    host = host or settings.gateway_host
    port = port or settings.gateway_port
    _refuse_public_bind(settings, host)
    stop = [False]
    install_stop_handlers(stop)
    with RedisLease(settings.redis_url, settings.data_dir) as lease:
        supervisor = Supervisor(lease.url)
        supervisor.add_gateway(host, port)
        for name in sorted(pipeline.functions):
            supervisor.add_worker([name], pipeline.config.function_settings(name).concurrency)
        supervisor.add_webhook_worker()
        try:
            supervisor.start()
            url = f"http://{host}:{port}"
            supervisor.wait_gateway(url)
            supervisor.wait_workers(Ledger(connect(lease.url)))
            click.echo(f"gateway listening on {url}  (events: {url}/events/minio, {url}/events/sns)")
            click.echo(f"dashboard: {url}/admin")
            click.echo(f"redis: {'embedded ' if lease.owned else ''}{lease.url}; pipeline: {pipeline.source}")
            click.echo("press Ctrl-C to stop")
            if settings.reconcile_interval > 0:
                _start_reconciler(settings, pipeline, lease.url, stop)
            supervisor.watch(stop)
        finally:
            click.echo("stopping: workers finish their running tasks first...")
            supervisor.stop()
    click.echo("stopped")


def _start_reconciler(settings: Settings, pipeline: Pipeline, url: str, stop: list[bool]) -> None:
    """A periodic reconciler pass inside `pipeline up`: lost notifications get processed anyway."""
    import threading  # noqa: PLC0415

    from pipeline.queue.app import queued_runtime  # noqa: PLC0415
    from pipeline.reconcile import reconcile as run_reconcile  # noqa: PLC0415

    runtime = queued_runtime(settings, pipeline, url)

    def loop() -> None:
        while not stop[0]:
            try:
                report = run_reconcile(runtime)
                if report.enqueued:
                    click.echo(
                        f"reconciler: {report.enqueued} invocations had no notification; enqueued them"
                    )
            except Exception as exc:
                click.echo(f"reconciler pass failed: {exc}", err=True)
            deadline = time.monotonic() + settings.reconcile_interval
            while not stop[0] and time.monotonic() < deadline:
                time.sleep(0.5)

    threading.Thread(target=loop, name="reconciler", daemon=True).start()


def _refuse_public_bind(settings: Settings, host: str) -> None:
    if is_loopback(host):
        return
    if settings.webhook_token is None:
        raise click.ClickException(
            f"refusing to bind {host}: PIPELINE_WEBHOOK_TOKEN is unset (development mode is loopback only)"
        )
    if settings.api_token is None:
        raise click.ClickException(
            f"refusing to bind {host}: PIPELINE_API_TOKEN is unset, /api would be open to the network"
        )


@cli.command()
@click.option("--host", default=None, help="Address to bind (default PIPELINE_GATEWAY_HOST).")
@click.option("--port", type=int, default=None, help="Port (default PIPELINE_GATEWAY_PORT).")
@click.option(
    "--workers", type=int, default=None, help="Processes sharing the port (default PIPELINE_GATEWAY_WORKERS)."
)
def gateway(host: str | None, port: int | None, workers: int | None) -> None:
    """Run only the HTTP gateway (notifications in, API out)."""
    import uvicorn  # noqa: PLC0415

    from pipeline.embedded import RedisLease  # noqa: PLC0415
    from pipeline.gateway.app import create_app  # noqa: PLC0415

    settings = get_settings()
    host = host or settings.gateway_host
    port = port or settings.gateway_port
    workers = workers or settings.gateway_workers
    _refuse_public_bind(settings, host)
    with RedisLease(settings.redis_url, settings.data_dir) as lease:
        click.echo(
            f"gateway listening on http://{host}:{port}" + (f" ({workers} processes)" if workers > 1 else "")
        )
        if workers > 1:
            # Each process builds its app from the environment; the bind address decides whether
            # the dashboard may run without a password, so it travels along.
            os.environ.update(PIPELINE_REDIS_URL=lease.url, PIPELINE_GATEWAY_HOST=host)
            uvicorn.run(
                "pipeline.gateway.app:app_from_environment",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_level="warning",
                access_log=False,
            )
            return
        app = create_app(settings.model_copy(update={"redis_url": lease.url, "gateway_host": host}))
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


@cli.command()
@click.option("--functions", "names", default=None, help="Comma-separated functions to serve (default: all).")
@click.option(
    "--concurrency", type=int, default=None, help="Processes (default PIPELINE_WORKER_CONCURRENCY)."
)
@click.option("--autoscale", default=None, metavar="MAX,MIN", help="Grow and shrink the pool with load.")
@click.option("--loglevel", default="INFO", show_default=True)
@click.option(
    "--webhooks", is_flag=True, help="Deliver outgoing webhooks instead (threads; the webhooks queue)."
)
def worker(
    names: str | None, concurrency: int | None, autoscale: str | None, loglevel: str, webhooks: bool
) -> None:
    """Run a Celery worker serving some or all function queues (or, with --webhooks, deliveries)."""
    from pipeline.embedded import RedisLease  # noqa: PLC0415
    from pipeline.queue.worker import run_worker  # noqa: PLC0415

    settings = get_settings()
    pipeline = _load(settings)
    if webhooks:
        from pipeline.queue.webhooks import run_webhook_worker  # noqa: PLC0415

        if names or autoscale:
            raise click.UsageError("--webhooks serves the webhook queue only (no --functions or --autoscale)")
        with RedisLease(settings.redis_url, settings.data_dir) as lease:
            run_webhook_worker(
                settings=settings,
                pipeline=pipeline,
                redis_url=lease.url,
                concurrency=concurrency or settings.webhook_concurrency,
                loglevel=loglevel.upper(),
                quiet=loglevel.upper() not in ("INFO", "DEBUG"),
            )
        return
    if autoscale and not re.fullmatch(r"\d+,\d+", autoscale):
        raise click.UsageError(f"--autoscale takes MAX,MIN (e.g. 8,1), not {autoscale!r}")
    functions = [n.strip() for n in names.split(",")] if names else sorted(pipeline.functions)
    unknown = [n for n in functions if n not in pipeline.functions]
    if unknown:
        raise click.ClickException(
            f"unknown function(s) {', '.join(unknown)}; known: {', '.join(pipeline.functions)}"
        )
    with RedisLease(settings.redis_url, settings.data_dir) as lease:
        run_worker(
            settings=settings,
            pipeline=pipeline,
            redis_url=lease.url,
            functions=functions,
            concurrency=concurrency or settings.worker_concurrency,
            autoscale=autoscale,
            loglevel=loglevel.upper(),
            quiet=loglevel.upper() not in ("INFO", "DEBUG"),
        )


@cli.command()
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
    from pipeline.embedded import RedisLease  # noqa: PLC0415
    from pipeline.queue.app import queued_runtime  # noqa: PLC0415
    from pipeline.uploads import upload_file, wait_for  # noqa: PLC0415

    if key and len(files) > 1:
        raise click.UsageError("--key names one object; give one file or use --prefix")
    settings = get_settings()
    pipeline = _load(settings)
    bucket = bucket or _default_bucket(pipeline)
    with RedisLease(settings.redis_url, settings.data_dir) as lease:
        runtime = queued_runtime(settings, pipeline, lease.url)
        uploads = []
        for path in files:
            up_ = upload_file(runtime, path, bucket, key or f"{prefix}{path.name}")
            uploads.append(up_)
            what = ", ".join(up_.invocation_ids) if up_.invocation_ids else "no rule matched"
            click.echo(f"uploaded {path} -> {bucket}/{up_.info.key} ({up_.info.size} bytes): {what}")
        if not wait:
            return
        served = {q for w in runtime.ledger.workers.live() for q in w.queues}
        needed = {
            inv.queue
            for inv in runtime.ledger.invocations.get_many(i for u in uploads for i in u.invocation_ids)
        }
        for queue in sorted(needed - served):
            click.echo(f"note: no worker serves {queue} yet; its work waits in the queue (run `pipeline up`)")

        def progress(inv: Invocation) -> None:
            detail = f" ({inv.error})" if inv.error else ""
            if inv.status == Status.RUNNING and inv.progress and inv.progress.get("percent") is not None:
                speed = inv.progress.get("speed")
                detail = f" {inv.progress['percent']:.0f}%" + (f" at {speed:g}x" if speed else "")
            click.echo(f"  {inv.key} {inv.function}: {inv.status}{detail}")

        finished = wait_for(runtime, uploads, timeout, on_change=progress)
    failed = False
    for inv in finished:
        if inv.status == Status.SUCCEEDED:
            for out in inv.outputs:
                click.echo(f"{inv.key} -> {out.bucket}/{out.key} ({out.content_type}, {out.size} bytes)")
        else:
            failed = True
            reason = inv.error or "did not finish in time"
            click.echo(f"{inv.key} {inv.function} {inv.status}: {reason}", err=True)
    sys.exit(1 if failed else 0)


@cli.command()
@click.argument("key")
@click.option("--bucket", default=None, help="Bucket (default: the pipeline's first bucket).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, help="File to write.")
def download(key: str, bucket: str | None, output: Path | None) -> None:
    """Download an object (e.g. an output) from the configured store."""
    from pipeline.storage import open_store  # noqa: PLC0415

    settings = get_settings()
    bucket = bucket or _default_bucket(_load(settings))
    dest = output or Path(key.rsplit("/", 1)[-1])
    try:
        info = open_store(settings).get_file(bucket, key, dest)
    except PipelineError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{bucket}/{key} -> {dest} ({info.size} bytes, {info.content_type})")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def functions(as_json: bool) -> None:
    """List the registered functions."""
    settings = get_settings()
    pipeline = _load(settings)
    config = pipeline.config
    rows: list[dict[str, Any]] = []
    for name, spec in sorted(pipeline.functions.items()):
        rows.append(
            {
                "name": name,
                "accepts": list(spec.accepts),
                "queue": config.queue_for(name),
                "concurrency": config.function_settings(name).concurrency,
                "time_limit": config.time_limit_for(name),
                "module": spec.module,
                "summary": spec.summary,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for name, spec in sorted(pipeline.functions.items()):
        click.echo(
            f"{name:<12} {','.join(spec.accepts):<12} queue={config.queue_for(name):<16} "
            f"concurrency={config.function_settings(name).concurrency} "
            f"time_limit={config.time_limit_for(name):g}s  {spec.summary}"
        )


@cli.command()
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
    from pipeline.embedded import RedisLease  # noqa: PLC0415
    from pipeline.queue.app import queued_runtime  # noqa: PLC0415

    settings = get_settings()
    pipeline = _load(settings)
    with RedisLease(settings.redis_url, settings.data_dir) as lease:
        runtime = queued_runtime(settings, pipeline, lease.url)
        items = runtime.ledger.invocations.query(
            status=status, function=function, bucket=bucket, key=key, limit=limit
        )
    if as_json:
        click.echo(json.dumps([inv.public() for inv in items], indent=2))
        return
    for inv in items:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(inv.created_at))
        took = f"{inv.duration_ms:.0f}ms" if inv.duration_ms is not None else "-"
        click.echo(
            f"{inv.id}  {created}  {inv.function:<10} {inv.status:<9} {took:>7}  "
            f"{inv.bucket}/{inv.key}" + (f"  error: {inv.error}" if inv.error else "")
        )


@cli.command()
@click.argument("invocation_id", required=False)
@click.option("--all-dead", is_flag=True, help="Re-queue every dead invocation.")
def retry(invocation_id: str | None, all_dead: bool) -> None:
    """Run a failed, dead, rejected or skipped invocation again (or every dead one)."""
    from pipeline.embedded import RedisLease  # noqa: PLC0415
    from pipeline.queue.app import queued_runtime  # noqa: PLC0415
    from pipeline.retry import RetryRefused, retry_all_dead, retry_invocation  # noqa: PLC0415

    if bool(invocation_id) == all_dead:
        raise click.UsageError("give an invocation id or --all-dead")
    settings = get_settings()
    pipeline = _load(settings)
    with RedisLease(settings.redis_url, settings.data_dir) as lease:
        runtime = queued_runtime(settings, pipeline, lease.url)
        try:
            if all_dead:
                done = retry_all_dead(runtime)
                click.echo(f"{len(done)} dead invocations queued again")
                return
            assert invocation_id is not None
            inv = retry_invocation(runtime, invocation_id)
        except (LookupError, RetryRefused, PipelineError) as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"{inv.id} queued again on {inv.queue}")


@cli.command()
@click.option("--dry-run", is_flag=True, help="Print what would run; change nothing.")
@click.option("--rate", default=200.0, show_default=True, help="Objects handed to the queue per second.")
@click.option("--no-resume", is_flag=True, help="Start from the first key even if a pass was interrupted.")
def reconcile(dry_run: bool, rate: float, no_resume: bool) -> None:
    """Enqueue every watched object that has no invocation (lost notifications, backlogs, new rules)."""
    from pipeline.embedded import RedisLease  # noqa: PLC0415
    from pipeline.queue.app import queued_runtime  # noqa: PLC0415
    from pipeline.reconcile import reconcile as run_reconcile  # noqa: PLC0415

    settings = get_settings()
    pipeline = _load(settings)
    with RedisLease(settings.redis_url, settings.data_dir) as lease:
        runtime = queued_runtime(settings, pipeline, lease.url)
        report = run_reconcile(runtime, dry_run=dry_run, rate=rate, resume=not no_resume)
    for bucket, key, function in report.would_run:
        click.echo(f"would run {function} on {bucket}/{key}")
    verb = "would enqueue" if dry_run else "enqueued"
    click.echo(
        f"scanned {report.scanned} objects; {report.missing} invocations missing; {verb} "
        f"{report.missing if dry_run else report.enqueued}; queued too long, sent again: {report.resent}"
    )


@cli.command("run")
@click.argument("function")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--params", "params_json", default=None, help="Parameters as a JSON object.")
@click.option(
    "--param", "param_items", multiple=True, metavar="K=V", help="One parameter (V parsed as JSON)."
)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
def run_function(
    function: str, file: Path, params_json: str | None, param_items: tuple[str, ...], out_dir: Path
) -> None:
    """Run one function on a local file, without the queue (same code as the worker)."""
    from pydantic import ValidationError  # noqa: PLC0415

    from functions import FunctionError, _assets  # noqa: PLC0415
    from functions._screening import screen  # noqa: PLC0415

    pipeline = _load(get_settings())
    if function not in pipeline.functions:
        raise click.ClickException(f"unknown function {function!r}; known: {', '.join(pipeline.functions)}")
    spec = pipeline.function(function)
    raw: dict[str, Any] = json.loads(params_json) if params_json else {}
    for item in param_items:
        name, _, value = item.partition("=")
        try:
            raw[name] = json.loads(value)
        except json.JSONDecodeError:
            raw[name] = value
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        # Screening first, exactly as in the worker.
        media = screen(file, pipeline.config.screening)
        if not spec.accepts_type(media.media_type):
            raise click.ClickException(
                f"{file} is {media.media_type}; {function} accepts {', '.join(spec.accepts)}"
            )
        params = spec.parse_params(raw)
        if spec.asset_refs(params):
            raise click.ClickException(
                "s3:// assets need the store: use `pipeline upload` or a local file path"
            )
        started = time.perf_counter()
        with _assets.provided({}):
            outputs = spec(file, out_dir, params)
    except (ValidationError, FunctionError) as exc:
        raise click.ClickException(f"{function} refused or failed on {file}: {exc}") from exc
    took = (time.perf_counter() - started) * 1000
    for out in outputs:
        click.echo(f"{out.path} ({out.content_type}, {out.path.stat().st_size} bytes) {out.meta or ''}")
    click.echo(f"{function}: {len(outputs)} outputs in {took:.0f} ms")


def write_option(example: str) -> Callable[[F], F]:
    """`--write FILE`: also put the measured figures into a Markdown file (between markers)."""
    return click.option(
        "--write",
        "doc",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=f"Also write the figures into this Markdown file (e.g. {example}).",
    )


@cli.group()
def bench() -> None:
    """Benchmarks: ratios against a baseline measured side by side in the same run."""


@bench.command("functions")
@click.option("--repeat", default=5, show_default=True, help="Interleaved runs per contender.")
@write_option("docs/benchmarks.md")
def bench_functions(repeat: int, doc: Path | None) -> None:
    """thumbnail vs Pillow and pyvips; one-pass HLS vs separate encodes; transcode vs bare ffmpeg."""
    from pipeline.bench import render, run_function_benchmarks, write_section  # noqa: PLC0415

    command = f"pipeline bench functions --repeat {repeat}"
    section = render(run_function_benchmarks(repeat), command)
    click.echo(section)
    if doc:
        write_section(doc, section)
        click.echo(f"written to {doc}")


@bench.command("system")
@click.option("--quick", is_flag=True, help="A quarter of the samples: a smoke run, not figures to keep.")
@write_option("docs/benchmarks.md")
def bench_system(quick: bool, doc: Path | None) -> None:
    """Upload -> thumbnail latency (local store and S3 peer), overhead beside bare Celery, 1 vs 2
    workers, cold start, gateway ingest."""
    from pipeline.bench_system import render, run_system_benchmarks, write_section  # noqa: PLC0415

    command = "pipeline bench system" + (" --quick" if quick else "")
    section = render(run_system_benchmarks(quick=quick), command)
    click.echo(section)
    if doc:
        write_section(doc, section)
        click.echo(f"written to {doc}")


@cli.command()
@click.option("--uploads", default=1000, show_default=True)
@click.option("--kills", default=10, show_default=True, help="Random SIGKILLs of worker processes.")
@write_option("docs/reliability.md")
def soak(uploads: int, kills: int, doc: Path | None) -> None:
    """Many uploads with worker kills, a Redis restart, dropped and duplicated notifications."""
    from pipeline.soak import render, run_soak, write_section  # noqa: PLC0415

    report = run_soak(uploads=uploads, kills=kills)
    section = render(report, f"pipeline soak --uploads {uploads} --kills {kills}")
    click.echo(section)
    if doc:
        write_section(doc, section)
    ok = report.lost == 0 and report.duplicate_outputs == 0 and report.partial_outputs == 0
    sys.exit(0 if ok else 1)


@cli.command()
def doctor() -> None:
    """Check packages, ffmpeg, Redis, the object store and the pipeline file."""
    from pipeline.doctor import run_checks  # noqa: PLC0415

    checks = run_checks(get_settings())
    for level, what, detail in checks:
        click.echo(f"{level:<4}  {what}: {detail}")
    sys.exit(1 if any(level == "FAIL" for level, _, _ in checks) else 0)


@cli.command()
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
        raise click.ClickException(f"Redis at {settings.redis_url} does not answer: {exc}") from exc
    if as_worker:
        host = socket.gethostname()
        mine = [w for w in workers if w.hostname.endswith(f"@{host}") and time.time() - w.seen_at <= max_age]
        if not mine:
            raise click.ClickException(f"no worker on {host} sent a heartbeat in the last {max_age:g}s")
        click.echo(f"ok: {', '.join(w.hostname for w in mine)}")
        return
    click.echo("ok: Redis answers")


@cli.command("settings")
@click.option("--markdown", is_flag=True, help="Print the configuration table for the README.")
def settings_cmd(markdown: bool) -> None:
    """Show the settings in effect (secrets hidden), or the README table of all settings."""
    from pipeline.settings_doc import markdown_table  # noqa: PLC0415

    if markdown:
        click.echo(markdown_table())
        return
    for name, value in get_settings().model_dump().items():
        click.echo(f"PIPELINE_{name.upper()}={value if value is not None else ''}")


def main() -> None:
    from pipeline.cli_webhooks import webhooks  # noqa: PLC0415

    cli.add_command(webhooks)
    cli()
