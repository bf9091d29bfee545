"""The tasks beat runs (docs/contract.md §8 and the engine's own safety nets): callback
delivery and the outbox's pass, the watchdog, the reconciler and the cleaner. The operations
commands' ``--enqueue`` queues the reconciler and the cleaner with their own parameters."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from toqportal.celery import app

from ..exceptions import ApplicationError
from ..models import MediaProcessingJob
from ..pipeline.logs import log_context
from ..services import queueing
from ..services.housekeeping import jobs_clean, jobs_reconcile
from ..services.outbox import callback_deliver, outbox_drain, outbox_send
from ..services.watchdog import jobs_watch
from .finalization import run_finalization
from .policies import TIME_LIMITS, ResilientTask
from .processing import consolidate_processing, processing_part, run_processing

logger = logging.getLogger("toq.media.tasks")


@app.task(
    base=ResilientTask,
    name=queueing.DELIVER_CALLBACK,
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
