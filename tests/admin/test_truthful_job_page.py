"""The job page never contradicts itself: the storage badge from the counts, the job's own
asset figures, "never started" for a job that never ran, each asset's own error and what to do
about it, copy buttons, an S3 console link on S3, and Retry only where it can help."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from media_jobs import errorcodes
from media_jobs.models import AssetStatus, JobStatus, MediaProcessingJob
from media_jobs.pipeline import keys
from media_jobs.pipeline.callback import serialise_payload
from media_jobs.services.callbacks import callback_apply
from media_jobs.services.dispatch import job_dispatch_failed, listing_start_processing
from tests.factories import AssetFactory, JobFactory

pytestmark = pytest.mark.django_db


def job_url(job: MediaProcessingJob) -> str:
    return reverse("admin:media_jobs_mediaprocessingjob_change", args=[job.pk])


def storage_fragment(client: Client, listing: int) -> str:
    url = reverse("admin:media_jobs_storage_check", args=[listing])
    return client.get(url, {"fragment": "1"}).content.decode()


def test_the_storage_badge_says_complete_only_when_every_object_is_there(
    viewer_client: Client, processed_listing: Any
):
    built = processed_listing(6100)  # two photos processed, one FAILED (no derivatives)
    html = storage_fragment(viewer_client, 6100)
    badge = re.search(r'<p class="toq-storage-summary">\s*(<span[^>]*>[^<]*</span>)', html)[1]
    assert "complete" not in badge and "toq-badge--partial" in badge
    present = len(re.findall(r'<tr class="toq-storage-present">', html))
    absent = len(re.findall(r'<tr class="toq-storage-absent">', html))
    assert absent == 4 and f"{present} of {present + absent} present" in badge
    assert "4 absent but not required" in html

    built["storage"].delete(keys.derivative_key(built["assets"][0].s3_key_raw, "small"))
    assert "1 missing" in storage_fragment(viewer_client, 6100)

    processed_listing(6101, failed=0)
    assert '<span class="toq-badge toq-badge--ok">complete</span>' in storage_fragment(
        viewer_client, 6101
    )


def test_a_job_that_never_started_says_so(viewer_client: Client, settings: Any):
    settings.MEDIA_PIPELINE_ENGINE = "celery"
    AssetFactory(listing_identity_id=6200, status=AssetStatus.PENDING_UPLOAD)
    AssetFactory(listing_identity_id=6200, status=AssetStatus.PENDING_UPLOAD)
    job = listing_start_processing(listing_identity_id=6200)
    failed = job_dispatch_failed(job_id=job.pk, reason="the broker refused the job")

    assert failed.started_at is None and failed.completed_at is not None
    page = viewer_client.get(job_url(failed)).content.decode()
    assert "never started (it ended before a worker took it)" in page
    # its own figures: it took 2 assets and processed none (not "0 of 0")
    assert re.search(
        r'toq-ok">0 processed</span>, <span class="toq-failed">2 failed</span>, 2', page
    )
    assert failed.payload == {"assetsTotal": 2, "assetsProcessed": 0, "assetsFailed": 2}
    listing = viewer_client.get(reverse("admin:media_jobs_mediaprocessingjob_changelist"))
    assert "never started" in listing.content.decode()


def test_each_asset_shows_its_own_error_and_what_to_do(
    viewer_client: Client, processed_listing: Any, settings: Any
):
    settings.MEDIA_PIPELINE_ENGINE = "celery"
    built = processed_listing(6300)
    good, other, broken = built["assets"]
    broken.status = AssetStatus.PENDING_UPLOAD
    broken.save()
    job = listing_start_processing(listing_identity_id=6300, asset_ids=[good.pk, broken.pk])
    body = {
        "jobId": job.pk,
        "listingIdentityId": 6300,
        "status": "PARTIAL_SUCCESS",
        "error": {"code": "DERIVATIVE_ERRORS_DETECTED", "message": "derivative errors detected"},
        "outputs": [
            {
                "rawKey": good.s3_key_raw,
                "processedKey": good.s3_key_processed,
                "thumbnailKey": good.meta["thumbnailKey"],
                "outputs": {},
                "errorCode": "",
                "errorMessage": "",
            },
            {
                "rawKey": broken.s3_key_raw,
                "processedKey": "",
                "thumbnailKey": "",
                "outputs": {},
                "errorCode": "TOO_MANY_PIXELS",
                "errorMessage": "image is 200000000 pixels, over the limit of 180000000",
            },
        ],
    }
    callback_apply(raw_body=serialise_payload(body), verify=False)

    page = viewer_client.get(job_url(job)).content.decode()
    rows = page.split('id="toq-assets"', 1)[1].split("</table>", 1)[0].split("<tr")[2:]
    by_asset = {re.search(r"/mediaasset/(\d+)/change/", row)[1]: row for row in rows}
    assert "processed</span>" in by_asset[str(good.pk)]
    broken_row = by_asset[str(broken.pk)]
    assert "TOO_MANY_PIXELS" in broken_row and "over the limit of 180000000" in broken_row
    advice = str(errorcodes.what_to_do("TOO_MANY_PIXELS"))
    assert "What to do:" in broken_row and escape(advice.split(";")[0]) in broken_row
    assert "not in this job" in by_asset[str(other.pk)]
    # the job's own code gets its advice in the summary
    assert escape(str(errorcodes.what_to_do("DERIVATIVE_ERRORS_DETECTED"))) in page


def test_copy_buttons_and_no_console_link_on_local_storage(
    viewer_client: Client, processed_listing: Any
):
    job = processed_listing(6400)["job"]
    page = viewer_client.get(job_url(job)).content.decode()
    assert f'data-copy="{job.pk}"' in page and f'data-copy="{job.external_id}"' in page
    assert 'data-copy="6400/raw/photo/horizontal/' in page
    assert "toq-s3-console" not in page
    assert "data-copy=" in storage_fragment(viewer_client, 6400)


def test_an_s3_console_link_when_storage_is_s3(
    viewer_client: Client, settings: Any, moto_server: Any, s3_bucket: str
):
    settings.MEDIA_STORAGE_BACKEND = "s3"
    settings.MEDIA_BUCKET = s3_bucket
    settings.AWS_S3_ENDPOINT_URL = moto_server.endpoint_url
    settings.AWS_S3_REGION_NAME = "sa-east-1"
    job = JobFactory(listing_identity_id=6500, status=JobStatus.SUCCEEDED)
    page = viewer_client.get(job_url(job)).content.decode().replace("&amp;", "&")
    assert (
        f'href="https://s3.console.aws.amazon.com/s3/buckets/{s3_bucket}?region=sa-east-1&prefix=6500%2F"'
        in page
    )
    settings.AWS_S3_CONSOLE_URL = ""
    assert "toq-s3-console" not in viewer_client.get(job_url(job)).content.decode()


@pytest.mark.parametrize(
    ("status", "offered"),
    [
        (JobStatus.FAILED, True),
        (JobStatus.PARTIAL_SUCCESS, True),
        (JobStatus.SUCCEEDED, False),
        (JobStatus.RUNNING, False),
    ],
)
def test_retry_is_offered_on_failed_jobs_only(operator_client: Client, status: str, offered: bool):
    job = JobFactory(status=status)
    page = operator_client.get(job_url(job)).content.decode()
    assert ("toq-retry-button" in page) is offered
