"""Shared dependencies of the gateway routes: the runtime, auth checks and bounded body reading."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from pydantic import SecretStr
from starlette.datastructures import UploadFile

from pipeline.errors import BodyTooLarge
from pipeline.gateway.state import GatewayState


def get_state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


StateDep = Annotated[GatewayState, Depends(get_state)]


def tokens_match(given: str | None, expected: str) -> bool:
    """Constant-time comparison, so response timing reveals nothing about the token."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    # MinIO sends `Authorization: Bearer <token>`; older releases sent the bare token.
    return value.strip() if scheme.lower() == "bearer" and value else header.strip()


def authorized(authorization: str | None, expected: SecretStr | None) -> bool:
    """Whether an `Authorization` header carries the token a route needs (none set: anyone)."""
    return expected is None or tokens_match(bearer(authorization), expected.get_secret_value())


async def read_body(request: Request, limit: int) -> bytes:
    """Read at most `limit` bytes; anything larger is refused with 413 before it is buffered."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise BodyTooLarge(f"body over {limit} bytes")
    return bytes(body)


async def save_upload(file: UploadFile, dest: Path) -> Path:
    """Copy an uploaded file (a multipart part, spooled by Starlette) to `dest` in 1 MB chunks."""
    with dest.open("wb") as out:
        while chunk := await file.read(1 << 20):
            out.write(chunk)
    return dest
