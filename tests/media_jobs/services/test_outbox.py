"""The callback outbox: results the backend has not accepted are sent again with backoff,
in order per job, once each, until they expire; replay still works."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from media_jobs.models import (
    CallbackOutbox,
    JobStatus,
    MediaJobEvent,
    MediaProcessingJob,
    OutboxState,
)
from media_jobs.pipeline.callback import serialise_payload
from media_jobs.selectors.deliveries import outbox_list, undelivered_q
from media_jobs.services.deliveries import delivery_replay
from media_jobs.services.outbox import (
    _claim,
    outbox_add,
    outbox_backoff,
    outbox_drain,
    outbox_send,
    result_apply,
)
from media_jobs.tasks import deliver_callback
from tests.factories import AssetFactory, JobFactory
from tests.support.callback_receiver import CallbackReceiver, PlannedResponse

pytestmark = pytest.mark.django_db


def pending(job: Any, body: dict[str, Any], *, due: bool = True) -> CallbackOutbox:
    entry = outbox_add(job=job, raw_body=serialise_payload(body))
    if due:
        CallbackOutbox.objects.filter(pk=entry.pk).update(
            next_attempt_at=timezone.now() - timedelta(seconds=1)
        )
    return CallbackOutbox.objects.get(pk=entry.pk)


def body_of(job: Any, status: str = "SUCCEEDED") -> dict[str, Any]:
    return {"jobId": job.pk, "listingIdentityId": job.listing_identity_id, "status": status}


def test_backoff_doubles_from_the_spec_interval_up_to_the_cap(settings: Any) -> None:
    settings.CALLBACK_RETRY_INTERVAL_SECONDS = 5
    settings.CALLBACK_RETRY_MAX_INTERVAL_SECONDS = 600
    settings.PIPELINE_RETRY_DELAY_SCALE = 1.0
    assert [outbox_backoff(n) for n in range(1, 10)] == [5, 10, 20, 40, 80, 160, 320, 600, 600]
    settings.PIPELINE_RETRY_DELAY_SCALE = 0.01
    assert outbox_backoff(1) == pytest.approx(0.05) and outbox_backoff(20) == pytest.approx(6)


def test_a_backend_that_is_down_gets_every_result_once_in_order_when_back(
    receiver: CallbackReceiver,
) -> None:
    jobs = [JobFactory(listing_identity_id=7100 + n) for n in range(3)]
    entries = [pending(job, body_of(job)) for job in jobs]
    receiver.plan(PlannedResponse(status=503))

    first = outbox_drain()
    # The first attempt found the backend down: the pass stops there, and the newer
    # results are held back behind the oldest one, which alone probes the backend.
    assert first == {"delivered": 0, "failed": 1, "expired": 0}
    assert len(receiver.received) == 1
    probe = CallbackOutbox.objects.get(pk=entries[0].pk).next_attempt_at
    assert probe > timezone.now()
    assert all(
        e.next_attempt_at >= probe for e in CallbackOutbox.objects.filter(pk__gt=entries[0].pk)
    )
    # A new result skips its quick attempts while the backend is known to be down.
    newcomer = pending(JobFactory(), {"jobId": 0})
    assert outbox_send(entry_id=newcomer.pk) is None and len(receiver.received) == 1
    newcomer.delete()

    # The backend is back when the oldest result's backoff ends: the others follow.
    CallbackOutbox.objects.filter(pk=entries[0].pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    second = outbox_drain()
    assert second == {"delivered": 3, "failed": 0, "expired": 0}
    delivered = [json.loads(r.body)["jobId"] for r in receiver.received[1:]]
    assert delivered == [job.pk for job in jobs]
    assert [r.body.decode() for r in receiver.received[1:]] == [e.body for e in entries]
    assert set(CallbackOutbox.objects.values_list("state", flat=True)) == {OutboxState.DELIVERED}
    assert outbox_drain() == {"delivered": 0, "failed": 0, "expired": 0}
    assert len(receiver.received) == 4  # nothing is sent twice
    event = MediaJobEvent.objects.get(job_id=jobs[0].pk, step="callback_delivery")
    assert event.kind == "succeeded" and event.detail["attempts"] == 2


def test_when_the_backend_is_back_the_waiting_results_follow_at_once(
    receiver: CallbackReceiver,
) -> None:
    later = timezone.now() + timedelta(hours=1)
    jobs = [JobFactory() for _ in range(4)]
    entries = [pending(job, body_of(job)) for job in jobs]
    # All but the first wait out a long backoff after the backend was unreachable; the
    # last one was refused (400) rather than unreachable.
    for entry, status in zip(entries[1:], (None, 503, 400), strict=True):
        CallbackOutbox.objects.filter(pk=entry.pk).update(
            attempts=1, last_status=status, next_attempt_at=later
        )
    assert outbox_drain() == {"delivered": 3, "failed": 0, "expired": 0}
    assert [json.loads(r.body)["jobId"] for r in receiver.received] == [j.pk for j in jobs[:3]]
    refused = CallbackOutbox.objects.get(pk=entries[3].pk)
    assert refused.state == OutboxState.PENDING and refused.next_attempt_at == later


def test_a_refused_body_does_not_hold_back_the_other_results(receiver: CallbackReceiver) -> None:
    jobs = [JobFactory() for _ in range(2)]
    for job in jobs:
        pending(job, body_of(job))
    receiver.plan(PlannedResponse(status=400, body=b'{"error":"bad"}'))
    assert outbox_drain() == {"delivered": 1, "failed": 1, "expired": 0}
    refused = CallbackOutbox.objects.get(job_id=jobs[0].pk)
    assert refused.state == OutboxState.PENDING and refused.last_error == "HTTP 400"


def test_results_of_one_job_are_sent_in_order(receiver: CallbackReceiver) -> None:
    job = JobFactory()
    older = pending(job, body_of(job, "FAILED"))
    newer = pending(job, body_of(job, "SUCCEEDED"))
    # The newer result waits while the older one is pending, even when it is asked first.
    assert outbox_send(entry_id=newer.pk) is None
    assert receiver.received == []
    receiver.plan(PlannedResponse(status=500))
    assert outbox_drain()["failed"] == 1
    assert [json.loads(r.body)["status"] for r in receiver.received] == ["FAILED"]
    CallbackOutbox.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert outbox_drain()["delivered"] == 2
    statuses = [json.loads(r.body)["status"] for r in receiver.received]
    assert statuses == ["FAILED", "FAILED", "SUCCEEDED"]
    assert older.pk < newer.pk


def test_one_sender_at_a_time(receiver: CallbackReceiver) -> None:
    entry = pending(JobFactory(), {"jobId": 1})
    assert _claim(entry.pk, hold_s=40) is not None
    assert _claim(entry.pk, hold_s=40) is None  # the second sender finds it claimed
    assert outbox_drain()["delivered"] == 0
    CallbackOutbox.objects.filter(pk=entry.pk).update(claimed_until=timezone.now())
    assert outbox_drain()["delivered"] == 1  # a claim whose sender died runs out


def test_past_the_retry_period_a_result_expires_and_can_still_be_replayed(
    receiver: CallbackReceiver,
) -> None:
    job = JobFactory()
    entry = pending(job, body_of(job))
    receiver.plan(PlannedResponse(status=503))
    outbox_drain()
    CallbackOutbox.objects.filter(pk=entry.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert outbox_drain() == {"delivered": 0, "failed": 0, "expired": 1}
    entry.refresh_from_db()
    assert entry.state == OutboxState.EXPIRED and entry.attempts == 1
    event = MediaJobEvent.objects.get(job_id=job.pk, step="callback_delivery", kind="failed")
    assert "not delivered within 24h0m0s" in event.detail["message"]
    assert list(MediaProcessingJob.objects.filter(undelivered_q())) == [job]
    assert list(outbox_list(state=OutboxState.EXPIRED)) == [entry]

    replay = delivery_replay(delivery=entry.deliveries.get())
    assert replay.succeeded and replay.outbox_id == entry.pk
    entry.refresh_from_db()
    assert entry.state == OutboxState.DELIVERED and entry.delivered_at is not None
    assert not MediaProcessingJob.objects.filter(undelivered_q()).exists()


def test_a_result_is_applied_and_queued_together_once(
    receiver: CallbackReceiver, django_capture_on_commit_callbacks: Any
) -> None:
    job = JobFactory(status=JobStatus.RUNNING, listing_identity_id=7200)
    AssetFactory(listing_identity_id=7200)
    sent: list[int] = []
    body = {**body_of(job, "PROCESSING_FAILED"), "error": {"code": "X", "message": "m"}}
    with django_capture_on_commit_callbacks(execute=True):
        outcome = result_apply(job=job, body=body, deliver=sent.append)
        assert sent == []  # sent only once the result and its outbox entry are committed
    assert outcome.applied
    entry = CallbackOutbox.objects.get(job_id=job.pk)
    assert sent == [entry.pk]
    assert entry.body == serialise_payload(body).decode() and entry.state == OutboxState.PENDING
    assert entry.listing_identity_id == 7200
    # The same result again is a replay: nothing applied, nothing queued.
    assert not result_apply(job=job, body=body, deliver=sent.append).applied
    assert CallbackOutbox.objects.filter(job_id=job.pk).count() == 1


def test_nothing_is_queued_without_a_backend(settings: Any) -> None:
    settings.CALLBACK_URL = ""
    job = JobFactory(status=JobStatus.RUNNING)
    assert result_apply(job=job, body=body_of(job)).applied
    assert not CallbackOutbox.objects.exists()
    assert outbox_drain() == {"delivered": 0, "failed": 0, "expired": 0}


def test_a_delivery_queued_before_the_outbox_existed_goes_through_it(
    receiver: CallbackReceiver,
) -> None:
    """A message from before the upgrade carries (job_id, body): it is put in the outbox
    and sent like any other result."""

    job = JobFactory()
    deliver_callback.apply(args=[job.pk, body_of(job)])
    entry = CallbackOutbox.objects.get(job_id=job.pk)
    assert entry.state == OutboxState.DELIVERED and entry.attempts == 1
    assert [r.body.decode() for r in receiver.received] == [entry.body]
    # The current message carries the outbox id; a delivered result is not sent again.
    deliver_callback.apply(args=[entry.pk])
    assert len(receiver.received) == 1
