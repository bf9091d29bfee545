"""What the admin's buttons do: one service call each, plus the admin history entry.

The job page, the bulk actions and the error-group page all retry through ``retry_jobs`` so a
retry is recorded the same way wherever it was started.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from media_jobs.exceptions import ApplicationError
from media_jobs.models import CallbackDelivery, MediaAsset, MediaProcessingJob
from media_jobs.services.admin_audit import ADDITION, audit_record
from media_jobs.services.deliveries import delivery_replay
from media_jobs.services.failures import job_mark_failed
from media_jobs.services.retry import (
    RetryPlan,
    assets_reprocess,
    job_retry_and_dispatch,
    retry_plan,
)


@dataclass
class Outcome:
    """One item of an operation: what it acted on, what it produced, or why it did not."""

    source: Any
    result: Any = None
    error: str | None = None


def _actor(request: HttpRequest) -> str:
    """Who acted, as the services record it in the job's timeline."""
    return f"admin:{request.user.get_username()}"


def _user_id(request: HttpRequest) -> int:
    """The acting user's id for the history; the admin lets only signed-in staff act."""
    user_id = request.user.pk
    if user_id is None:
        raise PermissionDenied
    return user_id


def plan_for(job: MediaProcessingJob) -> tuple[RetryPlan | None, str | None]:
    """(RetryPlan, None) when the job can be retried now, else (plan or None, the reason)."""
    try:
        plan = retry_plan(job=job)
    except ApplicationError as exc:
        return None, exc.message
    return plan, None if plan.allowed else plan.blocked_reason


def retry_items(jobs: Iterable[MediaProcessingJob]) -> list[dict[str, Any]]:
    """The retry confirmation page's rows: each job with its plan and, when it cannot be
    retried now, why."""
    items = []
    for job in jobs:
        plan, problem = plan_for(job)
        items.append({"job": job, "plan": plan, "problem": problem})
    return items


def retry_jobs(*, request: HttpRequest, jobs: Iterable[MediaProcessingJob]) -> list[Outcome]:
    """Retry each job (new job, retry_count + 1, dispatched); record both in the history."""
    outcomes = []
    for job in jobs:
        try:
            new_job = job_retry_and_dispatch(job=job, actor=_actor(request))
        except ApplicationError as exc:
            outcomes.append(Outcome(job, error=exc.message))
            continue
        audit_record(
            user_id=_user_id(request), objects=[job], message=f"Retried as job #{new_job.pk}"
        )
        audit_record(
            user_id=_user_id(request),
            objects=[new_job],
            message=f"Created by retrying job #{job.pk}",
            action_flag=ADDITION,
        )
        outcomes.append(Outcome(job, new_job))
    return outcomes


def mark_failed(
    *, request: HttpRequest, jobs: Iterable[MediaProcessingJob], reason: str
) -> list[Outcome]:
    outcomes = []
    for job in jobs:
        try:
            updated = job_mark_failed(job=job, reason=reason, actor=_actor(request))
        except ApplicationError as exc:
            outcomes.append(Outcome(job, error=exc.message))
            continue
        audit_record(user_id=_user_id(request), objects=[job], message=f"Marked failed: {reason}")
        outcomes.append(Outcome(job, updated))
    return outcomes


def reprocess_assets(*, request: HttpRequest, assets: Sequence[MediaAsset]) -> list[Outcome]:
    """One reprocessing job per listing of the selected assets."""
    by_listing: dict[int, list[MediaAsset]] = {}
    for asset in assets:
        by_listing.setdefault(asset.listing_identity_id, []).append(asset)
    outcomes = []
    for listing_id, group in sorted(by_listing.items()):
        try:
            job = assets_reprocess(asset_ids=[asset.pk for asset in group], actor=_actor(request))
        except ApplicationError as exc:
            outcomes.append(Outcome(listing_id, error=exc.message))
            continue
        audit_record(
            user_id=_user_id(request), objects=group, message=f"Reprocessed in job #{job.pk}"
        )
        names = ", ".join(f"#{asset.pk}" for asset in group)
        audit_record(
            user_id=_user_id(request),
            objects=[job],
            message=f"Created to reprocess assets {names}",
            action_flag=ADDITION,
        )
        outcomes.append(Outcome(listing_id, job))
    return outcomes


def replay_delivery(*, request: HttpRequest, delivery: CallbackDelivery) -> Outcome:
    try:
        replay = delivery_replay(delivery=delivery)
    except ApplicationError as exc:
        return Outcome(delivery, error=exc.message)
    status = replay.response_status if replay.response_status is not None else replay.error
    audit_record(
        user_id=_user_id(request),
        objects=[delivery],
        message=f"Replayed as delivery #{replay.pk} (response {status})",
    )
    audit_record(
        user_id=_user_id(request),
        objects=[replay],
        message=f"Replay of delivery #{delivery.pk}",
        action_flag=ADDITION,
    )
    return Outcome(delivery, replay)


__all__ = [
    "Outcome",
    "mark_failed",
    "plan_for",
    "replay_delivery",
    "reprocess_assets",
    "retry_jobs",
]
