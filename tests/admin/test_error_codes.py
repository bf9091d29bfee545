"""Per-asset error codes are first-class: a PARTIAL_SUCCESS job whose photo is corrupt is found
by CORRUPT_IMAGE in the jobs list, the error groups, the dashboard, /metrics and requeue_jobs,
as well as by its own DERIVATIVE_ERRORS_DETECTED; one catalogue says what to do about each."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from media_jobs import errorcodes
from media_jobs.models import AssetStatus, JobStatus, MediaJobError, MediaProcessingJob
from media_jobs.pipeline.callback import serialise_payload
from media_jobs.pipeline.consolidate import consolidate
from media_jobs.selectors import errors as error_selectors
from media_jobs.selectors.operations import jobs_for_requeue
from media_jobs.services.callbacks import callback_apply
from media_jobs.services.failures import job_mark_failed
from tests.admin.html import job_ids_in
from tests.factories import AssetFactory, JobFactory

pytestmark = pytest.mark.django_db
LIST_URL = reverse("admin:media_jobs_mediaprocessingjob_changelist")
ROOT = Path(__file__).resolve().parents[2]


def partial_job(listing: int = 5150) -> MediaProcessingJob:
    """A running job whose consolidation reports two photos: one corrupt, one fine -
    applied through the callback receiver, as both engines do."""
    good = AssetFactory(listing_identity_id=listing, sequence=1)
    bad = AssetFactory(listing_identity_id=listing, sequence=2)
    ffmpeg = AssetFactory(listing_identity_id=listing, sequence=3)
    job = JobFactory(listing_identity_id=listing, status=JobStatus.RUNNING)
    assets = [{"key": a.s3_key_raw, "type": a.asset_type} for a in (good, bad, ffmpeg)]
    generated = [
        {
            "sourceKey": good.s3_key_raw,
            "key": f"{listing}/processed/p/h/{size}/a.jpg",
            "type": "PHOTO_HORIZONTAL",
        }
        for size in ("thumbnail", "large")
    ]
    # Branch errors (validation errors alone would leave the run SUCCEEDED).
    errors = [
        {
            "sourceKey": bad.s3_key_raw,
            "errorCode": "CORRUPT_IMAGE",
            "errorMessage": f"image file '{bad.s3_key_raw}' is truncated at byte 4096",
        },
        {
            "sourceKey": ffmpeg.s3_key_raw,
            "errorCode": "VIDEO_THUMBNAIL_FAILED",
            "errorMessage": "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d5c8a0b2c0] moov atom not found",
        },
    ]
    body = consolidate(
        {
            "jobId": job.pk,
            "listingIdentityId": listing,
            "executionArn": "celery-x",
            "assets": assets,
            "parallelResults": [{"body": {"generatedAssets": generated, "errors": errors}}],
        }
    )["body"]
    outcome = callback_apply(raw_body=serialise_payload(body), verify=False, source="test")
    assert outcome.job_status == JobStatus.PARTIAL_SUCCESS
    return MediaProcessingJob.objects.get(pk=job.pk)


def test_a_partial_success_records_its_own_and_its_assets_codes():
    job = partial_job()
    rows = {(r.scope, r.code): r for r in MediaJobError.objects.filter(job=job)}
    assert set(rows) == {
        ("job", "DERIVATIVE_ERRORS_DETECTED"),
        ("asset", "CORRUPT_IMAGE"),
        ("asset", "VIDEO_THUMBNAIL_FAILED"),
    }
    corrupt = rows[("asset", "CORRUPT_IMAGE")]
    assert corrupt.assets == 1 and corrupt.message == "image file '…' is truncated at byte #"
    assert (
        rows[("asset", "VIDEO_THUMBNAIL_FAILED")].message
        == "[mov,mp4,m4a,3gp,3g2,mj2 @ <addr>] moov atom not found"
    )
    assert corrupt.job_created_at == job.created_at and corrupt.listing_identity_id == 5150


def test_the_error_code_filter_finds_a_job_by_its_assets_code(viewer_client: Client):
    job = partial_job()
    other = JobFactory(status=JobStatus.FAILED, last_error="code=ZIP_FAILED | x")

    def ids(code: str) -> list[int]:
        return job_ids_in(viewer_client.get(LIST_URL, {"error_code": code}).content.decode())

    assert ids("CORRUPT_IMAGE") == [job.pk]
    assert ids("DERIVATIVE_ERRORS_DETECTED") == [job.pk]
    assert ids("ZIP_FAILED") == [other.pk]
    assert ids("OBJECT_NOT_FOUND") == []


def test_error_groups_dashboard_and_requeue_count_asset_codes(viewer_client: Client):
    partial_job(5151)
    partial_job(5152)
    report = error_selectors.error_groups(since=timezone.now() - timedelta(days=1))
    by_code = {g.code: g for g in report.groups}
    assert by_code["CORRUPT_IMAGE"].count == 2 and by_code["CORRUPT_IMAGE"].assets == 2
    assert by_code["CORRUPT_IMAGE"].listing_ids == [5152, 5151]
    assert by_code["DERIVATIVE_ERRORS_DETECTED"].count == 2

    groups_html = viewer_client.get(reverse("admin:media_jobs_error_groups")).content.decode()
    assert "CORRUPT_IMAGE" in groups_html and "moov atom not found" in groups_html
    assert "mp#" not in groups_html and "m#a" not in groups_html

    top = dict(error_selectors.top_error_codes(since=timezone.now() - timedelta(days=7)))
    assert top == {"CORRUPT_IMAGE": 2, "DERIVATIVE_ERRORS_DETECTED": 2, "VIDEO_THUMBNAIL_FAILED": 2}
    dashboard = viewer_client.get(reverse("admin:index")).content.decode()
    codes = dashboard.split('id="toq-error-codes"', 1)[1].split("</table>", 1)[0]
    assert "CORRUPT_IMAGE" in codes

    selected = jobs_for_requeue(statuses=[JobStatus.PARTIAL_SUCCESS], error_code="CORRUPT_IMAGE")
    assert selected.count() == 2


def test_metrics_count_jobs_and_assets_per_code(client: Client, settings: Any):
    settings.METRICS_TOKEN = "t"
    partial_job()
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer t")
    samples = {
        (sample.name, sample.labels.get("error_code")): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }
    assert samples[("toq_media_job_failures_recent", "CORRUPT_IMAGE")] == 1
    assert samples[("toq_media_job_failures_recent", "DERIVATIVE_ERRORS_DETECTED")] == 1
    assert samples[("toq_media_asset_failures_recent", "CORRUPT_IMAGE")] == 1


def test_a_late_success_clears_the_codes_and_mark_failed_records_its_own():
    job = JobFactory(status=JobStatus.RUNNING, listing_identity_id=5153)
    AssetFactory(listing_identity_id=5153, status=AssetStatus.PROCESSING)
    failed = job_mark_failed(job=job, reason="stuck since 3 am", code="MARKED_FAILED")
    (row,) = MediaJobError.objects.filter(job=failed)
    assert (row.scope, row.code, row.assets, row.sample) == (
        "job",
        "MARKED_FAILED",
        1,
        "stuck since 3 am",
    )

    body = {"jobId": job.pk, "listingIdentityId": 5153, "status": "SUCCEEDED", "outputs": []}
    callback_apply(raw_body=serialise_payload(body), verify=False)
    assert not MediaJobError.objects.filter(job=job).exists()


def test_the_docs_are_the_catalogue():
    out = io.StringIO()
    call_command("error_codes", stdout=out)
    assert (ROOT / "docs" / "error-codes.md").read_text(encoding="utf-8") == out.getvalue(), (
        "docs/error-codes.md is out of date: run `manage.py error_codes --write`"
    )
    for code in ("CORRUPT_IMAGE", "DISPATCH_FAILED", "RECONCILER_TIMEOUT", "MARKED_FAILED"):
        assert f"| `{code}` |" in out.getvalue()
        assert errorcodes.what_to_do(code) != errorcodes.UNKNOWN_CODE_ADVICE
    assert errorcodes.what_to_do("SomethingNew") == errorcodes.UNKNOWN_CODE_ADVICE
