"""The job lifecycle service: the only way a job changes status."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection, transaction

from media_jobs.models import JobProvider, JobStatus, MediaProcessingJob
from media_jobs.services import (
    JobStateError,
    format_last_error,
    job_append_error,
    job_apply_zip_figures,
    job_complete,
    job_mark_running,
    job_start,
)
from media_jobs.services.jobs import now_seconds, truncate_text
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
    with pytest.raises(JobStateError, match=r"^RUNNING is not a terminal status$"):
        job_complete(job=job_start(listing_identity_id=3), status=JobStatus.RUNNING)


def test_completion_payload_merges_into_the_figures_already_kept() -> None:
    """A finalization keeps its ZIP figures while it runs; the result that completes it adds
    to them (the callback's keys win) instead of replacing them."""
    job = job_mark_running(job=job_start(listing_identity_id=3))
    job = job_apply_zip_figures(job=job, figures={"zipBundles": 2, "assetsZipped": 9})
    job_complete(job=job, status=JobStatus.SUCCEEDED, payload={"assetsZipped": 10, "x": 1})
    job.refresh_from_db()
    assert job.payload == {"zipBundles": 2, "assetsZipped": 10, "x": 1}


def test_completion_writes_only_the_columns_it_sets() -> None:
    """The callback receiver passes the row it locked; a column it did not set (here one
    changed in memory only) is not written back."""
    job = job_mark_running(job=job_start(listing_identity_id=3), external_id="wf-1")
    with transaction.atomic():
        locked = MediaProcessingJob.objects.select_for_update().get(pk=job.pk)
        locked.external_id = "changed in memory only"
        job_complete(job=locked, status=JobStatus.FAILED, error_line="code=X | y", locked=True)
    job.refresh_from_db()
    assert (job.status, job.last_error, job.external_id) == ("FAILED", "code=X | y", "wf-1")


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


def test_a_success_is_not_replaced_even_by_a_late_success() -> None:
    """allow_late_success lets a success replace a FAILED job (the reconciler gave up
    early); it never lets one success overwrite another."""
    job = job_complete(
        job=job_start(listing_identity_id=3),
        status=JobStatus.SUCCEEDED,
        payload={"assetsTotal": 2},
        callback_body="first",
    )
    with pytest.raises(JobStateError, match="does not replace"):
        job_complete(
            job=job,
            status=JobStatus.PARTIAL_SUCCESS,
            payload={"assetsTotal": 9},
            callback_body="second",
            allow_late_success=True,
        )
    job.refresh_from_db()
    assert (job.status, job.payload, job.callback_body) == (
        "SUCCEEDED",
        {"assetsTotal": 2},
        "first",
    )


def test_completion_leaves_started_at_of_a_job_that_never_started_empty() -> None:
    never = job_complete(job=job_start(listing_identity_id=3), status=JobStatus.FAILED)
    never.refresh_from_db()
    assert never.started_at is None and never.completed_at is not None
    started = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    ran = job_mark_running(job=job_start(listing_identity_id=3), started_at=started)
    ran = job_complete(job=ran, status=JobStatus.SUCCEEDED)
    ran.refresh_from_db()
    assert ran.started_at == started


def test_truncation_keeps_exactly_the_newest_64_kib() -> None:
    assert truncate_text("old" + "n" * 65_535) == "n" * 65_535
    assert truncate_text("x" * 65_535) == "x" * 65_535  # fits: unchanged
    # 40,000 two-byte characters: the last 65,535 bytes start in the middle of one, which
    # is dropped, leaving the newest 32,767 whole characters.
    assert truncate_text("é" * 40_000) == "é" * 32_767


def test_append_error_drops_the_oldest_lines_past_64_kib() -> None:
    job = JobFactory(last_error="OLDEST\n" + "x" * 65_520)  # 65,527 bytes: full
    job = job_append_error(job=job, code="NEW", message="the newest line")
    job.refresh_from_db()
    tail = "\ncode=NEW | the newest line"
    assert job.last_error == "x" * (65_535 - len(tail)) + tail


# --- a stale job object racing a second writer -----------------------------------------


@contextmanager
def second_writer(pk: int, **changes: Any) -> Iterator[None]:
    """Another connection locks the job row, changes it and commits 0.3 s later, while the
    body of the ``with`` calls a service with the job object it loaded before: the service
    must wait for the row and act on the committed values, not on its stale copy."""
    changed = threading.Event()
    failure: list[BaseException] = []

    def write() -> None:
        try:
            with transaction.atomic():
                MediaProcessingJob.objects.select_for_update().get(pk=pk)
                MediaProcessingJob.objects.filter(pk=pk).update(**changes)
                changed.set()
                time.sleep(0.3)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failure.append(exc)
            changed.set()
        finally:
            connection.close()

    thread = threading.Thread(target=write)
    thread.start()
    assert changed.wait(10)
    try:
        yield
    finally:
        thread.join(20)
        assert not failure, failure


race = pytest.mark.django_db(transaction=True)


@race
def test_mark_running_reads_the_job_again_under_lock() -> None:
    stale = JobFactory(status=JobStatus.PENDING)
    with second_writer(stale.pk, status=JobStatus.SUCCEEDED), pytest.raises(JobStateError):
        job_mark_running(job=stale, external_id="wf-late")
    stale.refresh_from_db()
    assert (stale.status, stale.external_id) == ("SUCCEEDED", None)


@race
def test_zip_figures_merge_into_the_fresh_payload() -> None:
    stale = JobFactory(payload={"kept": True})
    with second_writer(stale.pk, payload={"kept": True, "addedMeanwhile": 1}):
        job_apply_zip_figures(job=stale, figures={"assetsZipped": 2})
    stale.refresh_from_db()
    assert stale.payload == {"kept": True, "addedMeanwhile": 1, "assetsZipped": 2}


@race
def test_append_error_appends_to_the_fresh_last_error() -> None:
    stale = JobFactory(status=JobStatus.FAILED, last_error="code=A | first")
    with second_writer(stale.pk, last_error="code=A | first\ncode=B | meanwhile"):
        job = job_append_error(job=stale, code="C", message="mine")
    expected = "code=A | first\ncode=B | meanwhile\ncode=C | mine"
    assert job.last_error == expected
    stale.refresh_from_db()
    assert stale.last_error == expected


@race
def test_complete_does_not_overwrite_a_success_it_did_not_see() -> None:
    stale = JobFactory(status=JobStatus.RUNNING)
    with second_writer(stale.pk, status=JobStatus.SUCCEEDED), pytest.raises(JobStateError):
        job_complete(job=stale, status=JobStatus.FAILED, error_line="code=LATE | too late")
    stale.refresh_from_db()
    assert (stale.status, stale.last_error) == ("SUCCEEDED", None)


def test_format_last_error_parts_and_meta() -> None:
    assert format_last_error(code="C", message="m", failure_reason="why") == "code=C | m | why"
    assert format_last_error(code="", message="", failure_reason="") == ""
    assert format_last_error(code="C", message=None, meta={}) == "code=C"
    assert format_last_error(code="C", message=None, meta=[]) == "code=C"
    when = datetime(2025, 1, 2, tzinfo=UTC)
    assert format_last_error(code=None, message="m", meta={"b": when, "a": 1}) == (
        'm | meta={"a": 1, "b": "2025-01-02 00:00:00+00:00"}'
    )
    assert format_last_error(code=None, message=None, meta=0) == "meta=0"


def test_now_seconds_has_no_fraction() -> None:
    assert now_seconds().microsecond == 0


def test_mark_running_keeps_the_given_start_and_fills_an_empty_external_id() -> None:
    started = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    job = job_mark_running(job=job_start(listing_identity_id=4), started_at=started)
    job = job_mark_running(job=job, external_id="wf-9")
    job.refresh_from_db()
    assert (job.status, job.started_at, job.external_id) == ("RUNNING", started, "wf-9")


def test_zip_figures_on_an_empty_payload_and_without_figures() -> None:
    job = JobFactory(payload=None)
    job = job_apply_zip_figures(job=job, figures={"other": 1})
    job.refresh_from_db()
    assert job.payload is None
    job = job_apply_zip_figures(job=job, figures={"zipSizeBytes": 5})
    job.refresh_from_db()
    assert job.payload == {"zipSizeBytes": 5}


def test_append_nothing_changes_nothing() -> None:
    job = JobFactory(last_error="code=A | first")
    job = job_append_error(job=job, code=None, message=None)
    job.refresh_from_db()
    assert job.last_error == "code=A | first"
    fresh = job_append_error(job=JobFactory(last_error=None), code="B", message="only")
    fresh.refresh_from_db()
    assert fresh.last_error == "code=B | only"


def test_complete_with_a_given_time_an_empty_body_and_a_payload_over_none() -> None:
    at = datetime(2025, 6, 7, 8, 9, 10, tzinfo=UTC)
    job = JobFactory(status=JobStatus.RUNNING, payload=None)
    job = job_complete(
        job=job, status=JobStatus.SUCCEEDED, completed_at=at, callback_body="", payload={"a": 1}
    )
    job.refresh_from_db()
    assert (job.completed_at, job.callback_body, job.payload) == (at, "", {"a": 1})
    kept = JobFactory(status=JobStatus.RUNNING, payload={"old": 1}, callback_body="x")
    kept = job_complete(job=kept, status=JobStatus.FAILED, payload={}, error_line="")
    kept.refresh_from_db()
    assert (kept.payload, kept.callback_body, kept.last_error) == ({"old": 1}, "x", None)


def test_a_late_success_over_a_failure_replaces_its_details() -> None:
    job = JobFactory(status=JobStatus.FAILED, last_error="code=RECONCILER_TIMEOUT | gave up")
    job = job_complete(
        job=job,
        status=JobStatus.PARTIAL_SUCCESS,
        error_line="code=DERIVATIVE_ERRORS_DETECTED | 1 of 2",
        allow_late_success=True,
    )
    job.refresh_from_db()
    assert (job.status, job.last_error) == (
        "PARTIAL_SUCCESS",
        "code=DERIVATIVE_ERRORS_DETECTED | 1 of 2",
    )
    with pytest.raises(JobStateError, match="already PARTIAL_SUCCESS"):
        job_complete(job=job, status=JobStatus.FAILED, allow_late_success=True)
    failed = JobFactory(status=JobStatus.FAILED)
    with pytest.raises(JobStateError, match=f"job {failed.pk} already FAILED"):
        job_complete(job=failed, status=JobStatus.SUCCEEDED)


def _raw_payload(job_id: int) -> str:
    table = connection.ops.quote_name(MediaProcessingJob._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT payload FROM {table} WHERE id = %s", [job_id])
        return str(cursor.fetchone()[0])


def test_zip_figures_without_a_known_figure_leave_the_row_as_written() -> None:
    """Nothing to keep: the payload the backend wrote (compact JSON) is not written again
    (re-serialised by Django it would read ``{"zipBundles": 1}``)."""
    job = JobFactory()
    table = connection.ops.quote_name(MediaProcessingJob._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET payload = %s WHERE id = %s", ['{"zipBundles":1}', job.pk]
        )
    job_apply_zip_figures(job=job, figures={"other": 2})
    assert _raw_payload(job.pk) == '{"zipBundles":1}'
