"""The watchdog rule: a Celery job with no event and no heartbeat for the stall period gets
only its missing work queued again; a slow step that beats is left alone."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from media_jobs.models import (
    EventKind,
    JobProvider,
    JobStatus,
    MediaJobEvent,
    MediaProcessingJob,
)
from media_jobs.pipeline.logs import JsonFormatter
from media_jobs.services.attempts import attempt_start
from media_jobs.services.events import event_record
from media_jobs.services.watchdog import job_stall_plan, jobs_watch
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db

STALL = 120.0
WORKFLOW = "celery-1-abc"


class Queue:
    """Collects what the watchdog queues; can play a broker that is down."""

    def __init__(self, down: bool = False) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.down = down

    def __call__(self, task: str, calls: list[tuple[Any, ...]]) -> None:
        if self.down:
            raise ConnectionError("broker down")
        self.calls.extend((task, args) for args in calls)


def celery_job(*, finalization: bool = False, engine: str = "celery", **fields: Any) -> Any:
    provider = (
        JobProvider.STEP_FUNCTIONS_FINALIZATION if finalization else JobProvider.STEP_FUNCTIONS
    )
    job = JobFactory(status=JobStatus.RUNNING, provider=provider, started_at=timezone.now())
    event_record(
        job=job,
        step="dispatch",
        kind=EventKind.STARTED,
        detail={"engine": engine, "workflowId": WORKFLOW, "input": {"jobId": job.pk}},
    )
    return job


def validated(job: Any, parts: list[str], done: list[str]) -> None:
    event_record(
        job=job,
        step="validate",
        kind=EventKind.SUCCEEDED,
        detail={"workflowId": WORKFLOW, "parts": parts, "result": {}},
    )
    for part in done:
        event_record(
            job=job,
            step=part.split(":")[0],
            kind=EventKind.SUCCEEDED,
            detail={"workflowId": WORKFLOW, "part": part, "result": {}},
        )


def later(seconds: float) -> Any:
    return timezone.now() + timedelta(seconds=seconds)


def test_only_the_missing_parts_of_a_stalled_job_are_queued_again() -> None:
    job = celery_job()
    validated(job, ["thumbnails:0", "thumbnails:1", "video_transcode:0"], ["thumbnails:0"])
    queue = Queue()
    assert jobs_watch(stall_seconds=STALL, enqueue=queue, now=later(STALL - 5)) == []
    plans = jobs_watch(stall_seconds=STALL, enqueue=queue, now=later(STALL + 5))
    assert [p.job_id for p in plans] == [job.pk]
    assert queue.calls == [
        ("processing_part", (job.pk, "thumbnails:1")),
        ("processing_part", (job.pk, "video_transcode:0")),
    ]
    assert plans[0].reason == "stalled"
    note = MediaJobEvent.objects.get(job_id=job.pk, step="watchdog")
    assert note.kind == "note" and note.detail["requeued"] == ["thumbnails:1", "video_transcode:0"]
    assert note.detail["reason"] == "stalled"
    assert "queued again: thumbnails:1, video_transcode:0" in note.detail["message"]


def test_a_slow_step_that_beats_is_never_queued_again() -> None:
    job = celery_job()
    validated(job, ["video_transcode:0"], [])
    attempt = attempt_start(
        job=job,
        step="video_transcode",
        workflow_id=WORKFLOW,
        part="video_transcode:0",
        task_id="t1",
        stall_seconds=STALL,
    )
    # A 15-minute transcode: started long ago, its heartbeat is recent.
    old = timezone.now() - timedelta(minutes=15)
    MediaJobEvent.objects.filter(job_id=job.pk).update(at=old)
    MediaJobEvent.objects.filter(pk=attempt.event_id).update(
        detail={**attempt.detail, "heartbeatAt": timezone.now().isoformat()}
    )
    queue = Queue()
    assert jobs_watch(stall_seconds=STALL, enqueue=queue, now=later(STALL - 5)) == []
    assert queue.calls == []
    # When the heartbeat stops (the worker died), the part is queued again.
    assert jobs_watch(stall_seconds=STALL, enqueue=queue, now=later(STALL + 5))
    assert queue.calls == [("processing_part", (job.pk, "video_transcode:0"))]


def open_attempt(job: Any, part: str, heartbeat_age: float) -> None:
    attempt = attempt_start(
        job=job,
        step=part.split(":")[0],
        workflow_id=WORKFLOW,
        part=part,
        task_id=f"task-{part}",
        stall_seconds=STALL,
    )
    seen = timezone.now() - timedelta(seconds=heartbeat_age)
    MediaJobEvent.objects.filter(pk=attempt.event_id).update(
        at=seen, detail={**attempt.detail, "heartbeatAt": seen.isoformat()}
    )


def test_a_dead_part_is_queued_again_while_the_others_run() -> None:
    job = celery_job()
    MediaProcessingJob.objects.filter(pk=job.pk).update(
        created_at=timezone.now() - timedelta(minutes=10)
    )
    validated(job, ["thumbnails:0", "thumbnails:1", "thumbnails:2"], [])
    open_attempt(job, "thumbnails:0", heartbeat_age=STALL + 30)  # its worker was killed
    open_attempt(job, "thumbnails:1", heartbeat_age=1)  # running, beating
    # thumbnails:2 is waiting in the queue: not dead, and the job is not stalled.
    queue = Queue()
    plans = jobs_watch(stall_seconds=STALL, enqueue=queue)
    assert queue.calls == [("processing_part", (job.pk, "thumbnails:0"))]
    assert plans[0].reason == "dead"
    # The job as a whole is busy (thumbnails:1 beat a second ago): idle about 0 s.
    assert plans[0].idle_seconds == pytest.approx(0, abs=5)
    assert note_idle(job) == plans[0].idle_seconds
    note = MediaJobEvent.objects.get(job_id=job.pk, step="watchdog")
    assert (
        note.detail["message"] == "no heartbeat from thumbnails:0 (its worker died); queued again"
    )
    # Queued once: not again on the next pass while nothing took it.
    assert jobs_watch(stall_seconds=STALL, enqueue=queue, now=later(5)) == []
    assert len(queue.calls) == 1


def test_what_is_queued_follows_the_workflow() -> None:
    unvalidated = celery_job()
    consolidating = celery_job()
    validated(consolidating, ["thumbnails:0"], ["thumbnails:0"])
    zipping = celery_job(finalization=True)
    elsewhere = celery_job(engine="stepfunctions")
    finished = celery_job()
    finished.status = JobStatus.SUCCEEDED
    finished.save()
    queue = Queue()
    jobs_watch(stall_seconds=STALL, enqueue=queue, now=later(STALL + 5))
    assert sorted(queue.calls) == sorted(
        [
            ("run_processing", (unvalidated.pk,)),
            ("consolidate_processing", (consolidating.pk,)),
            ("run_finalization", (zipping.pk,)),
        ]
    )
    assert not MediaJobEvent.objects.filter(job_id__in=[elsewhere.pk, finished.pk], step="watchdog")


def test_requeues_back_off_while_nothing_consumes_them() -> None:
    job = celery_job()
    queue = Queue()
    moments = [STALL + 5, STALL + 10, 2 * STALL + 10, 3 * STALL + 10, 5 * STALL + 10]
    queued_at = []
    for seconds in moments:
        if jobs_watch(stall_seconds=STALL, enqueue=queue, now=later(seconds)):
            queued_at.append(seconds)
            MediaJobEvent.objects.filter(job_id=job.pk, step="watchdog").update(at=later(seconds))
    # After a note, twice the stall period; after two, four times.
    assert queued_at == [STALL + 5, 3 * STALL + 10]
    assert len(queue.calls) == 2


def test_a_broker_that_is_down_leaves_the_job_for_the_next_pass() -> None:
    job = celery_job()
    assert jobs_watch(stall_seconds=STALL, enqueue=Queue(down=True), now=later(STALL + 5)) == []
    assert not MediaJobEvent.objects.filter(job_id=job.pk, step="watchdog").exists()
    queue = Queue()
    assert jobs_watch(stall_seconds=STALL, enqueue=queue, now=later(STALL + 65))
    assert queue.calls == [("run_processing", (job.pk,))]


def note_idle(job: Any) -> Any:
    return MediaJobEvent.objects.get(job_id=job.pk, step="watchdog").detail["idleSeconds"]


def test_a_finished_job_has_nothing_to_queue_again() -> None:
    job = celery_job()
    MediaProcessingJob.objects.filter(pk=job.pk).update(status=JobStatus.FAILED)
    job.refresh_from_db()
    assert job_stall_plan(job=job, stall_seconds=STALL, now=later(STALL + 5)) is None


def test_a_long_list_of_lost_parts_is_cut_in_the_message(caplog: pytest.LogCaptureFixture) -> None:
    job = celery_job()
    parts = [f"thumbnails:{n}" for n in range(25)]
    validated(job, parts, [])
    with caplog.at_level("WARNING", logger="toq.media.watchdog"):
        jobs_watch(stall_seconds=STALL, enqueue=Queue(), now=later(STALL + 5))
    note = MediaJobEvent.objects.get(job_id=job.pk, step="watchdog")
    assert note.detail["message"].endswith("queued again: " + ", ".join(parts[:20]) + " and 5 more")
    assert note.detail["requeued"] == parts
    (record,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert record.getMessage() == note.detail["message"]


def test_the_note_and_log_line_name_the_job_workflow_and_exact_idle_time() -> None:
    """The timeline note carries the workflow it requeued for and the idle time to the
    tenth of a second; the log line (formatted as emitted, JSON as in production) carries
    the job's context, so an operator finds it by job_id."""
    job = celery_job()
    t0 = timezone.now().replace(microsecond=0) - timedelta(hours=1)
    MediaProcessingJob.objects.filter(pk=job.pk).update(created_at=t0, started_at=t0)
    MediaJobEvent.objects.filter(job_id=job.pk).update(at=t0)
    lines: list[dict[str, Any]] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(JsonFormatter().format(record)))

    handler = Capture(level=logging.WARNING)
    logger = logging.getLogger("toq.media.watchdog")
    logger.addHandler(handler)
    try:
        plans = jobs_watch(stall_seconds=STALL, enqueue=Queue(), now=t0 + timedelta(seconds=187.25))
    finally:
        logger.removeHandler(handler)
    assert [p.idle_seconds for p in plans] == [187.2]
    note = MediaJobEvent.objects.get(job_id=job.pk, step="watchdog")
    assert note.detail == {
        "message": (
            "no progress for 187s (the broker or a worker lost the work); queued again: validate"
        ),
        "reason": "stalled",
        "workflowId": "celery-1-abc",
        "idleSeconds": 187.2,
        "requeued": ["validate"],
    }
    (line,) = lines
    assert line["job_id"] == job.pk
    assert line["listing_identity_id"] == job.listing_identity_id
    assert line["step"] == "watchdog"
    assert line["workflow_id"] == "celery-1-abc"
    assert line["idle_s"] == 187.2
    assert line["reason"] == "stalled"
