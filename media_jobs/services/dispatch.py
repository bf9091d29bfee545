"""Starting jobs (docs/contract.md §7): pick the listing's assets, create the job, hand it to an engine.

One service per kind of job, whichever engine runs it (``settings.MEDIA_PIPELINE_ENGINE``):

- ``celery`` (default): the job is queued on the broker once the transaction commits (the
  worker must see the rows). The workflow id ``celery-<job>-<random>`` becomes the job's
  ``external_id`` when its first step starts (finalization: right away, docs/contract.md §7).
- ``stepfunctions``: StartExecution on the configured state machine inside the transaction;
  ``external_id`` = the execution ARN. When AWS does not answer, nothing is created and the
  caller gets a 503 that says so.

The workflow input (docs/contract.md §4/§5 ``{"jobId", "listingIdentityId", "assets", "traceparent"}``)
is kept in the job's ``dispatch`` event: the Celery tasks read it from there (tasks take
ids), and the admin shows what a job was started with.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, transaction

from .. import stepfunctions
from ..errorcodes import DISPATCH_FAILED
from ..exceptions import ApplicationError, ConflictError, NotFoundError
from ..models import (
    STEP_DISPATCH,
    AssetStatus,
    AssetType,
    EventKind,
    JobProvider,
    MediaAsset,
    MediaProcessingJob,
)
from ..pipeline.logs import log_context
from ..selectors.dispatch import dispatch_detail, job_asset_ids, workflow_id_of, workflow_input
from . import queueing
from .events import event_record
from .failures import job_mark_failed
from .jobs import job_mark_running, job_start

# Reads of a job's dispatch record live in selectors.dispatch; admin/jobs.py still imports
# job_asset_ids from here.
__all__ = ["dispatch_detail", "job_asset_ids", "workflow_id_of", "workflow_input"]

logger = logging.getLogger("toq.media.dispatch")

# last_error code of a job that could not be started (the broker, or its first task).
DISPATCH_FAILED_CODE = DISPATCH_FAILED
ENGINE_CELERY = "celery"
ENGINE_STEPFUNCTIONS = "stepfunctions"
# Assets a processing job picks up by default.
PROCESSABLE_STATUSES = (AssetStatus.PENDING_UPLOAD, AssetStatus.FAILED)
# The listing ZIP's own row (when the backend keeps one) is an output, never an input.
OUTPUT_ASSET_TYPES = (AssetType.ZIP,)
# How many not-ready assets a 409 message names (the JSON lists them all).
MAX_NAMED_ASSETS = 10

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")


class DispatchUnavailable(ApplicationError):
    """The engine could not be reached; nothing was started."""

    status_code = 503


def traceparent_or_new(traceparent: str | None) -> str:
    """A valid W3C traceparent: the given one, or a fresh one when it is absent or malformed
    (W3C: a receiver restarts the trace rather than propagating garbage)."""
    if isinstance(traceparent, str):
        candidate = traceparent.strip().lower()
        match = _TRACEPARENT.fullmatch(candidate)
        if match and set(match.group(1)) != {"0"} and set(match.group(2)) != {"0"}:
            return candidate
        if candidate:
            logger.warning("malformed traceparent replaced", extra={"given": traceparent[:100]})
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def _asset_refs(assets: Iterable[MediaAsset]) -> list[dict[str, str]]:
    """The workflow input's assets, by raw key. Every asset here has one: processing
    selects on it or refuses an asset without it, and finalization counts its absence as
    a blocker."""
    return [{"key": str(asset.s3_key_raw), "type": asset.asset_type} for asset in assets]


def pipeline_engine() -> str:
    """The engine that runs new jobs; an unknown setting (the settings refuse one at start,
    a test may still set it) falls back to Celery."""
    engine = settings.MEDIA_PIPELINE_ENGINE
    return engine if engine in (ENGINE_CELERY, ENGINE_STEPFUNCTIONS) else ENGINE_CELERY


def _dispatch(
    *, job: MediaProcessingJob, input: dict[str, Any], mark_running: bool, detail: dict[str, Any]
) -> MediaProcessingJob:
    """Hand the job to the configured engine (inside the caller's transaction)."""
    engine = pipeline_engine()
    if engine == ENGINE_STEPFUNCTIONS:
        arn = (
            settings.FINALIZATION_STATE_MACHINE_ARN
            if job.is_finalization
            else settings.PROCESSING_STATE_MACHINE_ARN
        )
        name = f"job-{job.pk}-r{job.retry_count or 0}-{secrets.token_hex(4)}"
        try:
            started = stepfunctions.start_execution(state_machine_arn=arn, name=name, input=input)
        except stepfunctions.AwsUnavailable as exc:
            raise DispatchUnavailable(
                f"could not start the Step Functions execution, nothing was changed: {exc}"
            ) from exc
        execution_arn = started["executionArn"]
        event_record(
            job=job,
            step=STEP_DISPATCH,
            kind=EventKind.STARTED,
            detail={**detail, "engine": engine, "executionArn": execution_arn, "input": input},
        )
        # The execution runs from now on: RUNNING with its ARN (docs/contract.md §7).
        return job_mark_running(job=job, external_id=execution_arn)

    workflow_id = f"celery-{job.pk}-{secrets.token_hex(6)}"
    event_record(
        job=job,
        step=STEP_DISPATCH,
        kind=EventKind.STARTED,
        detail={**detail, "engine": engine, "workflowId": workflow_id, "input": input},
    )
    if mark_running:
        job = job_mark_running(job=job, external_id=workflow_id)
    job_id = job.pk
    first_task = queueing.RUN_FINALIZATION if job.is_finalization else queueing.RUN_PROCESSING
    transaction.on_commit(lambda: _enqueue_or_fail(first_task, job_id))
    return job


def _enqueue_or_fail(task_name: str, job_id: int) -> None:
    """Queue the job's first task; when the broker refuses, the job fails right away with
    the reason instead of waiting an hour for the reconciler."""
    try:
        queueing.enqueue(task_name, job_id)
    except Exception as exc:
        logger.exception("could not queue job", extra={"job_id": job_id})
        job_dispatch_failed(
            job_id=job_id,
            reason=f"could not queue the job on the Celery broker: {type(exc).__name__}: {exc}",
        )


def job_dispatch_failed(
    *, job_id: int, reason: str, attempts: int = 5, pause_s: float = 0.5
) -> MediaProcessingJob | None:
    """The job could not be started - the broker refused it, or its first task could not run
    - so it becomes FAILED with ``code=DISPATCH_FAILED`` now, never a silent PENDING that
    only the reconciler would notice an hour later.

    A database error while recording that (a locked SQLite file, a dropped connection) is
    retried ``attempts`` times with a growing pause; returns the failed job, or None when it
    is gone, already finished, or the database stayed unreachable (logged; the reconciler is
    then the last resort).
    """
    for attempt in range(1, attempts + 1):
        try:
            with transaction.atomic():
                job = MediaProcessingJob.objects.select_for_update().filter(pk=job_id).first()
                if job is None or job.is_terminal:
                    return None
                return job_mark_failed(
                    job=job, reason=reason, code=DISPATCH_FAILED_CODE, actor="dispatch"
                )
        except (OperationalError, InterfaceError) as exc:
            logger.warning(
                "could not record the dispatch failure (attempt %d of %d): %s",
                attempt,
                attempts,
                exc,
                extra={"job_id": job_id},
            )
            if not transaction.get_connection().in_atomic_block:
                close_old_connections()  # a dropped connection is opened again
            if attempt < attempts:
                time.sleep(pause_s * 2 ** (attempt - 1))
    logger.error("job left unchanged: the database refused every attempt", extra={"job_id": job_id})
    return None


def job_after_commit(job: MediaProcessingJob) -> MediaProcessingJob:
    """After the commit the on_commit hook may have changed the row (a refused enqueue)."""
    if not transaction.get_connection().in_atomic_block:
        job.refresh_from_db()
    return job


@transaction.atomic
def processing_job_create(
    *,
    listing_identity_id: int,
    traceparent: str | None,
    asset_ids: list[int] | None,
    retry_count: int,
) -> MediaProcessingJob:
    listing_assets = MediaAsset.objects.select_for_update().filter(
        listing_identity_id=listing_identity_id
    )
    if asset_ids is not None:
        wanted = sorted({int(a) for a in asset_ids})
        if not wanted:
            raise ApplicationError("asset_ids is empty: name at least one asset to process")
        assets = list(listing_assets.filter(id__in=wanted).order_by("id"))
        missing = sorted(set(wanted) - {a.pk for a in assets})
        if missing:
            raise NotFoundError(
                f"assets {missing} do not exist in listing {listing_identity_id}",
                extra={"missingAssetIds": missing},
            )
        without_raw = [a.pk for a in assets if not a.s3_key_raw]
        if without_raw:
            raise ApplicationError(
                f"assets {without_raw} have no raw key (s3_key_raw): upload them first",
                extra={"assetIdsWithoutRawKey": without_raw},
            )
        outputs = [a.pk for a in assets if a.asset_type in OUTPUT_ASSET_TYPES]
        if outputs:
            raise ApplicationError(
                f"assets {outputs} are ZIP rows (outputs); they are not processed"
            )
    else:
        assets = list(
            listing_assets.filter(status__in=PROCESSABLE_STATUSES)
            .exclude(asset_type__in=OUTPUT_ASSET_TYPES)
            .exclude(s3_key_raw__isnull=True)
            .exclude(s3_key_raw="")
            .order_by("asset_type", "sequence", "id")
        )
    if not assets:
        total = listing_assets.count()
        if total == 0:
            raise NotFoundError(f"listing {listing_identity_id} has no media assets")
        raise NotFoundError(
            f"listing {listing_identity_id} has no assets to process: none of its {total} "
            "assets is PENDING_UPLOAD or FAILED with a raw key (s3_key_raw)"
        )
    MediaAsset.objects.filter(pk__in=[a.pk for a in assets]).update(status=AssetStatus.PROCESSING)
    job = job_start(
        listing_identity_id=listing_identity_id,
        provider=JobProvider.STEP_FUNCTIONS,
        retry_count=retry_count,
    )
    trace = traceparent_or_new(traceparent)
    input = {
        "jobId": job.pk,
        "listingIdentityId": listing_identity_id,
        "assets": _asset_refs(assets),
        "traceparent": trace,
    }
    detail: dict[str, Any] = {"assetIds": [a.pk for a in assets]}
    with log_context(job_id=job.pk, listing_identity_id=listing_identity_id, traceparent=trace):
        job = _dispatch(job=job, input=input, mark_running=False, detail=detail)
        logger.info(
            "service.media.process.started",
            extra={
                "assets": len(assets),
                "engine": pipeline_engine(),
                "external_id": job.external_id,
            },
        )
    return job


def listing_start_processing(
    *,
    listing_identity_id: int,
    traceparent: str | None = None,
    asset_ids: list[int] | None = None,
    retry_count: int = 0,
) -> MediaProcessingJob:
    """docs/contract.md §7 process: the listing's PENDING_UPLOAD/FAILED assets (or exactly ``asset_ids``)
    become PROCESSING and a new processing job is dispatched.

    Assets without a raw key are left alone (nothing to process yet). Raises NotFoundError
    when there is nothing to process (or an asset id is not in the listing),
    ApplicationError for unusable asset ids, DispatchUnavailable when Step Functions does
    not answer.
    """
    job = processing_job_create(
        listing_identity_id=listing_identity_id,
        traceparent=traceparent,
        asset_ids=asset_ids,
        retry_count=retry_count,
    )
    return job_after_commit(job)


def listing_finalization_blockers(*, listing_identity_id: int) -> list[dict[str, Any]]:
    """The assets that keep a listing from being finalized (empty when it is ready)."""
    assets = (
        MediaAsset.objects.filter(listing_identity_id=listing_identity_id)
        .exclude(asset_type__in=OUTPUT_ASSET_TYPES)
        .order_by("asset_type", "sequence", "id")
    )
    return [b for b in (_blocker(a) for a in assets) if b]


def _blocker(asset: MediaAsset) -> dict[str, Any] | None:
    missing = []
    if asset.status != AssetStatus.PROCESSED:
        missing.append(f"status is {asset.status}, not PROCESSED")
    if not asset.s3_key_raw:
        missing.append("no raw key")
    if not asset.s3_key_processed:
        missing.append("no processed key")
    if not missing:
        return None
    return {
        "assetId": asset.pk,
        "assetType": asset.asset_type,
        "sequence": asset.sequence,
        "status": asset.status,
        "problems": missing,
    }


@transaction.atomic
def finalization_job_create(
    *, listing_identity_id: int, traceparent: str | None, retry_count: int
) -> MediaProcessingJob:
    assets = list(
        MediaAsset.objects.select_for_update()
        .filter(listing_identity_id=listing_identity_id)
        .exclude(asset_type__in=OUTPUT_ASSET_TYPES)
        .order_by("asset_type", "sequence", "id")
    )
    if not assets:
        raise NotFoundError(f"listing {listing_identity_id} has no media assets to finalize")
    blockers = [b for b in (_blocker(a) for a in assets) if b]
    if blockers:
        named = "; ".join(
            f"asset {b['assetId']} ({b['assetType']} #{b['sequence']}): {', '.join(b['problems'])}"
            for b in blockers[:MAX_NAMED_ASSETS]
        )
        more = (
            f" and {len(blockers) - MAX_NAMED_ASSETS} more"
            if len(blockers) > MAX_NAMED_ASSETS
            else ""
        )
        raise ConflictError(
            f"listing {listing_identity_id} is not ready to finalize: {len(blockers)} of "
            f"{len(assets)} assets are not PROCESSED with raw and processed keys: {named}{more}. "
            "Process them first (POST /api/v2/listings/media/uploads/process).",
            extra={"notReady": blockers},
        )
    job = job_start(
        listing_identity_id=listing_identity_id,
        provider=JobProvider.STEP_FUNCTIONS_FINALIZATION,
        retry_count=retry_count,
    )
    trace = traceparent_or_new(traceparent)
    input = {
        "jobId": job.pk,
        "listingIdentityId": listing_identity_id,
        "assets": _asset_refs(assets),
        "traceparent": trace,
    }
    with log_context(job_id=job.pk, listing_identity_id=listing_identity_id, traceparent=trace):
        job = _dispatch(
            job=job, input=input, mark_running=True, detail={"assetIds": [a.pk for a in assets]}
        )
        logger.info(
            "service.media.complete.started_zip",
            extra={
                "job_id": job.pk,
                "execution_arn": job.external_id,
                "assets": len(assets),
                "engine": pipeline_engine(),
            },
        )
    return job


def listing_start_finalization(
    *,
    listing_identity_id: int,
    traceparent: str | None = None,
    retry_count: int = 0,
) -> MediaProcessingJob:
    """docs/contract.md §7 complete: every asset PROCESSED with raw and processed keys (else
    ConflictError, 409, naming what is not ready), a new finalization job, dispatched and
    RUNNING with ``external_id`` and ``started_at``; logs ``service.media.complete.started_zip``
    with ``job_id`` and ``execution_arn``."""
    job = finalization_job_create(
        listing_identity_id=listing_identity_id, traceparent=traceparent, retry_count=retry_count
    )
    return job_after_commit(job)
