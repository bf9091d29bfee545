"""What every step of a workflow does around its work: load the job and its fan-in state
(each step's result is an event of the job's timeline; decision 0005), claim an attempt,
retry or give up as the policy says, and report a result or a failure."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from celery import Task
from django.conf import settings

from ..exceptions import JobStateError
from ..models import STEP_VALIDATE, EventKind, MediaProcessingJob
from ..pipeline.consolidate import FailureStatus, describe_failure, failure_body
from ..pipeline.errors import ErrorCode, PipelineError
from ..pipeline.logs import log_context
from ..selectors.dispatch import workflow_id_of, workflow_input
from ..services import queueing
from ..services.attempts import LOST_ATTEMPTS_LIMIT, Attempt, Busy, attempt_heartbeat, attempt_start
from ..services.events import event_record
from ..services.jobs import job_mark_running
from ..services.outbox import result_apply
from ..services.transient import db_retry
from ..services.workflow import step_result
from .planning import iso_time
from .policies import RetryPolicy

logger = logging.getLogger("toq.media.tasks")


def validation_of(job_id: int, workflow_id: str) -> dict[str, Any] | None:
    return step_result(job_id, STEP_VALIDATE, workflow_id)


def load_job(job_id: int) -> MediaProcessingJob | None:
    job = MediaProcessingJob.objects.filter(pk=job_id).first()
    if job is None:
        logger.warning("job vanished before its task ran", extra={"job_id": job_id})
    elif job.is_terminal:
        logger.info("job already %s; task skipped", job.status, extra={"job_id": job_id})
        return None
    return job


def elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def give_up(
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
            duration_ms=elapsed_ms(started),
            detail={**detail, "error": error, "attempt": attempt},
        ),
        what=f"{step} failure",
    )
    logger.error(
        "%s failed after %d attempts: %s", step, attempt, message, extra={"error_code": code}
    )


def retry_or_give_up(
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
                duration_ms=elapsed_ms(started),
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
    give_up(job, step, exc, started, detail, retries + 1)


def queue_delivery(entry_id: int) -> None:
    queueing.enqueue_or_leave(
        queueing.DELIVER_CALLBACK, entry_id, queue=settings.CELERY_HOUSEKEEPING_QUEUE or None
    )


def apply_result(job: MediaProcessingJob, body: dict[str, Any]) -> None:
    """Apply a workflow's callback body through the receiver's service and, when the
    portal talks to a TOQ backend, put it in the callback outbox and send it (one
    transaction, repeated on a fresh connection when the database drops it)."""
    db_retry(lambda: result_apply(job=job, body=body, deliver=queue_delivery), what="apply result")


def failure_context(
    job: MediaProcessingJob, input: dict[str, Any], workflow_id: str
) -> dict[str, Any]:
    """What the failure bodies need: the run's ids, workflow id and start time."""
    return {
        "jobId": input.get("jobId", job.pk),
        "listingIdentityId": input.get("listingIdentityId", job.listing_identity_id),
        "executionArn": workflow_id,
        "startedAt": iso_time(job.started_at),
        "traceparent": input.get("traceparent", ""),
    }


def fail_processing(
    job: MediaProcessingJob,
    input: dict[str, Any],
    workflow_id: str,
    status: FailureStatus,
    exc: Exception,
) -> None:
    code, message = describe_failure(exc)
    body = failure_body(
        failure_context(job, input, workflow_id),
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
def step_run(job_id: int, step: str, **log_fields: Any) -> Iterator[StepRun | None]:
    """Load the job (None when it is gone) and log everything inside with its context."""
    job = load_job(job_id)
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


def job_start_running(job: MediaProcessingJob, workflow_id: str) -> MediaProcessingJob | None:
    try:
        return job_mark_running(job=job, external_id=workflow_id)
    except JobStateError:
        return None  # finished meanwhile (a late duplicate of this task)


def claim(
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


def worker_lost(attempt: Attempt, step: str) -> PipelineError | None:
    """WORKER_LOST once the step's worker died LOST_ATTEMPTS_LIMIT times running it."""
    if attempt.lost_before < LOST_ATTEMPTS_LIMIT:
        return None
    return PipelineError(
        ErrorCode.WORKER_LOST,
        f"{attempt.detail.get('part') or step}: the worker running it was lost "
        f"{attempt.lost_before} times (killed, out of memory or past its time limit)",
    )


def heartbeat(attempt: Attempt) -> Any:
    return attempt_heartbeat(attempt, interval_s=settings.WATCHDOG_HEARTBEAT_SECONDS)
