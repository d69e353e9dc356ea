"""What the gateway checks before any route reads a body: the API token, and the size of the body.

FastAPI reads and parses a route's JSON body before its dependencies run, so a token dependency
alone would hold any body in memory before answering 401. This middleware runs first: `/api/*`
without the API token is answered 401 without reading a byte of the body, a declared length over
the route's limit is answered 413 at once, and a body streamed past the limit (chunked, or lying
about its length) is cut off with 413 as soon as it crosses it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pipeline.errors import BodyTooLarge, PipelineError, Unauthorized
from pipeline.gateway.deps import bearer, tokens_match
from pipeline.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Routes that take files: their limit is the largest object screening lets through.
UPLOAD_ROUTES = re.compile(r"^/(admin/upload|api/functions/[^/]+/invoke)$")


class RequestLimits:
    def __init__(self, app: ASGIApp, settings: Settings, upload_limit: Callable[[], int]) -> None:
        self.app = app
        self.settings = settings
        self.upload_limit = upload_limit

    def limit_for(self, path: str) -> int:
        return self.upload_limit() if UPLOAD_ROUTES.match(path) else self.settings.max_event_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
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

    def _authenticate(self, path: str, headers: dict[str, str]) -> None:
        expected = self.settings.api_token
        if expected is None or not path.startswith("/api/"):
            return
        if not tokens_match(bearer(headers.get("authorization")), expected.get_secret_value()):
            raise Unauthorized("missing or wrong API token")


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
