"""Housekeeping (docs/contract.md §8): the reconciler and the cleaner.

Celery beat runs both (``media_jobs.tasks``), the management commands ``reconcile_stuck_jobs``
and ``clean_old_jobs`` call the same functions.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from ..errorcodes import RECONCILER_TIMEOUT
from ..exceptions import ApplicationError
from ..models import MediaProcessingJob
from ..selectors.jobs import job_list_cleanable, stale_job_filter
from .failures import job_mark_failed

logger = logging.getLogger("toq.media.housekeeping")

RECONCILER_CODE = RECONCILER_TIMEOUT
RECONCILER_ACTOR = "reconciler"


def go_duration(seconds: int) -> str:
    """A duration as the Go backend prints it (``time.Duration.String``): 1h0m0s, 5m0s,
    45s - so last_error reads the same whichever system wrote it."""
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def reconciler_reason(timeout_seconds: int) -> str:
    return f"reconciler marked failed after {go_duration(timeout_seconds)} without callback"


@transaction.atomic
def _reconcile_one(job_id: int, cutoff: datetime, reason: str) -> bool:
    """Fail one job if it is still stale once locked (it may have finished meanwhile)."""
    job = (
        MediaProcessingJob.objects.select_for_update()
        .filter(stale_job_filter(cutoff), pk=job_id)
        .first()
    )
    if job is None:
        return False
    job_mark_failed(job=job, reason=reason, actor=RECONCILER_ACTOR, code=RECONCILER_CODE)
    return True


def jobs_reconcile(
    *, timeout_seconds: int, limit: int | None = None, dry_run: bool = False
) -> list[int]:
    """Jobs RUNNING or PENDING for longer than ``timeout_seconds`` become FAILED with
    ``code=RECONCILER_TIMEOUT | reconciler marked failed after <timeout> without callback``,
    and their PROCESSING assets FAILED. One transaction per job; returns the ids failed (or,
    with ``dry_run``, the ids that would be)."""
    if timeout_seconds <= 0:
        raise ApplicationError(f"timeout_seconds must be positive, got {timeout_seconds}")
    if limit is not None and limit < 0:
        raise ApplicationError(f"limit must not be negative, got {limit}")
    cutoff = timezone.now() - timedelta(seconds=timeout_seconds)
    candidates = MediaProcessingJob.objects.filter(stale_job_filter(cutoff)).order_by("id")
    ids = list(
        candidates.values_list("id", flat=True)[:limit]
        if limit is not None
        else candidates.values_list("id", flat=True)
    )
    if dry_run:
        return ids
    reason = reconciler_reason(timeout_seconds)
    failed = [job_id for job_id in ids if _reconcile_one(job_id, cutoff, reason)]
    if failed:
        logger.warning(
            "reconciler failed stuck jobs",
            extra={"job_ids": failed[:100], "count": len(failed), "timeout_s": timeout_seconds},
        )
    return failed


def jobs_clean(
    *,
    completed_before: datetime,
    limit: int = 5000,
    batch_size: int = 500,
    dry_run: bool = False,
) -> int:
    """Delete terminal jobs completed before ``completed_before``, oldest first, at most
    ``limit``, in batches of ``batch_size`` - one transaction per batch, so a long clean
    never holds locks for long. Their events and callback deliveries go with them. Returns
    how many jobs were deleted (or would be, with ``dry_run``)."""
    if limit < 0:
        raise ApplicationError(f"limit must not be negative, got {limit}")
    if batch_size < 1:
        raise ApplicationError(f"batch_size must be at least 1, got {batch_size}")
    old_jobs = job_list_cleanable(completed_before=completed_before)
    if dry_run:
        return len(old_jobs.values_list("id", flat=True)[:limit])
    deleted = 0
    while deleted < limit:
        with transaction.atomic():
            ids = list(old_jobs.values_list("id", flat=True)[: min(batch_size, limit - deleted)])
            if not ids:
                break
            # The job's events and deliveries cascade (Django deletes them first).
            MediaProcessingJob.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
    if deleted:
        logger.info(
            "cleaner deleted old jobs",
            extra={"count": deleted, "completed_before": completed_before.isoformat()},
        )
    return deleted
