"""Reads behind the dashboard (the admin index): counts by status and day, top error codes,
stuck and unresolved jobs, undelivered results - from indexed ranges only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db.models import Case, Count, IntegerField, Q, Value, When
from django.utils import timezone

from media_jobs.models import (
    JobStatus,
    MediaProcessingJob,
)
from media_jobs.selectors.deliveries import UndeliveredSummary, undelivered_summary
from media_jobs.selectors.errors import top_error_codes
from media_jobs.selectors.resolution import unresolved_failures_q

from .job_list import LIST_COUNT_CAP, bounded_count, job_stuck_q, local_midnight

CHART_STATUSES = (JobStatus.SUCCEEDED, JobStatus.PARTIAL_SUCCESS, JobStatus.FAILED)


# -- dashboard --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DayCounts:
    day: date
    succeeded: int = 0
    partial: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.succeeded + self.partial + self.failed


@dataclass
class Dashboard:
    now: datetime
    last_24h: dict[str, int]
    last_7d: dict[str, int]
    days: list[DayCounts]
    top_error_codes: list[tuple[str, int]]
    stuck_count: int
    stuck_more: bool
    stuck_jobs: list[MediaProcessingJob]
    queue_name: str
    queue_depth: int | None
    unresolved_count: int = 0
    unresolved_more: bool = False
    undelivered: UndeliveredSummary | None = None

    @property
    def active(self) -> int:
        """PENDING and RUNNING jobs of the week: while there are any, the page updates."""
        return self.last_7d.get(JobStatus.PENDING, 0) + self.last_7d.get(JobStatus.RUNNING, 0)


def jobs_by_status(
    *, since: datetime, recent_since: datetime
) -> tuple[dict[str, int], dict[str, int]]:
    """Jobs created since ``since`` and since ``recent_since`` (later), per status, in ONE
    covering range of ``idx_mpj_status_created`` (the IN list makes it a range per status)."""
    window = dict.fromkeys(JobStatus.values, 0)
    recent = dict.fromkeys(JobStatus.values, 0)
    rows = (
        MediaProcessingJob.objects.filter(status__in=JobStatus.values, created_at__gte=since)
        .order_by()
        .values("status")
        .annotate(n=Count("pk"), recent=Count("pk", filter=Q(created_at__gte=recent_since)))
    )
    for row in rows:
        window[row["status"]] = row["n"]
        recent[row["status"]] = row["recent"]
    return window, recent


def jobs_per_day(*, days: int = 14, now: datetime | None = None) -> list[DayCounts]:
    """Succeeded / partial / failed jobs per day of creation in the portal's time zone, the
    last ``days`` days: one query over the range of idx_mpj_status_created, grouped by status
    and by the day a CASE of the day boundaries gives (the boundaries are computed here, so
    MySQL needs no time zone tables, and a day with a DST change is still one day)."""
    now = timezone.localtime(now or timezone.now())
    first_day = now.date() - timedelta(days=days - 1)
    bounds = [local_midnight(first_day + timedelta(days=offset)) for offset in range(days + 1)]
    day_of = Case(
        *(When(created_at__lt=bounds[offset + 1], then=Value(offset)) for offset in range(days)),
        default=Value(days - 1),
        output_field=IntegerField(),
    )
    rows = (
        MediaProcessingJob.objects.filter(
            status__in=CHART_STATUSES, created_at__gte=bounds[0], created_at__lt=bounds[-1]
        )
        .order_by()
        .annotate(day=day_of)
        .values("day", "status")
        .annotate(n=Count("pk"))
    )
    table: dict[int, dict[str, int]] = {}
    for row in rows:
        table.setdefault(row["day"], {})[row["status"]] = row["n"]
    return [
        DayCounts(
            first_day + timedelta(days=offset),
            table.get(offset, {}).get(JobStatus.SUCCEEDED, 0),
            table.get(offset, {}).get(JobStatus.PARTIAL_SUCCESS, 0),
            table.get(offset, {}).get(JobStatus.FAILED, 0),
        )
        for offset in range(days)
    ]


def dashboard_summary(
    *, queue_name: str, queue_depth: int | None, now: datetime | None = None
) -> Dashboard:
    """Everything the admin index shows, from indexed ranges only (created_at ranges; the
    unresolved failures and the undelivered results are counted to a cap). The broker's
    figures come from the caller (``services.broker``): a selector reads the database only."""
    now = now or timezone.now()
    stuck = MediaProcessingJob.objects.filter(job_stuck_q(now=now))
    stuck_count, stuck_more = bounded_count(stuck, 1000)
    unresolved = MediaProcessingJob.objects.filter(unresolved_failures_q()).values("pk")
    unresolved_count, unresolved_more = bounded_count(unresolved, LIST_COUNT_CAP)
    last_7d, last_24h = jobs_by_status(
        since=now - timedelta(days=7), recent_since=now - timedelta(hours=24)
    )
    return Dashboard(
        now=now,
        last_24h=last_24h,
        last_7d=last_7d,
        days=jobs_per_day(days=14, now=now),
        top_error_codes=top_error_codes(since=now - timedelta(days=7)),
        stuck_count=stuck_count,
        stuck_more=stuck_more,
        stuck_jobs=list(
            stuck.defer("payload", "callback_body", "last_error").order_by("created_at")[:10]
        ),
        queue_name=queue_name,
        queue_depth=queue_depth,
        unresolved_count=unresolved_count,
        unresolved_more=unresolved_more,
        undelivered=undelivered_summary(),
    )
