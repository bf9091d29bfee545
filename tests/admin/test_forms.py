"""The operator actions' forms: a bad id, a job in the wrong state, a missing or forged
confirmation gets the confirmation page again with the form's error (400), never a 500, and
changes nothing."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import LogEntry
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from media_jobs.admin.forms import (
    REASON_MAX_LENGTH,
    BulkMarkFailedForm,
    BulkRetryForm,
    ErrorGroupRetryForm,
    MarkFailedForm,
    RetryForm,
)
from media_jobs.models import AssetStatus, CallbackDelivery, JobStatus, MediaProcessingJob
from tests.factories import AssetFactory, JobFactory

pytestmark = pytest.mark.django_db
LIST_URL = reverse("admin:media_jobs_mediaprocessingjob_changelist")
ASSET_LIST_URL = reverse("admin:media_jobs_mediaasset_changelist")


def _request(user):
    request = RequestFactory().post("/")
    request.user = user
    return request


# -- the forms on their own ------------------------------------------------------------------


@pytest.mark.parametrize(
    "ids",
    [["abc"], ["1", "x"], ["-1"], ["1.5"], ["9" * 30], [" 7"], ["0x10"]],
)
def test_selection_rejects_what_is_not_an_id(ids):
    form = BulkRetryForm({ACTION_CHECKBOX_NAME: ids})
    assert not form.is_valid()
    assert "Not a valid id" in str(form.errors[ACTION_CHECKBOX_NAME])


def test_selection_of_ids_is_valid_and_unconfirmed_without_post():
    form = BulkRetryForm({ACTION_CHECKBOX_NAME: ["12", "7"]})
    assert form.is_valid() and form.cleaned_data[ACTION_CHECKBOX_NAME] == [12, 7]
    assert not form.confirmed
    assert BulkRetryForm({ACTION_CHECKBOX_NAME: ["12"], "post": "yes"}).confirmed


@pytest.mark.parametrize("post", ["no", "YES", "1", "yes please"])
def test_a_forged_confirmation_is_an_error(post):
    form = BulkRetryForm({ACTION_CHECKBOX_NAME: ["12"], "post": post})
    assert not form.is_valid() and not form.confirmed
    assert "confirmation page" in str(form.errors["post"])


def test_reason_is_folded_cut_and_defaulted(operator):
    request = _request(operator)
    job = JobFactory(status=JobStatus.RUNNING)
    long = MarkFailedForm(
        {"reason": "  worker\n\thost   died " + "x" * 600}, job=job, request=request
    )
    assert long.is_valid()
    reason = long.cleaned_data["reason"]
    assert reason.startswith("worker host died x") and len(reason) == REASON_MAX_LENGTH
    empty = BulkMarkFailedForm({"reason": "   ", "post": "yes"}, request=request)
    assert empty.confirmed
    assert empty.cleaned_data["reason"] == "marked failed by olga-operator in the admin (stuck)"


def test_retry_form_asks_the_retry_plan():
    running = JobFactory(status=JobStatus.RUNNING)
    form = RetryForm({}, job=running)
    assert not form.is_valid()
    (error,) = form.non_field_errors()
    assert f"Job #{running.pk} was not retried" in error and "RUNNING" in error


def test_mark_failed_form_refuses_a_finished_job(operator):
    done = JobFactory(status=JobStatus.SUCCEEDED)
    form = MarkFailedForm({"reason": "x"}, job=done, request=_request(operator))
    assert not form.is_valid()
    assert form.non_field_errors() == [f"Job #{done.pk} is already SUCCEEDED."]


def test_error_group_window_must_be_offered():
    assert ErrorGroupRetryForm({"days": "7"}, windows=["1", "7", "30"]).is_valid()
    form = ErrorGroupRetryForm({"days": "365"}, windows=["1", "7", "30"])
    assert not form.is_valid() and "days" in form.errors


# -- through the admin -------------------------------------------------------------------------


@pytest.mark.parametrize("confirmed", [False, True])
@pytest.mark.parametrize("action", ["retry_selected", "mark_failed_selected"])
def test_bulk_action_with_bad_ids_is_a_400_page(operator_client, action, confirmed):
    job = JobFactory(status=JobStatus.FAILED)
    data = {"action": action, ACTION_CHECKBOX_NAME: [str(job.pk), "1 OR 1=1"]}
    if confirmed:
        data["post"] = "yes"
    response = operator_client.post(LIST_URL, data)
    html = response.content.decode()
    assert response.status_code == 400
    assert "Not a valid id" in html and "toq-form-errors" in html
    assert "&#x27;1 OR 1=1&#x27;" in html  # escaped, as given
    assert MediaProcessingJob.objects.count() == 1
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and LogEntry.objects.count() == 0


def test_bad_ids_from_a_viewer_are_still_a_403(viewer_client):
    data = {"action": "retry_selected", ACTION_CHECKBOX_NAME: ["abc"], "post": "yes"}
    assert viewer_client.post(LIST_URL, data).status_code == 403


def test_bulk_retry_with_a_forged_confirmation_changes_nothing(operator_client):
    job = JobFactory(status=JobStatus.FAILED, completed_at=timezone.now())
    data = {"action": "retry_selected", ACTION_CHECKBOX_NAME: [job.pk], "post": "sure"}
    response = operator_client.post(LIST_URL, data)
    assert response.status_code == 400
    assert "Confirm with the button of the confirmation page." in response.content.decode()
    assert MediaProcessingJob.objects.count() == 1


def test_bulk_action_without_confirmation_shows_the_confirmation_page(operator_client):
    job = JobFactory(status=JobStatus.RUNNING)
    data = {"action": "mark_failed_selected", ACTION_CHECKBOX_NAME: [job.pk]}
    response = operator_client.post(LIST_URL, data)
    html = response.content.decode()
    assert response.status_code == 200 and 'id="toq-confirm-mark-failed"' in html
    assert "toq-form-errors" not in html
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING


def test_reprocess_with_bad_ids_is_a_400_page(operator_client):
    asset = AssetFactory(status=AssetStatus.FAILED)
    data = {"action": "reprocess_selected", ACTION_CHECKBOX_NAME: [asset.pk, "x"], "post": "yes"}
    response = operator_client.post(ASSET_LIST_URL, data)
    assert response.status_code == 400 and "Not a valid id" in response.content.decode()
    assert MediaProcessingJob.objects.count() == 0
    asset.refresh_from_db()
    assert asset.status == AssetStatus.FAILED


def test_retrying_a_running_job_shows_the_error_on_the_confirmation(operator_client):
    job = JobFactory(status=JobStatus.RUNNING)
    url = reverse("admin:media_jobs_mediaprocessingjob_retry", args=[job.pk])
    response = operator_client.post(url)
    html = response.content.decode()
    assert response.status_code == 400
    assert f"Job #{job.pk} was not retried" in html and "toq-form-errors" in html
    assert MediaProcessingJob.objects.count() == 1 and LogEntry.objects.count() == 0


def test_marking_a_finished_job_failed_shows_the_error(operator_client):
    job = JobFactory(status=JobStatus.SUCCEEDED)
    url = reverse("admin:media_jobs_mediaprocessingjob_mark_failed", args=[job.pk])
    response = operator_client.post(url, {"reason": "x"})
    assert response.status_code == 400
    assert f"Job #{job.pk} is already SUCCEEDED." in response.content.decode()
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and LogEntry.objects.count() == 0


def test_unknown_job_is_a_404(operator_client):
    url = reverse("admin:media_jobs_mediaprocessingjob_retry", args=[987654321])
    assert operator_client.post(url).status_code == 404


def test_replay_without_a_callback_url_shows_the_error(operator_client, settings):
    settings.CALLBACK_URL = ""
    job = JobFactory(status=JobStatus.SUCCEEDED)
    delivery = CallbackDelivery.objects.create(
        job=job, url="http://receiver.invalid/", request_body="{}", signature="x"
    )
    url = reverse("admin:media_jobs_callbackdelivery_replay", args=[delivery.pk])
    response = operator_client.post(url)
    html = response.content.decode()
    assert response.status_code == 400
    assert "Not replayed: CALLBACK_URL is not configured" in html
    assert CallbackDelivery.objects.count() == 1


def test_error_group_retry_with_a_window_not_offered(operator_client, viewer_client):
    AssetFactory(listing_identity_id=701, status=AssetStatus.FAILED)
    job = JobFactory(
        listing_identity_id=701,
        status=JobStatus.FAILED,
        last_error="code=OBJECT_NOT_FOUND | raw object 701/raw/photo/a.jpg not found (404)",
        completed_at=timezone.now(),
    )
    groups = operator_client.get(reverse("admin:media_jobs_error_groups")).content.decode()
    retry_link = (groups.split("Retry this group")[0].rsplit('href="', 1)[1].split('"')[0]).replace(
        "&amp;", "&"
    )
    response = operator_client.post(retry_link, {"days": "365"})
    html = response.content.decode()
    assert response.status_code == 400 and "toq-form-errors" in html
    assert f"Job #{job.pk}" in html  # the confirmation again, with its error
    assert MediaProcessingJob.objects.count() == 1
    assert viewer_client.post(retry_link, {"days": "365"}).status_code == 403
