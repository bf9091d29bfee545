"""Reads behind the jobs and assets lists, for a ``media_processing_jobs`` of a million rows:
bounded counts, indexed filters and prefix searches, the date drill-down, the row columns."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.paginator import Paginator
from django.db.models import Max, Min, Q, QuerySet
from django.db.models.functions import Substr
from django.utils import timezone
from django.utils.functional import cached_property

from media_jobs.models import (
    JobStatus,
    MediaAsset,
    MediaProcessingJob,
)
from media_jobs.selectors.jobs import stale_job_filter
from media_jobs.selectors.resolution import payload_figures_columns

# The list page counts at most this many rows; above it shows "more than N" (operators narrow
# with filters instead of paging through a million rows with a growing OFFSET).
LIST_COUNT_CAP = 1_000
STUCK_STATUSES = (JobStatus.PENDING, JobStatus.RUNNING)
FAILURE_STATUSES = (JobStatus.FAILED, JobStatus.PARTIAL_SUCCESS)
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


def local_midnight(day: date) -> datetime:
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
    end = local_midnight(date(year + month // 12, month % 12 + 1, 1))
    days: list[int] = []
    cursor = local_midnight(first)
    while (found := _next_created(cursor, end)) is not None:
        day = timezone.localtime(found).date()
        days.append(day.day)
        cursor = local_midnight(day + timedelta(days=1))
    cache.set(key, days, JOB_CREATED_BOUNDS_TTL_SECONDS)
    return days


def job_created_months(*, year: int) -> list[int]:
    """The months of a year with jobs (the same loose scan, one look-up per month found)."""
    key = CALENDAR_CACHE_KEY.format(f"{timezone.get_current_timezone_name()}:{year}")
    cached = cache.get(key)
    if cached is not None:
        return list(cached)
    end = local_midnight(date(year + 1, 1, 1))
    months: list[int] = []
    cursor = local_midnight(date(year, 1, 1))
    while (found := _next_created(cursor, end)) is not None:
        month = timezone.localtime(found).month
        months.append(month)
        if month == 12:
            break
        cursor = local_midnight(date(year, month + 1, 1))
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
