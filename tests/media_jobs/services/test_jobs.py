"""The job lifecycle service: the only way a job changes status."""

from __future__ import annotations

import pytest

from media_jobs.models import JobProvider, JobStatus
from media_jobs.services import (
    JobStateError,
    format_last_error,
    job_append_error,
    job_apply_zip_figures,
    job_complete,
    job_mark_running,
    job_retry,
    job_start,
)
from media_jobs.services.jobs import truncate_text
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db


def test_start_creates_pending_job() -> None:
    job = job_start(listing_identity_id=42, provider=JobProvider.STEP_FUNCTIONS_FINALIZATION)
    job.refresh_from_db()
    assert (job.status, job.provider, job.retry_count) == (
        "PENDING",
        "STEP_FUNCTIONS_FINALIZATION",
        0,
    )
    assert job.created_at is not None and job.started_at is None


def test_mark_running_fills_only_empty_fields_and_is_idempotent() -> None:
    job = job_start(listing_identity_id=1)
    job = job_mark_running(job=job, external_id="wf-1")
    first_start = job.started_at
    job = job_mark_running(job=job, external_id="wf-2")
    job.refresh_from_db()
    assert (job.status, job.external_id, job.started_at) == ("RUNNING", "wf-1", first_start)


def test_terminal_job_does_not_run_again() -> None:
    job = JobFactory(status=JobStatus.SUCCEEDED)
    with pytest.raises(JobStateError):
        job_mark_running(job=job)


def test_complete_sets_completed_at_error_and_payload() -> None:
    job = job_mark_running(job=job_start(listing_identity_id=3))
    job = job_complete(
        job=job,
        status=JobStatus.FAILED,
        error_line="code=X | boom",
        payload={"a": 1},
        callback_body='{"jobId": 1}',
    )
    job.refresh_from_db()
    assert job.status == "FAILED" and job.completed_at is not None
    assert (job.last_error, job.payload, job.callback_body) == (
        "code=X | boom",
        {"a": 1},
        '{"jobId": 1}',
    )


def test_replaying_the_same_terminal_status_changes_nothing() -> None:
    job = job_complete(job=job_start(listing_identity_id=3), status=JobStatus.SUCCEEDED)
    completed = job.completed_at
    again = job_complete(job=job, status=JobStatus.SUCCEEDED, error_line="ignored")
    assert again.completed_at == completed and again.last_error is None


def test_failure_never_overwrites_success() -> None:
    job = job_complete(job=job_start(listing_identity_id=3), status=JobStatus.PARTIAL_SUCCESS)
    with pytest.raises(JobStateError):
        job_complete(job=job, status=JobStatus.FAILED)
    job.refresh_from_db()
    assert job.status == "PARTIAL_SUCCESS"


def test_late_success_replaces_failure_only_when_allowed() -> None:
    job = job_complete(job=job_start(listing_identity_id=3), status=JobStatus.FAILED)
    with pytest.raises(JobStateError):
        job_complete(job=job, status=JobStatus.SUCCEEDED)
    job = job_complete(job=job, status=JobStatus.SUCCEEDED, allow_late_success=True)
    job.refresh_from_db()
    assert job.status == "SUCCEEDED"


def test_complete_rejects_non_terminal_status() -> None:
    with pytest.raises(JobStateError):
        job_complete(job=job_start(listing_identity_id=3), status=JobStatus.RUNNING)


def test_zip_figures_merge_into_payload() -> None:
    job = JobFactory(payload={"kept": True})
    job = job_apply_zip_figures(
        job=job,
        figures={
            "zipBundles": ["k"],
            "assetsZipped": 2,
            "zipSizeBytes": 10,
            "unzippedSizeBytes": 20,
            "x": 1,
        },
    )
    job.refresh_from_db()
    assert job.payload == {
        "kept": True,
        "zipBundles": ["k"],
        "assetsZipped": 2,
        "zipSizeBytes": 10,
        "unzippedSizeBytes": 20,
    }


def test_append_error_keeps_history_newest_last() -> None:
    job = JobFactory()
    job_append_error(job=job, code="A", message="first")
    job = job_append_error(job=job, code="B", message="second", failure_reason="why", meta={"k": 1})
    job.refresh_from_db()
    assert job.last_error == 'code=A | first\ncode=B | second | why | meta={"k": 1}'


def test_format_last_error_and_truncation() -> None:
    assert format_last_error(code=None, message="m", failure_reason=None) == "m"
    text = "é" * 40_000  # 80,000 bytes
    cut = truncate_text(text)
    assert len(cut.encode()) <= 65_535 and text.endswith(cut)


def test_retry_is_a_new_job_with_retry_count_plus_one() -> None:
    old = JobFactory(
        status=JobStatus.FAILED, retry_count=2, provider=JobProvider.STEP_FUNCTIONS_FINALIZATION
    )
    new = job_retry(job=old)
    old.refresh_from_db()
    assert new.pk != old.pk and old.status == "FAILED"
    assert (new.status, new.retry_count, new.provider, new.listing_identity_id) == (
        "PENDING",
        3,
        "STEP_FUNCTIONS_FINALIZATION",
        old.listing_identity_id,
    )


def test_running_job_cannot_be_retried() -> None:
    with pytest.raises(JobStateError):
        job_retry(job=JobFactory(status=JobStatus.RUNNING))
