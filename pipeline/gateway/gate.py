"""What every request passes before a route sees it: where it may come from, what it must say it
carries, its credentials, and the size of its body.

- Development mode (a token unset) is loopback only, whatever address the server was started on:
  a Host that is not a loopback name is refused (400), which defeats DNS rebinding, and a
  state-changing request a browser marks as cross-site, or whose Origin is not the gateway's own,
  is refused (403), which defeats a web page posting `text/plain` to 127.0.0.1.
- JSON routes take `application/json` only (415), except `/events/sns` (SNS posts JSON as text).
- FastAPI reads and parses a route's JSON body before its dependencies run, so a token dependency
  would hold any body in memory before answering 401: `/api/*` without the API token is answered
  401 here, the one place it is checked, without reading a byte of the body.
- Behind a proxy listed in PIPELINE_TRUSTED_PROXIES, the client address and scheme are taken
  from X-Forwarded-For and X-Forwarded-Proto (from nobody else), so login throttling counts real
  clients and the session cookie stays Secure behind a TLS-terminating proxy.
- A declared length over the route's limit is answered 413 at once, and a body streamed past the
  limit (chunked, or lying about its length) is cut off with 413 as soon as it crosses it.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pipeline.errors import (
    BadRequest,
    BodyTooLarge,
    Forbidden,
    PipelineError,
    Unauthorized,
    UnsupportedMediaType,
)
from pipeline.gateway.deps import authorized
from pipeline.settings import Settings, is_loopback

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Routes that take files: their limit is the largest object screening lets through.
UPLOAD_ROUTES = re.compile(r"^/(admin/upload|api/functions/[^/]+/invoke)$")
# Routes whose bodies are JSON; `/events/sns` is not among them (SNS posts JSON as text/plain).
JSON_ROUTES = re.compile(r"^/(api/.*|events/minio)$")
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
API_DESCRIPTION = {"/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"}


class RequestGate:
    def __init__(self, app: ASGIApp, settings: Settings, upload_limit: Callable[[], int]) -> None:
        self.app = app
        self.settings = settings
        self.upload_limit = upload_limit
        self.proxies = tuple(ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies)

    def limit_for(self, path: str) -> int:
        return self.upload_limit() if UPLOAD_ROUTES.match(path) else self.settings.max_event_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.proxies:
            scope = self._as_forwarded(scope, headers)
        try:
            if self.settings.dev_mode or self.settings.api_token is None:
                _loopback_only(scope, headers)
            self._check_content_type(scope, path, headers)
            self._authenticate(path, headers)
            limit = self.limit_for(path)
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise BodyTooLarge(f"body over {limit} bytes")
        except PipelineError as exc:
            await _refuse(send, exc)
            return
        guard = _BodyGuard(receive, send, limit)
        try:
            await self.app(scope, guard.receive, guard.send)
        except Exception:
            if not guard.refused:  # the app failing on its own: not ours to hide
                raise

    def _trusted(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self.proxies)

    def _as_forwarded(self, scope: Scope, headers: dict[str, str]) -> Scope:
        """Behind a trusted proxy, the client and scheme are the ones the proxy saw: the client is
        the rightmost X-Forwarded-For address that is not itself a trusted proxy (addresses to its
        left were written by whoever connected to the proxy, and prove nothing)."""
        peer = (scope.get("client") or ("", 0))[0]
        if not self._trusted(peer):
            return scope
        hops = [h.strip() for h in headers.get("x-forwarded-for", "").split(",") if h.strip()]
        client = next((h for h in reversed(hops) if not self._trusted(h)), hops[0] if hops else peer)
        scheme = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        updated = dict(scope, client=(client, 0))
        if scheme in ("http", "https"):
            updated["scheme"] = scheme
        return updated

    @staticmethod
    def _check_content_type(scope: Scope, path: str, headers: dict[str, str]) -> None:
        if scope["method"] not in STATE_CHANGING or not JSON_ROUTES.match(path):
            return
        if headers.get("content-length", "0") == "0" and "transfer-encoding" not in headers:
            return  # no body: MinIO's ping, a retry, a rotation
        kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind == "application/json" or (kind == "multipart/form-data" and UPLOAD_ROUTES.match(path)):
            return
        raise UnsupportedMediaType(f"{path} takes application/json, not {kind or 'a body without a type'}")

    def _authenticate(self, path: str, headers: dict[str, str]) -> None:
        """`/api/*` and the API's own description need the API token; `/metrics` its own token
        when one is set (a scraper then needs no API access)."""
        if path == "/metrics":
            expected, what = self.settings.metrics_token, "metrics token"
        elif path.startswith("/api/") or path in API_DESCRIPTION:
            expected, what = self.settings.api_token, "API token"
        else:
            return
        if not authorized(headers.get("authorization"), expected):
            raise Unauthorized(f"missing or wrong {what}")


def _loopback_only(scope: Scope, headers: dict[str, str]) -> None:
    host = headers.get("host", "")
    name = host[1:].split("]", 1)[0] if host.startswith("[") else host.rsplit(":", 1)[0]
    if not is_loopback(name):
        raise BadRequest(
            f"Host {host!r} is not a loopback name; in development mode the gateway answers only those"
        )
    if scope["method"] not in STATE_CHANGING:
        return
    origin = headers.get("origin")
    scheme = scope.get("scheme", "http")
    if headers.get("sec-fetch-site") == "cross-site" or (origin and origin != f"{scheme}://{host}"):
        raise Forbidden("cross-site request refused (development mode)")


class _BodyGuard:
    """Counts the body as the app reads it. Past the limit it answers 413 itself and tells the app
    the client went away, so nothing reads more than the limit into memory; whatever the app then
    tries to send is dropped."""

    def __init__(self, receive: Receive, send: Send, limit: int) -> None:
        self._receive, self._send, self.limit = receive, send, limit
        self.seen = 0
        self.started = False
        self.refused = False

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit and not self.started:
                self.refused = True
                await _refuse(self._send, BodyTooLarge(f"body over {self.limit} bytes"))
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        self.started = True
        await self._send(message)


async def _refuse(send: Send, exc: PipelineError) -> None:
    body = json.dumps({"detail": str(exc)}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": exc.http_status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
