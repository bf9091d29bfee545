"""The job lifecycle (docs/contract.md §3): the only code that changes a job's status.

PENDING -> RUNNING -> SUCCEEDED | PARTIAL_SUCCESS | FAILED. A terminal job changes again only
through ``job_complete`` (an identical replay, or a late success over a reconciler failure)
and is otherwise retried as a new job (``retry.job_retry_and_dispatch``); the old row stays
as history.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..exceptions import JobStateError
from ..models import (
    TERMINAL_JOB_STATUSES,
    TEXT_MAX_BYTES,
    JobProvider,
    JobStatus,
    MediaProcessingJob,
)

ZIP_FIGURES = ("zipBundles", "assetsZipped", "zipSizeBytes", "unzippedSizeBytes")
SUCCESS_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.PARTIAL_SUCCESS})


def format_last_error(
    *,
    code: str | None,
    message: str | None,
    failure_reason: str | None = None,
    meta: Any = None,
) -> str:
    """``code=X | message | failureReason | meta={...}``, leaving out the empty parts."""
    parts = [f"code={code}" if code else None, message or None, failure_reason or None]
    if meta not in (None, {}, []):
        parts.append("meta=" + json.dumps(meta, sort_keys=True, default=str))
    return " | ".join(p for p in parts if p)


def truncate_text(text: str, limit: int = TEXT_MAX_BYTES) -> str:
    """Fit ``text`` into a TEXT column (bytes, utf-8), keeping its end: the newest lines."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[-limit:].decode(errors="ignore")


def now_seconds() -> datetime:
    """Now, to the second: started_at/completed_at are TIMESTAMP columns (no fractions), so
    the value in memory matches the value stored on every database."""
    return timezone.now().replace(microsecond=0)


def _lock(job: MediaProcessingJob) -> MediaProcessingJob:
    return MediaProcessingJob.objects.select_for_update().get(pk=job.pk)


@transaction.atomic
def job_start(
    *,
    listing_identity_id: int,
    provider: str = JobProvider.STEP_FUNCTIONS,
    retry_count: int = 0,
) -> MediaProcessingJob:
    """Create a PENDING job; dispatching it to an engine is ``services.dispatch``'s business."""
    job = MediaProcessingJob(
        listing_identity_id=listing_identity_id,
        provider=provider,
        status=JobStatus.PENDING,
        retry_count=retry_count,
        created_at=timezone.now(),
    )
    job.full_clean()
    job.save()
    return job


@transaction.atomic
def job_mark_running(
    *,
    job: MediaProcessingJob,
    external_id: str | None = None,
    started_at: datetime | None = None,
) -> MediaProcessingJob:
    """PENDING -> RUNNING; fills external_id/started_at only when empty. Idempotent."""
    job = _lock(job)
    if job.status in TERMINAL_JOB_STATUSES:
        raise JobStateError(f"job {job.pk} is {job.status}; a terminal job does not run again")
    fields = []
    if job.status != JobStatus.RUNNING:
        job.status = JobStatus.RUNNING
        fields.append("status")
    if external_id and not job.external_id:
        job.external_id = external_id
        fields.append("external_id")
    if job.started_at is None:
        job.started_at = started_at or now_seconds()
        fields.append("started_at")
    if fields:
        job.save(update_fields=fields)
    return job


def _merge_zip_figures(job: MediaProcessingJob, figures: dict[str, Any]) -> bool:
    kept = {k: figures[k] for k in ZIP_FIGURES if k in figures}
    if not kept:
        return False
    payload = dict(job.payload) if isinstance(job.payload, dict) else {}
    payload.update(kept)
    job.payload = payload
    return True


@transaction.atomic
def job_apply_zip_figures(
    *, job: MediaProcessingJob, figures: dict[str, Any]
) -> MediaProcessingJob:
    """Keep zipBundles, assetsZipped, zipSizeBytes, unzippedSizeBytes in ``payload``."""
    job = _lock(job)
    if _merge_zip_figures(job, figures):
        job.save(update_fields=["payload"])
    return job


@transaction.atomic
def job_append_error(
    *,
    job: MediaProcessingJob,
    code: str | None,
    message: str | None,
    failure_reason: str | None = None,
    meta: Any = None,
) -> MediaProcessingJob:
    """Add an error line to ``last_error`` (newest last; the oldest fall off at 64 KiB)."""
    job = _lock(job)
    line = format_last_error(code=code, message=message, failure_reason=failure_reason, meta=meta)
    if line:
        job.last_error = truncate_text(f"{job.last_error}\n{line}" if job.last_error else line)
        job.save(update_fields=["last_error"])
    return job


def job_complete(
    *,
    job: MediaProcessingJob,
    status: str,
    error_line: str | None = None,
    payload: dict[str, Any] | None = None,
    callback_body: str | None = None,
    completed_at: datetime | None = None,
    allow_late_success: bool = False,
    locked: bool = False,
) -> MediaProcessingJob:
    """Move a job to a terminal status.

    A job already in that same status is left as it is (replays are harmless). A failure never
    replaces a success (JobStateError). A success replaces a failure only with
    ``allow_late_success`` - the callback receiver's case of a job the reconciler gave up on.
    ``locked``: the caller selected ``job`` FOR UPDATE in this transaction (the callback
    receiver), so it is not read again and no savepoint is opened (two round trips of
    the receiver's eleven). Only the columns it sets are written.
    """
    if status not in TERMINAL_JOB_STATUSES:
        raise JobStateError(f"{status} is not a terminal status")
    if not locked:
        with transaction.atomic():
            return job_complete(
                job=_lock(job),
                status=status,
                error_line=error_line,
                payload=payload,
                callback_body=callback_body,
                completed_at=completed_at,
                allow_late_success=allow_late_success,
                locked=True,
            )
    if job.status in TERMINAL_JOB_STATUSES:
        if job.status == status:
            return job
        if job.status in SUCCESS_STATUSES:
            raise JobStateError(f"job {job.pk} already {job.status}; {status} does not replace it")
        if not (status in SUCCESS_STATUSES and allow_late_success):
            raise JobStateError(f"job {job.pk} already {job.status}")
    job.status = status
    job.completed_at = completed_at or now_seconds()
    fields = ["status", "completed_at"]
    # started_at stays empty for a job that never started (failed at dispatch, marked failed
    # while PENDING): the page says "never started" instead of a made-up time (the Go
    # backend's MarkCompleted leaves it alone too).
    if error_line:
        job.last_error = truncate_text(error_line)
        fields.append("last_error")
    if payload:
        merged = dict(job.payload) if isinstance(job.payload, dict) else {}
        merged.update(payload)
        job.payload = merged
        fields.append("payload")
    if callback_body is not None:
        job.callback_body = callback_body
        fields.append("callback_body")
    job.save(update_fields=fields)
    return job
