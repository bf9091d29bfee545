"""Retry, mark failed, reprocess, retry a group, replay a callback: confirmation first, the
operate permission (no button, forged POST -> 403), and an admin history entry each time."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse
from django.utils import timezone

from media_jobs.models import (
    AssetStatus,
    CallbackDelivery,
    JobProvider,
    JobStatus,
    MediaAsset,
    MediaProcessingJob,
)
from media_jobs.pipeline.callback import sign, verify_signature
from tests.factories import AssetFactory, JobFactory

pytestmark = pytest.mark.django_db
LIST_URL = reverse("admin:media_jobs_mediaprocessingjob_changelist")
ASSET_LIST_URL = reverse("admin:media_jobs_mediaasset_changelist")


def job_url(job) -> str:
    return reverse("admin:media_jobs_mediaprocessingjob_change", args=[job.pk])


def retry_url(job) -> str:
    return reverse("admin:media_jobs_mediaprocessingjob_retry", args=[job.pk])


def mark_failed_url(job) -> str:
    return reverse("admin:media_jobs_mediaprocessingjob_mark_failed", args=[job.pk])


def log_messages(obj) -> list[tuple[int, str]]:
    content_type = ContentType.objects.get_for_model(obj)
    return list(
        LogEntry.objects.filter(content_type=content_type, object_id=str(obj.pk))
        .order_by("id")
        .values_list("action_flag", "change_message")
    )


# -- retry -------------------------------------------------------------------------------------


def test_operator_sees_retry_viewer_does_not(operator_client, viewer_client, processed_listing):
    job = processed_listing(501)["job"]
    assert "toq-retry-button" in operator_client.get(job_url(job)).content.decode()
    assert "toq-retry-button" not in viewer_client.get(job_url(job)).content.decode()
    # nor the bulk actions
    assert "retry_selected" in operator_client.get(LIST_URL).content.decode()
    assert "retry_selected" not in viewer_client.get(LIST_URL).content.decode()


def test_retry_confirmation_says_what_will_happen(operator_client, processed_listing):
    built = processed_listing(502)
    response = operator_client.get(retry_url(built["job"]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "a new processing job for the 1 assets of listing 502 that are not PROCESSED" in html
    assert "retry #1" in html
    assert built["assets"][2].s3_key_raw in html  # the failed asset is the one to process
    assert built["assets"][0].s3_key_raw not in html
    assert 'id="toq-confirm-retry"' in html
    assert MediaProcessingJob.objects.count() == 1  # a GET changes nothing


def test_retry_creates_a_new_job_and_records_it(operator_client, operator, processed_listing):
    built = processed_listing(503)
    old = built["job"]

    response = operator_client.post(retry_url(old))

    new = MediaProcessingJob.objects.exclude(pk=old.pk).get()
    assert response.status_code == 302 and response["Location"] == job_url(new)
    assert new.retry_count == 1 and new.listing_identity_id == 503
    assert new.provider == JobProvider.STEP_FUNCTIONS
    old.refresh_from_db()
    assert old.status == JobStatus.PARTIAL_SUCCESS  # history stays as it was
    assert any(f"retried as #{new.pk}" in str(e.detail) for e in old.events.all())
    assert log_messages(old) == [(CHANGE, f"Retried as job #{new.pk}")]
    assert log_messages(new) == [(ADDITION, f"Created by retrying job #{old.pk}")]
    assert LogEntry.objects.filter(user=operator).count() == 2
    history = operator_client.get(
        reverse("admin:media_jobs_mediaprocessingjob_history", args=[old.pk])
    ).content.decode()
    assert f"Retried as job #{new.pk}" in history and "olga-operator" in history
    page = operator_client.get(job_url(new)).content.decode()
    assert (
        "1 taken by this job" in page
        and page.count('class="toq-badge toq-badge--running toq-in-job"') == 1
    )
    assert "retried as" in operator_client.get(job_url(old)).content.decode()
    assert "retry of" in page
    assert MediaAsset.objects.get(pk=built["assets"][2].pk).status == AssetStatus.PROCESSING


def test_retry_of_a_finalization_job_reruns_the_zip(operator_client, processed_listing):
    built = processed_listing(504, failed=0)
    zip_job = JobFactory(
        listing_identity_id=504,
        status=JobStatus.FAILED,
        provider=JobProvider.STEP_FUNCTIONS_FINALIZATION,
        last_error="code=ZIP_FAILED | x",
    )
    html = operator_client.get(retry_url(zip_job)).content.decode()
    assert "a new finalization job re-creates the ZIP of listing 504 from its 2 assets" in html
    operator_client.post(retry_url(zip_job))
    new = MediaProcessingJob.objects.filter(listing_identity_id=504).order_by("-pk").first()
    assert new.provider == JobProvider.STEP_FUNCTIONS_FINALIZATION and new.retry_count == 1
    assert built["job"].pk != new.pk


def test_running_job_cannot_be_retried(operator_client):
    job = JobFactory(status=JobStatus.RUNNING)
    html = operator_client.get(retry_url(job)).content.decode()
    assert "Cannot be retried" in html and "toq-confirm-retry" not in html
    response = operator_client.post(retry_url(job), follow=True)
    assert "was not retried" in response.content.decode()
    assert MediaProcessingJob.objects.count() == 1
    assert "toq-retry-button" not in operator_client.get(job_url(job)).content.decode()


@pytest.mark.parametrize("client_name", ["viewer_client", "staff_client"])
def test_retry_without_permission_is_403(request, client_name, processed_listing):
    client = request.getfixturevalue(client_name)
    job = processed_listing(505)["job"]
    assert client.get(retry_url(job)).status_code == 403
    assert client.post(retry_url(job)).status_code == 403
    assert (
        client.post(
            LIST_URL, {"action": "retry_selected", ACTION_CHECKBOX_NAME: [job.pk], "post": "yes"}
        ).status_code
        == 403
    )
    assert MediaProcessingJob.objects.count() == 1
    assert LogEntry.objects.count() == 0


def test_anonymous_is_sent_to_login(client, processed_listing):
    job = processed_listing(506)["job"]
    response = client.post(retry_url(job))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert MediaProcessingJob.objects.count() == 1


def test_bulk_retry_confirms_then_retries(operator_client, processed_listing):
    first = processed_listing(507)["job"]
    second = processed_listing(508)["job"]
    running = JobFactory(status=JobStatus.RUNNING)
    data = {"action": "retry_selected", ACTION_CHECKBOX_NAME: [first.pk, second.pk, running.pk]}

    confirm = operator_client.post(LIST_URL, data)
    html = confirm.content.decode()
    assert confirm.status_code == 200
    assert "Retry 3 job(s)?" in html and "Cannot be retried" in html
    assert MediaProcessingJob.objects.count() == 3

    done = operator_client.post(LIST_URL, {**data, "post": "yes"}, follow=True)
    assert MediaProcessingJob.objects.filter(retry_count=1).count() == 2
    text = done.content.decode()
    assert "retried as" in text
    assert f"#{running.pk}:" in text  # refused with its reason


# -- mark failed -------------------------------------------------------------------------------


def test_mark_failed_for_a_stuck_job(operator_client, settings):
    settings.RECONCILER_TIMEOUT_SECONDS = 60
    old = timezone.now() - timedelta(hours=2)
    job = JobFactory(status=JobStatus.RUNNING, created_at=old, started_at=old)
    asset = AssetFactory(listing_identity_id=job.listing_identity_id, status=AssetStatus.PROCESSING)
    page = operator_client.get(job_url(job)).content.decode()
    assert "toq-mark-failed-button" in page and "toq-retry-button" not in page

    confirm = operator_client.get(mark_failed_url(job)).content.decode()
    assert 'name="reason"' in confirm and "olga-operator" in confirm

    operator_client.post(mark_failed_url(job), {"reason": "worker host died"})
    job.refresh_from_db()
    asset.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "worker host died" in job.last_error
    assert asset.status == AssetStatus.FAILED
    assert log_messages(job) == [(CHANGE, "Marked failed: worker host died")]


def test_mark_failed_refuses_a_finished_job_and_viewers(operator_client, viewer_client):
    done = JobFactory(status=JobStatus.SUCCEEDED)
    running = JobFactory(status=JobStatus.RUNNING)
    assert "already SUCCEEDED" in operator_client.get(mark_failed_url(done)).content.decode()
    operator_client.post(mark_failed_url(done), {"reason": "x"})
    done.refresh_from_db()
    assert done.status == JobStatus.SUCCEEDED
    assert viewer_client.post(mark_failed_url(running), {"reason": "x"}).status_code == 403
    forged = {"action": "mark_failed_selected", ACTION_CHECKBOX_NAME: [running.pk], "post": "yes"}
    assert viewer_client.post(LIST_URL, forged).status_code == 403
    running.refresh_from_db()
    assert running.status == JobStatus.RUNNING


def test_bulk_mark_failed(operator_client):
    a = JobFactory(status=JobStatus.RUNNING)
    b = JobFactory(status=JobStatus.PENDING)
    data = {"action": "mark_failed_selected", ACTION_CHECKBOX_NAME: [a.pk, b.pk]}
    assert "Mark 2 job(s) as failed?" in operator_client.post(LIST_URL, data).content.decode()
    operator_client.post(LIST_URL, {**data, "post": "yes", "reason": "cleanup after outage"})
    assert set(MediaProcessingJob.objects.values_list("status", flat=True)) == {JobStatus.FAILED}
    assert len(log_messages(a)) == 1 and len(log_messages(b)) == 1


# -- reprocess assets --------------------------------------------------------------------------


def test_reprocess_selected_assets(operator_client, processed_listing):
    built = processed_listing(509)
    chosen = [built["assets"][0].pk, built["assets"][1].pk]
    data = {"action": "reprocess_selected", ACTION_CHECKBOX_NAME: chosen}

    confirm = operator_client.post(ASSET_LIST_URL, data).content.decode()
    assert "Reprocess 2 asset(s)?" in confirm and "Listing 509: 2 asset(s)" in confirm

    operator_client.post(ASSET_LIST_URL, {**data, "post": "yes"})
    new = MediaProcessingJob.objects.exclude(pk=built["job"].pk).get()
    assert new.listing_identity_id == 509
    assert set(MediaAsset.objects.filter(pk__in=chosen).values_list("status", flat=True)) == {
        AssetStatus.PROCESSING
    }
    assert log_messages(built["assets"][0]) == [(CHANGE, f"Reprocessed in job #{new.pk}")]
    assert log_messages(new)[0][0] == ADDITION


def test_reprocess_is_forbidden_to_viewers(viewer_client, processed_listing):
    built = processed_listing(510)
    html = viewer_client.get(ASSET_LIST_URL).content.decode()
    assert "reprocess_selected" not in html
    forged = {
        "action": "reprocess_selected",
        ACTION_CHECKBOX_NAME: [built["assets"][0].pk],
        "post": "yes",
    }
    assert viewer_client.post(ASSET_LIST_URL, forged).status_code == 403
    assert MediaProcessingJob.objects.count() == 1


# -- error groups ------------------------------------------------------------------------------


def _failed(listing: int, message: str, **extra) -> MediaProcessingJob:
    AssetFactory(listing_identity_id=listing, status=AssetStatus.FAILED, sequence=listing)
    return JobFactory(
        listing_identity_id=listing,
        status=JobStatus.FAILED,
        last_error=f"code=OBJECT_NOT_FOUND | {message}",
        completed_at=timezone.now(),
        **extra,
    )


def test_retry_a_whole_error_group(operator_client, viewer_client):
    a = _failed(601, "raw object 601/raw/photo/a.jpg not found (404)")
    b = _failed(602, "raw object 602/raw/photo/b.jpg not found (404)")
    superseded = _failed(603, "raw object 603/raw/photo/c.jpg not found (404)")
    JobFactory(listing_identity_id=603, status=JobStatus.SUCCEEDED)  # ran again since
    _failed(604, "something else entirely")

    groups = viewer_client.get(reverse("admin:media_jobs_error_groups")).content.decode()
    assert "raw object &lt;key&gt; not found (#)" in groups
    assert "Retry this group" not in groups
    operator_groups = operator_client.get(reverse("admin:media_jobs_error_groups")).content.decode()
    retry_link = (
        operator_groups.split("Retry this group")[0]
        .rsplit('href="', 1)[1]
        .split('"')[0]
        .replace("&amp;", "&")
    )
    assert viewer_client.get(retry_link).status_code == 403

    confirm = operator_client.get(retry_link).content.decode()
    assert f"Job #{a.pk}" in confirm and f"Job #{b.pk}" in confirm
    assert f"Job #{superseded.pk}" not in confirm

    assert viewer_client.post(retry_link).status_code == 403
    operator_client.post(retry_link)
    retried = MediaProcessingJob.objects.filter(retry_count=1)
    assert sorted(retried.values_list("listing_identity_id", flat=True)) == [601, 602]
    assert log_messages(a) and log_messages(b) and not log_messages(superseded)


# -- callback replay ---------------------------------------------------------------------------


def test_replay_a_callback_delivery(operator_client, viewer_client, settings, receiver):
    settings.CALLBACK_URL = receiver.url
    settings.CALLBACK_SECRET = "s3cret"
    job = JobFactory(status=JobStatus.SUCCEEDED)
    body = json.dumps({"jobId": job.pk, "status": "SUCCEEDED", "note": "<script>x</script>"})
    original = CallbackDelivery.objects.create(
        job=job,
        url=receiver.url,
        request_body=body,
        signature=sign(body.encode(), "s3cret"),
        response_status=503,
        latency_ms=12,
    )
    detail_url = reverse("admin:media_jobs_callbackdelivery_change", args=[original.pk])
    replay_url = reverse("admin:media_jobs_callbackdelivery_replay", args=[original.pk])

    detail = operator_client.get(detail_url).content.decode()
    assert "toq-replay-button" in detail
    assert "&lt;script&gt;x&lt;/script&gt;" in detail and "<script>x" not in detail
    assert original.signature in detail and "12 ms" in detail
    assert "toq-replay-button" not in viewer_client.get(detail_url).content.decode()
    assert viewer_client.post(replay_url).status_code == 403
    assert receiver.received == []

    assert "Replay callback delivery" in operator_client.get(replay_url).content.decode()
    response = operator_client.post(replay_url)

    replay = CallbackDelivery.objects.get(replay_of=original)
    assert response.status_code == 302 and response["Location"].endswith(f"/{replay.pk}/change/")
    assert replay.succeeded and replay.response_status == 200
    (received,) = receiver.received
    assert verify_signature(received.body, "s3cret", received.headers.get("X-Toq-Signature"))
    assert log_messages(original)[0][1].startswith(f"Replayed as delivery #{replay.pk}")
    listing = operator_client.get(
        reverse("admin:media_jobs_callbackdelivery_changelist")
    ).content.decode()
    assert f"#{original.pk}</a>" in listing  # the replay links to its original
