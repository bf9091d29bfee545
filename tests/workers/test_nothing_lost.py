"""Nothing lost: jobs retried together all end terminal, on the embedded default (a SQLite
file, Celery's filesystem broker, a real worker process) and on MariaDB + Redis; a job whose
first task cannot run is retried, and failed with DISPATCH_FAILED when it still cannot."""

from __future__ import annotations

import sqlite3

import pytest

from media_jobs.models import TERMINAL_JOB_STATUSES, JobStatus, MediaProcessingJob
from media_jobs.services.retry import job_retry_and_dispatch
from tests.fixtures.embedded import EmbeddedPortal
from tests.fixtures.worker import wait_until
from tests.support.seed import failed_jobs, job_statuses

pytestmark = [pytest.mark.worker, pytest.mark.slow]
SEED = "from tests.support.seed import failed_jobs, job_statuses"
TERMINAL = {str(status) for status in TERMINAL_JOB_STATUSES}


def _new_jobs(portal: EmbeddedPortal, old: list[int]) -> dict[int, str]:
    statuses = portal.query("job_statuses()", SEED)
    return {int(pk): status for pk, status in statuses.items() if int(pk) not in old}


def test_twenty_jobs_retried_at_once_on_the_embedded_default_all_end(
    embedded_portal: EmbeddedPortal,
) -> None:
    portal = embedded_portal
    old = portal.query("failed_jobs(count=20)", SEED)
    portal.worker.start(concurrency=4)

    out = portal.manage("requeue_jobs", "--status", "FAILED", "--batch-size", "20")

    assert "done=20" in out.replace(" ", "") or "20 done" in out, out
    new = _new_jobs(portal, old)
    assert len(new) == 20
    wait_until(
        lambda: set(_new_jobs(portal, old).values()) <= TERMINAL,
        timeout=300,
        interval=2,
        what="the 20 retried jobs to finish on the embedded default",
    )
    assert set(_new_jobs(portal, old).values()) == {JobStatus.SUCCEEDED}
    assert "database is locked" not in portal.worker.log()


def _retry_one_with_the_worker_stopped(portal: EmbeddedPortal) -> int:
    old = portal.query("failed_jobs(count=1)", SEED)
    portal.manage("requeue_jobs", "--status", "FAILED")
    (new_id,) = _new_jobs(portal, old)
    return new_id


def _status(portal: EmbeddedPortal, job_id: int) -> str:
    return portal.query(f"job_statuses([{job_id}])", SEED)[str(job_id)]


def _first_task_under_a_write_lock(
    portal: EmbeddedPortal, *, until_log: str, worker_env: dict[str, str]
) -> int:
    """A retried job whose first task meets another process holding SQLite's write lock
    (readers still read in WAL mode), until the worker logs ``until_log``; then the lock
    goes and the job finishes one way or the other. Returns the job id."""
    job_id = _retry_one_with_the_worker_stopped(portal)
    lock = sqlite3.connect(portal.database, isolation_level=None, timeout=30)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        # The engine first reruns the task on fresh connections (2 s here), then the first
        # task's own retries take over.
        portal.worker.start(
            extra_env={
                "SQLITE_BUSY_TIMEOUT_SECONDS": "1",
                "PIPELINE_DB_RETRY_SECONDS": "2",
                **worker_env,
            }
        )
        wait_until(
            lambda: until_log in portal.worker.log(), timeout=120, interval=0.1, what=until_log
        )
        assert _status(portal, job_id) == JobStatus.PENDING
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    wait_until(lambda: _status(portal, job_id) in TERMINAL, timeout=180, interval=1, what="the job")
    return job_id


def test_a_locked_database_at_the_first_task_is_retried_not_lost(
    embedded_portal: EmbeddedPortal,
) -> None:
    job_id = _first_task_under_a_write_lock(
        embedded_portal,
        until_log="first task of the job failed, retrying",
        worker_env={"PIPELINE_RETRY_DELAY_SCALE": "1"},  # 2 s before the next attempt
    )
    assert _status(embedded_portal, job_id) == JobStatus.SUCCEEDED


def test_a_first_task_that_cannot_run_fails_the_job_with_dispatch_failed(
    embedded_portal: EmbeddedPortal,
) -> None:
    job_id = _first_task_under_a_write_lock(
        embedded_portal, until_log='"message":"first task of the job failed"', worker_env={}
    )
    last_error = embedded_portal.query(
        f"MediaProcessingJob.objects.get(pk={job_id}).last_error",
        "from media_jobs.models import MediaProcessingJob",
    )
    assert _status(embedded_portal, job_id) == JobStatus.FAILED
    assert last_error.startswith("code=DISPATCH_FAILED | the job's first step (validate)")
    assert "database is locked" in last_error


def test_twenty_jobs_retried_at_once_on_mariadb_and_redis_all_end(celery_worker) -> None:
    old = failed_jobs(count=20)
    celery_worker.start(concurrency=2)

    new = [
        job_retry_and_dispatch(job=job, actor="test")
        for job in MediaProcessingJob.objects.filter(pk__in=old)
    ]

    assert len(new) == 20
    ids = [job.pk for job in new]
    wait_until(
        lambda: set(job_statuses(ids).values()) <= TERMINAL,
        timeout=300,
        interval=1,
        what="the 20 retried jobs to finish on MariaDB + Redis",
    )
    assert set(job_statuses(ids).values()) == {JobStatus.SUCCEEDED}
