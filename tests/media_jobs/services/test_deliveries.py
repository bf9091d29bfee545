"""The callback delivery log: signed sends to CALLBACK_URL with retries, and replays."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.utils import timezone

from media_jobs.exceptions import ApplicationError
from media_jobs.models import CallbackDelivery, CallbackOutbox, MediaJobEvent
from media_jobs.pipeline.callback import SIGNATURE_HEADER, sign, verify_signature
from media_jobs.services.deliveries import delivery_replay
from media_jobs.services.outbox import callback_deliver
from tests.factories import JobFactory
from tests.support.callback_receiver import CallbackReceiver, PlannedResponse

pytestmark = pytest.mark.django_db

BODY = {"jobId": 1, "listingIdentityId": 2, "status": "SUCCEEDED", "outputs": [], "note": "çà"}


def test_retries_with_backoff_until_accepted(receiver: CallbackReceiver) -> None:
    receiver.plan(PlannedResponse(status=500, body=b"boom"), PlannedResponse(status=429))
    slept: list[float] = []
    job = JobFactory()
    delivery = callback_deliver(job=job, body=BODY, sleep=slept.append)
    assert slept == [5.0, 10.0]  # docs/contract.md §4: 5 s, backoff 2
    rows = list(CallbackDelivery.objects.filter(job_id=job.pk).order_by("attempt"))
    assert [(r.attempt, r.response_status, r.succeeded) for r in rows] == [
        (1, 500, False),
        (2, 429, False),
        (3, 200, True),
    ]
    assert rows[0].response_excerpt == "boom" and rows[0].error == "HTTP 500"
    assert delivery == rows[-1] and delivery.latency_ms is not None
    received = receiver.received[-1]
    assert received.body.decode() == delivery.request_body
    assert json.loads(received.body) == BODY
    assert verify_signature(received.body, "delivery-secret", received.headers[SIGNATURE_HEADER])
    assert delivery.signature == received.headers[SIGNATURE_HEADER]
    event = MediaJobEvent.objects.get(job_id=job.pk, step="callback_delivery")
    assert event.kind == "succeeded" and event.detail["attempts"] == 3


def test_the_caller_sets_the_first_wait_between_attempts(receiver: CallbackReceiver) -> None:
    receiver.plan(PlannedResponse(status=502), PlannedResponse(status=502))
    slept: list[float] = []
    delivery = callback_deliver(job=JobFactory(), body=BODY, interval_s=0.5, sleep=slept.append)
    assert delivery is not None and delivery.succeeded
    assert slept == [0.5, 1.0]  # the caller's interval, doubled (backoff 2)


def test_after_the_quick_attempts_the_result_stays_in_the_outbox(
    receiver: CallbackReceiver, settings: Any
) -> None:
    settings.CALLBACK_MAX_ATTEMPTS = 2
    receiver.plan(*[PlannedResponse(status=503)] * 5)
    job = JobFactory()
    before = timezone.now()
    delivery = callback_deliver(job=job, body=BODY, sleep=lambda _: None)
    assert not delivery.succeeded and delivery.attempt == 2
    assert CallbackDelivery.objects.filter(job_id=job.pk).count() == 2
    event = MediaJobEvent.objects.get(job_id=job.pk, step="callback_delivery")
    assert event.kind == "retried" and "sends it again" in event.detail["message"]
    entry = CallbackOutbox.objects.get(job_id=job.pk)
    assert (entry.state, entry.attempts, entry.last_error) == ("pending", 2, "HTTP 503")
    # The next attempt waits the backoff after the second failure (10 s), not forever.
    wait = (entry.next_attempt_at - before).total_seconds()
    assert 10 <= wait < 15, wait
    assert set(entry.deliveries.values_list("attempt", flat=True)) == {1, 2}


def test_network_errors_are_logged_as_failed_attempts(settings: Any) -> None:
    settings.CALLBACK_URL = "http://127.0.0.1:9/callback"
    settings.CALLBACK_SECRET = "s"
    job = JobFactory()
    delivery = callback_deliver(job=job, body=BODY, max_attempts=1)
    assert delivery.response_status is None and "ConnectionError" in delivery.error
    assert not delivery.succeeded


def test_replay_sends_the_same_bytes_signed_with_todays_secret(
    receiver: CallbackReceiver, settings: Any
) -> None:
    job = JobFactory()
    original = callback_deliver(job=job, body=BODY)
    settings.CALLBACK_SECRET = "rotated-secret"
    replay = delivery_replay(delivery=original)
    assert replay.replay_of_id == original.pk and replay.succeeded
    assert replay.request_body == original.request_body
    assert (
        replay.signature
        == sign(original.request_body.encode(), "rotated-secret")
        != original.signature
    )
    assert receiver.received[-1].body == original.request_body.encode()
    assert MediaJobEvent.objects.filter(job_id=job.pk, step="callback_delivery").count() == 2


def test_nothing_is_sent_without_url_or_secret(settings: Any) -> None:
    settings.CALLBACK_URL = ""
    settings.CALLBACK_SECRET = "s"
    with pytest.raises(ApplicationError, match="CALLBACK_URL"):
        callback_deliver(job=JobFactory(), body=BODY)
    settings.CALLBACK_URL = "http://127.0.0.1:9/"
    settings.CALLBACK_SECRET = ""
    with pytest.raises(ApplicationError) as refused:
        callback_deliver(job=JobFactory(), body=BODY)
    assert str(refused.value) == "CALLBACK_SECRET is not configured: a callback must be signed"


def test_an_accepted_replay_delivers_the_outbox_entry_and_is_recorded(
    receiver: CallbackReceiver, settings: Any
) -> None:
    settings.CALLBACK_MAX_ATTEMPTS = 1
    receiver.plan(PlannedResponse(status=503))
    job = JobFactory()
    original = callback_deliver(job=job, body=BODY, sleep=lambda _: None)
    entry = CallbackOutbox.objects.get(job_id=job.pk)
    assert (entry.state, entry.last_error) == ("pending", "HTTP 503")

    replay = delivery_replay(delivery=original)  # the receiver answers 200 now

    assert (replay.succeeded, replay.url, replay.outbox_id) == (True, receiver.url, entry.pk)
    entry.refresh_from_db()
    assert (entry.state, entry.last_error) == ("delivered", "")
    assert entry.delivered_at == replay.created_at
    event = MediaJobEvent.objects.filter(job_id=job.pk, step="callback_delivery").latest("pk")
    assert event.kind == "succeeded"
    assert event.detail == {
        "message": f"replay of delivery #{original.pk}",
        "deliveryId": replay.pk,
        "replayOf": original.pk,
        "outboxId": entry.pk,
        "url": receiver.url,
        "responseStatus": 200,
        "error": "",
    }


def test_a_delivery_without_a_json_body_is_not_replayed(receiver: CallbackReceiver) -> None:
    job = JobFactory()
    broken = CallbackDelivery.objects.create(
        job_id=job.pk, url=receiver.url, request_body="<html>", attempt=1
    )
    with pytest.raises(ApplicationError) as refused:
        delivery_replay(delivery=broken)
    assert str(refused.value) == (
        f"delivery {broken.pk} has no JSON body to replay: "
        "Expecting value: line 1 column 1 (char 0)"
    )
    assert receiver.received == []


def test_a_receiver_slower_than_the_timeout_is_a_failed_attempt(
    receiver: CallbackReceiver, settings: Any
) -> None:
    settings.CALLBACK_TIMEOUT_SECONDS = 1
    receiver.plan(PlannedResponse(delay_s=4))
    delivery = callback_deliver(job=JobFactory(), body=BODY, max_attempts=1)
    assert (delivery.succeeded, delivery.response_status) == (False, None)
    assert "Timeout" in delivery.error, delivery.error


def test_a_missing_callback_url_is_refused_by_name(settings: Any) -> None:
    settings.CALLBACK_URL = ""
    settings.CALLBACK_SECRET = "s"
    with pytest.raises(ApplicationError) as refused:
        callback_deliver(job=JobFactory(), body=BODY)
    assert str(refused.value) == "CALLBACK_URL is not configured: there is nowhere to send it"


def test_a_refused_replay_leaves_the_outbox_entry_pending_and_is_recorded_as_failed(
    receiver: CallbackReceiver, settings: Any
) -> None:
    """A replay is one attempt of its own (attempt 1, whatever the original's number); when
    the backend refuses it too, the result is still owed: the entry stays pending with its
    error, and the timeline says the replay failed."""
    settings.CALLBACK_MAX_ATTEMPTS = 2
    receiver.plan(*[PlannedResponse(status=503)] * 3)
    job = JobFactory()
    original = callback_deliver(job=job, body=BODY, sleep=lambda _: None)
    assert original is not None and original.attempt == 2

    replay = delivery_replay(delivery=original)

    assert (replay.succeeded, replay.attempt, replay.response_status) == (False, 1, 503)
    entry = CallbackOutbox.objects.get(job_id=job.pk)
    assert (entry.state, entry.delivered_at, entry.last_error) == ("pending", None, "HTTP 503")
    event = MediaJobEvent.objects.filter(job_id=job.pk, step="callback_delivery").latest("pk")
    assert event.kind == "failed"
    assert (event.detail["deliveryId"], event.detail["error"]) == (replay.pk, "HTTP 503")


def test_replaying_a_delivered_result_keeps_its_delivery_time(receiver: CallbackReceiver) -> None:
    """The outbox entry was delivered by the first attempt: an accepted replay sends the
    bytes again but does not move the entry's delivered_at to the replay."""
    job = JobFactory()
    original = callback_deliver(job=job, body=BODY)
    entry = CallbackOutbox.objects.get(job_id=job.pk)
    assert entry.state == "delivered" and entry.delivered_at is not None

    replay = delivery_replay(delivery=original)

    assert replay.succeeded and replay.created_at > entry.delivered_at
    stored = CallbackOutbox.objects.get(pk=entry.pk)
    assert (stored.state, stored.delivered_at) == ("delivered", entry.delivered_at)


def test_a_delivery_without_an_outbox_entry_is_replayed(receiver: CallbackReceiver) -> None:
    """Attempts logged before the outbox existed have none: the replay is sent and
    recorded all the same, with no outbox entry to deliver."""
    job = JobFactory()
    old = CallbackDelivery.objects.create(
        job_id=job.pk, url=receiver.url, request_body='{"jobId":1,"status":"FAILED"}', attempt=3
    )

    replay = delivery_replay(delivery=old)

    assert (replay.succeeded, replay.outbox_id, replay.replay_of_id) == (True, None, old.pk)
    assert receiver.received[-1].body == b'{"jobId":1,"status":"FAILED"}'
    assert not CallbackOutbox.objects.filter(job_id=job.pk).exists()
    event = MediaJobEvent.objects.get(job_id=job.pk, step="callback_delivery")
    assert (event.kind, event.detail["outboxId"], event.detail["replayOf"]) == (
        "succeeded",
        None,
        old.pk,
    )
