"""The signed callback to the TOQ backend (docs/contract.md §6, sender side).

The body is serialised compactly with sorted keys, so the same result always produces the
same bytes (and the same signature) whichever engine sends it. The Django receiver imports
:func:`verify_signature` from here: signer and verifier cannot drift apart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import requests

SIGNATURE_HEADER = "X-Toq-Signature"
EXCERPT_BYTES = 2048

log = logging.getLogger("toq.pipeline.callback")


def sign(body: bytes, secret: str) -> str:
    """hex(HMAC-SHA256(secret, body))."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, secret: str, signature: str | None) -> bool:
    """True when ``signature`` is the hex HMAC of ``body``; compared in constant time.

    An empty secret verifies nothing: a receiver without a configured secret must refuse
    every call. Hex case is ignored.
    """
    if not secret or not signature:
        return False
    expected = sign(body, secret).encode()
    given = signature.strip().lower().encode(errors="replace")
    return hmac.compare_digest(expected, given)


def callback_payload(event: Any) -> Any:
    """What gets POSTed: the ``body`` member when the event has one, else the event itself.

    A ``body`` given as a JSON string (API-Gateway style) is parsed, so it is re-serialised
    in the canonical form and signed consistently.
    """
    if isinstance(event, dict) and "body" in event:
        body = event["body"]
        return json.loads(body) if isinstance(body, str | bytes) else body
    return event


def serialise_payload(payload: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace, UTF-8, NaN refused."""
    return json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


@dataclass(frozen=True)
class CallbackAttempt:
    url: str
    request_body: bytes
    signature: str
    status_code: int | None
    response_excerpt: str
    latency_ms: float
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.error is None


class CallbackFailed(Exception):
    """The backend did not accept the callback; raised so the caller's retry policy runs."""

    def __init__(self, attempt: CallbackAttempt) -> None:
        super().__init__(f"callback to {attempt.url} failed: {attempt.error}")
        self.attempt = attempt


def send_callback(
    event: Any,
    *,
    url: str,
    secret: str,
    timeout_s: float = 10,
    session: requests.Session | None = None,
) -> CallbackAttempt:
    """POST the signed payload once. Any status outside 2xx or a network error raises
    :class:`CallbackFailed` (redirects are not followed: a redirected POST was not applied).
    """
    if not url:
        raise ValueError("callback URL is not configured (CALLBACK_URL)")
    if not secret:
        raise ValueError("callback secret is not configured (CALLBACK_SECRET)")
    body = serialise_payload(callback_payload(event))
    signature = sign(body, secret)
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature}
    http = session or requests
    started = time.perf_counter()
    status_code: int | None = None
    excerpt = ""
    error: str | None = None
    try:
        response = http.post(
            url,
            data=body,
            headers=headers,
            timeout=timeout_s,
            allow_redirects=False,
            stream=True,
        )
        try:
            status_code = response.status_code
            # Read at most the excerpt: a misbehaving endpoint cannot make us buffer megabytes.
            head = next(response.iter_content(EXCERPT_BYTES), b"")
            excerpt = head[:EXCERPT_BYTES].decode(errors="replace")
        finally:
            response.close()
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {exc}"
    attempt = CallbackAttempt(
        url=url,
        request_body=body,
        signature=signature,
        status_code=status_code,
        response_excerpt=excerpt,
        latency_ms=round((time.perf_counter() - started) * 1000, 1),
        error=error,
    )
    log.log(
        logging.INFO if attempt.delivered else logging.WARNING,
        "callback %s",
        "delivered" if attempt.delivered else "failed",
        extra={
            "callback_url": url,
            "status_code": status_code,
            "latency_ms": attempt.latency_ms,
            "request_bytes": len(body),
            "error": error,
        },
    )
    if error is not None:
        raise CallbackFailed(attempt)
    return attempt
