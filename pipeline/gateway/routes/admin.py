"""The admin dashboard's pages (GET), login and logout, the live stream and object previews.
What each page shows is assembled in `pipeline.admin.views`; actions are in `admin_actions.py`."""

from __future__ import annotations

import asyncio
import json
import mimetypes
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline.admin import review_views, stats, usage_views, views
from pipeline.admin.auth import COOKIE, SESSION_SECONDS, password_matches
from pipeline.errors import BadRequest, Forbidden, NotFound, PipelineError, TooManyRequests
from pipeline.flows.graph import draw
from pipeline.gateway.deps import StateDep
from pipeline.gateway.routes.admin_common import (
    CheckedDep,
    SessionDep,
    dashboard_refusal,
    page,
    safe_next,
)
from pipeline.invocation import Status

LOGIN_FIELDS = 8
LOGIN_FIELD_BYTES = 4096

router = APIRouter(prefix="/admin", include_in_schema=False)


# --- login ---------------------------------------------------------------------------------------
@router.get("/login")
def login_form(request: Request, state: StateDep, next: str = "/admin", error: str = "") -> HTMLResponse:
    return page(
        request, state, None, "login", next=safe_next(next), error=error, refusal=dashboard_refusal(state)
    )


@router.post("/login")
async def login(request: Request, state: StateDep) -> Response:
    refusal = dashboard_refusal(state)
    if refusal:
        raise Forbidden(refusal)
    client = request.client.host if request.client else "?"
    refused, wait = state.sessions.login_throttle(client)
    if refused:  # before the form is even read
        raise TooManyRequests("too many failed logins from this address; wait 5 minutes")
    if wait:
        await asyncio.sleep(wait)
    # A login form is two short fields: no files, and nothing big enough to hold memory.
    try:
        form = await request.form(max_files=0, max_fields=LOGIN_FIELDS, max_part_size=LOGIN_FIELD_BYTES)
    except StarletteHTTPException as exc:  # multipart past those limits
        raise BadRequest(f"login form refused: {exc.detail}") from exc
    target = safe_next(str(form.get("next") or ""))
    expected = state.settings.admin_password
    given = str(form.get("password") or "")
    if expected is not None and not password_matches(given, expected.get_secret_value()):
        state.sessions.login_failed(client)
        query = urlencode({"next": target, "error": "wrong password"})
        return RedirectResponse(f"/admin/login?{query}", status.HTTP_303_SEE_OTHER)
    _session, cookie = state.sessions.create(client)
    response = RedirectResponse(target, status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=SESSION_SECONDS,
        path="/admin",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
def logout(state: StateDep, session: CheckedDep) -> Response:
    state.sessions.end(session)
    response = RedirectResponse("/admin/login", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(COOKIE, path="/admin")
    return response


# --- pages ---------------------------------------------------------------------------------------
@router.get("")
def overview(request: Request, state: StateDep, session: SessionDep) -> HTMLResponse:
    snap = stats.snapshot(state.runtime)
    return page(request, state, session, "overview", snap=snap, notices=state.notifier.notices.recent(5))


@router.get("/uploads")
def uploads(
    request: Request, state: StateDep, session: SessionDep, q: str = "", outputs: bool = False
) -> HTMLResponse:
    found = views.search_uploads(state.runtime, q, outputs=outputs)
    return page(request, state, session, "uploads", q=q, outputs=outputs, found=found)


@router.get("/uploads/{bucket}/{key:path}")
def upload_timeline(
    request: Request, state: StateDep, session: SessionDep, bucket: str, key: str
) -> HTMLResponse:
    line = views.timeline(state.runtime, state.notifier, bucket, key)
    return page(request, state, session, "timeline", line=line)


@router.get("/invocations")
def invocations(
    request: Request,
    state: StateDep,
    session: SessionDep,
    status_: Annotated[str, Query(alias="status")] = "",
    function: str = "",
    bucket: str = "",
    prefix: str = "",
    since: int | None = None,
) -> HTMLResponse:
    if status_ and status_ not in {s.value for s in Status}:
        raise BadRequest(f"unknown status {status_}")
    filters = views.InvocationFilter(status_ or None, function or None, bucket or None, prefix, since)
    return page(
        request,
        state,
        session,
        "invocations",
        items=filters.apply(state.runtime),
        filters=filters,
        statuses=[s.value for s in Status],
        functions=sorted(state.runtime.pipeline.functions),
        dead=state.runtime.ledger.invocations.count_with_status(Status.DEAD),
    )


@router.get("/functions")
def functionspage(request: Request, state: StateDep, session: SessionDep) -> HTMLResponse:
    return page(request, state, session, "functions", functions=views.functions(state.runtime))


@router.get("/usage")
def usagepage(request: Request, state: StateDep, session: SessionDep) -> HTMLResponse:
    return page(request, state, session, "usage", **usage_views.usage_page(state.runtime))


@router.get("/review")
def reviewpage(request: Request, state: StateDep, session: SessionDep) -> HTMLResponse:
    return page(request, state, session, "review", **review_views.review_page(state.runtime))


@router.get("/webhooks")
def webhookspage(request: Request, state: StateDep, session: SessionDep) -> HTMLResponse:
    notifier = state.notifier
    subs = [s for s in notifier.subs.all() if s.source != "callback"]
    messages = notifier.messages.list(limit=50)
    return page(
        request,
        state,
        session,
        "webhooks",
        subs=subs,
        messages=[(m, notifier.messages.attempts(m.id)) for m in messages],
        notices=notifier.notices.recent(20),
    )


@router.get("/rules")
def rulespage(
    request: Request,
    state: StateDep,
    session: SessionDep,
    bucket: str = "",
    key: str = "",
    content_type: str = "",
) -> HTMLResponse:
    config = state.runtime.pipeline.config
    result = views.dry_run(state.runtime, bucket, key, content_type) if key and bucket else None
    return page(
        request,
        state,
        session,
        "rules",
        rules=config.rules,
        flow_drawings={name: "\n".join(draw(flow)) for name, flow in config.flows.items()},
        buckets=config.watched_buckets(),
        result=result,
        form={
            "bucket": bucket or (config.watched_buckets() or ["media"])[0],
            "key": key,
            "content_type": content_type,
        },
    )


@router.get("/upload")
def upload_form(request: Request, state: StateDep, session: SessionDep) -> HTMLResponse:
    buckets = state.runtime.pipeline.config.watched_buckets() or ["media"]
    return page(request, state, session, "upload", buckets=buckets, store=state.runtime.store.describe())


# --- live updates and previews -------------------------------------------------------------------
@router.get("/stream")
async def stream(request: Request, state: StateDep, _session: SessionDep) -> StreamingResponse:
    """Server-sent events: `change` whenever what the pages show has changed (polled each second)."""

    async def events() -> AsyncIterator[str]:
        last, quiet = "", 0
        yield "retry: 2000\n\n"
        while not await request.is_disconnected():
            try:
                mark = await run_in_threadpool(_fingerprint, state)
            except Exception:  # Redis restarting: say nothing, try again
                mark = last
            if mark != last:
                last, quiet = mark, 0
                yield f"event: change\ndata: {len(mark)}\n\n"
            else:
                quiet += 1
                if quiet % 15 == 0:
                    yield ": keep-alive\n\n"
            await asyncio.sleep(1.0)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


def _fingerprint(state: StateDep) -> str:
    ledger = state.runtime.ledger
    running = ledger.invocations.get_many(ledger.invocations.ids_with_status(Status.RUNNING))
    return json.dumps(
        [
            ledger.invocations.counts(),
            ledger.events.count(),
            [(i.id, (i.progress or {}).get("percent")) for i in running],
            sorted(ledger.flags.members("paused")),
            sorted(ledger.flags.members("disabled")),
            sorted(w.hostname for w in ledger.workers.live()),
            [ledger.stats.get(f"webhooks:{k}") for k in ("delivered", "retried", "failed")],
            state.notifier.notices.count(),
        ]
    )


@router.get("/objects/{bucket}/{key:path}")
def object_preview(state: StateDep, _session: SessionDep, bucket: str, key: str) -> Response:
    """A stored object, for previews: images inline, anything else as a download; never run as a page."""
    tmp = tempfile.TemporaryDirectory()
    path = Path(tmp.name) / "object"
    try:
        info = state.runtime.store.get_file(bucket, key, path)
    except PipelineError as exc:  # whatever keeps it from being shown, there is nothing to preview
        tmp.cleanup()
        raise NotFound(str(exc)) from exc
    content_type = info.content_type or mimetypes.guess_type(key)[0] or "application/octet-stream"
    # Media the browser shows itself (the Review page plays held videos); never a page or a script.
    inline = content_type in (
        "image/jpeg",
        "image/png",
        "image/webp",
        "image/gif",
        "image/avif",
        "video/mp4",
        "video/webm",
    )
    return FileResponse(
        path,
        media_type=content_type if inline else "application/octet-stream",
        filename=None if inline else Path(key).name,
        headers={
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
            "Cache-Control": "private, max-age=60",
        },
        background=BackgroundTask(tmp.cleanup),
    )
