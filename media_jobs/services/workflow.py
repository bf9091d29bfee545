"""The fan-in state of a Celery workflow, kept in the job's timeline.

Every step stores its result in a ``succeeded`` event (``detail["result"]``, with the
workflow id and, for a parallel part, the part name). The tasks, the consolidation and the
watchdog read the workflow's progress from here; recording a result is idempotent, so a
write repeated after a lost connection (or by a duplicate task) leaves one result.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..models import (
    STEP_POSTERS,
    STEP_THUMBNAILS,
    STEP_TRANSCODE,
    EventKind,
    MediaJobEvent,
    MediaProcessingJob,
)
from .events import event_record

PART_STEPS = (STEP_THUMBNAILS, STEP_POSTERS, STEP_TRANSCODE)


def step_results(job_id: int, steps: Iterable[str], workflow_id: str) -> list[dict[str, Any]]:
    """The succeeded-event details of these steps in this workflow, oldest first."""
    events = MediaJobEvent.objects.filter(
        job_id=job_id, step__in=list(steps), kind=EventKind.SUCCEEDED
    ).order_by("id")
    return [
        e.detail
        for e in events.only("detail")
        if isinstance(e.detail, dict) and e.detail.get("workflowId") == workflow_id
    ]


def step_result(job_id: int, step: str, workflow_id: str) -> dict[str, Any] | None:
    """The latest succeeded-event detail of ``step`` in this workflow (None: not done)."""
    found = step_results(job_id, [step], workflow_id)
    return found[-1] if found else None


def workflow_part_results(job_id: int, workflow_id: str) -> dict[str, Any]:
    """part name -> its latest result (every result loaded: the consolidation's read)."""
    return {d["part"]: d.get("result") for d in step_results(job_id, PART_STEPS, workflow_id)}


def workflow_parts_done(job_id: int, workflow_id: str) -> set[str]:
    """The names of the parts with a result, without loading the results: every part asks
    this once, so a listing of thousands of photos must not read every result each time."""
    names = (
        MediaJobEvent.objects.filter(
            job_id=job_id,
            step__in=PART_STEPS,
            kind=EventKind.SUCCEEDED,
            detail__workflowId=workflow_id,
        )
        .values_list("detail__part", flat=True)
        .distinct()
    )
    return {str(name) for name in names}


def step_result_record(
    *,
    job: MediaProcessingJob,
    step: str,
    workflow_id: str,
    detail: dict[str, Any],
    duration_ms: float | None = None,
) -> MediaJobEvent:
    """Record a step's (or part's, ``detail["part"]``) result once.

    When the workflow already has a result for it - the first try of this write committed
    before its connection died, or a duplicate task got there first - that one is kept:
    the readers see one result per step and part whatever the retries did."""
    existing = MediaJobEvent.objects.filter(
        job_id=job.pk, step=step, kind=EventKind.SUCCEEDED, detail__workflowId=workflow_id
    )
    if "part" in detail:
        existing = existing.filter(detail__part=detail["part"])
    found = existing.order_by("id").only("id").first()
    if found is not None:
        return found
    return event_record(
        job=job,
        step=step,
        kind=EventKind.SUCCEEDED,
        duration_ms=duration_ms,
        detail={**detail, "workflowId": workflow_id},
    )
