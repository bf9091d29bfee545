"""The watchdog: notices a Celery job whose work stopped moving and queues only what is
missing, minutes after the loss instead of at the reconciler's timeout (1 h).

The rule (docs/workers.md "The watchdog"):

- Candidates are PENDING/RUNNING jobs that this portal dispatched to the Celery engine.
- A job is *stalled* when nothing of it moved for WATCHDOG_STALL_SECONDS: no event in its
  timeline and no heartbeat. A running step writes a heartbeat every
  WATCHDOG_HEARTBEAT_SECONDS however long it runs (a 15-minute transcode, a 3-hour ZIP),
  so a stalled job has no live step: its messages were lost (Redis restarted without
  persistence; a worker killed while the broker holds its message for the visibility
  timeout; a task that died on a database outage longer than its retries).
- For a stalled job it queues what the workflow still lacks and nothing else (finished
  work is never redone: parts with a result are skipped, photos and videos skip outputs
  whose source etag matches): no validation -> ``run_processing``; parts without a result
  -> those ``processing_part`` tasks; every part done -> ``consolidate_processing``; a
  finalization -> ``run_finalization`` (which reuses a ZIP already recorded).
- Each time it records a ``watchdog`` note. When nothing happens after it (no worker is
  consuming), it waits twice as long before queueing the same work again (at most 32
  stall periods), so a fleet that is down does not fill the queue.
- A queued copy that finds the step alive under another copy stands down
  (``services.attempts``): a part that was only waiting in a busy queue is not run twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Max
from django.utils import timezone

from ..models import ACTIVE_JOB_STATUSES, EventKind, MediaJobEvent, MediaProcessingJob
from ..pipeline.logs import log_context
from .attempts import last_seen
from .dispatch import ENGINE_CELERY, dispatch_detail
from .events import STEP_CONSOLIDATE, STEP_VALIDATE, STEP_WATCHDOG, STEP_ZIP, event_record
from .workflow import step_result, workflow_parts_done

logger = logging.getLogger("toq.media.watchdog")

# Backoff of repeated requeues while nothing consumes them: stall x 2**n, n at most this.
MAX_BACKOFF_DOUBLINGS = 5

Enqueue = Callable[[str, list[tuple[Any, ...]]], None]


@dataclass(frozen=True)
class StallPlan:
    """What the watchdog queues again for one stalled job."""

    job_id: int
    workflow_id: str
    idle_seconds: float
    task: str  # the name of the function in media_jobs.tasks
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def _last_work(job: MediaProcessingJob) -> datetime:
    """The last moment the job's work moved: any event but the watchdog's own notes, a
    running step's heartbeat, its start or creation."""
    moments = [job.created_at, *([job.started_at] if job.started_at else [])]
    events = MediaJobEvent.objects.filter(job_id=job.pk).exclude(step=STEP_WATCHDOG)
    newest = events.aggregate(newest=Max("at"))["newest"]
    if newest:
        moments.append(newest)
    heartbeats = events.filter(kind=EventKind.STARTED, detail__heartbeatAt__isnull=False)
    for at, heartbeat in heartbeats.values_list("at", "detail__heartbeatAt"):
        moments.append(last_seen(at, heartbeat))
    return max(moments)


def _stalled_for(job: MediaProcessingJob, now: datetime, stall_seconds: float) -> float | None:
    """Seconds without progress when the job is due for a requeue, else None."""
    last_work = _last_work(job)
    notes = MediaJobEvent.objects.filter(job_id=job.pk, step=STEP_WATCHDOG, at__gt=last_work)
    summary = notes.aggregate(newest=Max("at"))
    count = notes.count() if summary["newest"] else 0
    since = summary["newest"] or last_work
    wait = stall_seconds * 2 ** min(count, MAX_BACKOFF_DOUBLINGS)
    if (now - since).total_seconds() < wait:
        return None
    return (now - last_work).total_seconds()


def job_stall_plan(
    *, job: MediaProcessingJob, stall_seconds: float, now: datetime | None = None
) -> StallPlan | None:
    """What to queue again for ``job``, or None when it is not a stalled Celery job."""
    dispatch = dispatch_detail(job=job) or {}
    workflow_id = dispatch.get("workflowId")
    if dispatch.get("engine") != ENGINE_CELERY or not workflow_id or job.is_terminal:
        return None
    idle = _stalled_for(job, now or timezone.now(), stall_seconds)
    if idle is None:
        return None

    def plan(task: str, calls: list[tuple[Any, ...]], missing: list[str]) -> StallPlan:
        return StallPlan(job.pk, workflow_id, round(idle, 1), task, calls, missing)

    if job.is_finalization:
        return plan("run_finalization", [(job.pk,)], [STEP_ZIP])
    validation = step_result(job.pk, STEP_VALIDATE, workflow_id)
    if validation is None:
        return plan("run_processing", [(job.pk,)], [STEP_VALIDATE])
    done = workflow_parts_done(job.pk, workflow_id)
    missing = [part for part in validation.get("parts") or [] if part not in done]
    if missing:
        return plan("processing_part", [(job.pk, part) for part in missing], missing)
    return plan("consolidate_processing", [(job.pk,)], [STEP_CONSOLIDATE])


def jobs_watch(
    *, stall_seconds: float, enqueue: Enqueue, now: datetime | None = None
) -> list[StallPlan]:
    """One watchdog pass: queue the missing work of every stalled Celery job (through
    ``enqueue(task name, [args, ...])``) and note it in the job's timeline. A job whose
    work cannot be queued (the broker is down) is tried again on the next pass."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=stall_seconds)
    candidates = MediaProcessingJob.objects.filter(
        status__in=ACTIVE_JOB_STATUSES, created_at__lt=cutoff
    ).order_by("id")
    plans = []
    for job in candidates:
        plan = job_stall_plan(job=job, stall_seconds=stall_seconds, now=now)
        if plan is None:
            continue
        with log_context(
            job_id=job.pk,
            listing_identity_id=job.listing_identity_id,
            step=STEP_WATCHDOG,
            workflow_id=plan.workflow_id,
        ):
            try:
                enqueue(plan.task, plan.calls)
            except Exception:  # noqa: BLE001 - any broker error: the next pass tries again
                logger.exception("stalled job's work could not be queued; next pass retries")
                continue
            message = (
                f"no progress for {plan.idle_seconds:.0f}s (broker or worker lost the work); "
                f"queued again: {', '.join(plan.missing[:20])}"
                + (f" and {len(plan.missing) - 20} more" if len(plan.missing) > 20 else "")
            )
            event_record(
                job=job,
                step=STEP_WATCHDOG,
                kind=EventKind.NOTE,
                detail={
                    "message": message,
                    "workflowId": plan.workflow_id,
                    "idleSeconds": plan.idle_seconds,
                    "requeued": plan.missing,
                },
            )
            logger.warning(
                "stalled job: %s", message, extra={"idle_s": plan.idle_seconds, "task": plan.task}
            )
        plans.append(plan)
    return plans
