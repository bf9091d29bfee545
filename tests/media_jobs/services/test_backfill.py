"""services.backfill called directly, as the ``ops_tasks`` worker task does: the outcome and
the one-line detail of each item, and the defaults a caller gets without options."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from media_jobs.models import AssetStatus, JobProvider, JobStatus, MediaProcessingJob
from media_jobs.services.backfill import job_requeue
from tests.factories import AssetFactory, JobFactory

pytestmark = pytest.mark.django_db

LISTING = 7611


@pytest.fixture(autouse=True)
def asset_to_process() -> None:
    """The listing has an asset to process again, so a retry plan is allowed."""
    AssetFactory(listing_identity_id=LISTING, sequence=1, status=AssetStatus.FAILED)


def failed_job(listing: int = LISTING, **fields: object) -> MediaProcessingJob:
    """A FAILED processing job of the listing."""
    now = timezone.now()
    defaults: dict[str, object] = {
        "status": JobStatus.FAILED,
        "provider": JobProvider.STEP_FUNCTIONS,
        "created_at": now - timedelta(hours=3),
        "completed_at": now - timedelta(hours=2),
    }
    defaults.update(fields)
    return JobFactory(listing_identity_id=listing, **defaults)


def test_requeue_of_a_job_that_no_longer_exists_is_skipped_naming_it() -> None:
    result = job_requeue(job_id=987654)
    assert (result.outcome, result.detail, result.data) == (
        "skipped",
        "job #987654 no longer exists",
        {},
    )


def test_requeue_of_an_unfinished_job_is_skipped_naming_it() -> None:
    job = failed_job(status=JobStatus.RUNNING, completed_at=None)
    result = job_requeue(job_id=job.pk)
    assert (result.outcome, result.detail) == (
        "skipped",
        f"job #{job.pk} (STEP_FUNCTIONS, listing {LISTING}, RUNNING): not finished, not retried",
    )
    assert MediaProcessingJob.objects.count() == 1


def test_requeue_by_default_retries_and_names_the_new_job() -> None:
    """Without options the job is really retried (not a dry run): a new PENDING job."""
    job = failed_job()
    result = job_requeue(job_id=job.pk)
    new = MediaProcessingJob.objects.get(pk__gt=job.pk)
    assert (new.status, new.retry_count, new.listing_identity_id) == (
        JobStatus.PENDING,
        1,
        LISTING,
    )
    assert result.outcome == "done" and result.data == {"new_job_id": new.pk}
    assert result.detail == (
        f"job #{job.pk} (STEP_FUNCTIONS, listing {LISTING}, FAILED): retried as job #{new.pk}"
    )


def test_requeue_by_default_skips_a_job_already_superseded() -> None:
    """A newer job of the same listing and kind means it was retried already: skipped
    unless ``include_superseded``, so a requeue run is safe to repeat."""
    job = failed_job()
    newer = failed_job(created_at=timezone.now() - timedelta(hours=1))
    result = job_requeue(job_id=job.pk)
    assert (result.outcome, result.detail) == (
        "skipped",
        f"job #{job.pk} (STEP_FUNCTIONS, listing {LISTING}, FAILED): "
        f"already superseded by job #{newer.pk}",
    )
    assert MediaProcessingJob.objects.count() == 2

    again = job_requeue(job_id=job.pk, include_superseded=True)
    assert again.outcome == "done"
    assert MediaProcessingJob.objects.count() == 3


def test_requeue_of_a_job_superseded_by_another_kind_still_retries() -> None:
    """Only a newer job of the same kind supersedes: a finalization after a failed
    processing job does not."""
    job = failed_job()
    JobFactory(
        listing_identity_id=LISTING,
        status=JobStatus.FAILED,
        provider=JobProvider.STEP_FUNCTIONS_FINALIZATION,
    )
    assert job_requeue(job_id=job.pk).outcome == "done"
