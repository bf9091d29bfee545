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
from media_jobs.services.job_errors import job_errors_backfill
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


def metric_samples(client: Client) -> dict[tuple[str, str | None], float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer t")
    return {
        (sample.name, sample.labels.get("error_code")): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def test_the_backfill_reads_older_jobs_codes_from_their_last_error(client: Client, settings: Any):
    """Jobs that ended before the table existed: the job's own code (no assets: the line
    does not say how many failed with it), the asset codes the line counts, and a line
    without a code kept under the empty code ("(no code)", "unknown" in /metrics)."""
    settings.METRICS_TOKEN = "t"
    now = timezone.now()
    partial = JobFactory(
        listing_identity_id=5160,
        status=JobStatus.PARTIAL_SUCCESS,
        completed_at=now,
        last_error="code=DERIVATIVE_ERRORS_DETECTED | derivative errors detected | "
        "3 of 5 assets failed: CORRUPT_IMAGE x2, OBJECT_NOT_FOUND x1",
    )
    uncoded = JobFactory(
        listing_identity_id=5161,
        status=JobStatus.FAILED,
        completed_at=now,
        last_error="ffmpeg exited with status 1",
    )
    MediaJobError.objects.all().delete()  # as before the table existed

    assert job_errors_backfill(jobs=[partial, uncoded]) == 4
    rows = sorted(MediaJobError.objects.values_list("job_id", "scope", "code", "sample", "assets"))
    assert rows == sorted(
        [
            (partial.pk, "job", "DERIVATIVE_ERRORS_DETECTED", "derivative errors detected", 0),
            (partial.pk, "asset", "CORRUPT_IMAGE", "", 2),
            (partial.pk, "asset", "OBJECT_NOT_FOUND", "", 1),
            (uncoded.pk, "job", "", "ffmpeg exited with status 1", 0),
        ]
    )
    report = error_selectors.error_groups(since=now - timedelta(days=1))
    by_code = {g.code_label: (g.count, g.assets) for g in report.groups}
    assert by_code == {
        "DERIVATIVE_ERRORS_DETECTED": (1, 0),
        "CORRUPT_IMAGE": (1, 2),
        "OBJECT_NOT_FOUND": (1, 1),
        "(no code)": (1, 0),
    }
    samples = metric_samples(client)
    assert samples[("toq_media_asset_failures_recent", "CORRUPT_IMAGE")] == 2
    assert samples[("toq_media_job_failures_recent", "unknown")] == 1


def test_assets_failing_alike_are_one_row_with_their_count(viewer_client: Client):
    """Two photos truncated at different bytes are one (asset, CORRUPT_IMAGE, message) row:
    two assets, the first message as its sample; found by the filter under the code."""
    listing = 5162
    first = AssetFactory(listing_identity_id=listing, sequence=1)
    second = AssetFactory(listing_identity_id=listing, sequence=2)
    fine = AssetFactory(listing_identity_id=listing, sequence=3)
    job = JobFactory(listing_identity_id=listing, status=JobStatus.RUNNING)
    errors = [
        {
            "sourceKey": asset.s3_key_raw,
            "errorCode": "CORRUPT_IMAGE",
            "errorMessage": f"image file '{asset.s3_key_raw}' is truncated at byte {at}",
        }
        for asset, at in ((first, 4096), (second, 812))
    ]
    generated = [
        {
            "sourceKey": fine.s3_key_raw,
            "key": f"{listing}/processed/p/h/{size}/a.jpg",
            "type": "PHOTO_HORIZONTAL",
        }
        for size in ("thumbnail", "large")
    ]
    body = consolidate(
        {
            "jobId": job.pk,
            "listingIdentityId": listing,
            "executionArn": "celery-x",
            "assets": [{"key": a.s3_key_raw, "type": a.asset_type} for a in (first, second, fine)],
            "parallelResults": [{"body": {"generatedAssets": generated, "errors": errors}}],
        }
    )["body"]
    callback_apply(raw_body=serialise_payload(body), verify=False, source="test")

    rows = list(
        MediaJobError.objects.filter(job=job, scope="asset").values_list(
            "code", "message", "sample", "assets"
        )
    )
    assert rows == [
        (
            "CORRUPT_IMAGE",
            "image file '…' is truncated at byte #",
            "image file '5162/raw/photo/horizontal/horizontal-01-IMG_1.jpg' is truncated "
            "at byte 4096",
            2,
        )
    ]
    found = viewer_client.get(LIST_URL, {"error_code": "CORRUPT_IMAGE"}).content.decode()
    assert job_ids_in(found) == [job.pk]


def test_the_pipelines_failure_after_the_reconcilers_keeps_both_codes(viewer_client: Client):
    """The reconciler gave up (RECONCILER_TIMEOUT), then the pipeline's own failure came:
    the job is found under both codes."""
    job = JobFactory(status=JobStatus.RUNNING, listing_identity_id=5163)
    AssetFactory(listing_identity_id=5163, status=AssetStatus.PROCESSING)
    job_mark_failed(job=job, reason="no callback after 1h", code="RECONCILER_TIMEOUT")
    body = {
        "jobId": job.pk,
        "listingIdentityId": 5163,
        "status": "PROCESSING_FAILED",
        "error": {"code": "VIDEO_TRANSCODE_FAILED", "message": "exit 1"},
        "outputs": [],
    }
    outcome = callback_apply(raw_body=serialise_payload(body), verify=False, source="test")
    assert outcome.message == "failure details applied to the FAILED job"

    rows = sorted(MediaJobError.objects.filter(job=job).values_list("code", "sample", "assets"))
    assert rows == [
        ("RECONCILER_TIMEOUT", "no callback after 1h", 1),
        ("VIDEO_TRANSCODE_FAILED", "exit 1", 0),
    ]
    for code in ("RECONCILER_TIMEOUT", "VIDEO_TRANSCODE_FAILED"):
        page = viewer_client.get(LIST_URL, {"error_code": code}).content.decode()
        assert job_ids_in(page) == [job.pk]
