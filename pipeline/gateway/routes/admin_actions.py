"""The dashboard's actions: POST only, each behind the session and its CSRF token."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request, status
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from pipeline.errors import BadRequest, NotFound, PipelineError
from pipeline.flows.model import Decision
from pipeline.gateway.deps import StateDep, save_upload
from pipeline.gateway.routes.admin_common import (
    CheckedDep,
    back,
)
from pipeline.retry import retry_all_dead, retry_invocation
from pipeline.uploads import upload_file

router = APIRouter(prefix="/admin", include_in_schema=False)


# --- actions -------------------------------------------------------------------------------------
@router.post("/invocations/retry-dead")
async def retry_dead_action(request: Request, state: StateDep, _session: CheckedDep) -> Response:
    try:
        done = await run_in_threadpool(retry_all_dead, state.runtime)
    except PipelineError as exc:  # the dashboard tells the operator on the page it came from
        return await back(request, f"not retried: {exc}")
    return await back(request, f"{len(done)} dead invocations queued again")


@router.post("/invocations/{invocation_id}/retry")
async def retry_action(
    request: Request, state: StateDep, _session: CheckedDep, invocation_id: str
) -> Response:
    try:
        inv = await run_in_threadpool(retry_invocation, state.runtime, invocation_id)
    except PipelineError as exc:
        return await back(request, f"not retried: {exc}")
    return await back(request, f"{inv.function} on {inv.key} queued again")


@router.post("/runs/{run_id}/redrive")
async def redrive_action(request: Request, state: StateDep, _session: CheckedDep, run_id: str) -> Response:
    try:
        run = await run_in_threadpool(state.runtime.flows.redrive, run_id)
    except PipelineError as exc:
        return await back(request, f"not redriven: {exc}")
    started = [name for name, step in run.steps.items() if step.status.value == "running"]
    return await back(
        request, f"run {run.flow} on {run.key} redriven: {', '.join(started) or 'nothing'} started"
    )


@router.post("/runs/{run_id}/decide")
async def decide_action(request: Request, state: StateDep, session: CheckedDep, run_id: str) -> Response:
    """Approve or Reject an upload held for review; the reviewer's name and note are recorded."""
    form = await request.form(max_files=0, max_fields=8, max_part_size=4096)
    action, by, note = (str(form.get(name) or "").strip() for name in ("action", "by", "note"))
    if action not in ("approve", "reject"):
        raise BadRequest(f"unknown decision {action!r}: approve or reject")
    if not by:
        return await back(request, "not decided: say who you are (the decision is recorded with your name)")
    decision = Decision(
        action=action, by=by[:100], at=time.time(), via="dashboard", note=note[:1000], login=session.login
    )
    flows = state.runtime.flows
    try:
        run = await run_in_threadpool(
            flows.approve if action == "approve" else flows.reject, run_id, decision
        )
    except PipelineError as exc:
        return await back(request, f"not decided: {exc}")
    if action == "approve":
        started = [name for name, step in run.steps.items() if step.status.value == "running"]
        return await back(request, f"{run.key} approved by {by}: {', '.join(started) or 'nothing'} started")
    target = run.screening.quarantine if run.screening else None
    where = f", quarantined as {target.key}" if target else ""
    return await back(request, f"{run.key} rejected by {by}{where}")


@router.post("/runs/{run_id}/steps/{step}/rerun")
async def rerun_action(
    request: Request, state: StateDep, _session: CheckedDep, run_id: str, step: str, downstream: bool = False
) -> Response:
    try:
        run = await run_in_threadpool(state.runtime.flows.rerun, run_id, step, downstream)
    except PipelineError as exc:
        return await back(request, f"not rerun: {exc}")
    also = " and its dependents" if downstream else ""
    return await back(request, f"{step}{also} of run {run.flow} on {run.key} started again")


@router.post("/functions/{name}/{action}")
async def function_action(
    request: Request, state: StateDep, _session: CheckedDep, name: str, action: str
) -> Response:
    if name not in state.runtime.pipeline.functions:
        raise NotFound(f"no function {name}")
    if action in ("pause", "resume"):
        await run_in_threadpool(state.controls.set_paused, name, action == "pause")
    elif action in ("disable", "enable"):
        state.runtime.ledger.flags.switch("disabled", name, action == "disable")
    else:
        raise NotFound(f"no action {action}")
    return await back(request, f"{name}: {action}d")


@router.post("/webhooks/{sub_id}/{action}")
async def webhook_action(
    request: Request, state: StateDep, _session: CheckedDep, sub_id: str, action: str
) -> Response:
    subs = state.notifier.subs
    if subs.get(sub_id) is None:
        raise NotFound(f"no webhook subscription {sub_id}")
    if action == "enable":
        subs.enable(sub_id)
    elif action == "disable":
        subs.disable(sub_id, "disabled by an operator")
    else:
        raise NotFound(f"no action {action}")
    return await back(request, f"{sub_id}: {action}d")


@router.post("/messages/{msg_id}/redeliver")
async def redeliver_action(request: Request, state: StateDep, _session: CheckedDep, msg_id: str) -> Response:
    try:
        state.notifier.redeliver(msg_id)
    except PipelineError as exc:
        return await back(request, f"not redelivered: {exc}")
    return await back(request, f"{msg_id} will be sent again")


@router.post("/upload")
async def upload_action(request: Request, state: StateDep, _session: CheckedDep) -> Response:
    form = await request.form()
    try:
        return await _store_uploads(state, form)
    finally:
        await form.close()  # the spooled temp files of the multipart body


async def _store_uploads(state: StateDep, form: FormData) -> Response:
    bucket = str(form.get("bucket") or "")
    prefix = str(form.get("prefix") or "uploads/")
    if bucket not in (state.runtime.pipeline.config.watched_buckets() or ["media"]):
        raise BadRequest(f"bucket {bucket!r} is not one the pipeline watches")
    files = [f for f in form.getlist("files") if isinstance(f, UploadFile) and f.filename]
    if not files:
        query = urlencode({"flash": "choose a file first"})
        return RedirectResponse(f"/admin/upload?{query}", status.HTTP_303_SEE_OTHER)
    keys = []
    for file in files:
        name = Path(file.filename or "upload").name
        with tempfile.TemporaryDirectory() as tmp:
            path = await save_upload(file, Path(tmp) / "upload")
            try:
                await run_in_threadpool(upload_file, state.runtime, path, bucket, prefix + name)
            except PipelineError as exc:
                raise BadRequest(f"{name}: {exc}") from exc
        keys.append(prefix + name)
    if len(keys) == 1:
        return RedirectResponse(f"/admin/uploads/{bucket}/{quote(keys[0])}", status.HTTP_303_SEE_OTHER)
    return RedirectResponse("/admin/uploads?" + urlencode({"q": prefix}), status.HTTP_303_SEE_OTHER)
