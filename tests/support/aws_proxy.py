"""An HTTP proxy in front of the moto server that records every AWS call and can refuse
chosen ones with a real AWS error response.

The deploy tests point ``AWS_ENDPOINT_URL`` here: the log shows which calls changed
something (and in which order), and a refused call is a failure the deploy cannot foresee
in its preflight (Lambda answering ``CodeStorageExceededException`` to one update), exactly
as the real endpoint would send it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import requests

_HOP_BY_HOP = {"host", "content-length", "connection", "transfer-encoding", "accept-encoding"}
_MUTATING_QUERY_ACTIONS = ("Create", "Put", "Delete", "Attach", "Detach", "Update", "Tag")


@dataclass(frozen=True)
class AwsCall:
    method: str
    path: str
    operation: str  # "lambda PUT /2015-03-31/functions/x/code", "AWSStepFunctions.UpdateStateMachine", "iam GetRole"
    body: bytes
    status: int

    @property
    def mutating(self) -> bool:
        if self.operation.startswith("lambda "):
            return self.method in ("PUT", "POST", "DELETE")
        if self.operation.startswith("AWSStepFunctions."):
            action = self.operation.split(".", 1)[1]
            return action.startswith(("Create", "Update", "Delete", "Start", "Stop", "Tag"))
        if self.operation.startswith("iam "):
            return self.operation.split(" ", 1)[1].startswith(_MUTATING_QUERY_ACTIONS)
        if self.operation.startswith("s3 "):
            return self.method in ("PUT", "POST", "DELETE")
        return True


@dataclass(frozen=True)
class Refusal:
    status: int
    error_type: str
    message: str


def _operation(method: str, path: str, headers: dict[str, str], body: bytes) -> str:
    target = headers.get("x-amz-target")
    if target:
        return target
    if path.startswith("/2015-03-31/") or path.startswith("/2018-10-31/"):
        return f"lambda {method} {path.split('?', 1)[0]}"
    authorization = headers.get("authorization", "")
    if "/iam/aws4_request" in authorization:
        action = parse_qs(body.decode("utf-8", "replace")).get("Action", ["?"])[0]
        return f"iam {action}"
    if "/sts/aws4_request" in authorization:
        return "sts"
    return f"s3 {method} {path.split('?', 1)[0]}"


class AwsProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.calls: list[AwsCall] = []
        self._refuse: list[tuple[Callable[[AwsCall], bool], Refusal]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> AwsProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def refuse(self, when: Callable[[AwsCall], bool], refusal: Refusal) -> None:
        with self._lock:
            self._refuse.append((when, refusal))

    def mutating_calls(self) -> list[AwsCall]:
        with self._lock:
            return [call for call in self.calls if call.mutating and call.status < 300]

    def _refusal_for(self, call: AwsCall) -> Refusal | None:
        with self._lock:
            return next((refusal for when, refusal in self._refuse if when(call)), None)

    def _record(self, call: AwsCall) -> None:
        with self._lock:
            self.calls.append(call)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                operation = _operation(self.command, self.path, headers, body)
                probe = AwsCall(self.command, self.path, operation, body, 0)
                refusal = proxy._refusal_for(probe)
                if refusal is not None:
                    # rest-json services read the header, JSON 1.0 ones "__type"
                    payload = json.dumps(
                        {
                            "__type": refusal.error_type,
                            "Type": "User",
                            "message": refusal.message,
                        }
                    ).encode()
                    self._reply(
                        refusal.status,
                        {
                            "Content-Type": "application/json",
                            "x-amzn-ErrorType": refusal.error_type,
                        },
                        payload,
                    )
                    proxy._record(AwsCall(self.command, self.path, operation, body, refusal.status))
                    return
                forwarded = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                response = requests.request(
                    self.command,
                    proxy.upstream + self.path,
                    headers=forwarded,
                    data=body,
                    allow_redirects=False,
                    timeout=60,
                )
                proxy._record(
                    AwsCall(self.command, self.path, operation, body, response.status_code)
                )
                reply_headers = {
                    k: v
                    for k, v in response.headers.items()
                    if k.lower()
                    not in ("content-length", "transfer-encoding", "content-encoding", "connection")
                }
                self._reply(response.status_code, reply_headers, response.content)

            def _reply(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
