"""Liveness and metrics."""

from __future__ import annotations

from typing import Any

import redis
from fastapi import APIRouter, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.gateway.deps import StateDep, authorized

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(state: StateDep, request: Request, response: Response) -> dict[str, Any]:
    """Healthy or not, for anyone (probes carry no token); where the store and the pipeline file
    are, only for callers with the API token (or in development mode, on loopback)."""
    try:
        redis_ok = state.runtime.ledger.ping()
    except redis.RedisError:
        redis_ok = False
    if not redis_ok:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    answer: dict[str, Any] = {"status": "ok" if redis_ok else "unavailable"}
    if authorized(request.headers.get("authorization"), state.settings.api_token):
        answer.update(
            redis=redis_ok,
            store=state.runtime.store.describe(),
            pipeline=state.runtime.pipeline.source,
            dev_mode=state.settings.dev_mode,
        )
    return answer


@router.get("/metrics")
def metrics(state: StateDep) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
