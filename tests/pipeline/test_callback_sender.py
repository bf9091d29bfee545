"""The callback sender (docs/contract.md §6) against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
from collections.abc import Iterator

import pytest
import requests

from media_jobs.pipeline import callback as callback_module
from media_jobs.pipeline.callback import (
    EXCERPT_BYTES,
    SIGNATURE_HEADER,
    CallbackFailed,
    callback_payload,
    send_callback,
    serialise_payload,
    sign,
    verify_signature,
)
from tests.fixtures.s3server import free_port
from tests.support.callback_receiver import CallbackReceiver, PlannedResponse

SECRET = "s3cr3t-callback-key"

BODY = {
    "jobId": 12,
    "listingIdentityId": "4711",
    "status": "SUCCEEDED",
    "outputs": [{"rawKey": "4711/raw/photo/vertical/v-01-Çà ü.jpg", "errorCode": ""}],
    "error": None,
}


def test_sign_matches_rfc4231_vector() -> None:
    # RFC 4231, test case 2.
    assert (
        sign(b"what do ya want for nothing?", "Jefe")
        == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_verify_signature() -> None:
    body = serialise_payload(BODY)
    good = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert verify_signature(body, SECRET, good)
    assert verify_signature(body, SECRET, good.upper())
    assert not verify_signature(body + b" ", SECRET, good)
    assert not verify_signature(body, "other", good)
    assert not verify_signature(body, SECRET, None)
    assert not verify_signature(body, SECRET, "")
    assert not verify_signature(body, "", good)
    assert not verify_signature(body, SECRET, "zz\u00e9")


def test_callback_payload_takes_the_body_member() -> None:
    assert callback_payload({"statusCode": 200, "body": BODY}) == BODY
    assert callback_payload(BODY) == BODY
    assert callback_payload({"body": json.dumps(BODY)}) == BODY


def test_serialisation_is_compact_and_deterministic() -> None:
    shuffled = dict(reversed(list(BODY.items())))
    assert serialise_payload(shuffled) == serialise_payload(BODY)
    raw = serialise_payload(BODY)
    assert b" " not in raw.replace("Çà ü".encode(), b"")
    assert json.loads(raw) == BODY
    with pytest.raises(ValueError):
        serialise_payload({"x": float("nan")})


def test_send_callback_posts_signed_body(receiver: CallbackReceiver) -> None:
    attempt = send_callback(
        {"statusCode": 200, "body": BODY}, url=receiver.url, secret=SECRET, timeout_s=5
    )
    assert attempt.status_code == 200
    assert attempt.error is None and attempt.delivered
    assert attempt.response_excerpt == '{"ok":true}'
    assert attempt.latency_ms >= 0
    [received] = receiver.received
    assert received.path == "/api/v2/listings/media/callback"
    assert received.body == attempt.request_body
    assert received.json() == BODY
    assert received.headers["Content-Type"] == "application/json"
    assert received.headers[SIGNATURE_HEADER] == attempt.signature
    assert verify_signature(received.body, SECRET, received.headers[SIGNATURE_HEADER])


def test_send_callback_with_a_session(receiver: CallbackReceiver) -> None:
    with requests.Session() as session:
        send_callback(BODY, url=receiver.url, secret=SECRET, session=session)
        send_callback(BODY, url=receiver.url, secret=SECRET, session=session)
    assert len(receiver.received) == 2
    assert receiver.received[0].body == receiver.received[1].body


class _RecordingSession(requests.Session):
    """A real session that notes the timeout each request was sent with."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[object] = []

    def request(self, *args: object, **kwargs: object) -> requests.Response:  # type: ignore[override]
        self.timeouts.append(kwargs.get("timeout"))
        return super().request(*args, **kwargs)  # type: ignore[arg-type]


def test_the_default_timeout_is_the_contracts_10_s(receiver: CallbackReceiver) -> None:
    """docs/contract.md §6: "10 s timeout" when the caller names none."""
    with _RecordingSession() as session:
        send_callback(BODY, url=receiver.url, secret=SECRET, session=session)
        send_callback(BODY, url=receiver.url, secret=SECRET, session=session, timeout_s=3)
    assert session.timeouts == [10, 3]
    assert len(receiver.received) == 2


@pytest.mark.parametrize("status", [400, 401, 404, 409, 413, 500, 502, 503])
def test_error_status_raises(receiver: CallbackReceiver, status: int) -> None:
    receiver.plan(PlannedResponse(status=status, body=b'{"detail":"nope"}'))
    with pytest.raises(CallbackFailed) as caught:
        send_callback(BODY, url=receiver.url, secret=SECRET)
    attempt = caught.value.attempt
    assert attempt.status_code == status
    assert attempt.error == f"HTTP {status}"
    assert attempt.response_excerpt == '{"detail":"nope"}'
    assert len(receiver.received) == 1


@pytest.fixture
def elsewhere() -> Iterator[CallbackReceiver]:
    """A second receiver: where a redirect points. Nothing may reach it."""
    other = CallbackReceiver().start()
    try:
        yield other
    finally:
        other.stop()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_is_not_followed_and_fails(
    receiver: CallbackReceiver, elsewhere: CallbackReceiver, status: int
) -> None:
    """A redirected POST was not applied by the backend: the attempt fails, and the body
    never goes to wherever the Location points (307/308 would re-POST it there)."""
    receiver.plan(PlannedResponse(status=status, body=b"", headers=(("Location", elsewhere.url),)))
    with pytest.raises(CallbackFailed) as caught:
        send_callback(BODY, url=receiver.url, secret=SECRET)
    assert caught.value.attempt.status_code == status
    assert caught.value.attempt.error == f"HTTP {status}"
    assert len(receiver.received) == 1
    assert elsewhere.received == []


@pytest.mark.parametrize(
    ("status", "delivered"), [(199, False), (200, True), (204, True), (299, True), (300, False)]
)
def test_only_2xx_is_delivered(receiver: CallbackReceiver, status: int, delivered: bool) -> None:
    receiver.plan(PlannedResponse(status=status, body=b"" if status == 204 else b"{}"))
    if delivered:
        attempt = send_callback(BODY, url=receiver.url, secret=SECRET)
        assert (attempt.status_code, attempt.error, attempt.delivered) == (status, None, True)
    else:
        with pytest.raises(CallbackFailed) as caught:
            send_callback(BODY, url=receiver.url, secret=SECRET)
        assert caught.value.attempt.error == f"HTTP {status}"
        assert not caught.value.attempt.delivered


def test_latency_covers_the_wait_for_the_answer(
    receiver: CallbackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """The attempt (and its log line) carry the time from the POST to the answer in ms: a
    receiver that answers after 0.3 s cannot have taken less than 300 ms, nor more than the
    5 s timeout."""
    receiver.plan(PlannedResponse(delay_s=0.3))
    with caplog.at_level(logging.INFO, logger="toq.pipeline.callback"):
        attempt = send_callback(BODY, url=receiver.url, secret=SECRET, timeout_s=5)
    assert 300 <= attempt.latency_ms < 5000
    [record] = [r for r in caplog.records if r.name == "toq.pipeline.callback"]
    assert record.getMessage() == "callback delivered" and record.levelno == logging.INFO
    assert record.latency_ms == attempt.latency_ms
    assert (record.status_code, record.request_bytes) == (200, len(attempt.request_body))


def test_response_excerpt_is_capped(receiver: CallbackReceiver) -> None:
    receiver.plan(PlannedResponse(status=500, body=b"x" * (EXCERPT_BYTES * 5)))
    with pytest.raises(CallbackFailed) as caught:
        send_callback(BODY, url=receiver.url, secret=SECRET)
    assert caught.value.attempt.response_excerpt == "x" * EXCERPT_BYTES


def test_network_error_raises() -> None:
    url = f"http://127.0.0.1:{free_port()}/callback"  # nothing listens there
    with pytest.raises(CallbackFailed) as caught:
        send_callback(BODY, url=url, secret=SECRET, timeout_s=2)
    attempt = caught.value.attempt
    assert attempt.status_code is None
    assert attempt.error is not None and "ConnectionError" in attempt.error
    assert url in str(caught.value)


def test_timeout_raises(receiver: CallbackReceiver) -> None:
    receiver.plan(PlannedResponse(delay_s=1.5))
    with pytest.raises(CallbackFailed) as caught:
        send_callback(BODY, url=receiver.url, secret=SECRET, timeout_s=0.3)
    assert caught.value.attempt.status_code is None
    assert "Timeout" in (caught.value.attempt.error or "")


def test_missing_configuration_is_refused(receiver: CallbackReceiver) -> None:
    with pytest.raises(ValueError, match="CALLBACK_URL"):
        send_callback(BODY, url="", secret=SECRET)
    with pytest.raises(ValueError, match="CALLBACK_SECRET"):
        send_callback(BODY, url=receiver.url, secret="")
    assert receiver.received == []


def test_a_body_member_given_as_bytes_is_parsed() -> None:
    assert callback_payload({"body": json.dumps(BODY).encode()}) == BODY
    assert callback_payload([1, 2]) == [1, 2]  # not a dict: the event itself


def test_serialisation_keeps_unicode_as_utf8() -> None:
    raw = serialise_payload({"b": "Çà ü", "a": [1, {"d": None, "c": 1.5}]})
    assert raw == '{"a":[1,{"c":1.5,"d":null}],"b":"Çà ü"}'.encode()


def test_verify_signature_ignores_surrounding_whitespace() -> None:
    body = serialise_payload(BODY)
    assert verify_signature(body, SECRET, f"  {sign(body, SECRET)}\n")


def test_a_failed_attempt_is_logged_as_a_warning_with_its_figures(
    receiver: CallbackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.plan(PlannedResponse(status=503, body=b"\xffbusy"))
    with caplog.at_level(logging.INFO, logger="toq.pipeline.callback"):
        with pytest.raises(CallbackFailed) as caught:
            send_callback(BODY, url=receiver.url, secret=SECRET)
    attempt = caught.value.attempt
    assert str(caught.value) == f"callback to {receiver.url} failed: HTTP 503"
    assert attempt.response_excerpt == "\ufffdbusy"  # undecodable bytes replaced
    assert (attempt.url, attempt.signature) == (receiver.url, sign(attempt.request_body, SECRET))
    [record] = [r for r in caplog.records if r.name == "toq.pipeline.callback"]
    assert (record.getMessage(), record.levelno) == ("callback failed", logging.WARNING)
    assert (record.callback_url, record.status_code, record.error) == (
        receiver.url,
        503,
        "HTTP 503",
    )


def test_missing_configuration_messages() -> None:
    with pytest.raises(ValueError) as no_url:
        send_callback(BODY, url="", secret=SECRET)
    assert str(no_url.value) == "callback URL is not configured (CALLBACK_URL)"
    with pytest.raises(ValueError) as no_secret:
        send_callback(BODY, url="http://127.0.0.1:9/x", secret="")
    assert str(no_secret.value) == "callback secret is not configured (CALLBACK_SECRET)"


def test_an_attempt_without_an_answer_has_no_excerpt() -> None:
    url = f"http://127.0.0.1:{free_port()}/callback"  # nothing listens there
    with pytest.raises(CallbackFailed) as caught:
        send_callback(BODY, url=url, secret=SECRET, timeout_s=2)
    assert (caught.value.attempt.response_excerpt, caught.value.attempt.status_code) == ("", None)


@pytest.fixture
def endless_answer() -> Iterator[str]:
    """A server that answers 200 with a body announced as 10 MB, sends its first 4 KB and
    then nothing more until the test ends: a misbehaving endpoint."""
    server = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        connection, _ = server.accept()
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = connection.recv(65536)
                if not chunk:
                    return  # the client went away before its request was complete
                request += chunk
            head, _, body = request.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(body) < length:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                body += chunk
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                b"Content-Length: 10000000\r\n\r\n" + b"a" * 4096
            )
            done.wait(10)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/callback"
    finally:
        done.set()
        thread.join(5)
        server.close()


def test_only_the_excerpt_of_an_endless_answer_is_read(endless_answer: str) -> None:
    """The attempt reads the first 2 KB of the answer and hangs up: an endpoint that sends
    a huge (here: never-ending) body neither makes us buffer it nor turns an accepted
    callback into a read timeout."""
    attempt = send_callback(BODY, url=endless_answer, secret=SECRET, timeout_s=1)
    assert (attempt.status_code, attempt.error) == (200, None)
    assert attempt.response_excerpt == "a" * 2048
    assert attempt.latency_ms < 1000


class _Clock:
    """perf_counter for send_callback: the POST starts at 100 s, the answer is in 312.34 ms."""

    def __init__(self) -> None:
        self.readings = iter([100.0, 100.31234])

    def perf_counter(self) -> float:
        return next(self.readings)


def test_latency_is_in_milliseconds_to_a_tenth(
    receiver: CallbackReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(callback_module, "time", _Clock())
    attempt = send_callback(BODY, url=receiver.url, secret=SECRET)
    assert attempt.latency_ms == 312.3


def test_an_empty_answer_has_an_empty_excerpt(receiver: CallbackReceiver) -> None:
    receiver.plan(PlannedResponse(status=204, body=b""))
    attempt = send_callback(BODY, url=receiver.url, secret=SECRET)
    assert (attempt.status_code, attempt.response_excerpt) == (204, "")


def test_a_signature_that_is_not_text_is_wrong_not_an_error() -> None:
    """A lone surrogate cannot be encoded: the signature is refused like any wrong one."""
    body = serialise_payload(BODY)
    assert not verify_signature(body, SECRET, "\ud800" + sign(body, SECRET)[1:])


def test_only_a_json_object_has_a_body_member() -> None:
    """An event that is a list is posted as it is, even when one of its items is "body"."""
    assert callback_payload(["body", 1]) == ["body", 1]
