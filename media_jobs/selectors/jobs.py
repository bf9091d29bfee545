"""Reads about jobs shared by the services, the API, the metrics and the admin."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone

from ..models import (
    ACTIVE_JOB_STATUSES,
    TERMINAL_JOB_STATUSES,
    JobStatus,
    MediaJobEvent,
    MediaProcessingJob,
)


def stale_job_filter(cutoff: datetime) -> Q:
    """Jobs stuck since before ``cutoff``: RUNNING since then (created before it when
    started_at is empty), or PENDING since then. Both arms use the status index."""
    running = Q(status=JobStatus.RUNNING) & (
        Q(started_at__lt=cutoff) | Q(started_at__isnull=True, created_at__lt=cutoff)
    )
    pending = Q(status=JobStatus.PENDING, created_at__lt=cutoff)
    return running | pending


def job_list_stuck(*, timeout_seconds: int, now: datetime | None = None) -> QuerySet:
    """PENDING/RUNNING jobs older than ``timeout_seconds`` (what the reconciler fails)."""
    cutoff = (now or timezone.now()) - timedelta(seconds=timeout_seconds)
    return MediaProcessingJob.objects.filter(stale_job_filter(cutoff)).order_by("id")


def job_list_active_for_listing(*, listing_identity_id: int) -> QuerySet:
    return MediaProcessingJob.objects.filter(
        listing_identity_id=listing_identity_id, status__in=ACTIVE_JOB_STATUSES
    ).order_by("-id")


def job_list_cleanable(*, completed_before: datetime) -> QuerySet:
    """Terminal jobs completed before the cutoff, oldest first (what the cleaner deletes)."""
    return MediaProcessingJob.objects.filter(
        status__in=TERMINAL_JOB_STATUSES, completed_at__lt=completed_before
    ).order_by("completed_at", "id")


def job_timeline(*, job: MediaProcessingJob) -> QuerySet:
    """The job's step timeline, oldest first (the admin's job page)."""
    return MediaJobEvent.objects.filter(job_id=job.pk).order_by("at", "id")
