"""The reconciler and the cleaner (docs/contract.md §8)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from media_jobs.exceptions import ApplicationError
from media_jobs.models import (
    AssetStatus,
    CallbackDelivery,
    JobProvider,
    JobStatus,
    MediaAsset,
    MediaJobEvent,
    MediaProcessingJob,
)
from media_jobs.services.events import event_record
from media_jobs.services.housekeeping import go_duration, jobs_clean, jobs_reconcile
from media_jobs.tasks.housekeeping import reconcile_stuck_jobs
from tests.factories import AssetFactory, JobFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("seconds", "text"), [(3600, "1h0m0s"), (300, "5m0s"), (45, "45s"), (5400, "1h30m0s")]
)
def test_go_duration(seconds: int, text: str) -> None:
    assert go_duration(seconds) == text


def test_reconciler_fails_running_and_pending_jobs_past_the_timeout() -> None:
    now = timezone.now()
    old = now - timedelta(hours=2)
    running = JobFactory(listing_identity_id=601, status=JobStatus.RUNNING, started_at=old)
    pending = JobFactory(listing_identity_id=602, status=JobStatus.PENDING, created_at=old)
    started_late = JobFactory(
        listing_identity_id=603, status=JobStatus.RUNNING, created_at=old, started_at=now
    )
    no_start = JobFactory(
        listing_identity_id=604, status=JobStatus.RUNNING, created_at=old, started_at=None
    )
    fresh = JobFactory(listing_identity_id=605, status=JobStatus.PENDING, created_at=now)
    finished = JobFactory(
        listing_identity_id=606, status=JobStatus.SUCCEEDED, created_at=old, completed_at=old
    )
    stuck_asset = AssetFactory(listing_identity_id=601, status=AssetStatus.PROCESSING)
    done_asset = AssetFactory(listing_identity_id=601, status=AssetStatus.PROCESSED)

    assert jobs_reconcile(timeout_seconds=3600, dry_run=True) == [
        running.pk,
        pending.pk,
        no_start.pk,
    ]
    assert MediaProcessingJob.objects.filter(status=JobStatus.FAILED).count() == 0

    failed = jobs_reconcile(timeout_seconds=3600)
    assert failed == [running.pk, pending.pk, no_start.pk]
    running.refresh_from_db()
    assert running.status == JobStatus.FAILED and running.completed_at is not None
    assert running.last_error == (
        "code=RECONCILER_TIMEOUT | reconciler marked failed after 1h0m0s without callback"
    )
    event = MediaJobEvent.objects.get(job_id=running.pk)
    assert (event.step, event.kind, event.detail["actor"]) == (
        "mark_failed",
        "failed",
        "reconciler",
    )
    stuck_asset.refresh_from_db()
    done_asset.refresh_from_db()
    assert stuck_asset.status == AssetStatus.FAILED
    assert stuck_asset.metadata["errorCode"] == "RECONCILER_TIMEOUT"
    assert done_asset.status == AssetStatus.PROCESSED
    for untouched in (started_late, fresh, finished):
        before = untouched.status
        untouched.refresh_from_db()
        assert untouched.status == before
    assert jobs_reconcile(timeout_seconds=3600) == []  # nothing left


def test_reconciler_limit_and_finalization_jobs() -> None:
    old = timezone.now() - timedelta(hours=2)
    zip_job = JobFactory(
        listing_identity_id=610,
        status=JobStatus.RUNNING,
        started_at=old,
        provider=JobProvider.STEP_FUNCTIONS_FINALIZATION,
    )
    JobFactory(listing_identity_id=611, status=JobStatus.RUNNING, started_at=old)
    asset = AssetFactory(listing_identity_id=610, status=AssetStatus.PROCESSING)
    assert jobs_reconcile(timeout_seconds=60, limit=1) == [zip_job.pk]
    asset.refresh_from_db()
    assert asset.status == AssetStatus.PROCESSING  # a ZIP job's timeout says nothing of photos
    with pytest.raises(ApplicationError):
        jobs_reconcile(timeout_seconds=0)


def test_cleaner_deletes_old_terminal_jobs_in_batches_with_their_events() -> None:
    now = timezone.now()
    old = now - timedelta(days=100)
    old_jobs = [
        JobFactory(status=status, completed_at=old - timedelta(minutes=i))
        for i, status in enumerate(
            [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.PARTIAL_SUCCESS] * 3
        )
    ]
    recent = JobFactory(status=JobStatus.SUCCEEDED, completed_at=now)
    running = JobFactory(status=JobStatus.RUNNING, started_at=old)
    for job in [*old_jobs, recent]:
        event_record(job=job, step="callback", kind="succeeded")
        first = CallbackDelivery.objects.create(job=job, url="u", request_body="{}", signature="s")
        CallbackDelivery.objects.create(
            job=job, url="u", request_body="{}", signature="s", replay_of=first
        )
    asset = AssetFactory(listing_identity_id=old_jobs[0].listing_identity_id)
    cutoff = now - timedelta(days=90)

    assert jobs_clean(completed_before=cutoff, dry_run=True) == 9
    assert MediaProcessingJob.objects.count() == 11
    assert jobs_clean(completed_before=cutoff, limit=4, batch_size=3) == 4
    # Oldest first: the four completed earliest are gone.
    oldest_first = sorted(old_jobs, key=lambda j: j.completed_at)
    assert not MediaProcessingJob.objects.filter(pk__in=[j.pk for j in oldest_first[:4]]).exists()
    assert jobs_clean(completed_before=cutoff, batch_size=2) == 5
    assert set(MediaProcessingJob.objects.values_list("pk", flat=True)) == {recent.pk, running.pk}
    assert set(MediaJobEvent.objects.values_list("job_id", flat=True)) == {recent.pk}
    assert set(CallbackDelivery.objects.values_list("job_id", flat=True)) == {recent.pk}
    assert MediaAsset.objects.filter(pk=asset.pk).exists()  # assets are not the cleaner's
    assert jobs_clean(completed_before=cutoff) == 0


def test_cleaner_refuses_bad_arguments() -> None:
    with pytest.raises(ApplicationError, match=r"^batch_size must be at least 1, got 0$"):
        jobs_clean(completed_before=timezone.now(), batch_size=0)
    with pytest.raises(ApplicationError, match=r"^limit must not be negative, got -1$"):
        jobs_clean(completed_before=timezone.now(), limit=-1)


def test_by_default_one_clean_takes_at_most_5000_jobs() -> None:
    old = timezone.now() - timedelta(days=100)
    MediaProcessingJob.objects.bulk_create(
        MediaProcessingJob(
            listing_identity_id=7000 + n,
            status=JobStatus.SUCCEEDED,
            provider=JobProvider.STEP_FUNCTIONS,
            retry_count=0,
            completed_at=old,
        )
        for n in range(5001)
    )
    assert jobs_clean(completed_before=old + timedelta(days=1), dry_run=True) == 5000


def stale_jobs(count: int) -> list[int]:
    old = timezone.now() - timedelta(hours=2)
    return [
        JobFactory(listing_identity_id=620 + n, status=JobStatus.RUNNING, started_at=old).pk
        for n in range(count)
    ]


def test_reconciler_takes_any_positive_timeout_and_a_zero_limit() -> None:
    """One second is a valid timeout; a limit of 0 is valid too and fails nothing."""
    (job_id,) = stale_jobs(1)
    assert jobs_reconcile(timeout_seconds=3600, limit=0) == []
    assert MediaProcessingJob.objects.get(pk=job_id).status == JobStatus.RUNNING
    assert jobs_reconcile(timeout_seconds=1) == [job_id]
    assert MediaProcessingJob.objects.get(pk=job_id).last_error == (
        "code=RECONCILER_TIMEOUT | reconciler marked failed after 1s without callback"
    )
    with pytest.raises(ApplicationError, match=r"^limit must not be negative, got -1$"):
        jobs_reconcile(timeout_seconds=3600, limit=-1)


def test_reconciler_log_line_names_at_most_100_jobs(caplog: pytest.LogCaptureFixture) -> None:
    """A mass failure (a fleet that was down) logs the count and only the first 100 ids."""
    ids = stale_jobs(101)
    with caplog.at_level("WARNING", logger="toq.media.housekeeping"):
        assert jobs_reconcile(timeout_seconds=3600) == ids
    (record,) = [r for r in caplog.records if r.name == "toq.media.housekeeping"]
    assert record.getMessage() == "reconciler failed stuck jobs"
    assert (record.job_ids, record.count, record.timeout_s) == (ids[:100], 101, 3600)


def test_a_misconfigured_reconciler_task_says_what_is_wrong(settings) -> None:
    """What the worker logs when beat runs the reconciler with a bad setting or a hand-sent
    task with bad arguments: the message names the value to fix."""
    settings.RECONCILER_TIMEOUT_SECONDS = 0
    bad_setting = reconcile_stuck_jobs.apply()
    bad_limit = reconcile_stuck_jobs.apply(kwargs={"timeout_seconds": 3600, "limit": -1})

    assert bad_setting.failed() and bad_limit.failed()
    assert isinstance(bad_setting.result, ApplicationError)
    assert str(bad_setting.result) == "timeout_seconds must be positive, got 0"
    assert isinstance(bad_limit.result, ApplicationError)
    assert str(bad_limit.result) == "limit must not be negative, got -1"
