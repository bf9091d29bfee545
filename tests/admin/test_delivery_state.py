"""A job whose result the backend has not received says so: on its page (with Replay one
click away), in the list (a marker and a filter) and on the dashboard (count, oldest); with
CALLBACK_URL unset the pages say why nothing is delivered."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from media_jobs.models import (
    CallbackDelivery,
    CallbackOutbox,
    JobStatus,
    MediaProcessingJob,
    OutboxState,
)
from media_jobs.selectors.deliveries import DeliveryState, job_delivery_states, undelivered_q
from tests.admin.html import job_ids_in
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db
LIST_URL = reverse("admin:media_jobs_mediaprocessingjob_changelist")


def attempts(job: MediaProcessingJob, *outcomes: bool | str, at: Any = None) -> CallbackOutbox:
    """The job's result in the outbox, and one delivery row per outcome: True accepted, a
    string the network error (the outbox entry says what the last one did)."""
    at = at or timezone.now()
    last = outcomes[-1]
    entry = CallbackOutbox.objects.create(
        job_id=job.pk,
        listing_identity_id=job.listing_identity_id,
        body=f'{{"jobId": {job.pk}}}',
        state=OutboxState.DELIVERED if last is True else OutboxState.PENDING,
        attempts=len(outcomes),
        next_attempt_at=at + timedelta(minutes=4),
        last_attempt_at=at,
        last_status=200 if last is True else None,
        last_error="" if last is True else last,
        delivered_at=at if last is True else None,
        expires_at=at + timedelta(hours=24),
        created_at=at,
    )
    for number, outcome in enumerate(outcomes, start=1):
        CallbackDelivery.objects.create(
            job=job,
            outbox=entry,
            url="http://backend.invalid/callback",
            request_body=f'{{"jobId": {job.pk}}}',
            signature="ab" * 32,
            response_status=200 if outcome is True else None,
            error="" if outcome is True else outcome,
            attempt=number,
            succeeded=outcome is True,
            created_at=at,
        )
    return entry


@pytest.fixture
def callback_url(settings: Any) -> str:
    settings.CALLBACK_URL = "http://backend.invalid/callback"
    settings.CALLBACK_SECRET = "s"
    return settings.CALLBACK_URL


def test_delivery_states_of_a_page_of_jobs(callback_url: str, settings: Any):
    delivered = JobFactory(status=JobStatus.SUCCEEDED)
    attempts(delivered, "Connection refused", True)
    undelivered = JobFactory(status=JobStatus.SUCCEEDED)
    attempts(undelivered, "Connection refused", "Connection refused", "Connection refused")
    not_sent = JobFactory(status=JobStatus.SUCCEEDED)
    running = JobFactory(status=JobStatus.RUNNING)

    states = job_delivery_states(jobs=[delivered, undelivered, not_sent, running])

    assert states[delivered.pk].state == DeliveryState.DELIVERED
    assert states[undelivered.pk].state == DeliveryState.UNDELIVERED
    assert states[undelivered.pk].attempts == 3
    assert states[undelivered.pk].last_problem == "Connection refused"
    assert states[not_sent.pk].state == DeliveryState.NOT_SENT
    assert states[running.pk].state == DeliveryState.NOT_DUE
    # Retries over: still undelivered, and no longer retried automatically.
    CallbackOutbox.objects.filter(job_id=undelivered.pk).update(state=OutboxState.EXPIRED)
    expired = job_delivery_states(jobs=[undelivered])[undelivered.pk]
    assert expired.undelivered and expired.next_attempt_at is None
    settings.CALLBACK_URL = ""
    assert job_delivery_states(jobs=[not_sent])[not_sent.pk].state == DeliveryState.NOT_CONFIGURED


def test_a_queued_result_is_sending_until_it_waits_too_long_or_the_backend_is_down(
    callback_url: str,
):
    queued = JobFactory(status=JobStatus.SUCCEEDED)
    entry = CallbackOutbox.objects.create(
        job_id=queued.pk,
        listing_identity_id=queued.listing_identity_id,
        body="{}",
        expires_at=timezone.now() + timedelta(hours=24),
    )
    assert job_delivery_states(jobs=[queued])[queued.pk].state == DeliveryState.SENDING
    assert not MediaProcessingJob.objects.filter(undelivered_q()).exists()
    # Another result found the backend unreachable: this one waits behind it.
    probe = JobFactory(status=JobStatus.SUCCEEDED)
    attempts(probe, "Connection refused")
    waiting = job_delivery_states(jobs=[queued])[queued.pk]
    assert waiting.undelivered and waiting.last_problem.startswith("waiting")
    assert set(MediaProcessingJob.objects.filter(undelivered_q())) == {queued, probe}
    # With the backend back, a result queued for five minutes without an attempt is still
    # undelivered (no worker sends it).
    CallbackOutbox.objects.filter(job_id=probe.pk).update(state=OutboxState.DELIVERED)
    assert job_delivery_states(jobs=[queued])[queued.pk].state == DeliveryState.SENDING
    CallbackOutbox.objects.filter(pk=entry.pk).update(
        created_at=timezone.now() - timedelta(minutes=6)
    )
    assert job_delivery_states(jobs=[queued])[queued.pk].state == DeliveryState.UNDELIVERED
    assert list(MediaProcessingJob.objects.filter(undelivered_q())) == [queued]


def test_an_undelivered_result_on_the_page_the_list_and_the_dashboard(
    operator_client: Client, viewer_client: Client, callback_url: str
):
    old = JobFactory(status=JobStatus.SUCCEEDED)
    attempts(old, "Connection refused", at=timezone.now() - timedelta(hours=5))
    job = JobFactory(status=JobStatus.SUCCEEDED)
    attempts(job, "Connection refused", "Connection refused", "Connection refused")
    fine = JobFactory(status=JobStatus.SUCCEEDED)
    attempts(fine, True)

    page = operator_client.get(
        reverse("admin:media_jobs_mediaprocessingjob_change", args=[job.pk])
    ).content.decode()
    summary = page.split("field-delivery_text", 1)[1].split("</fieldset>", 1)[0]
    assert "not delivered" in summary and "Connection refused" in summary
    assert "3 attempt(s)" in summary
    last = CallbackDelivery.objects.filter(job=job).order_by("-pk").first()
    replay = reverse("admin:media_jobs_callbackdelivery_replay", args=[last.pk])
    assert f'id="toq-replay-last" href="{replay}"' in summary
    viewer_page = viewer_client.get(
        reverse("admin:media_jobs_mediaprocessingjob_change", args=[job.pk])
    ).content.decode()
    assert "not delivered" in viewer_page and "toq-replay-last" not in viewer_page

    listed = operator_client.get(LIST_URL, {"callback": "undelivered"}).content.decode()
    assert sorted(job_ids_in(listed)) == sorted([old.pk, job.pk])
    assert listed.count("result not delivered") == 2 and f'href="{replay}"' in listed

    dashboard = viewer_client.get(reverse("admin:index")).content.decode()
    assert re.search(
        r'id="toq-undelivered-count">\s*<a href="[^"]*\?callback=undelivered">2<', dashboard
    )
    oldest = dashboard.split('id="toq-undelivered-oldest"', 1)[1].split("</p>", 1)[0]
    assert f"job #{old.pk}" in oldest


def test_without_callback_url_the_pages_say_why_nothing_is_delivered(
    viewer_client: Client, settings: Any
):
    settings.CALLBACK_URL = ""
    job = JobFactory(status=JobStatus.SUCCEEDED)
    page = viewer_client.get(
        reverse("admin:media_jobs_mediaprocessingjob_change", args=[job.pk])
    ).content.decode()
    assert "CALLBACK_URL is not set" in page and 'id="toq-no-callback-url"' in page
    log = viewer_client.get(reverse("admin:media_jobs_callbackdelivery_changelist"))
    assert log.status_code == 200
    assert "CALLBACK_URL is not set: the portal sends no callbacks" in log.content.decode()
    settings.CALLBACK_URL = "http://backend.invalid/callback"
    log = viewer_client.get(reverse("admin:media_jobs_callbackdelivery_changelist"))
    assert "CALLBACK_URL is not set" not in log.content.decode()
