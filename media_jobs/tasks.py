"""The Celery engine: docs/contract.md §4 and §5 as tasks, with the state machines' semantics.

Processing workflow of a job (``run_processing`` is what dispatch queues)::

    run_processing ── validate ──┬─ processing_part "thumbnails:0..n"   (chunks of photos)
                                 ├─ processing_part "video_thumbnails:i" (one per video)
                                 └─ processing_part "video_transcode:i"  (one per video)
                                         │ each part, once all parts have a result
                                         ▼
                 consolidate_processing ── callback_apply + outbox ── deliver_callback

Finalization: ``run_finalization`` ── zip ── callback_apply + outbox ── deliver_callback.

Fan-in without chords: every step stores its result in the job's timeline
(``media_job_events``, ``detail["result"]``), and a part that finishes checks, after its
own commit, whether every part of the workflow has a result; if so it queues the
consolidation. The last part to commit always sees all the others (READ COMMITTED), two
parts may both queue it, and the consolidation is idempotent (a finished job is left
alone; the same body applied twice is a replay). Redelivery after a killed worker
(``acks_late`` + ``reject_on_worker_lost``) re-runs a step; steps skip what is already
done: the validate result is reused, a part with a result is not run again, and the photo
and video steps skip outputs whose ``source-etag`` matches the raw object's etag.

Nothing is lost when the infrastructure misbehaves (docs/workers.md "Reliability"):

- every task runs on a fresh database connection when its own is killed (``ResilientTask``,
  ``services.transient``), and the writes it repeats are idempotent;
- each work step holds a lease with a heartbeat (``services.attempts``): a duplicate copy
  stands down, a redelivered one takes over, and a step whose worker died 3 times fails
  with WORKER_LOST;
- beat's watchdog (``services.watchdog``) queues again what a lost broker message or a
  dead worker left undone, minutes later, long before the reconciler's hour;
- results reach the backend through the callback outbox (``services.outbox``), retried for
  CALLBACK_OUTBOX_TTL_SECONDS.

Tasks take ids; they call the pipeline (Django-free) and the services, nothing else
decides a status. Results reach job state through ``services.callbacks.callback_apply``,
the HTTP receiver's own function, so both engines change state identically.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Task
from celery.exceptions import Retry
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from toqportal.celery import app

from .exceptions import ApplicationError, JobStateError
from .models import (
    STEP_CONSOLIDATE,
    STEP_POSTERS,
    STEP_THUMBNAILS,
    STEP_TRANSCODE,
    STEP_VALIDATE,
    STEP_ZIP,
    EventKind,
    MediaProcessingJob,
)
from .pipeline.consolidate import (
    FailureStatus,
    consolidate,
    describe_failure,
    failure_body,
    finalization_failure_body,
    finalization_success_body,
)
from .pipeline.errors import ErrorCode, PipelineError
from .pipeline.logs import log_context
from .pipeline.thumbnails import generate_thumbnails
from .pipeline.validate import validate_assets
from .pipeline.video import generate_poster_frames, transcode_videos
from .pipeline.zipper import create_zip_bundle
from .selectors.dispatch import workflow_id_of, workflow_input
from .services import queueing
from .services.attempts import LOST_ATTEMPTS_LIMIT, Attempt, Busy, attempt_heartbeat, attempt_start
from .services.dispatch import job_dispatch_failed
from .services.events import event_record
from .services.housekeeping import jobs_clean, jobs_reconcile
from .services.jobs import job_mark_running
from .services.outbox import callback_deliver, outbox_drain, outbox_send, result_apply
from .services.transient import db_retry
from .services.watchdog import jobs_watch
from .services.workflow import (
    PART_STEPS,
    step_result,
    step_result_record,
    workflow_part_results,
    workflow_parts_done,
)
from .storage import pipeline_config, pipeline_storage

logger = logging.getLogger("toq.media.tasks")


def retry_delay_scale() -> float:
    """Multiplies every retry interval; 1 in production, tiny in the tests."""
    return float(settings.PIPELINE_RETRY_DELAY_SCALE)


def thumbnail_chunk_size() -> int:
    """Photos per thumbnails task: small enough to spread a listing over the workers, large
    enough that the task overhead stays negligible next to the decoding."""
    return max(1, int(settings.PIPELINE_THUMBNAIL_CHUNK_SIZE))


@dataclass(frozen=True)
class RetryPolicy:
    """A state machine Retry block: attempts after the first, interval, backoff."""

    max_retries: int
    interval_s: float
    backoff: float

    def countdown(self, retries: int) -> float:
        return self.interval_s * self.backoff**retries * retry_delay_scale()


# docs/contract.md §4/§5: validate 2x 2 s x2; branches 2x 5 s x2; zip 2x 10 s x2. The consolidation is a
# pure function; it retries like the state machine's Lambda errors (2x 2 s x2).
VALIDATE_RETRY = RetryPolicy(2, 2, 2.0)
BRANCH_RETRY = RetryPolicy(2, 5, 2.0)
CONSOLIDATE_RETRY = RetryPolicy(2, 2, 2.0)
ZIP_RETRY = RetryPolicy(2, 10, 2.0)
# The first task of a job, when something outside the pipeline step fails (a locked or lost
# database, the broker while fanning out): 3 retries, 2 s x2, then DISPATCH_FAILED.
FIRST_TASK_RETRY = RetryPolicy(3, 2, 2.0)
TRANSIENT_ERRORS = (OperationalError, InterfaceError, BrokerError, ConnectionError)

_FFMPEG_LIMIT = int(settings.FFMPEG_TIMEOUT_SECONDS)
# (soft, hard) seconds: a step past its soft limit raises inside the task and is retried.
TIME_LIMITS: dict[str, tuple[int, int]] = {
    STEP_VALIDATE: (300, 330),
    STEP_THUMBNAILS: (900, 960),
    STEP_POSTERS: (_FFMPEG_LIMIT + 120, _FFMPEG_LIMIT + 180),
    STEP_TRANSCODE: (_FFMPEG_LIMIT + 300, _FFMPEG_LIMIT + 360),
    STEP_CONSOLIDATE: (300, 330),
    STEP_ZIP: (3 * 3600, 3 * 3600 + 60),
    "deliver": (600, 630),
    "housekeeping": (1800, 1860),
}
PART_LIMITS = (
    max(TIME_LIMITS[s][0] for s in PART_STEPS),
    max(TIME_LIMITS[s][1] for s in PART_STEPS),
)


class ResilientTask(Task):
    """A task whose body runs again on a fresh database connection when its connection
    is killed (``services.transient.db_retry``). Every task here is idempotent - finished
    steps, parts and outputs are skipped - so running the body again resumes it."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return db_retry(
            lambda: super(ResilientTask, self).__call__(*args, **kwargs), what=self.name
        )


class FirstTask(ResilientTask):
    """The first task of a job (``run_processing``, ``run_finalization``). What escapes it -
    after ResilientTask has rerun it on fresh connections - is retried while it looks
    transient (a locked SQLite file, the database, the broker), and otherwise, or when the
    retries run out, the job fails with DISPATCH_FAILED at once: without this the job would
    stay PENDING, silent, until the reconciler."""

    first_step = ""  # the step it runs, for the message (set by @app.task)

    def __call__(self, job_id: int, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(job_id, *args, **kwargs)
        except Retry:
            raise
        except Exception as exc:
            retries = self.request.retries or 0
            if isinstance(exc, TRANSIENT_ERRORS) and retries < FIRST_TASK_RETRY.max_retries:
                countdown = FIRST_TASK_RETRY.countdown(retries)
                logger.warning(
                    "first task of the job failed, retrying in %.1fs: %s: %s",
                    countdown,
                    type(exc).__name__,
                    exc,
                    extra={"job_id": job_id, "step": self.first_step},
                )
                raise self.retry(
                    exc=exc, countdown=countdown, max_retries=FIRST_TASK_RETRY.max_retries
                ) from exc
            logger.exception("first task of the job failed", extra={"job_id": job_id})
            job_dispatch_failed(
                job_id=job_id,
                reason=(
                    f"the job's first step ({self.first_step}) could not run after "
                    f"{retries + 1} attempt(s): {type(exc).__name__}: {exc}"
                ),
            )
            return None


# --- workflow state in the timeline ------------------------------------------------------------


def _iso(moment: datetime | None) -> str:
    """Step Functions' ``$$.Execution.StartTime`` format: ISO 8601, milliseconds, Z."""
    if moment is None:
        return ""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _validation(job_id: int, workflow_id: str) -> dict[str, Any] | None:
    return step_result(job_id, STEP_VALIDATE, workflow_id)


def plan_parts(validation: dict[str, Any], chunk_size: int) -> list[str]:
    """The parallel parts of a validated job: photo chunks, then one poster and one
    transcode per video."""
    images = validation.get("imageAssets") or []
    videos = validation.get("videoAssets") or []
    parts = [
        f"{STEP_THUMBNAILS}:{i}" for i in range(0, (len(images) + chunk_size - 1) // chunk_size)
    ]
    parts += [f"{STEP_POSTERS}:{i}" for i in range(len(videos))]
    parts += [f"{STEP_TRANSCODE}:{i}" for i in range(len(videos))]
    return parts


def _part_input(validation: dict[str, Any], part: str, chunk_size: int) -> dict[str, Any]:
    step, index = part.split(":")
    number = int(index)
    if step == STEP_THUMBNAILS:
        chunk = (validation.get("imageAssets") or [])[
            number * chunk_size : (number + 1) * chunk_size
        ]
        return {**validation, "imageAssets": chunk}
    video = (validation.get("videoAssets") or [])[number]
    return {**validation, "videoAssets": [video]}


def merge_parallel_results(validation: dict[str, Any], parts: dict[str, Any]) -> list[Any]:
    """The ``parallelResults`` list the state machine's Parallel state would produce: one
    entry per branch (thumbnails; poster frames or the Pass result; transcodes or the Pass
    result), the chunks' bodies concatenated in the validated assets' order, and the
    transcodes as the Map's list of one result per video."""

    def ordered(step: str) -> list[Any]:
        keys = sorted(
            (p for p in parts if p.startswith(step + ":")), key=lambda p: int(p.split(":")[1])
        )
        return [parts[k] for k in keys]

    def merged_body(results: list[Any]) -> dict[str, Any]:
        generated: list[Any] = []
        errors: list[Any] = []
        for result in results:
            body = (result or {}).get("body") or {}
            generated.extend(body.get("generatedAssets") or [])
            errors.extend(body.get("errors") or [])
        return {"body": {"status": "SUCCESS", "generatedAssets": generated, "errors": errors}}

    branches: list[Any] = [merged_body(ordered(STEP_THUMBNAILS))]
    if validation.get("hasVideos"):
        branches.append(merged_body(ordered(STEP_POSTERS)))
        branches.append(ordered(STEP_TRANSCODE))
    else:
        branches.append({"status": "no_videos_to_thumbnail"})
        branches.append({"status": "no_videos_to_process"})
    return branches


# --- shared step plumbing ----------------------------------------------------------------------


def _load(job_id: int) -> MediaProcessingJob | None:
    job = MediaProcessingJob.objects.filter(pk=job_id).first()
    if job is None:
        logger.warning("job vanished before its task ran", extra={"job_id": job_id})
    elif job.is_terminal:
        logger.info("job already %s; task skipped", job.status, extra={"job_id": job_id})
        return None
    return job


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _give_up(
    job: MediaProcessingJob,
    step: str,
    exc: Exception,
    started: float,
    detail: dict[str, Any],
    attempt: int,
) -> None:
    """Record the step as failed for good (the caller then reports the failure)."""
    code, message = describe_failure(exc)
    error = {"code": code, "message": message[:2000]}
    db_retry(
        lambda: event_record(
            job=job,
            step=step,
            kind=EventKind.FAILED,
            duration_ms=_elapsed_ms(started),
            detail={**detail, "error": error, "attempt": attempt},
        ),
        what=f"{step} failure",
    )
    logger.error(
        "%s failed after %d attempts: %s", step, attempt, message, extra={"error_code": code}
    )


def _retry_or_give_up(
    task: Task,
    job: MediaProcessingJob,
    step: str,
    exc: Exception,
    policy: RetryPolicy,
    started: float,
    detail: dict[str, Any],
) -> None:
    """Raise Celery's Retry while attempts remain (an event says so); return when they are
    used up, after recording the step as failed."""
    code, message = describe_failure(exc)
    retries = task.request.retries or 0
    if retries < policy.max_retries:
        countdown = policy.countdown(retries)
        error = {"code": code, "message": message[:2000]}
        db_retry(
            lambda: event_record(
                job=job,
                step=step,
                kind=EventKind.RETRIED,
                duration_ms=_elapsed_ms(started),
                detail={
                    **detail,
                    "error": error,
                    "attempt": retries + 1,
                    "retryInSeconds": countdown,
                },
            ),
            what=f"{step} retry",
        )
        logger.warning(
            "%s failed, retrying in %.1fs: %s", step, countdown, message, extra={"error_code": code}
        )
        raise task.retry(exc=exc, countdown=countdown, max_retries=policy.max_retries)
    _give_up(job, step, exc, started, detail, retries + 1)


def _queue_delivery(entry_id: int) -> None:
    queueing.enqueue_or_leave(
        deliver_callback.name, entry_id, queue=settings.CELERY_HOUSEKEEPING_QUEUE or None
    )


def apply_result(job: MediaProcessingJob, body: dict[str, Any]) -> None:
    """Apply a workflow's callback body through the receiver's service and, when the
    portal talks to a TOQ backend, put it in the callback outbox and send it (one
    transaction, repeated on a fresh connection when the database drops it)."""
    db_retry(lambda: result_apply(job=job, body=body, deliver=_queue_delivery), what="apply result")


def _context(job: MediaProcessingJob, input: dict[str, Any], workflow_id: str) -> dict[str, Any]:
    """What the failure bodies need: the run's ids, workflow id and start time."""
    return {
        "jobId": input.get("jobId", job.pk),
        "listingIdentityId": input.get("listingIdentityId", job.listing_identity_id),
        "executionArn": workflow_id,
        "startedAt": _iso(job.started_at),
        "traceparent": input.get("traceparent", ""),
    }


def _fail_processing(
    job: MediaProcessingJob,
    input: dict[str, Any],
    workflow_id: str,
    status: FailureStatus,
    exc: Exception,
) -> None:
    code, message = describe_failure(exc)
    body = failure_body(
        _context(job, input, workflow_id),
        status=status,
        error_code=code,
        message=message,
    )
    apply_result(job, body)


@dataclass(frozen=True)
class StepRun:
    """What every task of a workflow starts from: the job, its input and its workflow id."""

    job: MediaProcessingJob
    input: dict[str, Any]
    workflow_id: str


@contextmanager
def _step_run(job_id: int, step: str, **log_fields: Any) -> Iterator[StepRun | None]:
    """Load the job (None when it is gone) and log everything inside with its context."""
    job = _load(job_id)
    if job is None:
        yield None
        return
    input = workflow_input(job=job)
    workflow_id = workflow_id_of(job=job)
    with log_context(
        job_id=job.pk,
        listing_identity_id=job.listing_identity_id,
        traceparent=input.get("traceparent"),
        step=step,
        workflow_id=workflow_id,
        **log_fields,
    ):
        yield StepRun(job, input, workflow_id)


def _start(job: MediaProcessingJob, workflow_id: str) -> MediaProcessingJob | None:
    try:
        return job_mark_running(job=job, external_id=workflow_id)
    except JobStateError:
        return None  # finished meanwhile (a late duplicate of this task)


def _claim(
    task: Task, job: MediaProcessingJob, step: str, workflow_id: str, part: str | None = None
) -> Attempt | None:
    """This task's attempt at the step (``services.attempts``), or None when another copy
    is running it and alive - this one then has nothing to do."""
    task_id = str(task.request.id or "")
    claim = db_retry(
        lambda: attempt_start(
            job=job,
            step=step,
            workflow_id=workflow_id,
            part=part,
            task_id=task_id,
            stall_seconds=settings.WATCHDOG_STALL_SECONDS,
        ),
        what=f"{step} start",
    )
    if isinstance(claim, Busy):
        logger.info(
            "%s is running under another task (%s on %s); this copy stands down",
            part or step,
            claim.task_id,
            claim.worker,
        )
        return None
    if claim.lost_before:
        logger.warning(
            "%s taken over after %d lost attempt(s) (worker killed or connection lost)",
            part or step,
            claim.lost_before,
        )
    return claim


def _worker_lost(attempt: Attempt, step: str) -> PipelineError | None:
    """WORKER_LOST once the step's worker died LOST_ATTEMPTS_LIMIT times running it."""
    if attempt.lost_before < LOST_ATTEMPTS_LIMIT:
        return None
    return PipelineError(
        ErrorCode.WORKER_LOST,
        f"{attempt.detail.get('part') or step}: the worker running it was lost "
        f"{attempt.lost_before} times (killed, out of memory or past its time limit)",
    )


def _heartbeat(attempt: Attempt) -> Any:
    return attempt_heartbeat(attempt, interval_s=settings.WATCHDOG_HEARTBEAT_SECONDS)


# --- processing ---------------------------------------------------------------------------------


@app.task(
    bind=True,
    base=FirstTask,
    first_step=STEP_VALIDATE,
    name=queueing.RUN_PROCESSING,
    ignore_result=True,
    soft_time_limit=TIME_LIMITS[STEP_VALIDATE][0],
    time_limit=TIME_LIMITS[STEP_VALIDATE][1],
)
def run_processing(self: Task, job_id: int) -> None:
    """First step of a processing job: RUNNING, validate, fan the parallel parts out."""
    with _step_run(job_id, STEP_VALIDATE) as run:
        if run is None:
            return
        input, workflow_id = run.input, run.workflow_id
        job = _start(run.job, workflow_id)
        if job is None:
            return
        validation = _validation(job.pk, workflow_id)
        chunk_size = thumbnail_chunk_size()
        if validation is None:
            attempt = _claim(self, job, STEP_VALIDATE, workflow_id)
            if attempt is None:
                return
            started = time.perf_counter()
            detail = {"workflowId": workflow_id}
            lost = _worker_lost(attempt, STEP_VALIDATE)
            if lost is not None:
                _give_up(job, STEP_VALIDATE, lost, started, detail, attempt.lost_before)
                _fail_processing(job, input, workflow_id, "VALIDATION_FAILED", lost)
                return
            event = {**input, "executionArn": workflow_id, "startedAt": _iso(job.started_at)}
            with _heartbeat(attempt):
                try:
                    result = dict(validate_step(event))
                except Exception as exc:  # noqa: BLE001 - the state machine catches States.ALL
                    _retry_or_give_up(
                        self, job, STEP_VALIDATE, exc, VALIDATE_RETRY, started, detail
                    )
                    _fail_processing(job, input, workflow_id, "VALIDATION_FAILED", exc)
                    return
            parts = plan_parts(result, chunk_size)
            summary = {
                "result": result,
                "parts": parts,
                "chunkSize": chunk_size,
                "assets": len(result.get("assets") or []),
                "failedAssets": sum(1 for a in result.get("assets") or [] if a.get("error")),
            }
            db_retry(
                lambda: step_result_record(
                    job=job,
                    step=STEP_VALIDATE,
                    workflow_id=workflow_id,
                    detail=summary,
                    duration_ms=_elapsed_ms(started),
                ),
                what="validate result",
            )
            validation = _validation(job.pk, workflow_id)
            assert validation is not None
            logger.info(
                "validate finished",
                extra={"duration_ms": round(_elapsed_ms(started), 1), "parts": len(parts)},
            )
        done = workflow_parts_done(job.pk, workflow_id)
        pending = [p for p in validation["parts"] if p not in done]
        try:
            queueing.enqueue_each(processing_part.name, [(job.pk, part) for part in pending])
        except Exception:
            logger.exception("parts not queued; the watchdog will queue them")
            return
        if not pending:
            consolidate_or_queue(job.pk)


def validate_step(event: dict[str, Any]) -> dict[str, Any]:

    return dict(validate_assets(event, storage=pipeline_storage(), config=pipeline_config()))


def _run_part(step: str, validation: dict[str, Any]) -> dict[str, Any]:
    storage, config = pipeline_storage(), pipeline_config()
    if step == STEP_THUMBNAILS:
        # the stored validation result is plain JSON of the ValidationResult shape
        return dict(generate_thumbnails(validation, storage=storage, config=config))  # type: ignore[arg-type]
    if step == STEP_POSTERS:
        return dict(generate_poster_frames(validation, storage=storage, config=config))
    if step == STEP_TRANSCODE:
        return dict(transcode_videos(validation, storage=storage, config=config))
    raise ValueError(f"unknown part step {step!r}")


def _part_summary(result: dict[str, Any]) -> dict[str, Any]:
    body = result.get("body") or {}
    return {
        "outputs": len(body.get("generatedAssets") or []),
        "errors": len(body.get("errors") or []),
    }


@app.task(
    bind=True,
    base=ResilientTask,
    name="media_jobs.tasks.processing_part",
    ignore_result=True,
    soft_time_limit=PART_LIMITS[0],
    time_limit=PART_LIMITS[1],
)
def processing_part(self: Task, job_id: int, part: str) -> None:
    """One parallel part: a chunk of photos, or one video's poster frame or transcode. A
    photo or video that cannot be processed is an error entry of the part's result (an
    error of that asset only); only what fails the step itself is retried and, when the
    retries are used up, fails the job."""
    step = part.split(":")[0]
    with _step_run(job_id, step, part=part) as run:
        if run is None:
            return
        job, input, workflow_id = run.job, run.input, run.workflow_id
        validation = _validation(job.pk, workflow_id)
        if validation is None or part not in validation.get("parts", []):
            logger.error(
                "part without a validated workflow; dropped", extra={"workflow_id": workflow_id}
            )
            return
        if part not in workflow_parts_done(job.pk, workflow_id):
            attempt = _claim(self, job, step, workflow_id, part)
            if attempt is None:
                return
            started = time.perf_counter()
            detail = {"workflowId": workflow_id, "part": part}
            lost = _worker_lost(attempt, step)
            if lost is not None:
                _give_up(job, step, lost, started, detail, attempt.lost_before)
                _fail_processing(job, input, workflow_id, "PROCESSING_FAILED", lost)
                return
            subset = _part_input(validation["result"], part, validation.get("chunkSize") or 1)
            with _heartbeat(attempt):
                try:
                    result = _run_part(step, subset)
                except Exception as exc:  # noqa: BLE001 - any uncaught error -> ReportFailure
                    _retry_or_give_up(self, job, step, exc, BRANCH_RETRY, started, detail)
                    _fail_processing(job, input, workflow_id, "PROCESSING_FAILED", exc)
                    return
            # The result is the part's whole work: a lost connection must not lose it.
            db_retry(
                lambda: step_result_record(
                    job=job,
                    step=step,
                    workflow_id=workflow_id,
                    detail={**detail, "result": result, **_part_summary(result)},
                    duration_ms=_elapsed_ms(started),
                ),
                what=f"{part} result",
            )
        # Fan-in: after this part's commit, the last part to finish sees every result.
        if set(validation["parts"]) <= workflow_parts_done(job.pk, workflow_id):
            consolidate_or_queue(job.pk)


@app.task(
    bind=True,
    base=ResilientTask,
    name="media_jobs.tasks.consolidate_processing",
    ignore_result=True,
    soft_time_limit=TIME_LIMITS[STEP_CONSOLIDATE][0],
    time_limit=TIME_LIMITS[STEP_CONSOLIDATE][1],
)
def consolidate_processing(self: Task, job_id: int) -> None:
    """ConsolidateResults + FinalizeAndCallback: the same body the state machine builds."""
    _consolidate(job_id, self)


def consolidate_or_queue(job_id: int) -> None:
    """Consolidate in the task that completed the fan-in: consolidation is a pure function
    of the recorded results (a few ms), so a broker hop for it is only latency (~15-30 ms
    a job). When that fails for any reason the consolidation task takes over, with its own
    retry policy; a duplicate run is harmless (the receiver's service applies a body once)."""
    try:
        _consolidate(job_id, None)
    except Exception:
        logger.warning("consolidation in place failed; queued", exc_info=True)
        queueing.enqueue_or_leave(consolidate_processing.name, job_id)


def _consolidate(job_id: int, task: Task | None) -> None:
    """Build and apply the run's body. Without ``task`` (in place) an error is raised for
    the caller to queue the task; with it, it is retried and in the end reported."""
    with _step_run(job_id, STEP_CONSOLIDATE) as run:
        if run is None:
            return
        job, input, workflow_id = run.job, run.input, run.workflow_id
        validation = _validation(job.pk, workflow_id)
        parts = workflow_part_results(job.pk, workflow_id)
        if validation is None or not set(validation["parts"]) <= set(parts):
            logger.warning("consolidation before every part finished; skipped")
            return
        started = time.perf_counter()
        detail = {"workflowId": workflow_id}
        event_record(job=job, step=STEP_CONSOLIDATE, kind=EventKind.STARTED, detail=detail)
        result = validation["result"]
        event = {
            **_context(job, input, workflow_id),
            "assets": result.get("assets") or [],
            "parallelResults": merge_parallel_results(result, parts),
        }
        try:
            body = consolidate(event)["body"]
        except Exception as exc:
            if task is None:
                raise
            _retry_or_give_up(task, job, STEP_CONSOLIDATE, exc, CONSOLIDATE_RETRY, started, detail)
            _fail_processing(job, input, workflow_id, "PROCESSING_FAILED", exc)
            return
        db_retry(
            lambda: event_record(
                job=job,
                step=STEP_CONSOLIDATE,
                kind=EventKind.SUCCEEDED,
                duration_ms=_elapsed_ms(started),
                detail={**detail, "status": body["status"], "outputs": len(body["outputs"])},
            ),
            what="consolidation result",
        )
        apply_result(job, body)


# --- finalization -------------------------------------------------------------------------------


@app.task(
    bind=True,
    base=FirstTask,
    first_step=STEP_ZIP,
    name=queueing.RUN_FINALIZATION,
    ignore_result=True,
    soft_time_limit=TIME_LIMITS[STEP_ZIP][0],
    time_limit=TIME_LIMITS[STEP_ZIP][1],
)
def run_finalization(self: Task, job_id: int) -> None:
    """CreateZipBundle + FinalizeAndCallback (docs/contract.md §5). A ZIP already recorded
    for this workflow (its result written, then the task lost) is not built again."""
    with _step_run(job_id, STEP_ZIP) as run:
        if run is None:
            return
        input, workflow_id = run.input, run.workflow_id
        job = _start(run.job, workflow_id)
        if job is None:
            return
        recorded = step_result(job.pk, STEP_ZIP, workflow_id)
        if recorded is not None:
            apply_result(job, finalization_success_body(input, recorded["result"]))
            return
        attempt = _claim(self, job, STEP_ZIP, workflow_id)
        if attempt is None:
            return
        started = time.perf_counter()
        detail = {"workflowId": workflow_id}
        lost = _worker_lost(attempt, STEP_ZIP)
        if lost is not None:
            _give_up(job, STEP_ZIP, lost, started, detail, attempt.lost_before)
            code, message = describe_failure(lost)
            apply_result(job, finalization_failure_body(input, error=code, cause=message))
            return

        with _heartbeat(attempt):
            try:
                result = create_zip_bundle(
                    dict(input), storage=pipeline_storage(), config=pipeline_config()
                )
            except Exception as exc:  # noqa: BLE001 - the state machine catches States.ALL
                _retry_or_give_up(self, job, STEP_ZIP, exc, ZIP_RETRY, started, detail)
                code, message = describe_failure(exc)
                apply_result(job, finalization_failure_body(input, error=code, cause=message))
                return
        db_retry(
            lambda: step_result_record(
                job=job,
                step=STEP_ZIP,
                workflow_id=workflow_id,
                detail={"result": result},
                duration_ms=_elapsed_ms(started),
            ),
            what="zip result",
        )
        apply_result(job, finalization_success_body(input, result))


# --- callback delivery, watchdog and housekeeping ---------------------------------------------


@app.task(
    base=ResilientTask,
    name="media_jobs.tasks.deliver_callback",
    ignore_result=True,
    soft_time_limit=TIME_LIMITS["deliver"][0],
    time_limit=TIME_LIMITS["deliver"][1],
)
def deliver_callback(outbox_id: int, body: dict[str, Any] | None = None) -> None:
    """Send a result from the callback outbox to CALLBACK_URL now, with the contract's quick
    retries; what is still undelivered is left to ``send_pending_callbacks``. (A message
    queued before the outbox existed carries ``(job_id, body)``: it is put in the outbox.)"""

    with log_context(step="callback_delivery", outbox_id=outbox_id):
        try:
            if body is not None:
                job = MediaProcessingJob.objects.filter(pk=outbox_id).first()
                if job is not None:
                    callback_deliver(job=job, body=body)
                return
            outbox_send(entry_id=outbox_id)
        except ApplicationError as exc:
            logger.error("callback not delivered: %s", exc.message)


@app.task(
    base=ResilientTask,
    name="media_jobs.tasks.send_pending_callbacks",
    ignore_result=True,
    soft_time_limit=TIME_LIMITS["housekeeping"][0],
    time_limit=TIME_LIMITS["housekeeping"][1],
)
def send_pending_callbacks() -> dict[str, int]:
    """Celery beat, every CALLBACK_OUTBOX_INTERVAL_SECONDS: the callback outbox's pass."""

    with log_context(step="callback_outbox"):
        return outbox_drain()


def _requeue(task_name: str, calls: list[tuple[Any, ...]]) -> None:
    task = {
        "run_processing": run_processing,
        "processing_part": processing_part,
        "consolidate_processing": consolidate_processing,
        "run_finalization": run_finalization,
    }[task_name]
    queueing.enqueue_each(task.name, calls)


@app.task(
    base=ResilientTask,
    name="media_jobs.tasks.watch_stalled_jobs",
    ignore_result=True,
    soft_time_limit=TIME_LIMITS["housekeeping"][0],
    time_limit=TIME_LIMITS["housekeeping"][1],
)
def watch_stalled_jobs() -> int:
    """Celery beat, every WATCHDOG_INTERVAL_SECONDS: queue again what stalled jobs lack."""

    plans = jobs_watch(stall_seconds=settings.WATCHDOG_STALL_SECONDS, enqueue=_requeue)
    return len(plans)


@app.task(
    base=ResilientTask,
    name="media_jobs.tasks.reconcile_stuck_jobs",
    ignore_result=True,
    soft_time_limit=TIME_LIMITS["housekeeping"][0],
    time_limit=TIME_LIMITS["housekeeping"][1],
)
def reconcile_stuck_jobs(timeout_seconds: int | None = None, limit: int | None = None) -> int:
    """docs/contract.md §8 reconciler: Celery beat every RECONCILER_INTERVAL_SECONDS with the
    settings, or ``manage.py reconcile_stuck_jobs --enqueue`` with its own timeout and limit."""
    if timeout_seconds is None:
        timeout_seconds = settings.RECONCILER_TIMEOUT_SECONDS
    return len(jobs_reconcile(timeout_seconds=timeout_seconds, limit=limit))


@app.task(
    base=ResilientTask,
    name="media_jobs.tasks.clean_old_jobs",
    ignore_result=True,
    soft_time_limit=TIME_LIMITS["housekeeping"][0],
    time_limit=TIME_LIMITS["housekeeping"][1],
)
def clean_old_jobs(
    completed_before: str | None = None, limit: int | None = None, batch_size: int | None = None
) -> int:
    """docs/contract.md §8 cleaner: Celery beat daily with the settings (CLEANER_RETENTION_DAYS,
    CLEANER_MAX_PER_RUN), or ``manage.py clean_old_jobs --enqueue`` with its own cutoff (ISO
    8601), limit and batch size."""
    cutoff = (
        datetime.fromisoformat(completed_before)
        if completed_before
        else timezone.now() - timedelta(days=settings.CLEANER_RETENTION_DAYS)
    )
    if limit is None:
        limit = settings.CLEANER_MAX_PER_RUN
    if batch_size:
        return jobs_clean(completed_before=cutoff, limit=limit, batch_size=batch_size)
    return jobs_clean(completed_before=cutoff, limit=limit)
