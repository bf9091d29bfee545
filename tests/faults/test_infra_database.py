"""The worker's database connections killed mid-job (KILL CONNECTION: what wait_timeout, a
failover or a proxy's idle timeout do to a worker in the middle of a long step)."""

from __future__ import annotations

import time

import MySQLdb
import pytest
from django.db import connection

from media_jobs.models import JobStatus, MediaProcessingJob
from media_jobs.services.dispatch import listing_start_processing
from media_jobs.storage import pipeline_storage
from tests.faults.infra import (
    Stopwatch,
    assert_outputs_exact,
    parts_done,
    report,
    wait_parts,
    wait_terminal,
)
from tests.fixtures.faults import FAULT_ENV
from tests.workers.listing import seed_listing

pytestmark = [pytest.mark.fault, pytest.mark.worker, pytest.mark.slow]

KILL_FOR_S = 10
KILL_EVERY_S = 0.4


class ConnectionKiller:
    """Kills every connection to the test database except this process's own: the
    worker's pool processes, their heartbeat threads, the worker's main process."""

    def __init__(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT CONNECTION_ID()")
            self.spared = {int(cursor.fetchone()[0])}
        params = connection.get_connection_params()
        self.database = connection.settings_dict["NAME"]
        self.admin = MySQLdb.connect(
            host=params.get("host", "127.0.0.1"),
            port=params.get("port", 3306),
            user=params.get("user", "root"),
            passwd=params.get("password", ""),
        )
        self.admin.autocommit(True)
        cursor = self.admin.cursor()
        cursor.execute("SELECT CONNECTION_ID()")
        self.spared.add(int(cursor.fetchone()[0]))
        self.killed = 0

    def kill_all(self) -> int:
        cursor = self.admin.cursor()
        cursor.execute(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s", [self.database]
        )
        victims = [int(row[0]) for row in cursor.fetchall() if int(row[0]) not in self.spared]
        for victim in victims:
            try:
                cursor.execute(f"KILL CONNECTION {victim}")
                self.killed += 1
            except MySQLdb.OperationalError:
                pass  # gone already
        return len(victims)

    def close(self) -> None:
        self.admin.close()


def test_worker_connections_killed_mid_job(
    celery_worker, celery_beat, moto_server, s3_bucket
) -> None:
    if connection.vendor != "mysql":
        pytest.skip("KILL CONNECTION needs MariaDB/MySQL")
    listing = seed_listing(pipeline_storage(), 6301, photos=12, videos=2, photo_size=(1600, 1200))
    total_parts = 12 + 2 * 2
    celery_worker.start(
        concurrency=2, extra_env={**FAULT_ENV, "PIPELINE_THUMBNAIL_CHUNK_SIZE": "1"}
    )
    celery_beat.start(extra_env=FAULT_ENV)
    killer = ConnectionKiller()
    try:
        job = listing_start_processing(listing_identity_id=6301)
        wait_parts(job.pk, 1)
        # Kill until half the parts are done (at most KILL_FOR_S): the rest runs after.
        deadline = time.monotonic() + KILL_FOR_S
        while time.monotonic() < deadline and parts_done(job.pk) < total_parts // 2:
            killer.kill_all()
            time.sleep(KILL_EVERY_S)
        assert not MediaProcessingJob.objects.get(pk=job.pk).is_terminal, "give it more work"
        cleared = Stopwatch()
        done = wait_terminal(job.pk)
        recovered = cleared()
    finally:
        killer.close()
    assert done.status == JobStatus.SUCCEEDED, done.last_error
    assert_outputs_exact(moto_server, s3_bucket, listing)
    retried = celery_worker.log().count("retrying on a fresh connection")
    assert killer.killed and retried, "the kills should have hit the worker mid-task"
    report(
        "worker DB connections killed mid-job",
        connections_killed=killer.killed,
        db_retries=retried,
        recovered_after_last_kill=recovered,
    )
