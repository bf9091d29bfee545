"""The housekeeping tasks Celery beat schedules, run by a real worker; and the schedule."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from media_jobs.models import JobStatus, MediaProcessingJob
from media_jobs.services import queueing
from media_jobs.tasks import clean_old_jobs, reconcile_stuck_jobs, steps
from tests.factories import JobFactory
from tests.fixtures.worker import wait_until
from toqportal.celery import app

pytestmark = pytest.mark.worker


def test_beat_tasks_run_on_a_worker_with_plain_delay(celery_worker) -> None:
    now = timezone.now()
    stuck = JobFactory(status=JobStatus.RUNNING, started_at=now - timedelta(hours=3))
    ancient = JobFactory(status=JobStatus.SUCCEEDED, completed_at=now - timedelta(days=400))
    recent = JobFactory(status=JobStatus.SUCCEEDED, completed_at=now)
    celery_worker.start(concurrency=1)

    reconcile_stuck_jobs.delay()
    clean_old_jobs.delay()
    wait_until(
        lambda: MediaProcessingJob.objects.get(pk=stuck.pk).status == JobStatus.FAILED,
        timeout=60,
        what="the reconciler",
    )
    wait_until(lambda: not MediaProcessingJob.objects.filter(pk=ancient.pk).exists(), timeout=60)
    stuck.refresh_from_db()
    assert stuck.last_error == (
        "code=RECONCILER_TIMEOUT | reconciler marked failed after 1h0m0s without callback"
    )
    assert MediaProcessingJob.objects.filter(pk=recent.pk).exists()


def test_the_beat_schedule() -> None:

    entries = {entry["task"]: entry for entry in app.conf.beat_schedule.values()}
    # A frequent pass that waited in a busy queue longer than its interval expires.
    assert entries["media_jobs.tasks.watch_stalled_jobs"]["options"] == {"expires": 60.0}
    assert entries["media_jobs.tasks.clean_old_jobs"]["options"] == {}
    schedule = {entry["task"]: entry["schedule"] for entry in app.conf.beat_schedule.values()}
    assert schedule["media_jobs.tasks.reconcile_stuck_jobs"] == 300.0
    assert schedule["media_jobs.tasks.watch_stalled_jobs"] == 60.0
    assert schedule["media_jobs.tasks.send_pending_callbacks"] == 30.0
    daily = schedule["media_jobs.tasks.clean_old_jobs"]
    assert (daily.hour, daily.minute) == ({3}, {17})


def test_a_housekeeping_queue_takes_beats_tasks_and_the_callback_sends(
    settings, monkeypatch
) -> None:

    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from toqportal.celery import app; "
            "print(sorted({e['options'].get('queue') for e in app.conf.beat_schedule.values()}))",
        ],
        env={**os.environ, "CELERY_HOUSEKEEPING_QUEUE": "media-housekeeping"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "['media-housekeeping']", result.stderr[-2000:]

    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(
        queueing,
        "enqueue_each",
        lambda name, calls, **options: sent.append((name, options["queue"])),
    )
    settings.CELERY_HOUSEKEEPING_QUEUE = "media-housekeeping"
    steps.queue_delivery(7)
    assert sent == [("media_jobs.tasks.deliver_callback", "media-housekeeping")]
