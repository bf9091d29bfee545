"""The watchdog: notices Celery work that a broker or a worker lost and queues only that,
minutes after the loss instead of at the reconciler's timeout (1 h).

The rule (docs/workers.md "The watchdog"), for PENDING/RUNNING jobs this portal dispatched
to the Celery engine. A running step (validation, a part, the ZIP) writes a heartbeat every
WATCHDOG_HEARTBEAT_SECONDS however long it runs, so with T = WATCHDOG_STALL_SECONDS:

1. **A dead step**: its latest attempt started and never ended, and its heartbeat is older
   than T - the worker running it died (killed, out of memory, the machine gone) and the
   broker did not hand the message to another worker (Redis keeps it for the visibility
   timeout). That step alone is queued again, even while the job's other parts run.
2. **A stalled job**: nothing of it moved for T - no event, no heartbeat. Its queued
   messages were lost (Redis restarted without persistence; a worker died holding
   prefetched messages; a task gave up on a database outage). What the workflow still
   lacks is queued again: no validation -> ``run_processing``; parts without a result ->
   those ``processing_part`` tasks; every part done -> ``consolidate_processing``; a
   finalization -> ``run_finalization`` (which reuses a ZIP already recorded).

Finished work is never redone (parts with a result are skipped; photos and videos skip
outputs whose source etag matches), and a step that is alive is never run twice: a copy
queued again stands down when it finds an alive attempt of another copy
(``services.attempts``). Each requeue is a ``watchdog`` note in the job's timeline; when
nothing consumes the work after a note (no worker is running), the same work is queued
again only after twice as long (at most 32 periods), so a fleet that is down does not
fill the queue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Max
from django.utils import timezone

from ..models import (
    ACTIVE_JOB_STATUSES,
    STEP_CONSOLIDATE,
    STEP_VALIDATE,
    STEP_WATCHDOG,
    STEP_ZIP,
    EventKind,
    MediaJobEvent,
    MediaProcessingJob,
)
from ..pipeline.logs import log_context
from ..selectors.dispatch import dispatch_detail
from .attempts import ENDING_KINDS, last_seen
from .dispatch import ENGINE_CELERY
from .events import event_record
from .workflow import PART_STEPS, step_result, workflow_parts_done

logger = logging.getLogger("toq.media.watchdog")

# Backoff of repeated requeues while nothing consumes them: T x 2**n, n at most this.
MAX_BACKOFF_DOUBLINGS = 5
REASON_DEAD = "dead"
REASON_STALLED = "stalled"
WORK_STEPS = (STEP_VALIDATE, *PART_STEPS, STEP_ZIP)

Enqueue = Callable[[str, list[tuple[Any, ...]]], None]


@dataclass(frozen=True)
class StallPlan:
    """What the watchdog queues again for one job, and why."""

    job_id: int
    workflow_id: str
    reason: str  # REASON_DEAD or REASON_STALLED
    idle_seconds: float
    work: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)  # task -> args
    missing: list[str] = field(default_factory=list)  # steps and parts, for people


def _backoff_due(notes: list[datetime], now: datetime, stall_seconds: float) -> bool:
    """True when no note asked for this work yet, or the newest is old enough: the wait
    doubles with every note nothing answered."""
    if not notes:
        return True
    wait = stall_seconds * (1 << min(len(notes), MAX_BACKOFF_DOUBLINGS))
    return (now - max(notes)).total_seconds() >= wait


def _open_attempts(job: MediaProcessingJob, workflow_id: str) -> dict[str, datetime]:
    """Step or part name -> when its open attempt (started, never ended) was last seen."""
    rows = (
        MediaJobEvent.objects.filter(
            job_id=job.pk,
            step__in=WORK_STEPS,
            kind__in=(EventKind.STARTED, *ENDING_KINDS),
            detail__workflowId=workflow_id,
        )
        .order_by("id")
        .values_list("step", "kind", "at", "detail__part", "detail__heartbeatAt")
    )
    latest: dict[str, tuple[str, datetime]] = {}
    for step, kind, at, part, heartbeat in rows:
        latest[str(part or step)] = (kind, last_seen(at, heartbeat))
    return {name: seen for name, (kind, seen) in latest.items() if kind == EventKind.STARTED}


def _notes(job: MediaProcessingJob) -> list[tuple[datetime, str, list[str]]]:
    """The watchdog's earlier notes on the job: (when, reason, what it queued)."""
    rows = MediaJobEvent.objects.filter(job_id=job.pk, step=STEP_WATCHDOG).values_list(
        "at", "detail__reason", "detail__requeued"
    )
    return [(at, str(reason or REASON_STALLED), list(names or [])) for at, reason, names in rows]


def _last_work(job: MediaProcessingJob, open_attempts: dict[str, datetime]) -> datetime:
    """The last moment the job's work moved: any event but the watchdog's own notes, an
    open step's heartbeat, the job's start or creation."""
    moments = [job.created_at, *([job.started_at] if job.started_at else [])]
    newest = (
        MediaJobEvent.objects.filter(job_id=job.pk)
        .exclude(step=STEP_WATCHDOG)
        .aggregate(newest=Max("at"))["newest"]
    )
    moments += [newest] if newest else []
    moments += list(open_attempts.values())
    return max(moments)


def _missing_work(
    job: MediaProcessingJob, workflow_id: str
) -> tuple[str, list[tuple[Any, ...]], list[str]]:
    """(task, calls, names) for everything the workflow still lacks."""
    if job.is_finalization:
        return "run_finalization", [(job.pk,)], [STEP_ZIP]
    validation = step_result(job.pk, STEP_VALIDATE, workflow_id)
    if validation is None:
        return "run_processing", [(job.pk,)], [STEP_VALIDATE]
    done = workflow_parts_done(job.pk, workflow_id)
    missing = [part for part in validation.get("parts") or [] if part not in done]
    if missing:
        return "processing_part", [(job.pk, part) for part in missing], missing
    return "consolidate_processing", [(job.pk,)], [STEP_CONSOLIDATE]


def _dead_work(job: MediaProcessingJob, name: str) -> tuple[str, tuple[Any, ...]]:
    if name == STEP_VALIDATE:
        return "run_processing", (job.pk,)
    if name == STEP_ZIP:
        return "run_finalization", (job.pk,)
    return "processing_part", (job.pk, name)


def job_stall_plan(
    *, job: MediaProcessingJob, stall_seconds: float, now: datetime | None = None
) -> StallPlan | None:
    """What to queue again for ``job`` (see the module docstring), or None."""
    dispatch = dispatch_detail(job=job) or {}
    workflow_id = dispatch.get("workflowId")
    if dispatch.get("engine") != ENGINE_CELERY or not workflow_id or job.is_terminal:
        return None
    now = now or timezone.now()
    stall = timedelta(seconds=stall_seconds)
    open_attempts = _open_attempts(job, workflow_id)
    notes = _notes(job)
    last_work = _last_work(job, open_attempts)
    idle = round((now - last_work).total_seconds(), 1)

    stalled_notes = [at for at, reason, _ in notes if reason == REASON_STALLED and at > last_work]
    if now - last_work >= stall and _backoff_due(stalled_notes, now, stall_seconds):
        task, calls, missing = _missing_work(job, workflow_id)
        return StallPlan(job.pk, workflow_id, REASON_STALLED, idle, {task: calls}, missing)

    work: dict[str, list[tuple[Any, ...]]] = {}
    dead = []
    for name, seen in open_attempts.items():
        if now - seen < stall:
            continue
        asked = [at for at, _, names in notes if name in names and at > seen]
        if _backoff_due(asked, now, stall_seconds):
            task, args = _dead_work(job, name)
            work.setdefault(task, []).append(args)
            dead.append(name)
    if not dead:
        return None
    return StallPlan(job.pk, workflow_id, REASON_DEAD, idle, work, dead)


def _message(plan: StallPlan) -> str:
    names = ", ".join(plan.missing[:20])
    if len(plan.missing) > 20:
        names += f" and {len(plan.missing) - 20} more"
    if plan.reason == REASON_DEAD:
        return f"no heartbeat from {names} (its worker died); queued again"
    return (
        f"no progress for {plan.idle_seconds:.0f}s (the broker or a worker lost the work); "
        f"queued again: {names}"
    )


def jobs_watch(
    *, stall_seconds: float, enqueue: Enqueue, now: datetime | None = None
) -> list[StallPlan]:
    """One watchdog pass: queue again what every Celery job lost (through
    ``enqueue(task name, [args, ...])``) and note it in the job's timeline. A job whose
    work cannot be queued (the broker is down) is tried again on the next pass."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=stall_seconds)
    # A job created less than T ago cannot be stalled yet (the same edge as the plan's).
    candidates = MediaProcessingJob.objects.filter(
        status__in=ACTIVE_JOB_STATUSES, created_at__lte=cutoff
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
                for task, calls in plan.work.items():
                    enqueue(task, calls)
            except Exception:
                logger.exception("lost work could not be queued; the next pass retries")
                continue
            message = _message(plan)
            event_record(
                job=job,
                step=STEP_WATCHDOG,
                kind=EventKind.NOTE,
                detail={
                    "message": message,
                    "reason": plan.reason,
                    "workflowId": plan.workflow_id,
                    "idleSeconds": plan.idle_seconds,
                    "requeued": plan.missing,
                },
            )
            logger.warning(message, extra={"idle_s": plan.idle_seconds, "reason": plan.reason})
        plans.append(plan)
    return plans
