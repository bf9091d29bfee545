"""The error codes a job ended with (``media_job_errors``): which rows an outcome makes, how
equal codes merge, and what a new outcome does to the rows of the old one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from media_jobs.models import JobStatus, MediaJobError
from media_jobs.services.job_errors import (
    JobErrorEntry,
    entries_of_last_error,
    entries_of_outputs,
    job_errors_backfill,
    job_errors_record,
    merged_entries,
)
from tests.factories import JobFactory

PARTIAL_LINE = (
    "code=DERIVATIVE_ERRORS_DETECTED | 2 assets failed | CORRUPT_IMAGE x1, OBJECT_NOT_FOUND x1"
)


def test_every_line_of_last_error_is_a_job_code_and_its_asset_codes_follow() -> None:
    """The job's own code per line; ``assets`` counts on the first line only; the asset codes
    a line counts come after it, without a message (last_error has none for them)."""
    text = f"{PARTIAL_LINE}\ncode=RECONCILER_TIMEOUT | reconciler gave up"
    assert entries_of_last_error(text, assets=3) == [
        JobErrorEntry("job", "DERIVATIVE_ERRORS_DETECTED", "2 assets failed", 3),
        JobErrorEntry("asset", "CORRUPT_IMAGE", "", 1),
        JobErrorEntry("asset", "OBJECT_NOT_FOUND", "", 1),
        JobErrorEntry("job", "RECONCILER_TIMEOUT", "reconciler gave up", 0),
    ]
    assert entries_of_last_error("a line without a code") == [
        JobErrorEntry("job", "", "a line without a code", 0)
    ]
    assert entries_of_last_error(None) == []


def test_only_failed_outputs_of_a_callback_are_asset_codes() -> None:
    outputs: list[Any] = [
        {"assetId": 1, "status": "PROCESSED"},
        "not an output",
        {"assetId": 2, "errorCode": "CORRUPT_IMAGE", "errorMessage": "cannot decode /tmp/x.jpg"},
        {"assetId": 3, "errorCode": "OBJECT_NOT_FOUND"},  # no message: the code stands in
        {"assetId": 4, "errorMessage": "something broke"},  # no code: kept without one
        None,
    ]
    assert entries_of_outputs(outputs) == [
        JobErrorEntry("asset", "CORRUPT_IMAGE", "cannot decode /tmp/x.jpg", 1),
        JobErrorEntry("asset", "OBJECT_NOT_FOUND", "OBJECT_NOT_FOUND", 1),
        JobErrorEntry("asset", "", "something broke", 1),
    ]
    assert entries_of_outputs({"errorCode": "CORRUPT_IMAGE"}) == []
    assert entries_of_outputs(None) == []


def test_entries_merge_per_scope_code_and_normalized_message() -> None:
    """Equal failures (the same message but for the path) are one row with their assets
    added up and the first message as the sample; another scope or code is another row."""
    long_code = "X" * 120
    merged = merged_entries(
        [
            JobErrorEntry("asset", "CORRUPT_IMAGE", "cannot decode /tmp/a.jpg", 1),
            JobErrorEntry("asset", "CORRUPT_IMAGE", "cannot decode /tmp/b.jpg", 2),
            JobErrorEntry("job", "CORRUPT_IMAGE", "cannot decode /tmp/c.jpg", 0),
            JobErrorEntry("asset", long_code, "m", 1),
            JobErrorEntry("asset", long_code[:100] + "YY", "m", 4),
        ]
    )
    assert merged == {
        ("asset", "CORRUPT_IMAGE", "cannot decode <tmp>"): JobErrorEntry(
            "asset", "CORRUPT_IMAGE", "cannot decode /tmp/a.jpg", 3
        ),
        ("job", "CORRUPT_IMAGE", "cannot decode <tmp>"): JobErrorEntry(
            "job", "CORRUPT_IMAGE", "cannot decode /tmp/c.jpg", 0
        ),
        # codes count by the 100 characters the column keeps
        ("asset", "X" * 100, "m"): JobErrorEntry("asset", "X" * 100, "m", 5),
    }


def rows(job: Any) -> list[tuple[Any, ...]]:
    return list(
        MediaJobError.objects.filter(job_id=job.pk)
        .order_by("scope", "code")
        .values_list("scope", "code", "message", "sample", "assets")
    )


@pytest.mark.django_db
def test_rows_carry_the_job_the_merged_entry_and_a_sample_cut_to_300() -> None:
    created = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    completed = datetime(2026, 3, 1, 10, 5, tzinfo=UTC)
    job = JobFactory(
        listing_identity_id=4242,
        status=JobStatus.FAILED,
        created_at=created,
        completed_at=completed,
    )
    sample = "cannot decode " + "z" * 400
    written = job_errors_record(
        job=job,
        entries=[
            JobErrorEntry("asset", "CORRUPT_IMAGE", sample, 2),
            JobErrorEntry("job", "DERIVATIVE_ERRORS_DETECTED", "1 asset failed", 2),
        ],
    )
    assert len(written) == 2
    (row,) = MediaJobError.objects.filter(job_id=job.pk, scope="asset")
    assert (row.listing_identity_id, row.code, row.message, row.sample, row.assets) == (
        4242,
        "CORRUPT_IMAGE",
        "cannot decode " + "z" * 186,
        sample[:300],
        2,
    )
    assert (row.job_created_at, row.job_completed_at) == (created, completed)


@pytest.mark.django_db
def test_a_new_outcome_replaces_the_codes_and_a_kept_one_only_adds_new_ones() -> None:
    job = JobFactory(status=JobStatus.FAILED)
    job_errors_record(job=job, entries=[JobErrorEntry("job", "RECONCILER_TIMEOUT", "gave up")])
    # The pipeline's own failure after the reconciler's: both stay, no duplicate.
    job_errors_record(
        job=job,
        entries=[
            JobErrorEntry("job", "RECONCILER_TIMEOUT", "gave up", 5),
            JobErrorEntry("job", "PIPELINE_ERROR", "boom"),
        ],
        replace=False,
    )
    assert rows(job) == [
        ("job", "PIPELINE_ERROR", "boom", "boom", 0),
        ("job", "RECONCILER_TIMEOUT", "gave up", "gave up", 0),
    ]
    # A new outcome (a late success): nothing of the old ones stays.
    assert job_errors_record(job=job, entries=[]) == []
    assert rows(job) == []


@pytest.mark.django_db
def test_backfill_reads_last_error_and_counts_the_rows_it_wrote() -> None:
    failed = JobFactory(status=JobStatus.SUCCEEDED, last_error=PARTIAL_LINE)
    clean = JobFactory(status=JobStatus.SUCCEEDED, last_error=None)
    assert job_errors_backfill(jobs=[failed, clean]) == 3
    assert rows(failed) == [
        ("asset", "CORRUPT_IMAGE", "", "", 1),
        ("asset", "OBJECT_NOT_FOUND", "", "", 1),
        ("job", "DERIVATIVE_ERRORS_DETECTED", "# assets failed", "2 assets failed", 0),
    ]
    assert rows(clean) == []
