"""The JSON API: invocations, events, functions and usage."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from starlette.concurrency import run_in_threadpool

from pipeline.errors import BadRequest, NotFound
from pipeline.gateway.deps import StateDep
from pipeline.invocation import Status
from pipeline.retry import retry_all_dead, retry_invocation
from pipeline.usage import Dimension, period

Limit = Annotated[int, Query(ge=1, le=500)]
# Deep offsets walk an index from its start; past this, narrow the filters instead.
Offset = Annotated[int, Query(ge=0, le=10_000)]

router = APIRouter(prefix="/api", tags=["api"])  # the API token: checked by the gate


@router.get("/invocations")
def list_invocations(
    state: StateDep,
    status_: Annotated[Status | None, Query(alias="status")] = None,
    function: str | None = None,
    bucket: str | None = None,
    key: str | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    items = state.runtime.ledger.invocations.query(
        status=status_, function=function, bucket=bucket, key=key, limit=limit, offset=offset
    )
    return {"items": [inv.public() for inv in items], "limit": limit, "offset": offset}


@router.get("/invocations/{invocation_id}")
def get_invocation(invocation_id: str, state: StateDep) -> dict[str, Any]:
    inv = state.runtime.ledger.invocations.get(invocation_id)
    if inv is None:
        raise NotFound(f"no invocation {invocation_id}")
    return inv.public()


@router.post("/invocations/retry-dead", status_code=status.HTTP_202_ACCEPTED)
async def retry_dead(state: StateDep) -> dict[str, Any]:
    """Re-queue every dead invocation (atomically per invocation)."""
    done = await run_in_threadpool(retry_all_dead, state.runtime)
    return {"requeued": [inv.id for inv in done]}


@router.post("/invocations/{invocation_id}/retry", status_code=status.HTTP_202_ACCEPTED)
async def retry(invocation_id: str, state: StateDep) -> dict[str, Any]:
    inv = await run_in_threadpool(retry_invocation, state.runtime, invocation_id)
    return inv.public()


@router.get("/events")
def list_events(state: StateDep, limit: Limit = 50, offset: Offset = 0) -> dict[str, Any]:
    items = state.runtime.ledger.events.recent(limit=limit, offset=offset)
    return {"items": [e.model_dump(mode="json") for e in items], "limit": limit, "offset": offset}


@router.get("/functions")
def list_functions(state: StateDep) -> dict[str, Any]:
    return {"items": describe_functions(state)}


def describe_functions(state: StateDep) -> list[dict[str, Any]]:
    pipeline = state.runtime.pipeline
    config = pipeline.config
    return [
        {
            "name": name,
            "summary": spec.summary,
            "module": spec.module,
            "accepts": list(spec.accepts),
            "queue": config.queue_for(name),
            "concurrency": config.function_settings(name).concurrency,
            "time_limit": config.time_limit_for(name),
            "max_attempts": config.max_attempts_for(name),
            "params_schema": spec.params_model.model_json_schema(),
        }
        for name, spec in sorted(pipeline.functions.items())
    ]


@router.get("/usage")
def get_usage(
    state: StateDep,
    since: str = "24h",
    until: str | None = None,
    by: Annotated[Dimension, Query()] = "function",
) -> dict[str, Any]:
    """Requests, GB-seconds, CPU seconds and bytes per function, rule or bucket (whole hours);
    `pipeline usage` prints the same, with costs from a price file."""
    try:
        start, end = period(since, until, time.time())
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    return state.runtime.ledger.usage.report(start, end, by, None).as_json()
