"""A real webhook receiver on loopback: verifies Standard Webhooks signatures with the
`standardwebhooks` library and answers as scripted per path (200, 500, 429 + Retry-After, 410,
302, or slowly)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


@dataclass(frozen=True)
class Reply:
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    trickle: float = 0.0  # seconds over which the status line and headers go out, a byte at a time


@dataclass
class Received:
    path: str
    at: float
    headers: dict[str, str]
    body: bytes
    verified: bool
    verify_error: str = ""

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.in_flight: dict[str, int] = defaultdict(int)
        self.most_in_flight: dict[str, int] = defaultdict(int)
        self.secrets: dict[str, list[str]] = defaultdict(list)
        self._script: dict[str, list[Reply]] = defaultdict(list)
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                reply = receiver._next(self.path)
                receiver._record(self.path, headers, body)
                with receiver.counting(self.path):
                    self._answer(reply)

            def _answer(self, reply: Reply) -> None:
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.trickle:
                    head = f"HTTP/1.1 {reply.status} X\r\ncontent-length: 2\r\n\r\nok".encode()
                    try:
                        for byte in head:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(reply.trickle / len(head))
                    except OSError:
                        pass  # the sender gave up
                    return
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the sender gave up waiting (a timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @contextlib.contextmanager
    def counting(self, path: str) -> Iterator[None]:
        """Track how many requests to `path` are being answered at once."""
        path = path.split("?", maxsplit=1)[0]
        with self._lock:
            self.in_flight[path] += 1
            self.most_in_flight[path] = max(self.most_in_flight[path], self.in_flight[path])
        try:
            yield
        finally:
            with self._lock:
                self.in_flight[path] -= 1

    def script(self, path: str, *replies: Reply) -> None:
        """Answer the next requests to `path` with `replies` in order, then 200."""
        with self._lock:
            self._script[path].extend(replies)

    def _next(self, path: str) -> Reply:
        with self._lock:
            queue = self._script[path.split("?", maxsplit=1)[0]]
            return queue.pop(0) if queue else Reply()

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> None:
        verified, error = False, ""
        for secret in self.secrets.get(path.split("?", maxsplit=1)[0], []):
            try:
                Webhook(secret).verify(body, headers)
                verified = True
                break
            except WebhookVerificationError as exc:
                error = str(exc)
        with self._lock:
            self.requests.append(Received(path, time.monotonic(), headers, body, verified, error))

    def at(self, path: str, event_type: str | None = None) -> list[Received]:
        with self._lock:
            got = [r for r in self.requests if r.path == path]
        return [r for r in got if event_type is None or r.json.get("type") == event_type]
