"""Reads the admin portal needs, written for a ``media_processing_jobs`` of a million rows.

Every query here is an indexed lookup or an indexed range with a bound: no ``COUNT(*)`` over
the table, no ``LIKE '%…%'``, no per-row queries. What the indexes are: see the models' Meta
(``idx_mpj_status_created`` covers status + created_at, ``idx_ma_raw_key`` the raw keys).

One module per page: ``job_list``, ``job_page``, ``dashboard``; the admin imports them
from here.
"""

from .dashboard import (
    CHART_STATUSES,
    Dashboard,
    DayCounts,
    dashboard_summary,
    jobs_by_status,
    jobs_per_day,
)
from .job_list import (
    CALENDAR_CACHE_KEY,
    ERROR_HEAD_CHARS,
    FAILURE_STATUSES,
    JOB_CREATED_BOUNDS_CACHE_KEY,
    JOB_CREATED_BOUNDS_TTL_SECONDS,
    LIST_COUNT_CAP,
    STUCK_STATUSES,
    BoundedCountPaginator,
    asset_search,
    bounded_count,
    job_created_bounds,
    job_created_days,
    job_created_months,
    job_list_columns,
    job_search,
    job_stuck_q,
    listings_with_raw_key_prefix,
    local_midnight,
    prefix_q,
    stuck_cutoff,
)
from .job_page import (
    AssetOutcome,
    asset_error,
    asset_links,
    asset_thumbnail_key,
    job_asset_outcomes,
    listing_assets,
    listing_jobs,
    listing_zip_job,
)

__all__ = [
    "AssetOutcome",
    "BoundedCountPaginator",
    "CALENDAR_CACHE_KEY",
    "CHART_STATUSES",
    "Dashboard",
    "DayCounts",
    "ERROR_HEAD_CHARS",
    "FAILURE_STATUSES",
    "JOB_CREATED_BOUNDS_CACHE_KEY",
    "JOB_CREATED_BOUNDS_TTL_SECONDS",
    "LIST_COUNT_CAP",
    "STUCK_STATUSES",
    "asset_error",
    "asset_links",
    "asset_search",
    "asset_thumbnail_key",
    "bounded_count",
    "dashboard_summary",
    "job_asset_outcomes",
    "job_created_bounds",
    "job_created_days",
    "job_created_months",
    "job_list_columns",
    "job_search",
    "job_stuck_q",
    "jobs_by_status",
    "jobs_per_day",
    "listing_assets",
    "listing_jobs",
    "listing_zip_job",
    "listings_with_raw_key_prefix",
    "local_midnight",
    "prefix_q",
    "stuck_cutoff",
]
