"""What every dashboard route shares: templates, sessions and CSRF checks, redirects."""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from pipeline.admin.auth import COOKIE, Session, csrf_matches
from pipeline.errors import Forbidden
from pipeline.flows.model import RunStatus
from pipeline.gateway.deps import StateDep
from pipeline.settings import is_loopback

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


MAX_UPLOAD_FILES = 50
MAX_FORM_FIELDS = 20


class LoginRequired(Exception):
    """Raised when a page is asked for without a session; answered with a redirect to the login."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


def login_redirect(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return RedirectResponse(f"/admin/login?{urlencode({'next': exc.next_url})}", status.HTTP_303_SEE_OTHER)


def dashboard_refusal(state: StateDep) -> str | None:
    if state.settings.admin_password is None and not is_loopback(state.settings.gateway_host):
        return "the dashboard needs PIPELINE_ADMIN_PASSWORD when the gateway listens beyond loopback"
    return None


def admin_session(request: Request, state: StateDep) -> Session:
    refusal = dashboard_refusal(state)
    if refusal:
        raise Forbidden(refusal)
    session = state.sessions.get(request.cookies.get(COOKIE))
    if session is None:
        if request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise LoginRequired(target)
        raise Forbidden("not logged in")
    return session


SessionDep = Annotated[Session, Depends(admin_session)]


async def checked_session(request: Request, session: SessionDep) -> Session:
    """Every state-changing request: same-site, and carrying the session's CSRF token."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise Forbidden("cross-site request refused")
    origin = request.headers.get("origin")
    if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise Forbidden("request from another origin refused")
    # Only the upload form carries files; every other action is a few short fields.
    files = MAX_UPLOAD_FILES if request.url.path == "/admin/upload" else 0
    form = await request.form(max_files=files, max_fields=MAX_FORM_FIELDS)
    token = request.headers.get("x-csrf-token") or form.get("csrf")
    if not csrf_matches(session, token if isinstance(token, str) else None):
        await form.close()
        raise Forbidden("missing or wrong CSRF token")
    return session


CheckedDep = Annotated[Session, Depends(checked_session)]


def safe_next(url: str | None) -> str:
    return url if url and url.startswith("/admin") and not url.startswith("//") else "/admin"


async def back(request: Request, flash: str) -> RedirectResponse:
    form = await request.form()
    back = form.get("back")
    target = safe_next(back if isinstance(back, str) else None)
    sep = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{sep}{urlencode({'flash': flash})}", status.HTTP_303_SEE_OTHER)


def here(request: Request) -> str:
    """This page's address for "back" links, without the fragment and flash parameters."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k not in ("fragment", "flash")]
    return request.url.path + (f"?{urlencode(query)}" if query else "")


def page(
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
            "here": here(request),
            "dev_mode": state.settings.admin_password is None,
            # Uploads waiting for a reviewer, beside the Review link on every page (one ZCARD).
            "held_count": state.runtime.ledger.runs.count_with_status(RunStatus.HELD) if session else 0,
            **context,
        },
    )
