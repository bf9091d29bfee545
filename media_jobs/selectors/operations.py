"""Reads behind the operations commands (backfills, requeues, ZIP rebuilds, storage checks).

Querysets only select; the commands walk them in primary-key order in batches (see
``ids_in_batches``), so a run can be interrupted and started again without a cursor.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from django.db.models import Exists, OuterRef, QuerySet

from ..models import (
    ACTIVE_JOB_STATUSES,
    AssetStatus,
    JobProvider,
    MediaAsset,
    MediaProcessingJob,
)
from .errors import job_error_code_q


def ids_in_batches(queryset: QuerySet, *, batch_size: int, field: str = "pk") -> Iterator[list]:
    """Distinct values of ``field`` in ascending order, ``batch_size`` at a time.

    Keyset pagination (``field > last``) instead of OFFSET: each batch is one indexed range
    scan, and rows that change status while the command runs neither shift nor repeat pages.
    The upper bound is fixed when the walk starts, so rows created by the run itself (a retry
    creates a new job) are never picked up by the same run.
    """
    ordered = queryset.order_by(field).values_list(field, flat=True).distinct()
    ceiling = ordered.order_by(f"-{field}").first()
    if ceiling is None:
        return
    last = None
    while True:
        page = ordered.filter(**{f"{field}__lte": ceiling})
        if last is not None:
            page = page.filter(**{f"{field}__gt": last})
        batch = list(page[:batch_size])
        if not batch:
            return
        yield batch
        last = batch[-1]
        if len(batch) < batch_size:
            return


def assets_for_backfill(
    *,
    listing_ids: Iterable[int] | None = None,
    asset_types: Iterable[str] | None = None,
    processed_since: datetime | None = None,
    processed_until: datetime | None = None,
) -> QuerySet[MediaAsset]:
    """PROCESSED assets, optionally of some listings and types.

    ``media_assets`` has no timestamps, so the date range selects by the listing's processing
    jobs: assets of listings with a processing job completed in ``[since, until)``.
    """
    assets = MediaAsset.objects.filter(status=AssetStatus.PROCESSED)
    if listing_ids:
        assets = assets.filter(listing_identity_id__in=list(listing_ids))
    if asset_types:
        assets = assets.filter(asset_type__in=list(asset_types))
    if processed_since is not None or processed_until is not None:
        jobs = MediaProcessingJob.objects.filter(
            listing_identity_id=OuterRef("listing_identity_id"),
            provider=JobProvider.STEP_FUNCTIONS,
            completed_at__isnull=False,
        )
        if processed_since is not None:
            jobs = jobs.filter(completed_at__gte=processed_since)
        if processed_until is not None:
            jobs = jobs.filter(completed_at__lt=processed_until)
        assets = assets.filter(Exists(jobs))
    return assets


def jobs_for_requeue(
    *,
    statuses: Iterable[str],
    providers: Iterable[str] | None = None,
    created_before: datetime | None = None,
    created_after: datetime | None = None,
    error_code: str | None = None,
    listing_ids: Iterable[int] | None = None,
    job_ids: Iterable[int] | None = None,
    include_superseded: bool = False,
) -> QuerySet[MediaProcessingJob]:
    """Finished jobs to retry.

    Unless ``include_superseded``, a job is left out when a newer job exists for the same
    listing and kind: it was retried already (or the listing ran again), so retrying it once
    more would only duplicate work. That is what makes a requeue run safe to repeat.
    """
    jobs = MediaProcessingJob.objects.filter(status__in=list(statuses))
    if providers:
        jobs = jobs.filter(provider__in=list(providers))
    if created_before is not None:
        jobs = jobs.filter(created_at__lte=created_before)
    if created_after is not None:
        jobs = jobs.filter(created_at__gte=created_after)
    if error_code:
        jobs = jobs.filter(job_error_code_q(error_code, limit=None))
    if listing_ids:
        jobs = jobs.filter(listing_identity_id__in=list(listing_ids))
    if job_ids:
        jobs = jobs.filter(pk__in=list(job_ids))
    if not include_superseded:
        jobs = jobs.exclude(Exists(newer_jobs()))
    return jobs


def newer_jobs() -> QuerySet[MediaProcessingJob]:
    """Jobs of the outer job's listing and kind created after it (for ``Exists``)."""
    return MediaProcessingJob.objects.filter(
        listing_identity_id=OuterRef("listing_identity_id"),
        provider=OuterRef("provider"),
        pk__gt=OuterRef("pk"),
    )


def job_superseded_by(job: MediaProcessingJob) -> MediaProcessingJob | None:
    """The newest job of the same listing and kind created after ``job``, if any."""
    return (
        MediaProcessingJob.objects.filter(
            listing_identity_id=job.listing_identity_id, provider=job.provider, pk__gt=job.pk
        )
        .order_by("-pk")
        .first()
    )


def listings_with_assets(*, listing_ids: Iterable[int] | None = None) -> QuerySet[MediaAsset]:
    """Assets of the given listings (all listings when none given); walk it by listing."""
    assets = MediaAsset.objects.all()
    if listing_ids:
        assets = assets.filter(listing_identity_id__in=list(listing_ids))
    return assets


def listings_finalized_before(*, listing_ids: Iterable[int] | None = None) -> QuerySet:
    """Finalization jobs (any status), walked by listing: the listings that had a ZIP made
    at least once, the ones ``rebuild_zips`` may finalize again."""
    jobs = MediaProcessingJob.objects.filter(provider=JobProvider.STEP_FUNCTIONS_FINALIZATION)
    if listing_ids:
        jobs = jobs.filter(listing_identity_id__in=list(listing_ids))
    return jobs


def listing_assets(*, listing_identity_id: int) -> QuerySet[MediaAsset]:
    return MediaAsset.objects.filter(listing_identity_id=listing_identity_id).order_by(
        "asset_type", "sequence", "pk"
    )


def listing_active_finalization(*, listing_identity_id: int) -> MediaProcessingJob | None:
    """A finalization job of the listing still PENDING or RUNNING."""
    return (
        MediaProcessingJob.objects.filter(
            listing_identity_id=listing_identity_id,
            provider=JobProvider.STEP_FUNCTIONS_FINALIZATION,
            status__in=list(ACTIVE_JOB_STATUSES),
        )
        .order_by("-pk")
        .first()
    )


def listing_has_succeeded_finalization(*, listing_identity_id: int) -> bool:
    return MediaProcessingJob.objects.filter(
        listing_identity_id=listing_identity_id,
        provider=JobProvider.STEP_FUNCTIONS_FINALIZATION,
        status="SUCCEEDED",
    ).exists()


def listing_prefix(listing_identity_id: int) -> str:
    return f"{listing_identity_id}/"


def raw_keys_known(keys: Iterable[str]) -> set[str]:
    """Which of ``keys`` some asset row already has as its raw key (one query)."""
    keys = list(keys)
    if not keys:
        return set()
    known = MediaAsset.objects.filter(s3_key_raw__in=keys).values_list("s3_key_raw", flat=True)
    return {key for key in known if key is not None}  # the column is NULL-able
