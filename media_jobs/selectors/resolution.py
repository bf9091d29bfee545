"""Is a failure resolved, and what became of it? Reads for the jobs list, the job page and the
dashboard.

- **Retry lineage**: a retried job has a ``retry`` event naming the new job
  (``services.retry``): "retried as #N — Succeeded".
- **Resolved**: a later job of the same listing and kind SUCCEEDED (retried by an operator, by
  ``requeue_jobs``, or started again by the backend). ``idx_mpj_listing_kind_status`` answers
  it from the index alone.
- **The job's own asset figures**: what the job took (its dispatch record) and what came of
  them (its ``payload``: assetsTotal/assetsProcessed/assetsFailed, assetsZipped) - never the
  listing's state now, which later jobs change.

A page of jobs costs a fixed number of queries, whatever the number of rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import Exists, Max, OuterRef, Q
from django.db.models.fields.json import KT

from media_jobs.models import (
    STEP_DISPATCH,
    STEP_RETRY,
    EventKind,
    JobStatus,
    MediaJobEvent,
    MediaProcessingJob,
)

FAILURE_STATUSES = (JobStatus.FAILED, JobStatus.PARTIAL_SUCCESS)
PAYLOAD_FIGURES = ("assetsTotal", "assetsProcessed", "assetsFailed", "assetsZipped")


@dataclass(frozen=True)
class Resolution:
    """What became of a failed job: the job it was retried as (and that job's status), and
    the newest later job of its listing and kind that succeeded (None: unresolved)."""

    retried_as: int | None = None
    retried_status: str | None = None
    resolved_by: int | None = None

    @property
    def resolved(self) -> bool:
        return self.resolved_by is not None


def later_success() -> Any:
    """A later SUCCEEDED job of the outer job's listing and kind (for ``Exists``)."""
    return MediaProcessingJob.objects.filter(
        listing_identity_id=OuterRef("listing_identity_id"),
        provider=OuterRef("provider"),
        status=JobStatus.SUCCEEDED,
        pk__gt=OuterRef("pk"),
    )


def unresolved_failures_q() -> Q:
    """FAILED or PARTIAL_SUCCESS with no later success of the same listing and kind."""
    # Exists inside a Q: Q's ``&`` combines Q objects (the same SQL as ``Q & ~Exists``).
    return Q(status__in=FAILURE_STATUSES) & Q(~Exists(later_success()))


def resolved_failures_q() -> Q:
    return Q(status__in=FAILURE_STATUSES) & Q(Exists(later_success()))


def retried_as(*, job_ids: Sequence[int]) -> dict[int, int]:
    """failed job id -> the job it was last retried as (its ``retry`` events)."""
    return page_events(job_ids=job_ids)[1]


def job_resolutions(
    *, jobs: Sequence[MediaProcessingJob], lineage: dict[int, int] | None = None
) -> dict[int, Resolution]:
    """The resolution of every failed job among ``jobs`` (others are left out): at most
    three queries for the whole page (two when ``lineage``, the retries, is given)."""
    failed = [job for job in jobs if job.status in FAILURE_STATUSES]
    if not failed:
        return {}
    if lineage is None:
        lineage = retried_as(job_ids=[job.pk for job in failed])
    statuses = (
        dict(
            MediaProcessingJob.objects.filter(pk__in=set(lineage.values())).values_list(
                "pk", "status"
            )
        )
        if lineage
        else {}
    )
    newest_success = {
        (row["listing_identity_id"], row["provider"]): row["latest"]
        for row in MediaProcessingJob.objects.filter(
            listing_identity_id__in={job.listing_identity_id for job in failed},
            provider__in={job.provider for job in failed},
            status=JobStatus.SUCCEEDED,
            pk__gt=min(job.pk for job in failed),
        )
        .order_by()
        .values("listing_identity_id", "provider")
        .annotate(latest=Max("pk"))
    }
    resolutions = {}
    for job in failed:
        success = newest_success.get((job.listing_identity_id, job.provider))
        new_job = lineage.get(job.pk)
        resolutions[job.pk] = Resolution(
            retried_as=new_job,
            retried_status=statuses.get(new_job) if new_job else None,
            resolved_by=success if success is not None and success > job.pk else None,
        )
    return resolutions


def job_lineage(*, job: MediaProcessingJob, limit: int = 20) -> list[MediaProcessingJob]:
    """The chain of retries from ``job`` on: the job it was retried as, the one that one was
    retried as, ... (oldest first, at most ``limit``), each with its status."""
    chain: list[MediaProcessingJob] = []
    current = job.pk
    seen = {current}
    for _ in range(limit):
        following = retried_as(job_ids=[current]).get(current)
        if following is None or following in seen:
            break
        found = (
            MediaProcessingJob.objects.filter(pk=following)
            .only("pk", "status", "listing_identity_id", "provider", "created_at")
            .first()
        )
        if found is None:
            break
        chain.append(found)
        seen.add(following)
        current = following
    return chain


def retry_of(*, job: MediaProcessingJob) -> int | None:
    """The job this one retried (its ``retry`` note), if it is a retry."""
    event = (
        MediaJobEvent.objects.filter(job_id=job.pk, step=STEP_RETRY, kind=EventKind.NOTE)
        .annotate(retry_of=KT("detail__retryOf"))
        .values_list("retry_of", flat=True)
        .first()
    )
    return int(event) if event and str(event).isdigit() else None


# -- the job's own asset figures --------------------------------------------------------------


@dataclass(frozen=True)
class JobAssetFigures:
    """The assets a job took and what came of them; None where it is not known (yet)."""

    taken: int | None = None
    processed: int | None = None
    failed: int | None = None
    zipped: int | None = None

    @property
    def known(self) -> bool:
        return any(v is not None for v in (self.taken, self.processed, self.failed, self.zipped))


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def payload_figures_columns() -> dict[str, Any]:
    """Annotations that read the payload's figures in the list query (never the payload)."""
    return {f"payload_{name}": KT(f"payload__{name}") for name in PAYLOAD_FIGURES}


def _payload_figures(job: MediaProcessingJob) -> dict[str, int | None]:
    if hasattr(job, "payload_assetsTotal"):
        return {name: _int(getattr(job, f"payload_{name}")) for name in PAYLOAD_FIGURES}
    payload = job.payload if isinstance(job.payload, dict) else {}
    return {name: _int(payload.get(name)) for name in PAYLOAD_FIGURES}


def page_events(*, job_ids: Sequence[int]) -> tuple[dict[int, int], dict[int, int]]:
    """(assets taken, retried as) of a page of jobs from their dispatch and retry events: one
    query on idx_mje_job_step reading two small members of the details (never the input)."""
    if not job_ids:
        return {}, {}
    rows = (
        MediaJobEvent.objects.filter(job_id__in=list(job_ids), step__in=[STEP_DISPATCH, STEP_RETRY])
        .order_by()  # no ORDER BY: MySQL would walk the primary key instead of the index
        .annotate(asset_ids=KT("detail__assetIds"), new_job=KT("detail__newJobId"))
        .values_list("job_id", "step", "kind", "asset_ids", "new_job")
    )
    taken: dict[int, int] = {}
    lineage: dict[int, int] = {}
    for job_id, step, kind, asset_ids, new_job in rows:
        if step == STEP_DISPATCH:
            try:
                ids = json.loads(asset_ids) if asset_ids else None
            except ValueError:
                ids = None
            if isinstance(ids, list):
                taken[job_id] = len(ids)
        elif kind == EventKind.RETRIED and new_job and str(new_job).isdigit():
            lineage[job_id] = max(lineage.get(job_id, 0), int(new_job))  # the latest retry
    return taken, lineage


def job_asset_figures(
    *, jobs: Sequence[MediaProcessingJob], taken: dict[int, int] | None = None
) -> dict[int, JobAssetFigures]:
    """Each job's own figures: the page's dispatch records (``taken``, or one query), the
    payload figures with the rows (``payload_figures_columns``) or from a loaded payload."""
    if taken is None:
        taken, _lineage = page_events(job_ids=[job.pk for job in jobs])
    figures = {}
    for job in jobs:
        payload = _payload_figures(job)
        processed, failed = payload["assetsProcessed"], payload["assetsFailed"]
        if processed is None and payload["assetsTotal"] and failed is not None:
            processed = payload["assetsTotal"] - failed  # a payload from before assetsProcessed
        figures[job.pk] = JobAssetFigures(
            taken=taken.get(job.pk, payload["assetsTotal"]),
            processed=processed,
            failed=failed,
            zipped=payload["assetsZipped"],
        )
    return figures


def job_list_facts(
    *, jobs: Sequence[MediaProcessingJob]
) -> tuple[dict[int, JobAssetFigures], dict[int, Resolution]]:
    """A page's own asset figures and resolutions: one events query for both, then what
    ``job_resolutions`` needs."""
    taken, lineage = page_events(job_ids=[job.pk for job in jobs])
    return job_asset_figures(jobs=jobs, taken=taken), job_resolutions(jobs=jobs, lineage=lineage)
