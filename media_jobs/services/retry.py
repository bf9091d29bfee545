"""Operator actions on jobs: retry, mark failed, reprocess assets.

The admin's actions and the commands call these; each is one transaction and leaves an
event on the job(s) it touched, with the actor. A retry never changes the old job (it stays
as history, docs/contract.md §3): it creates a new one with ``retry_count + 1``.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils.translation import gettext

from ..errorcodes import MARKED_FAILED
from ..exceptions import ApplicationError, ConflictError, JobStateError, NotFoundError
from ..models import (
    ACTIVE_JOB_STATUSES,
    STEP_REPROCESS,
    STEP_RETRY,
    AssetStatus,
    EventKind,
    JobProvider,
    MediaAsset,
    MediaProcessingJob,
)
from ..selectors.dispatch import dispatch_detail
from .dispatch import (
    OUTPUT_ASSET_TYPES,
    finalization_job_create,
    job_after_commit,
    listing_finalization_blockers,
    pipeline_engine,
    processing_job_create,
)
from .events import event_record

logger = logging.getLogger("toq.media.retry")

KIND_PROCESSING = "processing"
KIND_FINALIZATION = "finalization"
MARKED_FAILED_CODE = MARKED_FAILED


@dataclass(frozen=True)
class PlannedAsset:
    id: int
    asset_type: str
    sequence: int
    status: str
    raw_key: str


@dataclass(frozen=True)
class RetryPlan:
    """What a retry of ``job_id`` will do; ``allowed`` False with ``blocked_reason`` when it
    cannot run now (the admin shows the reason instead of a confirm button)."""

    job_id: int
    kind: str  # "processing" (the listing's assets that are not PROCESSED) or "finalization"
    listing_identity_id: int
    new_retry_count: int
    engine: str
    assets: list[PlannedAsset] = field(default_factory=list)
    allowed: bool = True
    blocked_reason: str = ""

    @property
    def asset_ids(self) -> list[int]:
        return [a.id for a in self.assets]

    @property
    def summary(self) -> str:
        if not self.allowed:
            return gettext("job #%(job)s cannot be retried: %(reason)s") % {
                "job": self.job_id,
                "reason": self.blocked_reason,
            }
        if self.kind == KIND_FINALIZATION:
            return (
                gettext(
                    "a new finalization job re-creates the ZIP of listing %(listing)s from its "
                    "%(assets)s assets (retry #%(retry)s, engine %(engine)s)"
                )
                % self._figures()
            )
        return (
            gettext(
                "a new processing job for the %(assets)s assets of listing %(listing)s that are "
                "not PROCESSED (retry #%(retry)s, engine %(engine)s)"
            )
            % self._figures()
        )

    def _figures(self) -> dict[str, Any]:
        return {
            "listing": self.listing_identity_id,
            "assets": len(self.assets),
            "retry": self.new_retry_count,
            "engine": self.engine,
        }


def _planned(asset: MediaAsset) -> PlannedAsset:
    return PlannedAsset(
        id=asset.pk,
        asset_type=asset.asset_type,
        sequence=asset.sequence,
        status=asset.status,
        raw_key=asset.s3_key_raw or "",
    )


def _active_processing_job(listing_identity_id: int) -> int | None:
    """The newest processing job of the listing still PENDING or RUNNING (a job being
    retried is terminal, so it is never its own blocker)."""
    jobs = MediaProcessingJob.objects.filter(
        listing_identity_id=listing_identity_id,
        provider=JobProvider.STEP_FUNCTIONS,
        status__in=ACTIVE_JOB_STATUSES,
    )
    return jobs.order_by("-id").values_list("id", flat=True).first()


def retry_plan(*, job: MediaProcessingJob) -> RetryPlan:
    """Describe exactly what ``job_retry_and_dispatch`` would do for this job, now."""
    kind = KIND_FINALIZATION if job.is_finalization else KIND_PROCESSING
    plan: dict[str, Any] = {
        "job_id": job.pk,
        "kind": kind,
        "listing_identity_id": job.listing_identity_id,
        "new_retry_count": (job.retry_count or 0) + 1,
        "engine": pipeline_engine(),
    }
    if not job.is_terminal:
        return RetryPlan(
            **plan,
            allowed=False,
            blocked_reason=gettext(
                "it is %(status)s; only a finished job can be retried (mark it failed first "
                "if it is stuck)"
            )
            % {"status": job.status},
        )
    listing_assets = MediaAsset.objects.filter(listing_identity_id=job.listing_identity_id).exclude(
        asset_type__in=OUTPUT_ASSET_TYPES
    )
    if kind == KIND_FINALIZATION:
        # (listing, type, sequence) is unique: the order is total
        assets = [_planned(a) for a in listing_assets.order_by("asset_type", "sequence")]
        blockers = listing_finalization_blockers(listing_identity_id=job.listing_identity_id)
        if not assets:
            return RetryPlan(
                **plan, allowed=False, blocked_reason=gettext("the listing has no assets")
            )
        if blockers:
            return RetryPlan(
                **plan,
                assets=assets,
                allowed=False,
                blocked_reason=gettext(
                    "%(count)s assets of the listing are not PROCESSED with raw and processed "
                    "keys; retry or reprocess them first"
                )
                % {"count": len(blockers)},
            )
        return RetryPlan(**plan, assets=assets)
    assets = [
        _planned(a)
        for a in listing_assets.exclude(status=AssetStatus.PROCESSED)
        .exclude(s3_key_raw__isnull=True)
        .exclude(s3_key_raw="")
        .order_by("asset_type", "sequence")
    ]
    if not assets:
        return RetryPlan(
            **plan,
            allowed=False,
            blocked_reason=gettext(
                "every asset of the listing is already PROCESSED; reprocess chosen assets "
                "instead to redo them"
            ),
        )
    active = _active_processing_job(job.listing_identity_id)
    if active is not None:
        return RetryPlan(
            **plan,
            assets=assets,
            allowed=False,
            blocked_reason=gettext(
                "job #%(job)s is still running for this listing; wait for it or mark it failed"
            )
            % {"job": active},
        )
    return RetryPlan(**plan, assets=assets)


def _continued_traceparent(job: MediaProcessingJob) -> str | None:
    """The old job's trace id with a new span: a retry belongs to the same trace."""
    detail = dispatch_detail(job=job) or {}
    old = (detail.get("input") or {}).get("traceparent")
    if isinstance(old, str) and old.count("-") == 3:
        version, trace_id, _, flags = old.split("-")
        return f"{version}-{trace_id}-{secrets.token_hex(8)}-{flags}"
    return None


@transaction.atomic
def _retry(job: MediaProcessingJob, actor: str | None) -> MediaProcessingJob:
    job = MediaProcessingJob.objects.select_for_update().get(pk=job.pk)
    plan = retry_plan(job=job)
    if not plan.allowed:
        raise JobStateError(plan.summary)
    traceparent = _continued_traceparent(job)
    if plan.kind == KIND_FINALIZATION:
        new_job = finalization_job_create(
            listing_identity_id=job.listing_identity_id,
            traceparent=traceparent,
            retry_count=plan.new_retry_count,
        )
    else:
        new_job = processing_job_create(
            listing_identity_id=job.listing_identity_id,
            traceparent=traceparent,
            asset_ids=plan.asset_ids,
            retry_count=plan.new_retry_count,
        )
    event_record(
        job=job,
        step=STEP_RETRY,
        kind=EventKind.RETRIED,
        detail={
            "message": f"retried as #{new_job.pk}",
            "newJobId": new_job.pk,
            "actor": actor,
            "assetIds": plan.asset_ids,
        },
    )
    event_record(
        job=new_job,
        step=STEP_RETRY,
        kind=EventKind.NOTE,
        detail={"message": f"retry of #{job.pk}", "retryOf": job.pk, "actor": actor},
    )
    logger.info(
        "job retried",
        extra={"job_id": job.pk, "new_job_id": new_job.pk, "actor": actor, "kind": plan.kind},
    )
    return new_job


def job_retry_and_dispatch(
    *, job: MediaProcessingJob, actor: str | None = None
) -> MediaProcessingJob:
    """Retry a finished job as a new, dispatched job (``retry_count + 1``).

    Processing: the listing's assets that are not PROCESSED; finalization: the ZIP again.
    The old job gets a "retried as #N" event. Raises JobStateError (409) with the reason
    when ``retry_plan`` says it cannot run.
    """
    return job_after_commit(_retry(job, actor))


@transaction.atomic
def _reprocess(asset_ids: list[int], actor: str | None) -> MediaProcessingJob:
    wanted = sorted({int(a) for a in asset_ids})
    if not wanted:
        raise ApplicationError(gettext("choose at least one asset to reprocess"))
    assets = list(MediaAsset.objects.select_for_update().filter(pk__in=wanted).order_by("id"))
    missing = sorted(set(wanted) - {a.pk for a in assets})
    if missing:
        raise NotFoundError(gettext("assets %(ids)s do not exist") % {"ids": missing})
    listings = sorted({a.listing_identity_id for a in assets})
    if len(listings) > 1:
        raise ApplicationError(
            gettext("the assets belong to listings %(ids)s; reprocess one listing at a time")
            % {"ids": listings}
        )
    listing_identity_id = listings[0]
    active = _active_processing_job(listing_identity_id)
    if active is not None:
        raise ConflictError(
            gettext(
                "job #%(job)s is still running for listing %(listing)s; wait for it or mark it "
                "failed before reprocessing"
            )
            % {"job": active, "listing": listing_identity_id}
        )
    job = processing_job_create(
        listing_identity_id=listing_identity_id,
        traceparent=None,
        asset_ids=wanted,
        retry_count=0,
    )
    event_record(
        job=job,
        step=STEP_REPROCESS,
        kind=EventKind.NOTE,
        detail={"message": f"reprocess of assets {wanted}", "assetIds": wanted, "actor": actor},
    )
    return job


def assets_reprocess(*, asset_ids: list[int], actor: str | None = None) -> MediaProcessingJob:
    """Process exactly these assets again (any status but an active job's) as a new job.

    Derivatives that already exist for the same raw object (same etag) are kept, not
    rendered again; the assets' state is recomputed from them.
    """
    return job_after_commit(_reprocess(asset_ids, actor))
