"""One signed POST to a checked destination. No retries here; `delivery.py` decides about those."""

from __future__ import annotations

import functools
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import anyio
import httpx
from standardwebhooks import Webhook

from pipeline import __version__
from pipeline.notify.guard import Destination
from pipeline.notify.messages import SNIPPET_CHARS

USER_AGENT = f"media-pipeline-webhooks/{__version__}"
MAX_READ = 4096


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    latency_ms: float
    response: str = ""
    error: str | None = None
    retry_after: float | None = None
    location: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@functools.cache
def _tls() -> ssl.SSLContext:
    """One verifying TLS context for all attempts: building one costs more than a loopback POST."""
    return ssl.create_default_context()


def signature_headers(msg_id: str, body: str, secrets: list[str], at: datetime) -> dict[str, str]:
    """Standard Webhooks headers; one `v1,` signature per valid secret (rotation)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(Webhook(secret).sign(msg_id, at, body) for secret in secrets),
    }


def parse_retry_after(value: str | None, now: float) -> float | None:
    """`Retry-After` is either seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


def post(dest: Destination, msg_id: str, body: str, secrets: list[str], timeout: float) -> Outcome:
    """POST `body` to the resolved address of `dest`, never following redirects and never through
    a proxy from the environment (either would reach an address the guard did not check).

    `timeout` bounds the whole attempt, connecting to the last byte read: httpx's own time-outs
    are per read, so a receiver trickling its headers a byte at a time would otherwise hold the
    thread far longer, and outlast the lock that keeps a message from being sent twice at once."""
    started = time.monotonic()
    try:
        return anyio.run(_post, dest, msg_id, body, secrets, timeout, started)
    except TimeoutError:
        return Outcome(None, _ms(started), error=f"timed out after {timeout:g}s (no complete answer)")


async def _post(
    dest: Destination, msg_id: str, body: str, secrets: list[str], timeout: float, started: float
) -> Outcome:
    headers = {
        **signature_headers(msg_id, body, secrets, datetime.now(tz=UTC)),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "host": dest.host_header,
    }
    # TLS is verified against the name, not the address we connect to.
    extensions = {"sni_hostname": dest.host} if dest.scheme == "https" else {}
    deadline = started + timeout
    try:
        # A fresh connection per attempt: a pooled one could carry another name's TLS session.
        async with httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, trust_env=False, verify=_tls()
        ) as client:
            request = client.build_request(
                "POST", dest.connect_url, content=body.encode(), headers=headers, extensions=extensions
            )
            with anyio.fail_after(timeout):  # connected, sent, and the status and headers read
                response = await client.send(request, stream=True)
            try:
                snippet = bytearray()
                # The status is the answer; a body dribbled past the deadline is cut short.
                with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
                    async for chunk in response.aiter_bytes():
                        snippet.extend(chunk)
                        if len(snippet) >= MAX_READ:
                            break
            finally:
                await response.aclose()
    except httpx.TimeoutException:
        return Outcome(None, _ms(started), error=f"timed out after {timeout:g}s")
    except httpx.HTTPError as exc:
        return Outcome(None, _ms(started), error=f"{type(exc).__name__}: {exc}"[:SNIPPET_CHARS])
    return Outcome(
        response.status_code,
        _ms(started),
        response=snippet.decode("utf-8", "replace")[:SNIPPET_CHARS],
        retry_after=parse_retry_after(response.headers.get("retry-after"), time.time()),
        location=response.headers.get("location"),
    )


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
