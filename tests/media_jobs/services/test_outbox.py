"""The callback outbox: results the backend has not accepted are sent again with backoff,
in order per job, once each, until they expire; replay still works."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
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
from media_jobs.services import outbox
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


def test_a_claim_that_ends_at_this_instant_is_free(
    receiver: CallbackReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim holds the entry until ``claimed_until``, not at it: at that instant a sender
    takes it, and the entry it gets back carries its own claim, as stored."""
    entry = pending(JobFactory(), {"jobId": 1})
    end = timezone.now().replace(microsecond=0)
    CallbackOutbox.objects.filter(pk=entry.pk).update(claimed_until=end)
    monkeypatch.setattr(timezone, "now", lambda: end)

    claimed = _claim(entry.pk, hold_s=40)

    assert claimed is not None
    assert claimed.claimed_until == end + timedelta(seconds=40)
    assert CallbackOutbox.objects.get(pk=entry.pk).claimed_until == claimed.claimed_until


def test_a_pending_result_not_due_yet_is_not_sent(receiver: CallbackReceiver) -> None:
    """A result waiting out its backoff: a sender that asks for it by id (a quick attempt's
    task running late) leaves it alone until it is due."""
    entry = pending(JobFactory(), {"jobId": 1}, due=False)
    CallbackOutbox.objects.filter(pk=entry.pk).update(
        next_attempt_at=timezone.now() + timedelta(hours=1)
    )

    assert _claim(entry.pk, hold_s=40) is None
    assert outbox_send(entry_id=entry.pk, max_attempts=1) is None
    assert receiver.received == []
    assert CallbackOutbox.objects.get(pk=entry.pk).claimed_until is None


def test_a_result_no_longer_in_the_outbox_is_not_sent(receiver: CallbackReceiver) -> None:
    """A task for an entry removed since (the outbox purged it) ends quietly."""
    entry = pending(JobFactory(), {"jobId": 1})
    CallbackOutbox.objects.filter(pk=entry.pk).delete()

    assert _claim(entry.pk, hold_s=40) is None
    assert outbox_send(entry_id=entry.pk, max_attempts=1) is None
    assert receiver.received == []


def test_a_queued_result_is_due_at_once_and_expires_a_period_after_it_was_queued(
    settings: Any,
) -> None:
    """One instant for the three: made, first due, and the start of its retry period."""
    settings.CALLBACK_OUTBOX_TTL_SECONDS = 3600
    job = JobFactory()

    entry = outbox_add(job=job, raw_body=serialise_payload(body_of(job)))

    stored = CallbackOutbox.objects.get(pk=entry.pk)
    assert stored.next_attempt_at == stored.created_at
    assert stored.expires_at == stored.created_at + timedelta(seconds=3600)


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
    # The timeline says the result came from the Celery engine, not the HTTP receiver.
    sources = {e.detail.get("source") for e in MediaJobEvent.objects.filter(job_id=job.pk)}
    assert "celery" in sources and "http" not in sources
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


def test_a_backend_answering_429_is_overloaded_and_holds_the_newer_results_back(
    receiver: CallbackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """429 is "too many requests", not a refused body: the pass stops, like for a 5xx."""
    entries = [pending(job, body_of(job)) for job in (JobFactory(), JobFactory())]
    receiver.plan(PlannedResponse(status=429))
    with caplog.at_level("INFO", logger="toq.media.outbox"):
        assert outbox_drain() == {"delivered": 0, "failed": 1, "expired": 0}
    assert len(receiver.received) == 1
    first, second = (CallbackOutbox.objects.get(pk=e.pk) for e in entries)
    assert first.last_status == 429 and second.attempts == 0
    assert first.last_attempt_at is not None
    assert timezone.now() - first.last_attempt_at < timedelta(minutes=1)
    (record,) = [r for r in caplog.records if r.name == "toq.media.outbox"]
    assert (record.delivered, record.failed, record.expired) == (0, 1, 0)  # type: ignore[attr-defined]
    assert second.next_attempt_at == first.next_attempt_at > timezone.now()


def test_a_result_that_fails_past_its_retry_period_expires_naming_its_last_attempt(
    receiver: CallbackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    job = JobFactory()
    entry = pending(job, body_of(job))
    CallbackOutbox.objects.filter(pk=entry.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    receiver.plan(PlannedResponse(status=503))
    with caplog.at_level("ERROR", logger="toq.media.outbox"):
        delivery = outbox_send(entry_id=entry.pk, max_attempts=1)
    assert delivery is not None and not delivery.succeeded
    entry.refresh_from_db()
    assert entry.state == OutboxState.EXPIRED and entry.claimed_until is None
    event = MediaJobEvent.objects.get(job_id=job.pk, step="callback_delivery", kind="failed")
    assert event.detail["deliveryId"] == delivery.pk == entry.deliveries.get().pk
    assert event.detail["error"] == "HTTP 503"
    (record,) = [r for r in caplog.records if r.name == "toq.media.outbox"]
    assert record.outbox_id == entry.pk and record.job_id == job.pk  # type: ignore[attr-defined]


def test_a_result_that_fails_at_the_very_end_of_its_retry_period_expires(
    receiver: CallbackReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retry period is up at ``expires_at`` itself: a failure at that instant expires
    the entry instead of scheduling a next attempt for that same instant."""
    job = JobFactory()
    entry = pending(job, body_of(job))
    end = timezone.now().replace(microsecond=0) + timedelta(seconds=30)
    CallbackOutbox.objects.filter(pk=entry.pk).update(expires_at=end)
    monkeypatch.setattr(timezone, "now", lambda: end)
    receiver.plan(PlannedResponse(status=503))

    delivery = outbox_send(entry_id=entry.pk, max_attempts=1)

    assert delivery is not None and not delivery.succeeded
    entry.refresh_from_db()
    assert (entry.state, entry.attempts) == (OutboxState.EXPIRED, 1)


def test_a_delivered_result_names_its_attempt_on_the_timeline(
    receiver: CallbackReceiver, settings: Any
) -> None:
    """The event names the attempt and how long the send took (the receiver answers after
    0.2 s here)."""
    receiver.plan(PlannedResponse(status=200, delay_s=0.2))
    job = JobFactory()
    entry = pending(job, body_of(job))
    delivery = outbox_send(entry_id=entry.pk)
    assert delivery is not None and delivery.succeeded
    event = MediaJobEvent.objects.get(job_id=job.pk, step="callback_delivery")
    assert event.kind == "succeeded"
    detail = {k: v for k, v in event.detail.items() if k != "message"}
    assert detail == {
        "url": settings.CALLBACK_URL,
        "attempts": 1,
        "outboxId": entry.pk,
        "deliveryId": delivery.pk,
        "responseStatus": 200,
        "error": "",
    }
    assert event.duration_ms is not None and 200 <= event.duration_ms < 10_000


def test_the_send_time_on_the_timeline_is_in_milliseconds(
    receiver: CallbackReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read off the outbox's own clock: started at 100.0 s, recorded at 102.5 s."""
    readings = iter([100.0, 102.5])

    class Clock:
        @staticmethod
        def perf_counter() -> float:
            return next(readings)

    monkeypatch.setattr(outbox, "time", Clock)
    job = JobFactory()
    entry = pending(job, body_of(job))
    assert outbox_send(entry_id=entry.pk, sleep=lambda _: None) is not None
    event = MediaJobEvent.objects.get(job_id=job.pk, step="callback_delivery")
    assert event.duration_ms == 2500


def test_quick_attempts_that_fail_leave_a_warning_naming_the_entry_and_error(
    receiver: CallbackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    job = JobFactory()
    entry = pending(job, body_of(job))
    receiver.plan(PlannedResponse(status=503))
    with caplog.at_level("INFO", logger="toq.media.outbox"):
        outbox_send(entry_id=entry.pk, max_attempts=1)
        # A newer result waits for the older one the backend did not take.
        newer = pending(JobFactory(), {"jobId": 0})
        assert outbox_send(entry_id=newer.pk) is None
    warning, waiting = [r for r in caplog.records if r.name == "toq.media.outbox"]
    assert warning.levelname == "WARNING"
    assert (warning.job_id, warning.outbox_id, warning.error) == (  # type: ignore[attr-defined]
        job.pk,
        entry.pk,
        "HTTP 503",
    )
    assert waiting.getMessage() == (
        "the backend is unreachable; the outbox sends this result after the older ones"
    )
    assert waiting.outbox_id == newer.pk  # type: ignore[attr-defined]


def test_every_result_past_its_retry_period_is_counted_expired() -> None:
    for job in (JobFactory(), JobFactory()):
        entry = pending(job, body_of(job))
        CallbackOutbox.objects.filter(pk=entry.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
    assert outbox_drain()["expired"] == 2
    assert set(CallbackOutbox.objects.values_list("state", flat=True)) == {OutboxState.EXPIRED}


def test_a_result_delivered_by_another_sender_meanwhile_is_not_claimed(
    receiver: CallbackReceiver,
) -> None:
    """Between the read and the conditional claim another sender (or a replay) delivers
    the entry: the claim must not take it, or the result would be sent twice."""
    entry = pending(JobFactory(), {"jobId": 1})
    raced: list[bool] = []

    def other_sender_first(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.startswith("UPDATE") and "claimed_until" in sql and not raced:
            raced.append(True)
            CallbackOutbox.objects.filter(pk=entry.pk).update(state=OutboxState.DELIVERED)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(other_sender_first):
        assert _claim(entry.pk, hold_s=40) is None
    assert raced == [True]
    entry.refresh_from_db()
    assert entry.state == OutboxState.DELIVERED and entry.claimed_until is None


def test_results_already_delivered_do_not_take_a_pass_batch(receiver: CallbackReceiver) -> None:
    """The outbox keeps delivered results (the admin's log); a pass of ``limit`` entries
    counts only pending ones, or a long history would starve the results still to send."""
    done = [JobFactory() for _ in range(2)]
    for job in done:
        pending(job, body_of(job))
    assert outbox_drain() == {"delivered": 2, "failed": 0, "expired": 0}
    waiting = JobFactory()
    pending(waiting, body_of(waiting))
    assert outbox_drain(limit=2) == {"delivered": 1, "failed": 0, "expired": 0}
    assert [json.loads(r.body)["jobId"] for r in receiver.received] == [
        done[0].pk,
        done[1].pk,
        waiting.pk,
    ]


def test_an_older_result_not_tried_yet_does_not_hold_a_new_one_back(
    receiver: CallbackReceiver,
) -> None:
    """Only an older result that already failed to reach the backend says it is down; one
    whose quick attempts have not started (another worker's task is on its way) does not,
    and a new result of another job makes its own quick attempts at once."""
    first = JobFactory()
    older = pending(first, body_of(first))
    newer_job = JobFactory()
    newer = pending(newer_job, body_of(newer_job))
    delivery = outbox_send(entry_id=newer.pk, max_attempts=1)
    assert delivery is not None and delivery.succeeded
    assert [json.loads(r.body)["jobId"] for r in receiver.received] == [newer_job.pk]
    older.refresh_from_db()
    assert older.state == OutboxState.PENDING and older.attempts == 0


def test_results_not_due_yet_do_not_take_a_pass_batch(receiver: CallbackReceiver) -> None:
    """A result waiting out its own backoff (the backend refused it) is not due: a pass of
    one entry sends the due result behind it instead of spending its place on it."""
    waiting_job, due_job = JobFactory(), JobFactory()
    waiting = pending(waiting_job, body_of(waiting_job))
    CallbackOutbox.objects.filter(pk=waiting.pk).update(
        attempts=1, last_status=400, next_attempt_at=timezone.now() + timedelta(hours=1)
    )
    pending(due_job, body_of(due_job))
    assert outbox_drain(limit=1) == {"delivered": 1, "failed": 0, "expired": 0}
    assert [json.loads(r.body)["jobId"] for r in receiver.received] == [due_job.pk]


def test_an_expired_result_names_its_attempts_entry_and_error(
    receiver: CallbackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """The timeline and the error log of an expiry say how often it was tried and which
    outbox entry to replay."""
    job = JobFactory()
    entry = pending(job, body_of(job))
    CallbackOutbox.objects.filter(pk=entry.pk).update(
        attempts=3, last_error="HTTP 503", expires_at=timezone.now() - timedelta(seconds=1)
    )
    with caplog.at_level("ERROR", logger="toq.media.outbox"):
        assert outbox_drain() == {"delivered": 0, "failed": 0, "expired": 1}
    message = "callback not delivered within 24h0m0s (3 attempts); replay it"
    event = MediaJobEvent.objects.get(job_id=job.pk, step="callback_delivery", kind="failed")
    assert event.detail == {
        "message": message,
        "attempts": 3,
        "outboxId": entry.pk,
        "deliveryId": None,
        "error": "HTTP 503",
    }
    (record,) = [r for r in caplog.records if r.name == "toq.media.outbox"]
    assert (record.levelname, record.getMessage()) == ("ERROR", message)
    assert (record.job_id, record.outbox_id) == (job.pk, entry.pk)  # type: ignore[attr-defined]
    assert receiver.received == []


def test_an_expiry_writes_only_the_state(receiver: CallbackReceiver) -> None:
    """The pass expires overdue entries without claiming them: an attempt another sender
    records meanwhile (its count and error) must survive the expiry's write."""
    entry = pending(JobFactory(), {"jobId": 1})
    CallbackOutbox.objects.filter(pk=entry.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    raced: list[bool] = []

    def attempt_meanwhile(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.startswith("UPDATE") and "media_callback_outbox" in sql and not raced:
            raced.append(True)
            CallbackOutbox.objects.filter(pk=entry.pk).update(
                attempts=1, last_status=503, last_error="HTTP 503"
            )
        return execute(sql, params, many, context)

    with connection.execute_wrapper(attempt_meanwhile):
        assert outbox_drain()["expired"] == 1
    assert raced == [True]
    entry.refresh_from_db()
    assert (entry.state, entry.attempts, entry.last_status, entry.last_error) == (
        OutboxState.EXPIRED,
        1,
        503,
        "HTTP 503",
    )


def test_a_pass_logs_its_counts(
    receiver: CallbackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    job = JobFactory()
    pending(job, body_of(job))
    with caplog.at_level("INFO", logger="toq.media.outbox"):
        outbox_drain()
    (record,) = [r for r in caplog.records if r.name == "toq.media.outbox"]
    assert record.getMessage() == (
        "callback outbox pass: {'delivered': 1, 'failed': 0, 'expired': 0}"
    )
    event = MediaJobEvent.objects.get(job_id=job.pk, step="callback_delivery")
    assert event.detail["message"] == "callback delivered by the outbox"


def test_a_delivered_result_past_its_retry_period_stays_delivered(
    receiver: CallbackReceiver,
) -> None:
    """Only pending results expire: the log of results the backend accepted is kept as is."""
    job = JobFactory()
    entry = pending(job, body_of(job))
    assert outbox_drain()["delivered"] == 1
    CallbackOutbox.objects.filter(pk=entry.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert outbox_drain() == {"delivered": 0, "failed": 0, "expired": 0}
    entry.refresh_from_db()
    assert entry.state == OutboxState.DELIVERED
    assert not MediaJobEvent.objects.filter(job_id=job.pk, kind="failed").exists()


def test_no_other_sender_can_take_an_entry_while_the_pass_sends_it(
    receiver: CallbackReceiver,
) -> None:
    """The pass claims an entry for the whole attempt (the callback timeout and a margin):
    a sender that looks while the attempt is recorded finds it claimed."""
    entry = pending(JobFactory(), {"jobId": 1})
    seen: list[bool] = []

    def second_sender(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.startswith("INSERT") and "media_callback_deliveries" in sql and not seen:
            seen.append(_claim(entry.pk, hold_s=40) is None)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(second_sender):
        assert outbox_drain()["delivered"] == 1
    assert seen == [True]


def test_a_pass_sends_at_most_limit_results(receiver: CallbackReceiver) -> None:
    jobs = [JobFactory() for _ in range(2)]
    for job in jobs:
        pending(job, body_of(job))
    assert outbox_drain(limit=1) == {"delivered": 1, "failed": 0, "expired": 0}
    assert [json.loads(r.body)["jobId"] for r in receiver.received] == [jobs[0].pk]


def test_results_brought_forward_still_count_against_the_limit(
    receiver: CallbackReceiver,
) -> None:
    """The first delivery brings the waiting results forward; the second round of the pass
    sends only what is left of its ``limit``."""
    jobs = [JobFactory() for _ in range(3)]
    entries = [pending(job, body_of(job)) for job in jobs]
    for entry in entries[1:]:
        CallbackOutbox.objects.filter(pk=entry.pk).update(
            attempts=1, last_status=503, next_attempt_at=timezone.now() + timedelta(hours=1)
        )
    assert outbox_drain(limit=2) == {"delivered": 2, "failed": 0, "expired": 0}
    assert [json.loads(r.body)["jobId"] for r in receiver.received] == [j.pk for j in jobs[:2]]
    assert CallbackOutbox.objects.get(pk=entries[2].pk).state == OutboxState.PENDING


def test_a_result_waiting_behind_its_job_does_not_stop_the_pass(
    receiver: CallbackReceiver,
) -> None:
    """A due result whose job has an older result still pending is passed over; the
    results after it are sent."""
    job, other = JobFactory(), JobFactory()
    older = pending(job, body_of(job, "FAILED"))
    CallbackOutbox.objects.filter(pk=older.pk).update(
        attempts=1, last_status=400, next_attempt_at=timezone.now() + timedelta(hours=1)
    )
    pending(job, body_of(job, "SUCCEEDED"))
    pending(other, body_of(other))
    assert outbox_drain() == {"delivered": 1, "failed": 0, "expired": 0}
    assert [json.loads(r.body)["jobId"] for r in receiver.received] == [other.pk]


def test_every_refused_result_of_a_pass_is_counted_failed(receiver: CallbackReceiver) -> None:
    """Refused bodies (400) hold nothing back: the pass tries each and counts each; an
    overdue result expired at its start still counts as expired."""
    overdue = pending(JobFactory(), {"jobId": 0})
    CallbackOutbox.objects.filter(pk=overdue.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    for job in (JobFactory(), JobFactory()):
        pending(job, body_of(job))
    receiver.plan(PlannedResponse(status=400), PlannedResponse(status=400))
    assert outbox_drain() == {"delivered": 0, "failed": 2, "expired": 1}


def test_a_result_whose_retry_period_ends_during_the_pass_is_counted_expired(
    receiver: CallbackReceiver,
) -> None:
    """Due but not overdue when the pass starts; its retry period is over when its attempt
    fails: it expires there and then, and the pass counts it."""
    job = JobFactory()
    entry = pending(job, body_of(job))
    ended: list[bool] = []

    def period_ends(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        if "`expires_at` <=" in sql and not ended:  # the pass's look for overdue results
            ended.append(True)
            CallbackOutbox.objects.filter(pk=entry.pk).update(expires_at=timezone.now())
        return result

    receiver.plan(PlannedResponse(status=503))
    with connection.execute_wrapper(period_ends):
        assert outbox_drain() == {"delivered": 0, "failed": 1, "expired": 1}
    assert ended == [True]
    entry.refresh_from_db()
    assert (entry.state, entry.attempts) == (OutboxState.EXPIRED, 1)


def test_a_refused_result_counts_against_the_limit_too(receiver: CallbackReceiver) -> None:
    """Every result the pass tried takes its place in ``limit``, refused ones included: after
    a refusal and a delivery, a pass of three sends one waiting result, not two."""
    jobs = [JobFactory() for _ in range(4)]
    entries = [pending(job, body_of(job)) for job in jobs]
    for entry in entries[2:]:
        CallbackOutbox.objects.filter(pk=entry.pk).update(
            attempts=1, last_status=503, next_attempt_at=timezone.now() + timedelta(hours=1)
        )
    receiver.plan(PlannedResponse(status=400))
    assert outbox_drain(limit=3) == {"delivered": 2, "failed": 1, "expired": 0}
    assert [json.loads(r.body)["jobId"] for r in receiver.received] == [j.pk for j in jobs[:3]]


def test_quick_attempts_wait_the_backoff_then_leave_the_result_to_the_outbox(
    receiver: CallbackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """CALLBACK_MAX_ATTEMPTS (4 here) attempts 5, 10 and 20 s apart, under one claim that
    covers every wait and attempt; then the timeline and the log say the outbox goes on."""
    job = JobFactory()
    entry = pending(job, body_of(job))
    receiver.plan(*[PlannedResponse(status=503)] * 4)
    waited: list[float] = []
    held: list[timedelta] = []

    def claim_seen(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.startswith("INSERT") and "media_callback_deliveries" in sql and not held:
            claimed_until = CallbackOutbox.objects.get(pk=entry.pk).claimed_until
            held.append(claimed_until - timezone.now())
        return execute(sql, params, many, context)

    with caplog.at_level("INFO", logger="toq.media.outbox"):
        with connection.execute_wrapper(claim_seen):
            delivery = outbox_send(entry_id=entry.pk, sleep=waited.append)

    assert len(receiver.received) == 4 and waited == [5.0, 10.0, 20.0]
    # 35 s of waits + 4 attempts of (2 s timeout + 30 s margin) = 163 s
    assert timedelta(seconds=155) < held[0] <= timedelta(seconds=163)
    assert delivery is not None and not delivery.succeeded
    entry.refresh_from_db()
    assert (entry.state, entry.attempts, entry.claimed_until) == (OutboxState.PENDING, 4, None)
    event = MediaJobEvent.objects.get(job_id=job.pk, step="callback_delivery")
    assert event.kind == "retried" and event.duration_ms is not None
    until = entry.expires_at.isoformat(timespec="seconds")
    assert event.detail["message"] == (
        f"callback not delivered after 4 attempt(s); the outbox sends it again with backoff "
        f"until {until}"
    )
    assert (event.detail["deliveryId"], event.detail["responseStatus"]) == (delivery.pk, 503)
    (record,) = [r for r in caplog.records if r.name == "toq.media.outbox"]
    assert record.getMessage() == "callback not delivered after 4 attempt(s); left in the outbox"


def test_quick_attempts_stop_at_the_first_accepted_one(
    receiver: CallbackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """``max_attempts`` and ``interval_s`` given: the waits double from that interval; the
    accepted attempt ends them and brings the results that waited forward."""
    job = JobFactory()
    entry = pending(job, body_of(job))
    waiting = pending(JobFactory(), {"jobId": 0})
    later = timezone.now() + timedelta(hours=1)
    CallbackOutbox.objects.filter(pk=waiting.pk).update(
        attempts=1, last_status=503, next_attempt_at=later
    )
    receiver.plan(PlannedResponse(status=503), PlannedResponse(status=502))
    waited: list[float] = []
    with caplog.at_level("INFO", logger="toq.media.outbox"):
        delivery = outbox_send(
            entry_id=entry.pk, max_attempts=5, interval_s=1.5, sleep=waited.append
        )

    assert delivery is not None and delivery.succeeded
    assert len(receiver.received) == 3 and waited == [1.5, 3.0]
    entry.refresh_from_db()
    assert (entry.state, entry.attempts, entry.last_error) == (OutboxState.DELIVERED, 3, "")
    # every attempt is in the delivery log, numbered, and only the last one succeeded
    log = entry.deliveries.order_by("pk")
    assert [(d.attempt, d.response_status, d.succeeded) for d in log] == [
        (1, 503, False),
        (2, 502, False),
        (3, 200, True),
    ]
    event = MediaJobEvent.objects.get(job_id=job.pk, step="callback_delivery")
    assert (event.kind, event.detail["message"]) == ("succeeded", "callback delivered")
    assert event.duration_ms is not None and event.detail["attempts"] == 3
    (record,) = [r for r in caplog.records if r.name == "toq.media.outbox"]
    assert record.getMessage() == "callback delivered after 3 attempt(s)"
    assert record.job_id == job.pk  # type: ignore[attr-defined]
    assert CallbackOutbox.objects.get(pk=waiting.pk).next_attempt_at < later


def test_a_failed_attempt_writes_only_its_own_columns(receiver: CallbackReceiver) -> None:
    """An operator's replay does not wait for the sender's claim: when it delivers the
    result while an attempt is on its way, the failed attempt must not write the entry
    back to pending (the result would be sent again)."""
    entry = pending(JobFactory(), {"jobId": 1})
    replayed: list[bool] = []

    def replay_meanwhile(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.startswith("INSERT") and "media_callback_deliveries" in sql and not replayed:
            replayed.append(True)
            CallbackOutbox.objects.filter(pk=entry.pk).update(
                state=OutboxState.DELIVERED, delivered_at=timezone.now()
            )
        return execute(sql, params, many, context)

    receiver.plan(PlannedResponse(status=503))
    with connection.execute_wrapper(replay_meanwhile):
        delivery = outbox_send(entry_id=entry.pk, max_attempts=1)
    assert replayed == [True] and delivery is not None and not delivery.succeeded
    entry.refresh_from_db()
    assert (entry.state, entry.attempts, entry.last_error) == (
        OutboxState.DELIVERED,
        1,
        "HTTP 503",
    )
    assert entry.delivered_at is not None


def test_a_500_answer_means_the_backend_is_down(receiver: CallbackReceiver) -> None:
    """Every 5xx, 500 included, stops the pass (unlike a refused body)."""
    for job in (JobFactory(), JobFactory()):
        pending(job, body_of(job))
    receiver.plan(PlannedResponse(status=500))
    assert outbox_drain() == {"delivered": 0, "failed": 1, "expired": 0}
    assert len(receiver.received) == 1


def test_an_older_result_already_delivered_does_not_say_the_backend_is_down(
    receiver: CallbackReceiver,
) -> None:
    older, newer = JobFactory(), JobFactory()
    delivered = pending(older, body_of(older))
    CallbackOutbox.objects.filter(pk=delivered.pk).update(
        state=OutboxState.DELIVERED, attempts=2, last_status=200
    )
    entry = pending(newer, body_of(newer))
    delivery = outbox_send(entry_id=entry.pk, max_attempts=1)
    assert delivery is not None and delivery.succeeded


def test_holding_back_moves_only_newer_pending_results_due_earlier(
    receiver: CallbackReceiver,
) -> None:
    """After an unreachable backend: newer pending results due before the probe's next
    attempt wait for it; older results, results due later anyway and the delivery log
    of delivered results keep their times."""
    now = timezone.now()
    soon, past, later = (
        now + timedelta(seconds=3),
        now - timedelta(hours=1),
        now + timedelta(hours=2),
    )
    jobs = [JobFactory() for _ in range(5)]
    older_refused = pending(jobs[0], body_of(jobs[0]))
    CallbackOutbox.objects.filter(pk=older_refused.pk).update(
        attempts=1, last_status=400, next_attempt_at=soon
    )
    probe = pending(jobs[1], body_of(jobs[1]))
    newer_due = pending(jobs[2], body_of(jobs[2]))
    newer_later = pending(jobs[3], body_of(jobs[3]))
    CallbackOutbox.objects.filter(pk=newer_later.pk).update(
        attempts=1, last_status=400, next_attempt_at=later
    )
    newer_delivered = pending(jobs[4], body_of(jobs[4]))
    CallbackOutbox.objects.filter(pk=newer_delivered.pk).update(
        state=OutboxState.DELIVERED, next_attempt_at=past
    )
    receiver.plan(PlannedResponse(status=503))

    outbox_send(entry_id=probe.pk, max_attempts=1)

    probe_next = CallbackOutbox.objects.get(pk=probe.pk).next_attempt_at
    assert probe_next > now
    times = {
        e.pk: e.next_attempt_at
        for e in CallbackOutbox.objects.filter(
            pk__in=[older_refused.pk, newer_due.pk, newer_later.pk, newer_delivered.pk]
        )
    }
    assert times == {
        older_refused.pk: soon,
        newer_due.pk: probe_next,
        newer_later.pk: later,
        newer_delivered.pk: past,
    }


def test_bringing_forward_moves_only_pending_results_that_waited(
    receiver: CallbackReceiver,
) -> None:
    """A delivery brings the waiting results forward; results already due and the delivery
    log of delivered results keep their times."""
    now = timezone.now()
    past, later = now - timedelta(minutes=5), now + timedelta(hours=1)
    jobs = [JobFactory() for _ in range(4)]
    entry = pending(jobs[0], body_of(jobs[0]))
    already_due = pending(jobs[1], body_of(jobs[1]))
    CallbackOutbox.objects.filter(pk=already_due.pk).update(next_attempt_at=past)
    waited = pending(jobs[2], body_of(jobs[2]))
    CallbackOutbox.objects.filter(pk=waited.pk).update(
        attempts=1, last_status=503, next_attempt_at=later
    )
    delivered = pending(jobs[3], body_of(jobs[3]))
    CallbackOutbox.objects.filter(pk=delivered.pk).update(
        state=OutboxState.DELIVERED, next_attempt_at=later
    )

    assert outbox_send(entry_id=entry.pk, max_attempts=1) is not None

    assert CallbackOutbox.objects.get(pk=already_due.pk).next_attempt_at == past
    assert CallbackOutbox.objects.get(pk=waited.pk).next_attempt_at <= timezone.now()
    assert CallbackOutbox.objects.get(pk=delivered.pk).next_attempt_at == later
