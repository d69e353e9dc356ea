"""`POST /api/functions/{name}/invoke`: run a function on a stored object, or on an uploaded file.

Asynchronous by default (202 with the invocation and its status URL); `?wait=SECONDS` answers with
the result when it finishes in time, else still 202. An `Idempotency-Key` header makes a retried
request return the first one's invocation."""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from pipeline.errors import BadRequest, PipelineError
from pipeline.gateway.deps import StateDep, read_body, save_upload
from pipeline.invocation import Invocation
from pipeline.invoke import checked_params, invoke
from pipeline.ledger import keys

router = APIRouter(prefix="/api", tags=["invoke"])  # the API token: checked by the gate


@router.post("/functions/{name}/invoke", status_code=status.HTTP_202_ACCEPTED)
async def invoke_function(
    name: str,
    request: Request,
    state: StateDep,
    wait: Annotated[float, Query(ge=0, le=300)] = 0,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JSONResponse:
    """JSON `{"bucket", "key", "params"}`, or multipart with `file`, optional `params` (JSON) and
    `bucket`: the file is stored under `invoke/<id>/<name>` first."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        bucket, key, params = await _stored_upload(request, state, name)
    else:
        bucket, key, params = _reference(await read_body(request, state.settings.max_event_bytes))
    inv = await run_in_threadpool(invoke, state.runtime, name, bucket, key, params, idempotency_key)
    if wait and not inv.status.finished:
        inv = await _wait_finished(state, inv, wait)
    code = status.HTTP_200_OK if inv.status.finished else status.HTTP_202_ACCEPTED
    return JSONResponse(_result(state, inv), status_code=code)


async def _wait_finished(state: StateDep, inv: Invocation, wait: float) -> Invocation:
    """Listen for the invocation's verdict (published with it) for up to `wait` seconds: a waiting
    request holds a subscription, not a thread that polls the ledger."""
    client = state.async_redis()
    async with client.pubsub() as pubsub:
        await pubsub.subscribe(keys.finished_channel(inv.id))
        deadline = time.monotonic() + wait
        # Read once after subscribing, so a verdict recorded meanwhile is not missed.
        current = await run_in_threadpool(state.runtime.ledger.invocations.get, inv.id)
        while current is not None and not current.status.finished:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=remaining)
            if message is not None:
                current = await run_in_threadpool(state.runtime.ledger.invocations.get, inv.id)
    return current or inv


def _reference(body: bytes) -> tuple[str, str, dict[str, Any]]:
    try:
        data = json.loads(body or b"{}")
    except ValueError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest('expected {"bucket": str, "key": str, "params": {...}} or a file upload')
    bucket, key, params = data.get("bucket"), data.get("key"), data.get("params", {})
    if not isinstance(bucket, str) or not isinstance(key, str) or not isinstance(params, dict):
        raise BadRequest('expected {"bucket": str, "key": str, "params": {...}} or a file upload')
    return bucket, key, params


async def _stored_upload(request: Request, state: StateDep, function: str) -> tuple[str, str, dict[str, Any]]:
    form = await request.form(max_files=1, max_fields=4)
    try:
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise BadRequest("multipart body needs a `file` part")
        try:
            params = json.loads(str(form.get("params") or "{}"))
        except ValueError as exc:
            raise BadRequest(f"params is not JSON: {exc}") from exc
        buckets = state.runtime.pipeline.config.watched_buckets() or ["media"]
        bucket = str(form.get("bucket") or buckets[0])
        if not isinstance(params, dict):
            raise BadRequest("params must be a JSON object")
        # Everything is checked before the upload is stored; the bucket is one the pipeline file
        # names (never one a caller makes up), so making sure it exists is the operator's choice.
        checked_params(state.runtime.pipeline, function, bucket, params)
        key = f"invoke/{uuid.uuid4().hex}/{Path(file.filename or 'upload').name}"
        with tempfile.TemporaryDirectory() as tmp:
            path = await save_upload(file, Path(tmp) / "upload")
            try:
                await run_in_threadpool(state.runtime.store.ensure_bucket, bucket)
                await run_in_threadpool(state.runtime.store.put_file, bucket, key, path)
            except PipelineError as exc:
                raise BadRequest(f"cannot store the upload: {exc}") from exc
        return bucket, key, params
    finally:
        await form.close()


def _result(state: StateDep, inv: Invocation) -> dict[str, Any]:
    data = inv.public()
    data["status_url"] = f"/api/invocations/{inv.id}"
    seconds = state.settings.webhook_presign_seconds
    if seconds > 0:
        for out in data["outputs"]:
            out["url"] = state.runtime.store.presigned_get(out["bucket"], out["key"], seconds)
    return data
