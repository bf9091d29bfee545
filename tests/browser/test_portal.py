"""The portal in a real browser: an operator troubleshoots and retries a failed job that a
real Celery worker then processes; a viewer finds nothing to press."""

from __future__ import annotations

import json
import re

import pytest
from django.utils import timezone

from media_jobs import sample_media
from media_jobs.models import AssetStatus, AssetType, JobStatus, MediaProcessingJob
from media_jobs.pipeline import keys
from media_jobs.storage import pipeline_storage
from tests.admin.users import OPERATORS, PASSWORD, VIEWERS, make_user
from tests.browser.conftest import login
from tests.factories import AssetFactory, JobFactory
from tests.fixtures.worker import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.slow]
LISTING = 8181


def seed_failed_job() -> MediaProcessingJob:
    """A listing whose processing job failed on one photo: two photos PROCESSED with real
    derivatives in storage, one FAILED (its raw has since been uploaded again, intact)."""
    storage = pipeline_storage()
    for number in (1, 2, 3):
        raw = keys.raw_key(
            LISTING, AssetType.PHOTO_HORIZONTAL, f"horizontal-{number:02d}", f"room-{number}.jpg"
        )
        storage.write(
            raw, sample_media.jpeg_bytes(640, 480, seed=number), content_type="image/jpeg"
        )
        if number < 3:
            outputs = {}
            for size, width in keys.IMAGE_SIZES.items():
                key = keys.derivative_key(raw, size)
                width = min(width, 640)
                storage.write(
                    key,
                    sample_media.jpeg_bytes(width, width * 3 // 4, seed=number),
                    content_type="image/jpeg",
                )
                outputs[f"{size}_photo_horizontal"] = key
            AssetFactory(
                listing_identity_id=LISTING,
                sequence=number,
                status=AssetStatus.PROCESSED,
                s3_key_raw=raw,
                s3_key_processed=outputs["large_photo_horizontal"],
                metadata={
                    "filename": f"room-{number}.jpg",
                    "thumbnailKey": outputs["thumbnail_photo_horizontal"],
                    **outputs,
                },
            )
        else:
            AssetFactory(
                listing_identity_id=LISTING,
                sequence=number,
                status=AssetStatus.FAILED,
                s3_key_raw=raw,
                metadata={
                    "filename": "room-3.jpg",
                    "errorCode": "CORRUPT_IMAGE",
                    "error": "image file is truncated",
                },
            )
    now = timezone.now().replace(microsecond=0)
    body = {
        "jobId": 0,
        "listingIdentityId": LISTING,
        "status": "PROCESSING_FAILED",
        "error": {"code": "CORRUPT_IMAGE", "message": "image file is truncated"},
        "outputs": [],
    }
    job = JobFactory(
        listing_identity_id=LISTING,
        status=JobStatus.FAILED,
        started_at=now,
        completed_at=now,
        external_id="celery-seeded",
        last_error="code=CORRUPT_IMAGE | image file is truncated | room-3.jpg",
        payload={"failed": 1},
    )
    body["jobId"] = job.pk
    job.callback_body = json.dumps(body)
    job.save(update_fields=["callback_body"])
    return job


def test_operator_troubleshoots_and_retries_a_failed_job(page, shot, live_server, celery_worker):
    operator = make_user("olga-browser", group=OPERATORS)
    failed = seed_failed_job()
    JobFactory(status=JobStatus.SUCCEEDED)  # another job on the dashboard and in the list
    celery_worker.start()
    base = live_server.url

    login(page, base, operator.username, PASSWORD)
    chart = page.locator("svg#toq-daily-chart")
    chart.wait_for()
    assert chart.locator("rect.toq-bar").count() >= 2  # today: succeeded + failed
    assert chart.locator("rect.toq-bar--failed").count() == 1
    shot("dashboard")

    page.click("#toq-status-table >> text=Failed")  # jobs filtered on FAILED
    page.wait_for_url(re.compile(r".*status__exact=FAILED.*"))
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    assert "image file is truncated" in rows.first.inner_text()
    shot("failed-jobs")

    rows.first.locator("th.field-id a").click()
    page.wait_for_url(re.compile(rf".*/mediaprocessingjob/{failed.pk}/change/"))
    callback = page.locator("details.toq-json", has_text="callback body")
    callback.locator("summary").click()
    assert '"status": "PROCESSING_FAILED"' in callback.locator("pre").inner_text()
    previews = page.locator("img.toq-thumb")
    assert previews.count() == 2
    for index in range(previews.count()):
        image = previews.nth(index)
        image.scroll_into_view_if_needed()
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
        )
        assert image.evaluate("img => img.naturalWidth") == 200
    page.locator(".toq-storage-check").wait_for()  # the storage check loaded on its own
    shot("job-page")

    page.click("#toq-retry-button")
    assert "a new processing job for the 1 assets" in page.locator(".toq-plan-summary").inner_text()
    shot("retry-confirmation")
    page.click("#toq-confirm-retry")
    page.wait_for_url(re.compile(r".*/mediaprocessingjob/\d+/change/"))
    new_id = int(re.search(r"/mediaprocessingjob/(\d+)/change/", page.url).group(1))
    assert new_id != failed.pk
    assert "retried as" in page.locator("ul.messagelist").inner_text()

    def succeeded_on_page() -> bool:
        page.reload()
        return "Succeeded" in page.locator(".field-status_badge .toq-badge").inner_text()

    wait_until(succeeded_on_page, timeout=180, interval=1.0, what="the retried job to succeed")
    new = MediaProcessingJob.objects.get(pk=new_id)
    assert new.status == JobStatus.SUCCEEDED and new.retry_count == 1
    assert page.locator("#toq-timeline").inner_text().count("Succeeded") >= 1
    page.locator("#toq-other-jobs").scroll_into_view_if_needed()
    assert f"#{failed.pk}" in page.locator("#toq-other-jobs").inner_text()
    shot("retried-job-succeeded")


def test_viewer_finds_no_retry_button(
    page, shot, live_server, transactional_db, local_storage_settings
):
    viewer = make_user("victor-browser", group=VIEWERS)
    job = JobFactory(
        listing_identity_id=LISTING, status=JobStatus.FAILED, last_error="code=ZIP_FAILED | x"
    )
    base = live_server.url

    login(page, base, viewer.username, PASSWORD)
    page.locator("svg#toq-daily-chart").wait_for()
    page.goto(f"{base}/admin/media_jobs/mediaprocessingjob/?status__exact=FAILED")
    assert page.locator("select[name=action]").count() == 0
    shot("viewer-list")
    page.goto(f"{base}/admin/media_jobs/mediaprocessingjob/{job.pk}/change/")
    page.locator("#toq-timeline").wait_for()
    assert page.locator("#toq-retry-button").count() == 0
    assert page.get_by_text("Retry…").count() == 0
    shot("viewer-job-page")
    response = page.goto(f"{base}/admin/media_jobs/mediaprocessingjob/{job.pk}/retry/")
    assert response.status == 403
    page.goto(f"{base}/admin/media_jobs/error-groups/")
    assert page.get_by_text("Retry this group").count() == 0
    assert MediaProcessingJob.objects.count() == 1
