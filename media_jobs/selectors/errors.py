"""Reads over the jobs' error codes (``media_job_errors``): the error-code filter of the jobs
list and of ``requeue_jobs``, the error groups, the dashboard's top codes and /metrics.

A job counts under its own code and under each code its assets failed with, so a
PARTIAL_SUCCESS job with a corrupt photo is found as DERIVATIVE_ERRORS_DETECTED and as
CORRUPT_IMAGE. Every read is a range of an index of that table (code + job_created_at,
job_created_at, job_completed_at), bounded where a page shows the result.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from django.core.cache import cache
from django.db.models import Count, Max, Q, Sum

from media_jobs.errorcodes import CATALOGUE, is_error_code
from media_jobs.models import ErrorScope, MediaJobError, MediaProcessingJob

NO_CODE = "(no code)"
NO_MESSAGE = "(no message)"
# The error-code filter of the jobs list shows the newest jobs with the code, at most this
# many: the list counts to 1,000 and pages no further; a command's selection is unbounded.
FILTER_LIMIT = 1_001
GROUP_SCAN_LIMIT = 5_000
ERROR_CODE_CHOICES_CACHE_KEY = "media_jobs:admin:error-code-choices"
ERROR_CODE_CHOICES_TTL_SECONDS = 60


def code_label(code: str) -> str:
    return code or NO_CODE


def job_error_code_q(code: str, *, limit: int | None = FILTER_LIMIT) -> Q:
    """Jobs that ended with ``code`` - their own or one of their assets'. With ``limit``:
    the newest ``limit`` such jobs, as a list of ids read from ``idx_mjerr_code_created``
    alone (MySQL allows no LIMIT in an IN subquery); without, a subquery (the commands)."""
    if not is_error_code(code):
        return Q(pk__in=[])
    rows = MediaJobError.objects.filter(code=code)
    if limit is None:
        return Q(pk__in=rows.values("job_id"))
    # No DISTINCT (a temporary table): a job listed twice (its own code and an asset's)
    # matches once all the same.
    ids = rows.order_by("-job_created_at", "-job_id").values_list("job_id", flat=True)[:limit]
    return Q(pk__in=list(ids))


def error_code_choices(*, recent_since: datetime) -> list[str]:
    """The documented codes plus every code seen since ``recent_since``; a minute in the
    cache (the filter's choices need not be fresher)."""
    cached = cache.get(ERROR_CODE_CHOICES_CACHE_KEY)
    if cached is not None:
        return list(cached)
    seen = set(CATALOGUE)
    seen.update(
        MediaJobError.objects.filter(job_created_at__gte=recent_since)
        .exclude(code="")
        .order_by()
        .values_list("code", flat=True)
        .distinct()
    )
    choices = sorted(seen)
    cache.set(ERROR_CODE_CHOICES_CACHE_KEY, choices, ERROR_CODE_CHOICES_TTL_SECONDS)
    return choices


def top_error_codes(*, since: datetime, limit: int = 8) -> list[tuple[str, int]]:
    """(code, jobs) of the most frequent codes among jobs created since ``since``."""
    rows = (
        MediaJobError.objects.filter(job_created_at__gte=since)
        .order_by()
        .values("code")
        .annotate(jobs=Count("job_id", distinct=True))
        .order_by("-jobs", "code")[:limit]
    )
    return [(code_label(row["code"]), row["jobs"]) for row in rows]


@dataclass(frozen=True)
class CodeCount:
    jobs: int
    assets: int


def failures_by_code(*, completed_since: datetime) -> dict[str, CodeCount]:
    """Per code: the jobs completed since ``completed_since`` that ended with it, and how
    many of their assets failed with it (/metrics)."""
    rows = (
        MediaJobError.objects.filter(job_completed_at__gte=completed_since)
        .order_by()
        .values("code")
        .annotate(
            jobs=Count("job_id", distinct=True),
            assets=Sum("assets", filter=Q(scope=ErrorScope.ASSET)),
        )
    )
    return {row["code"]: CodeCount(row["jobs"], row["assets"] or 0) for row in rows}


# -- error groups -----------------------------------------------------------------------------


def error_group_key(code: str, message: str) -> str:
    return hashlib.sha256(f"{code}\x00{message}".encode()).hexdigest()[:16]


@dataclass
class ErrorGroup:
    key: str
    code: str
    message: str
    scope: str
    count: int = 0  # jobs
    assets: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    listing_ids: list[int] = field(default_factory=list)
    job_ids: list[int] = field(default_factory=list)
    sample: str = ""

    @property
    def code_label(self) -> str:
        return code_label(self.code)


@dataclass
class ErrorGroupReport:
    since: datetime
    groups: list[ErrorGroup]
    scanned: int
    truncated: bool


def error_groups(
    *, since: datetime, limit: int = GROUP_SCAN_LIMIT, code: str | None = None
) -> ErrorGroupReport:
    """Codes of the jobs created since ``since``, grouped by code and normalized message,
    most jobs first; the jobs' own codes and their assets' alike. Reads the newest
    ``limit`` rows of ``idx_mjerr_created``."""
    rows = MediaJobError.objects.filter(job_created_at__gte=since)
    if code is not None:
        rows = rows.filter(code=code)
    groups: dict[str, ErrorGroup] = {}
    scanned = 0
    for row in rows.order_by("-job_created_at", "-id").values(
        "job_id",
        "listing_identity_id",
        "scope",
        "code",
        "message",
        "sample",
        "assets",
        "job_created_at",
    )[:limit]:
        scanned += 1
        message = row["message"] or NO_MESSAGE
        key = error_group_key(row["code"], message)
        group = groups.get(key)
        if group is None:
            group = groups[key] = ErrorGroup(
                key, row["code"], message, row["scope"], sample=row["sample"]
            )
        if row["job_id"] not in group.job_ids:
            group.job_ids.append(row["job_id"])
            group.count += 1
        group.assets += row["assets"]
        created = row["job_created_at"]
        group.first_seen = created if group.first_seen is None else min(group.first_seen, created)
        group.last_seen = created if group.last_seen is None else max(group.last_seen, created)
        if row["listing_identity_id"] not in group.listing_ids:
            group.listing_ids.append(row["listing_identity_id"])
        if not group.sample and row["sample"]:
            group.sample = row["sample"]
    ordered = sorted(groups.values(), key=lambda g: (-g.count, g.code, g.message))
    return ErrorGroupReport(since, ordered, scanned, scanned >= limit)


def error_group(*, key: str, since: datetime) -> ErrorGroup | None:
    for group in error_groups(since=since).groups:
        if group.key == key:
            return group
    return None


def error_group_retry_targets(*, group: ErrorGroup, limit: int = 100) -> list[MediaProcessingJob]:
    """The newest failed job of the group per listing and kind, unless a newer job of that
    listing and kind exists (it was retried already, or ran again since); at most ``limit``
    (newest first: a group retry goes in batches, and a page of plans stays readable)."""
    jobs = list(
        MediaProcessingJob.objects.filter(pk__in=group.job_ids)
        .defer("payload", "callback_body")
        .order_by("-pk")
    )
    newest_in_group: dict[tuple[int, str], MediaProcessingJob] = {}
    for job in jobs:
        newest_in_group.setdefault((job.listing_identity_id, job.provider), job)
    if not newest_in_group:
        return []
    # Only jobs newer than the group's oldest can supersede it: idx_mpj_listing holds the
    # id too, so the id range is checked in the index before any row is read.
    oldest = min(job.pk for job in newest_in_group.values())
    latest = {
        (row["listing_identity_id"], row["provider"]): row["latest"]
        for row in MediaProcessingJob.objects.filter(
            listing_identity_id__in={listing for listing, _ in newest_in_group}, pk__gte=oldest
        )
        .order_by()
        .values("listing_identity_id", "provider")
        .annotate(latest=Max("pk"))
    }
    targets = [
        job
        for pair, job in sorted(newest_in_group.items(), key=lambda item: -item[1].pk)
        if latest.get(pair) == job.pk
    ]
    return targets[:limit]


def codes_of_jobs(*, job_ids: list[int]) -> dict[int, list[tuple[str, str, int]]]:
    """(scope, code, assets) of each of these jobs (one query for a page of jobs)."""
    found: dict[int, list[tuple[str, str, int]]] = {}
    counter: Counter[tuple[int, str, str]] = Counter()
    for job_id, scope, code, assets in (
        MediaJobError.objects.filter(job_id__in=job_ids)
        .order_by("job_id", "scope", "code")
        .values_list("job_id", "scope", "code", "assets")
    ):
        counter[(job_id, scope, code)] += assets
    for (job_id, scope, code), assets in counter.items():
        found.setdefault(job_id, []).append((scope, code, assets))
    return found
