"""Reads of a job's dispatch record: what the portal started it with, on which engine.

The record is the job's ``dispatch`` event (``services.dispatch`` writes it): the Celery tasks
read their input from it (tasks take ids), the callback receiver and the reconciler the
assets the job took, the admin and the API what a job was started with.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import NotFoundError
from ..models import STEP_DISPATCH, MediaJobEvent, MediaProcessingJob


def dispatch_detail(*, job: MediaProcessingJob) -> dict[str, Any] | None:
    """What the job's dispatch recorded (engine, workflowId/executionArn, assetIds, input),
    or None for a job started elsewhere (by the backend, or before the portal)."""
    event = (
        MediaJobEvent.objects.filter(job_id=job.pk, step=STEP_DISPATCH)
        .order_by("-id")
        .only("detail")
        .first()
    )
    if event is None or not isinstance(event.detail, dict):
        return None
    return event.detail


def workflow_input(*, job: MediaProcessingJob) -> dict[str, Any]:
    """The input a job was started with (docs/contract.md §4/§5 shape)."""
    detail = dispatch_detail(job=job) or {}
    started_with = detail.get("input")
    if not isinstance(started_with, dict):
        raise NotFoundError(f"job {job.pk} has no dispatch record; it was not started here")
    return started_with


def job_asset_ids(*, job: MediaProcessingJob) -> list[int] | None:
    """The ids of the assets the job took when it was dispatched here, or None when the job
    was started elsewhere."""
    ids = (dispatch_detail(job=job) or {}).get("assetIds")
    return [int(i) for i in ids] if isinstance(ids, list) else None


def workflow_id_of(*, job: MediaProcessingJob) -> str:
    """The Celery workflow id chosen at dispatch (also the job's external_id once running)."""
    detail = dispatch_detail(job=job) or {}
    return str(detail.get("workflowId") or job.external_id or f"celery-{job.pk}")
