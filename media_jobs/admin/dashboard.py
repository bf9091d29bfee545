"""The operations dashboard on the admin index: figures, chart and their live refresh."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from media_jobs.models import JobStatus
from media_jobs.selectors import admin as selectors
from media_jobs.services.broker import default_queue, queue_depth

from .charts import daily_bar_chart


def dashboard_summary() -> selectors.Dashboard:
    """The dashboard's figures: the database's from the selector, the queue's from the
    broker (half a second at most: unknown beats a slow page)."""
    return selectors.dashboard_summary(
        queue_name=default_queue(), queue_depth=queue_depth(timeout_s=0.5)
    )


def dashboard_context(request: HttpRequest) -> dict[str, Any]:
    if not request.user.has_perm("media_jobs.view_mediaprocessingjob"):
        return {}
    summary = dashboard_summary()
    changelist = reverse("admin:media_jobs_mediaprocessingjob_changelist")
    return {
        "dashboard": summary,
        "chart": daily_bar_chart(summary.days),
        "status_rows": [
            (status, label, summary.last_24h.get(status, 0), summary.last_7d.get(status, 0))
            for status, label in JobStatus.choices
        ],
        "jobs_url": changelist,
        "error_groups_url": reverse("admin:media_jobs_error_groups"),
        "live_url": reverse("admin:media_jobs_job_status") + "?dashboard=1",
        "undelivered_oldest_url": reverse(
            "admin:media_jobs_mediaprocessingjob_change",
            args=[summary.undelivered.oldest_job_id],
        )
        if summary.undelivered and summary.undelivered.oldest_job_id
        else None,
    }


def dashboard_live(summary: selectors.Dashboard) -> dict[str, Any]:
    """The dashboard's figures that change while jobs run, for the page's script."""
    undelivered = summary.undelivered
    return {
        "active": summary.active,
        "status": {
            status: [summary.last_24h.get(status, 0), summary.last_7d.get(status, 0)]
            for status in JobStatus.values
        },
        "stuck": f"{summary.stuck_count}{'+' if summary.stuck_more else ''}",
        "unresolved": f"{summary.unresolved_count}{'+' if summary.unresolved_more else ''}",
        "undelivered": f"{undelivered.count}{'+' if undelivered.more else ''}"
        if undelivered
        else "0",
        "queue": "" if summary.queue_depth is None else summary.queue_depth,
    }
