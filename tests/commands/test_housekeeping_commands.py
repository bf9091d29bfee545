"""reconcile_stuck_jobs and clean_old_jobs: the housekeeping services behind the common
command conventions, against MariaDB."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from media_jobs.models import (
    AssetStatus,
    EventKind,
    JobStatus,
    MediaAsset,
    MediaJobEvent,
    MediaProcessingJob,
)
from media_jobs.pipeline.logs import JsonFormatter
from tests.factories import AssetFactory, JobFactory

from .conftest import run_command

pytestmark = pytest.mark.django_db

LISTING = 7701


def stuck_jobs() -> dict[str, MediaProcessingJob]:
    two_hours_ago = timezone.now() - timedelta(hours=2)
    jobs = {
        "running": JobFactory(
            listing_identity_id=LISTING, status=JobStatus.RUNNING, started_at=two_hours_ago
        ),
        "pending": JobFactory(listing_identity_id=LISTING + 1, created_at=two_hours_ago),
        "pending_2": JobFactory(listing_identity_id=LISTING + 2, created_at=two_hours_ago),
        "recent": JobFactory(listing_identity_id=LISTING + 3, status=JobStatus.RUNNING),
    }
    AssetFactory(listing_identity_id=LISTING, sequence=1, status=AssetStatus.PROCESSING)
    return jobs


def statuses() -> dict[int, str]:
    return dict(MediaProcessingJob.objects.values_list("pk", "status"))


def test_reconcile_marks_stuck_jobs_failed_in_batches() -> None:
    jobs = stuck_jobs()

    run = run_command("reconcile_stuck_jobs", "--timeout", "1h", "--batch-size", "2", "-v", "2")

    assert run.code == 0, run.stderr
    assert "reconcile_stuck_jobs: selected=3 done=3 skipped=0 failed=0" in run.stdout
    after = statuses()
    for name in ("running", "pending", "pending_2"):
        assert after[jobs[name].pk] == JobStatus.FAILED
        assert f"job #{jobs[name].pk}: marked FAILED" in run.stdout
    assert after[jobs["recent"].pk] == JobStatus.RUNNING
    job = MediaProcessingJob.objects.get(pk=jobs["running"].pk)
    assert "reconciler marked failed after 1h0m0s without callback" in job.last_error
    assert MediaAsset.objects.get(listing_identity_id=LISTING).status == AssetStatus.FAILED

    again = run_command("reconcile_stuck_jobs", "--timeout", "1h", "--json")
    assert (again.json["selected"], again.json["done"]) == (0, 0)


def test_reconcile_dry_run_and_limit() -> None:
    jobs = stuck_jobs()
    before = statuses()

    dry = run_command("reconcile_stuck_jobs", "--timeout", "3600", "--dry-run", "--json")

    assert statuses() == before
    assert {item["ref"] for item in dry.json["items"]} == {
        jobs["running"].pk,
        jobs["pending"].pk,
        jobs["pending_2"].pk,
    }
    assert dry.json["timeout_seconds"] == 3600
    limited = run_command("reconcile_stuck_jobs", "--timeout", "1h", "--limit", "1", "--json")
    assert (limited.json["done"], limited.json["limit_reached"]) == (1, True)
    assert list(statuses().values()).count(JobStatus.FAILED) == 1


def finished_jobs() -> dict[str, MediaProcessingJob]:
    now = timezone.now()
    old = now - timedelta(days=100)
    jobs = {
        f"old_{n}": JobFactory(status=JobStatus.SUCCEEDED, completed_at=old + timedelta(minutes=n))
        for n in range(3)
    }
    jobs["recent"] = JobFactory(status=JobStatus.FAILED, completed_at=now - timedelta(days=1))
    jobs["running"] = JobFactory(status=JobStatus.RUNNING, created_at=old)
    for job in jobs.values():
        MediaJobEvent.objects.create(job=job, step="validate", kind=EventKind.SUCCEEDED)
    return jobs


def test_clean_deletes_old_finished_jobs_with_their_events() -> None:
    jobs = finished_jobs()

    run = run_command("clean_old_jobs", "--older-than", "90d", "--batch-size", "2")

    assert run.code == 0, run.stderr
    assert "clean_old_jobs: selected=3 done=3 skipped=0 failed=0" in run.stdout
    remaining = set(MediaProcessingJob.objects.values_list("pk", flat=True))
    assert remaining == {jobs["recent"].pk, jobs["running"].pk}
    assert set(MediaJobEvent.objects.values_list("job_id", flat=True)) == remaining


def test_clean_dry_run_limit_and_default_retention(settings) -> None:
    finished_jobs()
    settings.CLEANER_RETENTION_DAYS = 30
    before = MediaProcessingJob.objects.count()

    dry = run_command("clean_old_jobs", "--dry-run", "--json")
    assert MediaProcessingJob.objects.count() == before
    assert dry.json["done"] == 3 and dry.json["dry_run"] is True

    limited = run_command(
        "clean_old_jobs", "--before", "2099-01-01T00:00:00+00:00", "--limit", "2", "--json"
    )
    assert limited.code == 2  # a cutoff in the future is refused
    limited = run_command("clean_old_jobs", "--limit", "2", "--batch-size", "1", "--json")
    assert (limited.json["done"], limited.json["limit_reached"]) == (2, True)
    assert MediaProcessingJob.objects.count() == before - 2


@pytest.mark.parametrize(
    "command, args, message",
    [
        ("reconcile_stuck_jobs", ("--timeout", "soon"), "is not a duration"),
        ("reconcile_stuck_jobs", ("--timeout", "0"), "at least 1 second"),
        ("clean_old_jobs", ("--older-than", "90d", "--before", "2020-01-01"), "not allowed with"),
        ("clean_old_jobs", ("--before", "01/02/2020"), "is not a date"),
        ("clean_old_jobs", ("--limit", "0"), "must be at least 1"),
    ],
)
def test_bad_arguments_exit_2(command: str, args: tuple[str, ...], message: str) -> None:
    run = run_command(command, *args)

    assert run.code == 2
    assert message in run.stderr


def housekeeping_log_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The housekeeping records as the JSON lines the console handler writes
    (toqportal.settings LOGGING: media_jobs.pipeline.logs.JsonFormatter)."""
    formatter = JsonFormatter()
    return [
        json.loads(formatter.format(record))
        for record in caplog.records
        if record.name == "toq.media.housekeeping"
    ]


def test_reconcile_logs_the_jobs_it_failed(caplog: pytest.LogCaptureFixture) -> None:
    jobs = stuck_jobs()

    with caplog.at_level(logging.INFO, logger="toq.media.housekeeping"):
        run = run_command("reconcile_stuck_jobs", "--timeout", "1h")

    assert run.code == 0, run.stderr
    [line] = housekeeping_log_lines(caplog)
    assert (line["level"], line["message"]) == ("WARNING", "reconciler failed stuck jobs")
    expected_ids = sorted(jobs[name].pk for name in ("running", "pending", "pending_2"))
    assert (line["job_ids"], line["count"], line["timeout_s"]) == (expected_ids, 3, 3600)


def test_clean_logs_how_many_it_deleted_and_the_cutoff(caplog: pytest.LogCaptureFixture) -> None:
    long_ago = datetime(2020, 3, 1, tzinfo=UTC)
    for minutes in range(3):
        JobFactory(status=JobStatus.SUCCEEDED, completed_at=long_ago + timedelta(minutes=minutes))

    with caplog.at_level(logging.INFO, logger="toq.media.housekeeping"):
        run = run_command("clean_old_jobs", "--before", "2021-01-01T00:00:00+00:00")

    assert run.code == 0, run.stderr
    [line] = housekeeping_log_lines(caplog)
    assert (line["level"], line["message"]) == ("INFO", "cleaner deleted old jobs")
    assert (line["count"], line["completed_before"]) == (3, "2021-01-01T00:00:00+00:00")


def test_a_cleaner_paused_with_max_per_run_0_deletes_nothing(settings) -> None:
    jobs = finished_jobs()
    settings.CLEANER_MAX_PER_RUN = 0

    dry = run_command("clean_old_jobs", "--dry-run", "--json")
    run = run_command("clean_old_jobs", "--json")

    assert (dry.code, dry.json["done"]) == (0, 0), dry.stderr
    assert (run.code, run.json["done"]) == (0, 0), run.stderr
    assert MediaProcessingJob.objects.count() == len(jobs)
