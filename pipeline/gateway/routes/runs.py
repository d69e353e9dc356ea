"""Flow runs: list, show, redrive, rerun one step; approve or reject an upload held for review."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from pipeline.errors import NotFound
from pipeline.flows.model import Decision, RunStatus
from pipeline.gateway.deps import StateDep
from pipeline.gateway.routes.api import Limit, Offset

router = APIRouter(prefix="/api/runs", tags=["runs"])  # the API token: checked by the gate


@router.get("")
def list_runs(
    state: StateDep,
    status_: Annotated[RunStatus | None, Query(alias="status")] = None,
    flow: str | None = None,
    bucket: str | None = None,
    key: str | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    items = state.runtime.ledger.runs.query(
        status=status_, flow=flow, bucket=bucket, key=key, limit=limit, offset=offset
    )
    return {"items": [run.public() for run in items], "limit": limit, "offset": offset}


@router.get("/{run_id}")
def get_run(run_id: str, state: StateDep) -> dict[str, Any]:
    run = state.runtime.ledger.runs.get(run_id)
    if run is None:
        raise NotFound(f"no run {run_id}")
    return run.public()


@router.post("/{run_id}/redrive", status_code=status.HTTP_202_ACCEPTED)
async def redrive(run_id: str, state: StateDep) -> dict[str, Any]:
    """Run again the failed steps and those skipped because of them; succeeded steps are reused."""
    run = await run_in_threadpool(state.runtime.flows.redrive, run_id)
    return run.public()


@router.post("/{run_id}/steps/{step}/rerun", status_code=status.HTTP_202_ACCEPTED)
async def rerun(run_id: str, step: str, state: StateDep, downstream: bool = False) -> dict[str, Any]:
    """Run one finished step again; with `downstream=true` also everything that depends on it."""
    run = await run_in_threadpool(state.runtime.flows.rerun, run_id, step, downstream)
    return run.public()


class ReviewDecision(BaseModel):
    by: str = Field(default="api", min_length=1, max_length=100, description="Who decided (recorded).")
    note: str = Field(default="", max_length=1000, description="Why (recorded, sent with the webhook).")


async def _decide(
    state: StateDep, run_id: str, action: Literal["approve", "reject"], body: ReviewDecision | None
) -> dict[str, Any]:
    body = body or ReviewDecision()
    token = "API token" if state.settings.api_token is not None else "no API token (development mode)"
    decision = Decision(action=action, by=body.by, at=time.time(), via="api", note=body.note, login=token)
    flows = state.runtime.flows
    run = await run_in_threadpool(flows.approve if action == "approve" else flows.reject, run_id, decision)
    return run.public()


@router.post("/{run_id}/approve", status_code=status.HTTP_202_ACCEPTED)
async def approve(run_id: str, state: StateDep, body: ReviewDecision | None = None) -> dict[str, Any]:
    """Release the steps held for review: the screening verdict becomes pass."""
    return await _decide(state, run_id, "approve", body)


@router.post("/{run_id}/reject", status_code=status.HTTP_202_ACCEPTED)
async def reject(run_id: str, state: StateDep, body: ReviewDecision | None = None) -> dict[str, Any]:
    """Block an upload held for review: it is quarantined and `object.rejected` is sent."""
    return await _decide(state, run_id, "reject", body)
