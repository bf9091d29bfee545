"""The read-only job page: summary, escaped JSON, assets with previews, storage check,
timeline or Step Functions history on demand, other jobs of the listing."""

from __future__ import annotations

import json
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from media_jobs.models import (
    AssetStatus,
    CallbackDelivery,
    EventKind,
    JobProvider,
    JobStatus,
    MediaJobEvent,
)
from media_jobs.pipeline import keys
from media_jobs.services.job_errors import job_errors_backfill
from media_jobs.storage import pipeline_storage
from tests.factories import AssetFactory, JobFactory
from tests.fixtures.s3server import free_port

pytestmark = pytest.mark.django_db
HOSTILE = '<script>alert("x")</script>'


def job_url(job) -> str:
    return reverse("admin:media_jobs_mediaprocessingjob_change", args=[job.pk])


def test_job_page_is_read_only_and_shows_everything(viewer_client, processed_listing):
    built = processed_listing(4242)
    job = built["job"]
    MediaJobEvent.objects.create(
        job=job,
        step="thumbnails",
        kind=EventKind.SUCCEEDED,
        duration_ms=1234,
        detail={"generated": 8},
    )
    older = JobFactory(listing_identity_id=4242, status=JobStatus.FAILED)
    newer = JobFactory(
        listing_identity_id=4242,
        status=JobStatus.SUCCEEDED,
        provider=JobProvider.STEP_FUNCTIONS_FINALIZATION,
    )

    response = viewer_client.get(job_url(job))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="status"' not in html  # no editable field
    assert "code=DERIVATIVE_ERRORS_DETECTED | 1 derivative failed | CORRUPT_IMAGE" in html
    assert '<details class="toq-json" open><summary>payload' in html
    assert "&quot;status&quot;: &quot;PARTIAL_SUCCESS&quot;" in html  # pretty-printed callback body
    # timeline
    assert (
        "<code>thumbnails</code>" in html
        and "1234 ms" in html
        and "&quot;generated&quot;: 8" in html
    )
    # assets: previews of the processed photos, error of the failed one, links
    assert html.count('class="toq-thumb"') == 2
    assert "CORRUPT_IMAGE" in html and "image file is truncated" in html
    assert html.count(reverse("admin:media_jobs_media_file")) >= 2 * 6
    # other jobs of the listing, newest first
    other = html.split('id="toq-other-jobs"', 1)[1]
    assert other.index(f">#{newer.pk}<") < other.index(f">#{older.pk}<")
    assert f">#{job.pk}<" not in other
    # no operate buttons for a viewer
    assert "toq-retry-button" not in html and "Retry…" not in html


def test_preview_links_serve_the_real_thumbnail(viewer_client, processed_listing):
    built = processed_listing(4243)
    html = viewer_client.get(job_url(built["job"])).content.decode()
    src = re.search(r'<img class="toq-thumb" src="([^"]+)"', html).group(1).replace("&amp;", "&")
    response = viewer_client.get(src)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    data = b"".join(response.streaming_content)
    assert data[:3] == b"\xff\xd8\xff"
    thumbnail_key = keys.derivative_key(built["assets"][0].s3_key_raw, "thumbnail")
    assert data == built["storage"].path_for(thumbnail_key).read_bytes()


def test_hostile_strings_are_escaped(viewer_client, processed_listing):
    built = processed_listing(
        4244, filename="{n}-" + "<img src=x onerror=alert(1)>.jpg".replace("/", "")
    )
    job = built["job"]
    job.callback_body = json.dumps({"jobId": job.pk, "error": {"message": HOSTILE}})
    job.last_error = f"code=X | {HOSTILE}"
    job.payload = {"note": HOSTILE}
    job.save()
    MediaJobEvent.objects.create(
        job=job, step=HOSTILE[:60], kind=EventKind.NOTE, detail={"x": HOSTILE}
    )

    job.status = JobStatus.FAILED  # so it shows in the error groups too
    job.save(update_fields=["status"])
    job_errors_backfill(jobs=[job])
    urls = [
        job_url(job),
        reverse("admin:media_jobs_mediaprocessingjob_changelist"),
        reverse("admin:media_jobs_listing", args=[4244]),
        reverse("admin:media_jobs_storage_check", args=[4244]) + "?fragment=1",
        reverse("admin:media_jobs_error_groups"),
        reverse("admin:media_jobs_mediaasset_changelist"),
        reverse("admin:media_jobs_mediaasset_change", args=[built["assets"][0].pk]),
        reverse("admin:index"),
    ]
    for url in urls:
        response = viewer_client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert "<script>alert" not in html, url
        assert "<img src=x" not in html, url
    groups = viewer_client.get(reverse("admin:media_jobs_error_groups")).content.decode()
    assert "&lt;script&gt;" in groups
    html = viewer_client.get(job_url(job)).content.decode()
    assert "&lt;script&gt;alert(" in html
    assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in html


def test_storage_check_highlights_missing_derivatives_and_zip(viewer_client, processed_listing):
    built = processed_listing(4245)
    storage = built["storage"]
    gone = keys.derivative_key(built["assets"][1].s3_key_raw, "medium")
    storage.delete(gone)
    JobFactory(
        listing_identity_id=4245,
        status=JobStatus.SUCCEEDED,
        provider=JobProvider.STEP_FUNCTIONS_FINALIZATION,
    )
    storage.write("4245/processed/photo/horizontal/large/stray.jpg", b"x")

    url = reverse("admin:media_jobs_storage_check", args=[4245])
    html = viewer_client.get(url, {"fragment": "1"}).content.decode()

    assert "<html" not in html  # a fragment for the job page
    missing = re.findall(r'<tr class="toq-storage-missing">.*?<code>([^<]+)</code>', html, re.S)
    assert sorted(missing) == sorted([gone, keys.zip_key(4245)])
    assert "2 missing" in html
    assert "stray.jpg" in html  # objects no asset accounts for
    # the failed asset's derivatives are absent but not required
    failed_thumb = keys.derivative_key(built["assets"][2].s3_key_raw, "thumbnail")
    assert re.search(r'<tr class="toq-storage-absent">.*?' + re.escape(failed_thumb), html, re.S)
    page = viewer_client.get(url)
    assert page.status_code == 200 and "<html" in page.content.decode()


def test_storage_check_complete_listing_on_s3(
    viewer_client, settings, moto_server, s3_bucket, celery_engine
):
    settings.MEDIA_STORAGE_BACKEND = "s3"
    settings.MEDIA_BUCKET = s3_bucket
    settings.AWS_S3_ENDPOINT_URL = moto_server.endpoint_url

    storage = pipeline_storage()
    raw = keys.raw_key(88, "PHOTO_VERTICAL", "vertical-01", "a.jpg")
    storage.write(raw, b"raw")
    outputs = {}
    for size in keys.IMAGE_SIZES:
        outputs[f"{size}_photo_vertical"] = keys.derivative_key(raw, size)
        storage.write(outputs[f"{size}_photo_vertical"], b"jpg")
    AssetFactory(
        listing_identity_id=88,
        asset_type="PHOTO_VERTICAL",
        status=AssetStatus.PROCESSED,
        s3_key_raw=raw,
        s3_key_processed=outputs["large_photo_vertical"],
        metadata=outputs,
    )
    job = JobFactory(listing_identity_id=88, status=JobStatus.SUCCEEDED)

    html = viewer_client.get(
        reverse("admin:media_jobs_storage_check", args=[88]), {"fragment": "1"}
    ).content.decode()
    assert "complete" in html and "MISSING" not in html
    # links are presigned URLs on the S3 endpoint, with the configured TTL
    assert (
        f"{moto_server.endpoint_url}/{s3_bucket}/{outputs['thumbnail_photo_vertical']}?"
        in html.replace("&amp;", "&")
    )
    page = viewer_client.get(job_url(job)).content.decode().replace("&amp;", "&")
    assert f"Expires={settings.MEDIA_PRESIGNED_URL_TTL}" in page or "X-Amz-Expires=" in page


def test_storage_check_requires_the_raw_object_once_the_upload_was_recorded(
    viewer_client, settings, moto_server, s3_bucket, celery_engine
):
    settings.MEDIA_STORAGE_BACKEND = "s3"
    settings.MEDIA_BUCKET = s3_bucket
    settings.AWS_S3_ENDPOINT_URL = moto_server.endpoint_url
    # neither raw object is in the bucket
    failed_raw = keys.raw_key(87, "PHOTO_VERTICAL", "vertical-01", "gone.jpg")
    pending_raw = keys.raw_key(87, "PHOTO_VERTICAL", "vertical-02", "not-yet.jpg")
    AssetFactory(
        listing_identity_id=87,
        asset_type="PHOTO_VERTICAL",
        sequence=1,
        status=AssetStatus.FAILED,
        s3_key_raw=failed_raw,
    )
    AssetFactory(
        listing_identity_id=87,
        asset_type="PHOTO_VERTICAL",
        sequence=2,
        status=AssetStatus.PENDING_UPLOAD,
        s3_key_raw=pending_raw,
    )

    html = viewer_client.get(
        reverse("admin:media_jobs_storage_check", args=[87]), {"fragment": "1"}
    ).content.decode()

    # a FAILED asset was uploaded: its raw object missing is a problem; an upload the
    # client has not made yet (PENDING_UPLOAD) is only absent
    missing = re.findall(r'<tr class="toq-storage-missing">.*?<code>([^<]+)</code>', html, re.S)
    assert missing == [failed_raw]
    assert "1 missing" in html
    absent = re.findall(r'<tr class="toq-storage-absent">.*?<code>([^<]+)</code>', html, re.S)
    assert pending_raw in absent


def test_storage_error_is_reported_not_raised(viewer_client, settings, celery_engine):
    settings.MEDIA_STORAGE_BACKEND = "s3"
    settings.MEDIA_BUCKET = "nowhere"
    settings.AWS_S3_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"
    AssetFactory(listing_identity_id=99, status=AssetStatus.PROCESSED)
    response = viewer_client.get(
        reverse("admin:media_jobs_storage_check", args=[99]), {"fragment": "1"}
    )
    assert response.status_code == 200
    assert "Storage could not be listed" in response.content.decode()


def test_step_functions_history_on_demand(viewer_client, settings, moto_server):
    settings.AWS_ENDPOINT_URL = moto_server.endpoint_url
    sfn = moto_server.client("stepfunctions")
    iam_role = "arn:aws:iam::123456789012:role/sfn"
    definition = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
    machine = sfn.create_state_machine(
        name=f"admin-test-{free_port()}", definition=json.dumps(definition), roleArn=iam_role
    )
    execution = sfn.start_execution(
        stateMachineArn=machine["stateMachineArn"], input=json.dumps({"jobId": 1, "note": HOSTILE})
    )
    job = JobFactory(status=JobStatus.RUNNING, external_id=execution["executionArn"])

    page = viewer_client.get(job_url(job)).content.decode()
    execution_url = reverse("admin:media_jobs_mediaprocessingjob_execution", args=[job.pk])
    assert f'data-fragment-url="{execution_url}"' in page
    assert "toq-load-execution" in page

    html = viewer_client.get(execution_url, {"fragment": "1"}).content.decode()
    assert execution["executionArn"] in html
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert "History (" in html


def test_step_functions_unreachable_gives_a_clear_message(viewer_client, settings):
    settings.AWS_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"
    job = JobFactory(
        status=JobStatus.RUNNING, external_id="arn:aws:states:us-east-1:123456789012:execution:m:e"
    )
    response = viewer_client.get(
        reverse("admin:media_jobs_mediaprocessingjob_execution", args=[job.pk]), {"fragment": "1"}
    )
    assert response.status_code == 200
    assert "AWS Step Functions could not be reached" in response.content.decode()


def test_celery_job_has_no_execution_to_fetch(viewer_client):
    job = JobFactory(status=JobStatus.RUNNING, external_id="celery-1-abc")
    html = viewer_client.get(
        reverse("admin:media_jobs_mediaprocessingjob_execution", args=[job.pk])
    ).content.decode()
    assert "ran on Celery" in html


def test_callback_deliveries_listed_on_the_job_page(viewer_client):
    job = JobFactory(status=JobStatus.SUCCEEDED)
    delivery = CallbackDelivery.objects.create(
        job=job,
        url="http://x/cb",
        request_body="{}",
        signature="ab" * 32,
        response_status=502,
        latency_ms=31,
    )
    html = viewer_client.get(job_url(job)).content.decode()
    assert reverse("admin:media_jobs_callbackdelivery_change", args=[delivery.pk]) in html
    assert "31 ms" in html and ">502<" in html


def test_job_page_query_count_does_not_grow_with_assets_events_and_jobs(viewer_client, local_media):
    job = JobFactory(listing_identity_id=31, status=JobStatus.SUCCEEDED)

    def grow(n: int) -> None:
        for _ in range(n):
            AssetFactory(listing_identity_id=31, status=AssetStatus.PROCESSED)
            MediaJobEvent.objects.create(job=job, step="validate", kind=EventKind.STARTED)
            JobFactory(listing_identity_id=31)
            CallbackDelivery.objects.create(job=job, url="u", request_body="{}", signature="s")

    grow(2)
    # the first page of a process fills process-wide caches (content types): not measured
    assert viewer_client.get(job_url(job)).status_code == 200
    with CaptureQueriesContext(connection) as few:
        assert viewer_client.get(job_url(job)).status_code == 200
    grow(20)
    with CaptureQueriesContext(connection) as many:
        assert viewer_client.get(job_url(job)).status_code == 200
    assert len(few) == len(many)
