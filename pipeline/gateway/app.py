"""The gateway: `create_app(settings)` returns the FastAPI app that receives notifications and
serves the API. It validates, deduplicates and enqueues; it never processes media itself."""

from __future__ import annotations

import contextlib
import gc

import redis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Counter

from pipeline import __version__, tracing
from pipeline.admin.auth import Sessions
from pipeline.errors import PipelineError
from pipeline.events.sns import SignatureVerifier
from pipeline.gateway.gate import RequestGate
from pipeline.gateway.group_commit import GroupCommit
from pipeline.gateway.metrics import LedgerCollector, UsageCollector
from pipeline.gateway.routes import admin, admin_actions, api, events, health, invoke, runs, webhooks
from pipeline.gateway.routes.admin_common import ADMIN_DIR, LoginRequired, login_redirect
from pipeline.gateway.state import GatewayMetrics, GatewayState
from pipeline.notify.notifier import notifier_for
from pipeline.queue.app import queued_runtime
from pipeline.queue.control import FunctionControls
from pipeline.registry import load_pipeline
from pipeline.runtime import Runtime
from pipeline.settings import Settings


async def error_response(request: Request, exc: Exception) -> JSONResponse:
    """Every error the API returns: the status its class knows, and its message as the detail."""
    status = exc.http_status if isinstance(exc, PipelineError) else 500
    return JSONResponse({"detail": str(exc)}, status_code=status)


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    if runtime is None:
        if not settings.redis_url:
            raise ValueError("create_app needs settings.redis_url (the CLI starts an embedded Redis)")
        pipeline = load_pipeline(settings)
        runtime = queued_runtime(settings, pipeline, settings.redis_url)
    registry = CollectorRegistry()
    metrics = GatewayMetrics(
        registry=registry,
        events=Counter(
            "pipeline_gateway_events", "Notifications received", ["source", "status"], registry=registry
        ),
        invocations=Counter(
            "pipeline_gateway_invocations", "Single-step invocations enqueued", registry=registry
        ),
        runs=Counter(
            "pipeline_gateway_runs",
            "Flow runs started, or found already started",
            ["status"],
            registry=registry,
        ),
    )
    notifier = notifier_for(runtime)
    registry.register(LedgerCollector(runtime, notifier))
    registry.register(UsageCollector(runtime))
    # The pipeline file's subscriptions show in the API before a webhook worker runs. The webhook
    # worker syncs too, so the gateway may start while Redis is away.
    with contextlib.suppress(redis.RedisError):
        notifier.sync()
    app = FastAPI(title="media pipeline gateway", version=__version__)
    app.state.gateway = GatewayState(
        settings=settings,
        runtime=runtime,
        sns_verifier=SignatureVerifier(),
        metrics=metrics,
        notifier=notifier,
        sessions=Sessions(
            runtime.redis, settings.admin_password.get_secret_value() if settings.admin_password else None
        ),
        controls=FunctionControls(runtime.redis_url, runtime.pipeline, runtime.ledger),
        group_commit=GroupCommit(runtime.intake, settings.intake_batch),
    )
    # Outermost: where a request comes from, its type, its token and its size are checked before
    # any route reads a byte of it.
    app.add_middleware(
        RequestGate, settings=settings, upload_limit=lambda: runtime.pipeline.config.screening.max_bytes
    )
    app.mount("/admin/static", StaticFiles(directory=str(ADMIN_DIR / "static")), name="admin-static")
    app.add_exception_handler(LoginRequired, login_redirect)
    app.add_exception_handler(PipelineError, error_response)
    app.router.routes[:0] = events.routes  # first: the route most requests take
    app.include_router(admin.router)
    app.include_router(admin_actions.router)
    app.include_router(api.router)
    app.include_router(runs.router)
    app.include_router(invoke.router)
    app.include_router(webhooks.router)
    app.include_router(health.router)
    return app


def app_from_environment() -> FastAPI:
    """For `pipeline gateway --workers N`: each process builds its own app from PIPELINE_*."""
    tracing.setup("media-pipeline-gateway")
    app = create_app(Settings())
    settle_heap()
    return app


# Allocations between young collections (Python's default is 700). A request allocates a few
# thousand objects, nearly all gone by its answer.
YOUNG_COLLECTION_EVERY = 50_000


def settle_heap() -> None:
    """Keep the cyclic garbage collector off the serving path. A full collection walks every
    object in the process, and a started gateway holds about 120,000 (FastAPI, pydantic, Celery's
    app, the pipeline file): under load one took 90 ms every 10-15 s, holding up each request in
    flight (docs/benchmarks.md, ingest). What exists once the app is built lives as long as the
    process, so it is frozen out of collections (`gc.freeze`); what requests make is collected
    as before, in less frequent young collections."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, middle, old)
