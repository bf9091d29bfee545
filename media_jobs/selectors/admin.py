"""Reads the admin portal needs, written for a ``media_processing_jobs`` of a million rows.

Every query here is an indexed lookup or an indexed range with a bound: no ``COUNT(*)`` over
the table, no ``LIKE '%…%'``, no per-row queries. What the indexes are: see the models' Meta
(``idx_mpj_status_created`` covers status + created_at, ``idx_ma_raw_key`` the raw keys).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.paginator import Paginator
from django.db.models import Case, Count, IntegerField, Max, Min, Q, QuerySet, Value, When
from django.db.models.functions import Substr
from django.utils import timezone
from django.utils.functional import cached_property

from media_jobs.models import (
    AssetType,
    JobProvider,
    JobStatus,
    MediaAsset,
    MediaProcessingJob,
)
from media_jobs.pipeline import keys
from media_jobs.pipeline.errors import PipelineError
from media_jobs.selectors.deliveries import UndeliveredSummary, undelivered_summary
from media_jobs.selectors.errors import top_error_codes
from media_jobs.selectors.jobs import stale_job_filter
from media_jobs.selectors.resolution import payload_figures_columns, unresolved_failures_q

# The list page counts at most this many rows; above it shows "more than N" (operators narrow
# with filters instead of paging through a million rows with a growing OFFSET).
LIST_COUNT_CAP = 1_000
STUCK_STATUSES = (JobStatus.PENDING, JobStatus.RUNNING)
FAILURE_STATUSES = (JobStatus.FAILED, JobStatus.PARTIAL_SUCCESS)
CHART_STATUSES = (JobStatus.SUCCEEDED, JobStatus.PARTIAL_SUCCESS, JobStatus.FAILED)
# How much of last_error the jobs list reads per row (the column shows the first line).
ERROR_HEAD_CHARS = 300


# -- pagination -------------------------------------------------------------------------------


class BoundedCountPaginator(Paginator):
    """A paginator whose count reads at most ``cap + 1`` index entries.

    ``count`` runs ``SELECT COUNT(*) FROM (SELECT id … LIMIT cap+1)``: the same small cost on
    ten rows and on a million. It selects the primary key only, so an annotation of the list
    (``job_list_columns``) stays out and the count can stay in an index. ``capped`` tells the
    template to say "more than cap".
    """

    cap = LIST_COUNT_CAP
    capped = False  # set by ``count``: more rows exist than were counted

    @cached_property
    def count(self) -> int:
        object_list = self.object_list
        if isinstance(object_list, QuerySet):
            found = object_list.order_by().values("pk")[: self.cap + 1].count()
        else:
            found = min(len(object_list), self.cap + 1)
        self.capped = found > self.cap
        return min(found, self.cap)


def bounded_count(queryset: QuerySet, cap: int) -> tuple[int, bool]:
    """(count up to ``cap``, whether there are more) reading at most cap + 1 rows."""
    found = queryset.order_by()[: cap + 1].count()
    return min(found, cap), found > cap


# -- filters and search -----------------------------------------------------------------------


def stuck_cutoff(*, now: datetime | None = None) -> datetime:
    """Jobs still active that started (or were created) before this are stuck."""
    return (now or timezone.now()) - timedelta(seconds=settings.RECONCILER_TIMEOUT_SECONDS)


def job_stuck_q(*, now: datetime | None = None) -> Q:
    """RUNNING/PENDING past the reconciler timeout: the reconciler's own rule
    (``selectors.jobs.stale_job_filter``) plus ``created_at < cutoff``, which every such job
    meets (a job starts after it is created) and which turns the query into a range on
    ``idx_mpj_status_created``."""
    cutoff = stuck_cutoff(now=now)
    return Q(status__in=STUCK_STATUSES, created_at__lt=cutoff) & stale_job_filter(cutoff)


def prefix_q(field: str, prefix: str) -> Q:
    """``field`` starts with ``prefix``, exactly (case-sensitive) and through the index.

    MySQL cannot range-scan a case-insensitive index for ``LIKE BINARY`` (Django's
    ``startswith``), only for a plain ``LIKE`` (``istartswith``): both together give the
    index range and the exact match.
    """
    return Q(**{f"{field}__istartswith": prefix}) & Q(**{f"{field}__startswith": prefix})


JOB_CREATED_BOUNDS_CACHE_KEY = "media_jobs:admin:job-created-bounds"
JOB_CREATED_BOUNDS_TTL_SECONDS = 60


def job_created_bounds() -> tuple[datetime | None, datetime | None]:
    """The whole table's first and last ``created_at`` (the two ends of idx_mpj_created_at):
    the years the jobs list's date hierarchy offers. Kept a minute in the cache, like the
    error-code choices: they are links, not rows, and a new year may appear a minute late."""
    cached = cache.get(JOB_CREATED_BOUNDS_CACHE_KEY)
    if cached is not None:
        return cached
    bounds = MediaProcessingJob.objects.aggregate(first=Min("created_at"), last=Max("created_at"))
    found = (bounds["first"], bounds["last"])
    if found[0] is not None:  # an empty table is not remembered: its first job shows at once
        cache.set(JOB_CREATED_BOUNDS_CACHE_KEY, found, JOB_CREATED_BOUNDS_TTL_SECONDS)
    return found


CALENDAR_CACHE_KEY = "media_jobs:admin:job-calendar:{}"


def _next_created(start: datetime, end: datetime) -> datetime | None:
    """The first created_at in [start, end): one step down idx_mpj_created_at."""
    return (
        MediaProcessingJob.objects.filter(created_at__gte=start, created_at__lt=end)
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )


def _local_midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, datetime.min.time()))


def job_created_days(*, year: int, month: int) -> list[int]:
    """The days of a month (in the portal's time zone) on which jobs were created: a loose
    index scan - jump to the first job at or after each day with jobs, one index look-up
    per such day, never the month's rows. Cached a minute, like the other calendar links."""
    key = CALENDAR_CACHE_KEY.format(f"{timezone.get_current_timezone_name()}:{year}-{month}")
    cached = cache.get(key)
    if cached is not None:
        return list(cached)
    first = date(year, month, 1)
    end = _local_midnight(date(year + month // 12, month % 12 + 1, 1))
    days: list[int] = []
    cursor = _local_midnight(first)
    while (found := _next_created(cursor, end)) is not None:
        day = timezone.localtime(found).date()
        days.append(day.day)
        cursor = _local_midnight(day + timedelta(days=1))
    cache.set(key, days, JOB_CREATED_BOUNDS_TTL_SECONDS)
    return days


def job_created_months(*, year: int) -> list[int]:
    """The months of a year with jobs (the same loose scan, one look-up per month found)."""
    key = CALENDAR_CACHE_KEY.format(f"{timezone.get_current_timezone_name()}:{year}")
    cached = cache.get(key)
    if cached is not None:
        return list(cached)
    end = _local_midnight(date(year + 1, 1, 1))
    months: list[int] = []
    cursor = _local_midnight(date(year, 1, 1))
    while (found := _next_created(cursor, end)) is not None:
        month = timezone.localtime(found).month
        months.append(month)
        if month == 12:
            break
        cursor = _local_midnight(date(year, month + 1, 1))
    cache.set(key, months, JOB_CREATED_BOUNDS_TTL_SECONDS)
    return months


def job_search(*, queryset: QuerySet, term: str) -> QuerySet:
    """Search the jobs list with index-friendly exact and prefix matches only.

    - digits (optionally ``#123``): job id or listing id, exact;
    - anything else: external id prefix (``idx_mpj_external_id``);
    - a term with ``/``: also a raw key prefix, resolved through ``idx_ma_raw_key`` to the
      listings that own such keys.
    The prefix lookups are resolved first, each bounded, into id lists.
    """
    term = term.strip()
    if not term:
        return queryset
    condition = Q(pk__in=[])
    number = term.lstrip("#")
    if number.isdigit() and len(number) <= 10:
        value = int(number)
        condition |= Q(pk=value) | Q(listing_identity_id=value)
    else:
        job_ids = list(
            MediaProcessingJob.objects.filter(prefix_q("external_id", term))
            .order_by()
            .values_list("pk", flat=True)[:500]
        )
        if job_ids:
            condition |= Q(pk__in=job_ids)
        if "/" in term:
            listing_ids = listings_with_raw_key_prefix(prefix=term)
            if listing_ids:
                condition |= Q(listing_identity_id__in=listing_ids)
    return queryset.filter(condition)


def listings_with_raw_key_prefix(*, prefix: str, limit: int = 200) -> list[int]:
    """Listings owning a raw key that starts with ``prefix`` (a range on idx_ma_raw_key)."""
    rows = (
        MediaAsset.objects.filter(prefix_q("s3_key_raw", prefix))
        .order_by("s3_key_raw")
        .values_list("listing_identity_id", flat=True)[: limit * 10]
    )
    found: list[int] = []
    for listing_id in rows:
        if listing_id not in found:
            found.append(listing_id)
            if len(found) >= limit:
                break
    return found


def asset_search(*, queryset: QuerySet, term: str) -> QuerySet:
    """Assets by listing id or asset id (exact) or raw key prefix."""
    term = term.strip()
    if not term:
        return queryset
    number = term.lstrip("#")
    if number.isdigit() and len(number) <= 10:
        return queryset.filter(Q(pk=int(number)) | Q(listing_identity_id=int(number)))
    return queryset.filter(prefix_q("s3_key_raw", term))


# -- list page aggregates ---------------------------------------------------------------------


def job_list_columns(*, queryset: QuerySet) -> QuerySet:
    """The jobs list's columns: never the big TEXT/JSON ones (last_error and callback_body may
    each hold 64 KiB); the first ERROR_HEAD_CHARS characters of last_error come with the page's
    rows as ``error_head`` (counting and the other aggregates leave the unused head out), and
    the payload's asset figures as ``payload_<figure>``."""
    return queryset.defer("payload", "callback_body", "last_error").annotate(
        error_head=Substr("last_error", 1, ERROR_HEAD_CHARS), **payload_figures_columns()
    )


# -- job page ---------------------------------------------------------------------------------


def listing_jobs(*, listing_identity_id: int, limit: int = 50) -> list[MediaProcessingJob]:
    """The listing's jobs, newest first (idx_mpj_listing)."""
    return list(
        MediaProcessingJob.objects.filter(listing_identity_id=listing_identity_id)
        .defer("payload", "callback_body")
        .order_by("-pk")[:limit]
    )


def listing_assets(*, listing_identity_id: int, limit: int = 1000) -> list[MediaAsset]:
    return list(
        MediaAsset.objects.filter(listing_identity_id=listing_identity_id).order_by(
            "asset_type", "sequence"
        )[:limit]
    )


def asset_thumbnail_key(asset: MediaAsset) -> str | None:
    """The key of the asset's small preview: recorded thumbnailKey, else the key rules."""
    meta = asset.meta
    recorded = meta.get("thumbnailKey")
    if isinstance(recorded, str) and recorded:
        return recorded
    if not asset.s3_key_raw or asset.asset_type in (AssetType.ZIP, AssetType.THUMBNAIL):
        return asset.s3_key_processed if asset.asset_type == AssetType.THUMBNAIL else None
    try:
        if keys.is_video_type(asset.asset_type):
            return keys.poster_key(asset.s3_key_raw)
        return keys.derivative_key(asset.s3_key_raw, "thumbnail")
    except PipelineError:
        return None


def asset_links(asset: MediaAsset) -> list[tuple[str, str]]:
    """(label, key) for the raw object and every recorded derivative, no duplicates."""
    links: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(label: str, key: Any) -> None:
        if isinstance(key, str) and key and key not in seen:
            seen.add(key)
            links.append((label, key))

    add("raw", asset.s3_key_raw)
    meta = asset.meta
    outputs = meta.get("outputs")
    if isinstance(outputs, dict):
        for label, key in sorted(outputs.items()):
            add(str(label), key)
    for label, key in sorted(meta.items()):
        if "_" in label and isinstance(key, str) and "/processed/" in key:
            add(label, key)
    add("thumbnail", meta.get("thumbnailKey"))
    add("processed", asset.s3_key_processed)
    return links


def asset_error(asset: MediaAsset) -> tuple[str | None, str | None]:
    meta = asset.meta
    code = meta.get("errorCode")
    message = meta.get("error")
    return (str(code) if code else None, str(message) if message else None)


@dataclass(frozen=True)
class AssetOutcome:
    """What one job did with one of its assets: processed, or failed with a code."""

    processed: bool
    code: str = ""
    message: str = ""


def job_asset_outcomes(*, job: MediaProcessingJob) -> dict[str, AssetOutcome]:
    """raw key -> the job's own outcome for that asset, from its callback body's outputs
    (docs/contract.md §6) - what this job did, whatever later jobs did since. A failure without
    outputs failed every asset it took with the job's code: the caller knows which. Empty
    when the body is absent, not JSON, or cut at the column's 64 KiB."""
    try:
        body = json.loads(job.callback_body) if job.callback_body else None
    except ValueError:
        return {}
    outputs = body.get("outputs") if isinstance(body, dict) else None
    if not isinstance(outputs, list):
        return {}
    found = {}
    for output in outputs:
        if not isinstance(output, dict) or not isinstance(output.get("rawKey"), str):
            continue
        code = str(output.get("errorCode") or "")
        message = str(output.get("errorMessage") or "")
        found[output["rawKey"]] = AssetOutcome(not (code or message), code, message)
    return found


def listing_zip_job(*, listing_identity_id: int) -> MediaProcessingJob | None:
    """The newest successful finalization of the listing (its ZIP is the current one)."""
    return (
        MediaProcessingJob.objects.filter(
            listing_identity_id=listing_identity_id,
            provider=JobProvider.STEP_FUNCTIONS_FINALIZATION,
            status=JobStatus.SUCCEEDED,
        )
        .defer("callback_body")
        .order_by("-pk")
        .first()
    )


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
    bounds = [_local_midnight(first_day + timedelta(days=offset)) for offset in range(days + 1)]
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
