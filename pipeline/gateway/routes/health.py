"""Liveness and metrics."""

from __future__ import annotations

from typing import Any

import redis
from fastapi import APIRouter, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.gateway.deps import StateDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(state: StateDep, response: Response) -> dict[str, Any]:
    try:
        redis_ok = state.runtime.ledger.ping()
    except redis.RedisError:
        redis_ok = False
    if not redis_ok:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return {
        "status": "ok" if redis_ok else "unavailable",
        "redis": redis_ok,
        "store": state.runtime.store.describe(),
        "pipeline": state.runtime.pipeline.source,
        "dev_mode": state.settings.dev_mode,
    }


@router.get("/metrics")
def metrics(state: StateDep) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
