"""The admin dashboard's routes: pages (GET), actions (POST, CSRF-checked), the live stream, and
previews of stored objects. What each page shows is assembled in `pipeline.admin.views`."""

from __future__ import annotations

import asyncio
import json
import mimetypes
import tempfile
import time
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from pipeline.admin import stats, views
from pipeline.admin.auth import COOKIE, SESSION_SECONDS, Session, csrf_matches, password_matches
from pipeline.errors import BrokerUnavailable, ObjectNotFound, PipelineError
from pipeline.gateway.deps import StateDep
from pipeline.invocation import Status
from pipeline.retry import RetryRefused, retry_all_dead, retry_invocation
from pipeline.settings import is_loopback
from pipeline.uploads import upload_file

router = APIRouter(prefix="/admin", include_in_schema=False)
ADMIN_DIR = Path(str(resources.files("pipeline.admin")))


def _pretty_json(raw: str) -> str:
    try:
        return json.dumps(json.loads(raw), indent=2)
    except ValueError:
        return raw


templates = Jinja2Templates(directory=str(ADMIN_DIR / "templates"))
templates.env.filters.update(
    when=lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "\u2013",
    ms=lambda v: "\u2013" if v is None else (f"{v / 1000:.2f} s" if v >= 1000 else f"{v:.0f} ms"),
    size=lambda n: (
        f"{n / 1048576:.1f} MB" if n >= 1048576 else (f"{n / 1024:.0f} KB" if n >= 1024 else f"{n} B")
    ),
    pretty=_pretty_json,
)
LOGIN_ATTEMPTS = 10  # per client address per 5 minutes


class LoginRequired(Exception):
    """Raised when a page is asked for without a session; answered with a redirect to the login."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


def login_redirect(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return RedirectResponse(f"/admin/login?{urlencode({'next': exc.next_url})}", status.HTTP_303_SEE_OTHER)


def _dashboard_refusal(state: StateDep) -> str | None:
    if state.settings.admin_password is None and not is_loopback(state.settings.gateway_host):
        return "the dashboard needs PIPELINE_ADMIN_PASSWORD when the gateway listens beyond loopback"
    return None


def admin_session(request: Request, state: StateDep) -> Session:
    refusal = _dashboard_refusal(state)
    if refusal:
        raise HTTPException(status.HTTP_403_FORBIDDEN, refusal)
    session = state.sessions.get(request.cookies.get(COOKIE))
    if session is None:
        if request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise LoginRequired(target)
        raise HTTPException(status.HTTP_403_FORBIDDEN, "not logged in")
    return session


SessionDep = Annotated[Session, Depends(admin_session)]


async def checked_session(request: Request, session: SessionDep) -> Session:
    """Every state-changing request: same-site, and carrying the session's CSRF token."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-site request refused")
    origin = request.headers.get("origin")
    if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "request from another origin refused")
    form = await request.form()
    token = request.headers.get("x-csrf-token") or form.get("csrf")
    if not csrf_matches(session, token if isinstance(token, str) else None):
        await form.close()
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token")
    return session


CheckedDep = Annotated[Session, Depends(checked_session)]


def _safe_next(url: str | None) -> str:
    return url if url and url.startswith("/admin") and not url.startswith("//") else "/admin"


async def _back(request: Request, flash: str) -> RedirectResponse:
    form = await request.form()
    back = form.get("back")
    target = _safe_next(back if isinstance(back, str) else None)
    sep = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{sep}{urlencode({'flash': flash})}", status.HTTP_303_SEE_OTHER)


def _here(request: Request) -> str:
    """This page's address for "back" links, without the fragment and flash parameters."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k not in ("fragment", "flash")]
    return request.url.path + (f"?{urlencode(query)}" if query else "")


def _page(
    request: Request, state: StateDep, session: Session | None, name: str, **context: Any
) -> HTMLResponse:
    fragment = request.query_params.get("fragment") == "1"
    template = f"_{name}.html" if fragment else f"{name}.html"
    return templates.TemplateResponse(
        request,
        template,
        {
            "page": name,
            "csrf": session.csrf if session else "",
            "flash": request.query_params.get("flash", ""),
            "here": _here(request),
            "dev_mode": state.settings.admin_password is None,
            **context,
        },
    )


# --- login ---------------------------------------------------------------------------------------
@router.get("/login")
def login_form(request: Request, state: StateDep, next: str = "/admin", error: str = "") -> HTMLResponse:
    return _page(
        request, state, None, "login", next=_safe_next(next), error=error, refusal=_dashboard_refusal(state)
    )


@router.post("/login")
async def login(request: Request, state: StateDep) -> Response:
    refusal = _dashboard_refusal(state)
    if refusal:
        raise HTTPException(status.HTTP_403_FORBIDDEN, refusal)
    form = await request.form()
    target = _safe_next(str(form.get("next") or ""))
    client = request.client.host if request.client else "?"
    tries = f"pl:admin:tries:{client}"
    r = state.runtime.ledger.r
    if int(r.get(tries) or 0) >= LOGIN_ATTEMPTS:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "too many failed logins; wait 5 minutes")
    expected = state.settings.admin_password
    given = str(form.get("password") or "")
    if expected is not None and not password_matches(given, expected.get_secret_value()):
        r.incr(tries)
        r.expire(tries, 300)
        query = urlencode({"next": target, "error": "wrong password"})
        return RedirectResponse(f"/admin/login?{query}", status.HTTP_303_SEE_OTHER)
    _session, cookie = state.sessions.create()
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
    return _page(request, state, session, "overview", snap=snap, notices=state.notifier.notices(5))


@router.get("/uploads")
def uploads(
    request: Request, state: StateDep, session: SessionDep, q: str = "", outputs: bool = False
) -> HTMLResponse:
    found = views.search_uploads(state.runtime, q, outputs=outputs)
    return _page(request, state, session, "uploads", q=q, outputs=outputs, found=found)


@router.get("/uploads/{bucket}/{key:path}")
def upload_timeline(
    request: Request, state: StateDep, session: SessionDep, bucket: str, key: str
) -> HTMLResponse:
    line = views.timeline(state.runtime, state.notifier, bucket, key)
    return _page(request, state, session, "timeline", line=line)


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
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"unknown status {status_}")
    filters = views.InvocationFilter(status_ or None, function or None, bucket or None, prefix, since)
    return _page(
        request,
        state,
        session,
        "invocations",
        items=filters.apply(state.runtime),
        filters=filters,
        statuses=[s.value for s in Status],
        functions=sorted(state.runtime.pipeline.functions),
        dead=len(state.runtime.ledger.ids_with_status(Status.DEAD)),
    )


@router.get("/functions")
def functions_page(request: Request, state: StateDep, session: SessionDep) -> HTMLResponse:
    return _page(request, state, session, "functions", functions=views.functions(state.runtime))


@router.get("/webhooks")
def webhooks_page(request: Request, state: StateDep, session: SessionDep) -> HTMLResponse:
    notifier = state.notifier
    subs = [s for s in notifier.subs.all() if s.source != "callback"]
    messages = notifier.messages.list(limit=50)
    return _page(
        request,
        state,
        session,
        "webhooks",
        subs=subs,
        messages=[(m, notifier.messages.attempts(m.id)) for m in messages],
        notices=notifier.notices(20),
    )


@router.get("/rules")
def rules_page(
    request: Request,
    state: StateDep,
    session: SessionDep,
    bucket: str = "",
    key: str = "",
    content_type: str = "",
) -> HTMLResponse:
    config = state.runtime.pipeline.config
    result = views.dry_run(state.runtime, bucket, key, content_type) if key and bucket else None
    return _page(
        request,
        state,
        session,
        "rules",
        rules=config.rules,
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
    return _page(request, state, session, "upload", buckets=buckets, store=state.runtime.store.describe())


# --- actions -------------------------------------------------------------------------------------
@router.post("/invocations/retry-dead")
async def retry_dead_action(request: Request, state: StateDep, _session: CheckedDep) -> Response:
    try:
        done = await run_in_threadpool(retry_all_dead, state.runtime)
    except BrokerUnavailable as exc:
        return await _back(request, f"not retried: {exc}")
    return await _back(request, f"{len(done)} dead invocations queued again")


@router.post("/invocations/{invocation_id}/retry")
async def retry_action(
    request: Request, state: StateDep, _session: CheckedDep, invocation_id: str
) -> Response:
    try:
        inv = await run_in_threadpool(retry_invocation, state.runtime, invocation_id)
    except (LookupError, RetryRefused, BrokerUnavailable) as exc:
        return await _back(request, f"not retried: {exc}")
    return await _back(request, f"{inv.function} on {inv.key} queued again")


@router.post("/functions/{name}/{action}")
async def function_action(
    request: Request, state: StateDep, _session: CheckedDep, name: str, action: str
) -> Response:
    if name not in state.runtime.pipeline.functions:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no function {name}")
    if action in ("pause", "resume"):
        await run_in_threadpool(state.controls.set_paused, name, action == "pause")
    elif action in ("disable", "enable"):
        state.runtime.ledger.set_function_flag("disabled", name, action == "disable")
    else:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no action {action}")
    return await _back(request, f"{name}: {action}d")


@router.post("/webhooks/{sub_id}/{action}")
async def webhook_action(
    request: Request, state: StateDep, _session: CheckedDep, sub_id: str, action: str
) -> Response:
    subs = state.notifier.subs
    if subs.get(sub_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no webhook subscription {sub_id}")
    if action == "enable":
        subs.enable(sub_id)
    elif action == "disable":
        subs.disable(sub_id, "disabled by an operator")
    else:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no action {action}")
    return await _back(request, f"{sub_id}: {action}d")


@router.post("/messages/{msg_id}/redeliver")
async def redeliver_action(request: Request, state: StateDep, _session: CheckedDep, msg_id: str) -> Response:
    try:
        state.notifier.redeliver(msg_id)
    except (LookupError, PermissionError) as exc:
        return await _back(request, f"not redelivered: {exc}")
    return await _back(request, f"{msg_id} will be sent again")


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
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"bucket {bucket!r} is not one the pipeline watches")
    files = [f for f in form.getlist("files") if isinstance(f, UploadFile) and f.filename]
    if not files:
        query = urlencode({"flash": "choose a file first"})
        return RedirectResponse(f"/admin/upload?{query}", status.HTTP_303_SEE_OTHER)
    keys = []
    for file in files:
        name = Path(file.filename or "upload").name
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "upload"
            with path.open("wb") as out:
                while chunk := await file.read(1 << 20):
                    out.write(chunk)
            try:
                await run_in_threadpool(upload_file, state.runtime, path, bucket, prefix + name)
            except PipelineError as exc:
                raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{name}: {exc}") from exc
        keys.append(prefix + name)
    if len(keys) == 1:
        return RedirectResponse(f"/admin/uploads/{bucket}/{quote(keys[0])}", status.HTTP_303_SEE_OTHER)
    return RedirectResponse("/admin/uploads?" + urlencode({"q": prefix}), status.HTTP_303_SEE_OTHER)


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
    running = ledger.get_many(ledger.ids_with_status(Status.RUNNING))
    return json.dumps(
        [
            ledger.counts(),
            ledger.r.zcard("pl:idx:events"),
            [(i.id, (i.progress or {}).get("percent")) for i in running],
            sorted(ledger.function_flags("paused")),
            sorted(ledger.function_flags("disabled")),
            sorted(w.hostname for w in ledger.workers()),
            [ledger.stat(f"webhooks:{k}") for k in ("delivered", "retried", "failed")],
            int(ledger.r.llen("pl:wh:notices")),
        ]
    )


@router.get("/objects/{bucket}/{key:path}")
def object_preview(state: StateDep, _session: SessionDep, bucket: str, key: str) -> Response:
    """A stored object, for previews: images inline, anything else as a download; never run as a page."""
    tmp = tempfile.TemporaryDirectory()
    path = Path(tmp.name) / "object"
    try:
        info = state.runtime.store.get_file(bucket, key, path)
    except (ObjectNotFound, PipelineError) as exc:
        tmp.cleanup()
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    content_type = info.content_type or mimetypes.guess_type(key)[0] or "application/octet-stream"
    inline = content_type in ("image/jpeg", "image/png", "image/webp", "image/gif", "image/avif")
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
