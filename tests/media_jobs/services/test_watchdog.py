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
    # A 15-minute transcode: the job and the step started long ago, its heartbeat is recent.
    old = timezone.now() - timedelta(minutes=15)
    MediaProcessingJob.objects.filter(pk=job.pk).update(created_at=old, started_at=old)
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
    assert (plans[0].reason, plans[0].job_id, plans[0].workflow_id) == ("dead", job.pk, WORKFLOW)
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
    # First in the pass: a job with nothing to queue does not end the pass.
    elsewhere = celery_job(engine="stepfunctions")
    unvalidated = celery_job()
    consolidating = celery_job()
    validated(consolidating, ["thumbnails:0"], ["thumbnails:0"])
    zipping = celery_job(finalization=True)
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


@pytest.mark.parametrize(("count", "tail"), [(20, ""), (21, " and 1 more"), (25, " and 5 more")])
def test_a_long_list_of_lost_parts_is_cut_in_the_message(
    caplog: pytest.LogCaptureFixture, count: int, tail: str
) -> None:
    """The message names at most 20 parts and counts the rest."""
    job = celery_job()
    parts = [f"thumbnails:{n}" for n in range(count)]
    validated(job, parts, [])
    with caplog.at_level("WARNING", logger="toq.media.watchdog"):
        jobs_watch(stall_seconds=STALL, enqueue=Queue(), now=later(STALL + 5))
    note = MediaJobEvent.objects.get(job_id=job.pk, step="watchdog")
    assert note.detail["message"].endswith("queued again: " + ", ".join(parts[:20]) + tail)
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


# --- The rule at its edges, on a fixed clock ------------------------------------------------


def an_hour_ago() -> Any:
    return timezone.now().replace(microsecond=0) - timedelta(hours=1)


def quiet_since(job: Any, t0: Any, *, started: Any = "same") -> None:
    """The job was created (and started) at ``t0`` and every event of it is from then."""
    MediaProcessingJob.objects.filter(pk=job.pk).update(
        created_at=t0, started_at=t0 if started == "same" else started
    )
    MediaJobEvent.objects.filter(job_id=job.pk).update(at=t0)
    job.refresh_from_db()


def attempt_seen(job: Any, name: str, seen: Any, *, workflow_id: str = WORKFLOW) -> None:
    """An open attempt at step or part ``name`` whose heartbeat was last written at ``seen``."""
    attempt = attempt_start(
        job=job,
        step=name.split(":")[0],
        workflow_id=workflow_id,
        part=name if ":" in name else None,
        task_id=f"task-{name}",
        stall_seconds=STALL,
    )
    MediaJobEvent.objects.filter(pk=attempt.event_id).update(
        at=seen, detail={**attempt.detail, "heartbeatAt": seen.isoformat()}
    )


def watchdog_note(job: Any, at: Any, reason: str | None, requeued: list[str]) -> None:
    detail: dict[str, Any] = {"workflowId": WORKFLOW, "requeued": requeued}
    if reason is not None:
        detail["reason"] = reason
    event = event_record(job=job, step="watchdog", kind=EventKind.NOTE, detail=detail)
    MediaJobEvent.objects.filter(pk=event.pk).update(at=at)


def busy_job(t0: Any, now: Any, parts: list[str]) -> Any:
    """A validated job created before ``t0`` whose part ``thumbnails:0`` beat a second before
    ``now``: the job as a whole is not stalled."""
    job = celery_job()
    validated(job, ["thumbnails:0", *parts], [])
    quiet_since(job, t0 - timedelta(minutes=10))
    attempt_seen(job, "thumbnails:0", now - timedelta(seconds=1))
    return job


def test_a_job_stalls_after_exactly_the_stall_period_and_is_requeued_after_twice_it() -> None:
    """Stalled when nothing moved for T (not only after more than T); after a note that
    nothing answered, queued again when exactly 2T have passed since the note."""
    job = celery_job()
    t0 = an_hour_ago()
    quiet_since(job, t0)
    stall = timedelta(seconds=STALL)
    assert (
        job_stall_plan(job=job, stall_seconds=STALL, now=t0 + stall - timedelta(seconds=1)) is None
    )
    queue = Queue()
    plans = jobs_watch(stall_seconds=STALL, enqueue=queue, now=t0 + stall)
    assert [p.reason for p in plans] == ["stalled"]
    MediaJobEvent.objects.filter(job_id=job.pk, step="watchdog").update(at=t0 + stall)
    assert (
        job_stall_plan(job=job, stall_seconds=STALL, now=t0 + 3 * stall - timedelta(seconds=1))
        is None
    )
    plan = job_stall_plan(job=job, stall_seconds=STALL, now=t0 + 3 * stall)
    assert plan is not None and plan.work == {"run_processing": [(job.pk,)]}


def test_a_step_is_dead_once_its_heartbeat_is_exactly_the_stall_period_old() -> None:
    """The same edge as ``attempt_start``'s "alive": younger than T is alive, T old is dead.
    An alive step met first does not end the search."""
    t0 = an_hour_ago()
    now = t0 + timedelta(seconds=STALL)
    job = busy_job(t0, now, ["thumbnails:1"])
    attempt_seen(job, "thumbnails:1", t0)
    early = job_stall_plan(job=job, stall_seconds=STALL, now=now - timedelta(seconds=1))
    assert early is None
    plan = job_stall_plan(job=job, stall_seconds=STALL, now=now)
    assert plan is not None
    assert (plan.job_id, plan.workflow_id, plan.reason) == (job.pk, WORKFLOW, "dead")
    assert plan.work == {"processing_part": [(job.pk, "thumbnails:1")]}
    assert plan.missing == ["thumbnails:1"]


@pytest.mark.parametrize(
    ("name", "finalization", "task", "args"),
    [
        ("validate", False, "run_processing", ()),
        ("zip", True, "run_finalization", ()),
        ("video_thumbnails:2", False, "processing_part", ("video_thumbnails:2",)),
    ],
)
def test_a_dead_step_is_queued_again_as_its_own_task(
    name: str, finalization: bool, task: str, args: tuple[str, ...]
) -> None:
    """A dead step is queued again with the task that runs it, while the job's timeline
    moved recently (here: an operator's note), so the job is not stalled."""
    t0 = an_hour_ago()
    now = t0 + timedelta(seconds=STALL + 5)
    job = celery_job(finalization=finalization)
    quiet_since(job, t0 - timedelta(minutes=10))
    attempt_seen(job, name, t0)
    recent = event_record(job=job, step="retry", kind=EventKind.NOTE, detail={"message": "hi"})
    MediaJobEvent.objects.filter(pk=recent.pk).update(at=now - timedelta(seconds=1))
    plan = job_stall_plan(job=job, stall_seconds=STALL, now=now)
    assert plan is not None and plan.reason == "dead"
    assert plan.work == {task: [(job.pk, *args)]}


@pytest.mark.parametrize(
    ("reason", "offset", "requeued"),
    [
        ("stalled", 10, False),  # asked after the work stopped: wait 2T from the note
        (None, 10, False),  # a note from before notes had a reason: a stall
        ("stalled", -60, True),  # the work moved after the note: a new stall
        ("stalled", 0, True),  # ... also when it moved at the note's very moment
        ("dead", 10, True),  # a dead step's note asked for that step, not for the job
    ],
)
def test_only_stall_notes_since_the_work_stopped_hold_back_a_stalled_job(
    reason: str | None, offset: int, requeued: bool
) -> None:
    t0 = an_hour_ago()
    job = celery_job()
    quiet_since(job, t0)
    watchdog_note(job, t0 + timedelta(seconds=offset), reason, ["validate"])
    plan = job_stall_plan(job=job, stall_seconds=STALL, now=t0 + timedelta(seconds=STALL))
    assert (plan is not None) == requeued
    if plan is not None:
        assert (plan.reason, plan.work) == ("stalled", {"run_processing": [(job.pk,)]})


@pytest.mark.parametrize(
    ("named", "offset", "requeued"),
    [
        ("thumbnails:1", 10, False),  # asked after its last beat: wait 2T from the note
        ("thumbnails:1", -60, True),  # asked for an earlier attempt of the part
        ("thumbnails:1", 0, True),  # ... also at the very moment the part last beat
        ("thumbnails:9", 10, True),  # asked for another part
    ],
)
def test_only_notes_naming_a_dead_step_since_its_last_beat_hold_it_back(
    named: str, offset: int, requeued: bool
) -> None:
    t0 = an_hour_ago()
    now = t0 + timedelta(seconds=STALL + 5)
    job = busy_job(t0, now, ["thumbnails:1"])
    attempt_seen(job, "thumbnails:1", t0)
    watchdog_note(job, t0 + timedelta(seconds=offset), "dead", [named])
    plan = job_stall_plan(job=job, stall_seconds=STALL, now=now)
    assert (plan.work if plan else None) == (
        {"processing_part": [(job.pk, "thumbnails:1")]} if requeued else None
    )


@pytest.mark.parametrize(
    ("created", "started", "event"),
    [
        (-600, 0, -600),  # started (again) after its last event
        (-600, -600, 0),  # an event after its start
        (0, None, 0),  # PENDING, never started
    ],
    ids=["start", "event", "never-started"],
)
def test_the_job_last_moved_at_its_latest_start_event_or_creation(
    created: int, started: int | None, event: int
) -> None:
    """Idle time counts from the latest of the job's creation, its start and its events."""
    t0 = an_hour_ago()
    job = celery_job()
    MediaProcessingJob.objects.filter(pk=job.pk).update(
        created_at=t0 + timedelta(seconds=created),
        started_at=None if started is None else t0 + timedelta(seconds=started),
    )
    MediaJobEvent.objects.filter(job_id=job.pk).update(at=t0 + timedelta(seconds=event))
    job.refresh_from_db()
    plan = job_stall_plan(job=job, stall_seconds=STALL, now=t0 + timedelta(seconds=STALL + 7))
    assert plan is not None and (plan.reason, plan.idle_seconds) == ("stalled", 127.0)


@pytest.mark.parametrize(
    ("kind", "queued"),
    [("note", True), ("succeeded", False), ("failed", False), ("retried", False)],
)
def test_only_an_ending_event_closes_an_attempt(kind: str, queued: bool) -> None:
    t0 = an_hour_ago()
    now = t0 + timedelta(seconds=STALL + 5)
    job = busy_job(t0, now, ["thumbnails:1"])
    attempt_seen(job, "thumbnails:1", t0)
    after = event_record(
        job=job,
        step="thumbnails",
        kind=kind,
        detail={"workflowId": WORKFLOW, "part": "thumbnails:1", "result": {}},
    )
    MediaJobEvent.objects.filter(pk=after.pk).update(at=t0)
    plan = job_stall_plan(job=job, stall_seconds=STALL, now=now)
    assert (plan.missing if plan else []) == (["thumbnails:1"] if queued else [])


def test_attempts_of_another_job_or_an_earlier_workflow_are_not_this_jobs() -> None:
    """Only the job's own attempts in its current workflow count, even when another job's
    workflow id is the same."""
    t0 = an_hour_ago()
    now = t0 + timedelta(seconds=STALL + 5)
    job = busy_job(t0, now, [])
    attempt_seen(job, "thumbnails:3", t0, workflow_id="celery-1-earlier")
    other = busy_job(t0, now, [])
    attempt_seen(other, "thumbnails:1", t0)
    plan = job_stall_plan(job=job, stall_seconds=STALL, now=now)
    assert plan is None
    other_plan = job_stall_plan(job=other, stall_seconds=STALL, now=now)
    assert other_plan is not None and other_plan.missing == ["thumbnails:1"]


def test_a_job_whose_work_cannot_be_queued_does_not_stop_the_pass(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The broker refused the first job's work: that is logged with its traceback, the job
    gets no note (the next pass tries again), and the next job is still queued."""
    first, second = celery_job(), celery_job()
    queue = Queue()
    refusals = []

    def enqueue(task: str, calls: list[tuple[Any, ...]]) -> None:
        if calls[0][0] == first.pk:
            refusals.append(task)
            raise ConnectionError("broker down")
        queue(task, calls)

    with caplog.at_level("ERROR", logger="toq.media.watchdog"):
        plans = jobs_watch(stall_seconds=STALL, enqueue=enqueue, now=later(STALL + 5))
    assert refusals == ["run_processing"]
    assert [p.job_id for p in plans] == [second.pk]
    assert queue.calls == [("run_processing", (second.pk,))]
    assert list(MediaJobEvent.objects.filter(step="watchdog").values_list("job_id", flat=True)) == [
        second.pk
    ]
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.getMessage() == "lost work could not be queued; the next pass retries"
    assert record.exc_info is not None and record.exc_info[0] is ConnectionError
