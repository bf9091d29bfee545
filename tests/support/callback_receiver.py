"""A tiny HTTP server on a free 127.0.0.1 port that records callbacks (docs/contract.md §6).

Tests point ``CALLBACK_URL`` at it and read back exactly what was POSTed: raw body bytes
and headers, so the signature can be verified the way the Django receiver does. Planned
responses (status codes, delays) let a test make the first calls fail and see retries.

With ``backend_rules=True`` (fixture ``toq_backend``) it also binds every body the way the
TOQ backend does (``tests.support.go_callback``) and answers 400 ``INVALID_CALLBACK``, as
the backend would, to a body the backend could not decode.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from tests.support.go_callback import BackendRejects, decode_callback
from tests.support.loopback import LoopbackHTTPServer


@dataclass(frozen=True)
class ReceivedCallback:
    path: str
    headers: dict[str, str]
    body: bytes
    method: str = "POST"

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class PlannedResponse:
    status: int = 200
    body: bytes = b'{"ok":true}'
    delay_s: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()  # extra response headers (a redirect's Location)


class CallbackReceiver(LoopbackHTTPServer):
    """Records every POST; answers with the planned responses in order, then 200."""

    def __init__(self, *, backend_rules: bool = False) -> None:
        self.backend_rules = backend_rules
        # (body, the backend's 400 message) of every body refused under backend_rules
        self.rejected: list[tuple[bytes, str]] = []
        self.received: list[ReceivedCallback] = []
        self._planned: deque[PlannedResponse] = deque()
        self._lock = threading.Lock()
        super().__init__()

    @property
    def url(self) -> str:
        return f"{self.base_url}/api/v2/listings/media/callback"

    def plan(self, *responses: PlannedResponse) -> None:
        with self._lock:
            self._planned.extend(responses)

    def clear(self) -> None:
        with self._lock:
            self.received.clear()
            self._planned.clear()

    def _next_response(self, received: ReceivedCallback) -> PlannedResponse:
        refusal = self._backend_refusal(received.body) if self.backend_rules else None
        with self._lock:
            self.received.append(received)
            if refusal is not None:
                self.rejected.append((received.body, refusal))
                body = json.dumps({"code": "INVALID_CALLBACK", "message": refusal}).encode()
                return PlannedResponse(status=400, body=body)
            return self._planned.popleft() if self._planned else PlannedResponse()

    @staticmethod
    def _backend_refusal(body: bytes) -> str | None:

        try:
            decode_callback(body)
        except BackendRejects as exc:
            return str(exc)
        return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self._record("POST")

            def do_GET(self) -> None:  # a followed 302 turns a POST into a GET
                self._record("GET")

            def _record(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                received = ReceivedCallback(self.path, dict(self.headers.items()), body, method)
                planned = receiver._next_response(received)
                if planned.delay_s:
                    time.sleep(planned.delay_s)
                try:
                    self.send_response(planned.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(planned.body)))
                    for name, value in planned.headers:
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(planned.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    """A running receiver; stopped after the test (a plugin of tests/conftest.py)."""
    receiver = CallbackReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
def toq_backend() -> Iterator[CallbackReceiver]:
    """A receiver that answers like the TOQ backend's binding: 400 to a body it could not
    decode (``backend_rules``)."""
    receiver = CallbackReceiver(backend_rules=True).start()
    try:
        yield receiver
    finally:
        receiver.stop()
