"""requeue_jobs against MariaDB: selection, the admin's retry service, idempotence, bad
arguments. (The dispatch to a real worker is in test_enqueue_workers.py.)"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from media_jobs.models import (
    AssetStatus,
    JobProvider,
    JobStatus,
    MediaAsset,
    MediaJobEvent,
    MediaProcessingJob,
)
from tests.factories import AssetFactory, JobFactory

from .conftest import run_command

pytestmark = pytest.mark.django_db

LISTING = 7501
OTHER = 7502
THIRD = 7504


def failed_job(
    listing: int = LISTING, *, age: timedelta = timedelta(hours=3), **fields
) -> MediaProcessingJob:
    now = timezone.now()
    defaults = {
        "status": JobStatus.FAILED,
        "provider": JobProvider.STEP_FUNCTIONS,
        "created_at": now - age,
        "completed_at": now - age + timedelta(minutes=5),
        "last_error": "code=VALIDATION_ERROR | raw asset validation failed",
    }
    defaults.update(fields)
    return JobFactory(listing_identity_id=listing, **defaults)


@pytest.fixture
def listings() -> None:
    """Both listings have an asset to process again (so a retry plan is allowed)."""
    for listing in (LISTING, OTHER, THIRD):
        AssetFactory(listing_identity_id=listing, sequence=1, status=AssetStatus.FAILED)


def selected(*args: str) -> set[int]:
    run = run_command("requeue_jobs", "--dry-run", "--json", *args)
    assert run.code == 0, run.stderr
    return {item["ref"] for item in run.json["items"]}


def test_selection_by_status_kind_age_error_code_and_listing(listings: None) -> None:
    validation = failed_job(age=timedelta(days=3))
    zip_failed = failed_job(
        provider=JobProvider.STEP_FUNCTIONS_FINALIZATION,
        last_error="code=ZIP_FAILED | the ZIP could not be written",
        age=timedelta(hours=1),
    )
    partial = failed_job(
        THIRD,
        status=JobStatus.PARTIAL_SUCCESS,
        last_error="code=DERIVATIVE_ERRORS_DETECTED | derivative errors detected\ncode=X | y",
    )
    superseded = failed_job(OTHER)
    JobFactory(listing_identity_id=OTHER, status=JobStatus.RUNNING)  # a newer job: not again
    lookalike = failed_job(OTHER, last_error="code=ZIP_FAILED_LATER | not the same code")

    assert selected() == {validation.pk, zip_failed.pk, lookalike.pk}
    assert selected("--include-superseded") == {
        validation.pk,
        zip_failed.pk,
        lookalike.pk,
        superseded.pk,
    }
    assert selected("--status", "failed,partial_success") == {
        validation.pk,
        zip_failed.pk,
        partial.pk,
        lookalike.pk,
    }
    assert selected("--kind", "zip") == {zip_failed.pk}
    assert selected("--kind", "processing", "--listing", str(LISTING)) == {validation.pk}
    assert selected("--older-than", "2d") == {validation.pk}
    assert selected("--newer-than", "2h") == {zip_failed.pk}
    assert selected("--error-code", "ZIP_FAILED") == {zip_failed.pk}
    assert selected("--status", "PARTIAL_SUCCESS", "--error-code", "X") == {partial.pk}
    assert selected("--job", f"{validation.pk},{partial.pk}") == {validation.pk}


def test_retries_through_the_admin_service_and_never_twice(listings: None) -> None:
    first = failed_job()
    second = failed_job(OTHER)

    run = run_command("requeue_jobs", "-v", "2")

    assert run.code == 0, run.stderr
    assert "requeue_jobs: selected=2 done=2 skipped=0 failed=0" in run.stdout
    for old in (first, second):
        new = MediaProcessingJob.objects.filter(
            listing_identity_id=old.listing_identity_id, pk__gt=old.pk
        ).get()
        assert (new.status, new.provider, new.retry_count) == (
            JobStatus.PENDING,
            JobProvider.STEP_FUNCTIONS,
            1,
        )
        assert f"job #{old.pk} " in run.stdout and f"retried as job #{new.pk}" in run.stdout
        retried = MediaJobEvent.objects.get(job=old, step="retry")
        assert retried.detail["newJobId"] == new.pk
        assert retried.detail["actor"] == "manage.py requeue_jobs"
    jobs_after_first_run = MediaProcessingJob.objects.count()

    # the new jobs fail too: a second run retries them, not the old ones again
    MediaProcessingJob.objects.filter(retry_count=1).update(
        status=JobStatus.FAILED, completed_at=timezone.now()
    )
    again = run_command("requeue_jobs", "--json", "--include-superseded", "--dry-run")
    assert {i["ref"] for i in again.json["items"]} >= {first.pk, second.pk}
    rerun = run_command("requeue_jobs", "--json")
    assert {i["ref"] for i in rerun.json["items"]} == set(
        MediaProcessingJob.objects.filter(retry_count=1).values_list("pk", flat=True)
    )
    assert MediaProcessingJob.objects.count() == jobs_after_first_run + 2
    assert set(
        MediaProcessingJob.objects.filter(retry_count=2).values_list(
            "listing_identity_id", flat=True
        )
    ) == {LISTING, OTHER}


def test_blocked_retries_are_skipped_with_the_reason(listings: None) -> None:
    done_listing = 7503
    AssetFactory(listing_identity_id=done_listing, sequence=1, status=AssetStatus.PROCESSED)
    nothing_to_do = failed_job(done_listing)
    retryable = failed_job()

    run = run_command("requeue_jobs")

    assert run.code == 0
    assert "selected=2 done=1 skipped=1 failed=0 blocked=1" in run.stdout
    assert f"skipped [blocked] job #{nothing_to_do.pk}" in run.stdout
    assert "already PROCESSED" in run.stdout
    assert MediaProcessingJob.objects.filter(listing_identity_id=done_listing).count() == 1
    assert MediaProcessingJob.objects.filter(
        listing_identity_id=LISTING, pk__gt=retryable.pk
    ).exists()


def test_dry_run_creates_no_job(listings: None) -> None:
    job = failed_job()
    before = list(MediaProcessingJob.objects.values())

    run = run_command("requeue_jobs", "--dry-run")

    assert (
        f"would job #{job.pk}" in run.stdout
        and "a new processing job for the 1 assets" in run.stdout
    )
    assert list(MediaProcessingJob.objects.values()) == before
    assert not MediaJobEvent.objects.exists()


def test_dry_run_json_lists_the_assets_a_retry_would_process(listings: None) -> None:
    # LISTING has a FAILED asset (sequence 1); a PROCESSED one is not processed again
    AssetFactory(listing_identity_id=LISTING, sequence=2, status=AssetStatus.PROCESSED)
    failed_asset = MediaAsset.objects.get(listing_identity_id=LISTING, sequence=1)
    job = failed_job()

    run = run_command("requeue_jobs", "--dry-run", "--json", "--job", str(job.pk))

    [item] = run.json["items"]
    assert (item["ref"], item["outcome"]) == (job.pk, "done")
    assert item["data"] == {"asset_ids": [failed_asset.pk]}
    assert MediaProcessingJob.objects.filter(listing_identity_id=LISTING).count() == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (("--status", "BOGUS"), "unknown status 'BOGUS'"),
        (("--status", "RUNNING"), "only finished jobs can be retried"),
        (("--kind", "thumbnails"), "unknown kind 'thumbnails'"),
        (("--older-than", "2d", "--newer-than", "1d"), "range is empty or inverted"),
        (("--older-than", "two days"), "is not a duration"),
        (("--error-code", "code=X; DROP"), "--error-code"),
        (("--listing", "seven"), "'seven' is not a listing id"),
        (("--job", "-4"), "is not a job id"),
    ],
)
def test_bad_arguments_exit_2(args: tuple[str, ...], message: str) -> None:
    run = run_command("requeue_jobs", *args)

    assert run.code == 2
    assert message in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
