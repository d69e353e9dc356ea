"""`pipeline up | gateway | worker`: the long-running processes."""

from __future__ import annotations

import logging
import os
import re
from typing import Any

import click

from pipeline import tracing
from pipeline.cli.runtime import data_file_warnings, load_or_fail, open_redis, refuse_public_bind
from pipeline.settings import get_settings, redacted

log = logging.getLogger(__name__)


@click.command()
@click.option("--host", default=None, help="Gateway address (default PIPELINE_GATEWAY_HOST).")
@click.option("--port", type=int, default=None, help="Gateway port (default PIPELINE_GATEWAY_PORT).")
def up(host: str | None, port: int | None) -> None:
    """Run the gateway and one worker per function in the foreground (Ctrl-C stops all)."""
    from pipeline.ledger import Ledger, connect  # noqa: PLC0415 - keeps `pipeline --help` fast
    from pipeline.queue.app import queued_runtime  # noqa: PLC0415
    from pipeline.reconcile import reconcile_periodically  # noqa: PLC0415
    from pipeline.supervisor import Supervisor, install_stop_handlers  # noqa: PLC0415

    settings = get_settings()
    pipeline = load_or_fail(settings)
    host = host or settings.gateway_host
    port = port or settings.gateway_port
    refuse_public_bind(settings, host)
    tracing.setup("media-pipeline-gateway")
    stop = [False]
    install_stop_handlers(stop)
    with open_redis(settings) as redis:
        supervisor = Supervisor(redis.url)
        supervisor.add_gateway(host, port)
        for name in sorted(pipeline.functions):
            supervisor.add_worker([name], pipeline.config.function_settings(name).concurrency)
        supervisor.add_webhook_worker()
        try:
            supervisor.start()
            url = f"http://{host}:{port}"
            if not supervisor.wait_gateway(url):
                click.echo(f"note: the gateway does not answer at {url} yet; still trying", err=True)
            if not supervisor.wait_workers(Ledger(connect(redis.url))):
                click.echo("note: workers have not registered yet (is Redis reachable?); they will", err=True)
            click.echo(f"gateway listening on {url}  (events: {url}/events/minio, {url}/events/sns)")
            click.echo(f"dashboard: {url}/admin")
            where = f"{'embedded ' if redis.owned else ''}{redacted(redis.url)}"
            click.echo(f"redis: {where}; pipeline: {pipeline.source}")
            for warning in data_file_warnings(settings, pipeline):
                click.echo(f"warning: {warning}", err=True)
            click.echo("press Ctrl-C to stop")
            if settings.reconcile_interval > 0:
                runtime = queued_runtime(settings, pipeline, redis.url)
                reconcile_periodically(runtime, settings.reconcile_interval, stop, say=click.echo)
            supervisor.watch(stop)
        finally:
            click.echo("stopping: workers finish their running tasks first...")
            supervisor.stop()
    click.echo("stopped")


@click.command()
@click.option("--host", default=None, help="Address to bind (default PIPELINE_GATEWAY_HOST).")
@click.option("--port", type=int, default=None, help="Port (default PIPELINE_GATEWAY_PORT).")
@click.option(
    "--workers", type=int, default=None, help="Processes sharing the port (default PIPELINE_GATEWAY_WORKERS)."
)
def gateway(host: str | None, port: int | None, workers: int | None) -> None:
    """Run only the HTTP gateway (notifications in, API out)."""
    import uvicorn  # noqa: PLC0415

    from pipeline.gateway.app import create_app, settle_heap  # noqa: PLC0415

    settings = get_settings()
    host = host or settings.gateway_host
    port = port or settings.gateway_port
    workers = workers or settings.gateway_workers
    refuse_public_bind(settings, host)
    tracing.setup("media-pipeline-gateway")
    # JSON logs: uvicorn's loggers go through the root handler instead of its own text format.
    json_logs = settings.log_format == "json"
    uvicorn_logging: dict[str, Any] = {"log_config": None} if json_logs else {}
    with open_redis(settings) as redis:
        listening = f"gateway listening on http://{host}:{port}" + (
            f" ({workers} processes)" if workers > 1 else ""
        )
        if json_logs:
            log.info(listening)
        else:
            click.echo(listening)
        if workers > 1:
            # Each process builds its app from the environment; the bind address decides whether
            # the dashboard may run without a password, so it travels along.
            os.environ.update(PIPELINE_REDIS_URL=redis.url, PIPELINE_GATEWAY_HOST=host)
            uvicorn.run(
                "pipeline.gateway.app:app_from_environment",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_level="warning",
                access_log=False,
                proxy_headers=False,  # the gateway judges forwarded headers (PIPELINE_TRUSTED_PROXIES)
                **uvicorn_logging,
            )
            return
        app = create_app(settings.model_copy(update={"redis_url": redis.url, "gateway_host": host}))
        settle_heap()
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            proxy_headers=False,
            **uvicorn_logging,
        )


@click.command()
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
    settings = get_settings()
    pipeline = load_or_fail(settings)
    quiet = loglevel.upper() not in ("INFO", "DEBUG")
    tracing.setup("media-pipeline-webhooks" if webhooks else "media-pipeline-worker")
    if webhooks:
        from pipeline.queue.webhooks import run_webhook_worker  # noqa: PLC0415

        if names or autoscale:
            raise click.UsageError("--webhooks serves the webhook queue only (no --functions or --autoscale)")
        with open_redis(settings) as redis:
            run_webhook_worker(
                settings=settings,
                pipeline=pipeline,
                redis_url=redis.url,
                concurrency=concurrency or settings.webhook_concurrency,
                loglevel=loglevel.upper(),
                quiet=quiet,
            )
        return
    from pipeline.queue.worker import run_worker  # noqa: PLC0415

    if autoscale and not re.fullmatch(r"\d+,\d+", autoscale):
        raise click.UsageError(f"--autoscale takes MAX,MIN (e.g. 8,1), not {autoscale!r}")
    functions = [n.strip() for n in names.split(",")] if names else sorted(pipeline.functions)
    unknown = [n for n in functions if n not in pipeline.functions]
    if unknown:
        raise click.ClickException(
            f"unknown function(s) {', '.join(unknown)}; known: {', '.join(pipeline.functions)}"
        )
    with open_redis(settings) as redis:
        run_worker(
            settings=settings,
            pipeline=pipeline,
            redis_url=redis.url,
            functions=functions,
            concurrency=concurrency or settings.worker_concurrency,
            autoscale=autoscale,
            loglevel=loglevel.upper(),
            quiet=quiet,
        )


COMMANDS = [up, gateway, worker]
