"""The live view: running jobs' state as JSON for the list, job page and dashboard scripts."""

from __future__ import annotations

from typing import Any

from django.contrib.admin import AdminSite
from django.http import HttpRequest, JsonResponse
from django.template.loader import render_to_string

from media_jobs.models import TERMINAL_JOB_STATUSES, MediaProcessingJob

from .common import can_operate, require_view
from .dashboard import dashboard_live, dashboard_summary
from .job_list import annotate_job_rows, job_list_row_queryset
from .job_page import LIVE_PAGE_FIELDS, timeline_context

# What the jobs list replaces in place: the cells of a row (names of the job admin's display
# methods); the job page's fields are LIVE_PAGE_FIELDS.
LIST_CELLS = ("status_badge", "started", "completed", "duration", "assets", "error_summary")
LIVE_MAX_JOBS = 200


def _ids(value: str) -> list[int]:
    ids = [int(part) for part in value.split(",") if part.strip().isdigit()]
    return ids[:LIVE_MAX_JOBS]


def job_status_view(site: AdminSite, request: HttpRequest) -> JsonResponse:
    """GET: the state of running jobs as JSON, for the page's script (staff with the view
    permission; pages work without it). ``?ids=1,2`` the list's rows, ``?job=1&events=N``
    the job page (its timeline again when it has more than N events), ``?dashboard=1``
    the dashboard's figures. Every piece of HTML is what the page itself renders."""
    require_view(request)

    model_admin = site._registry[MediaProcessingJob]
    data: dict[str, Any] = {}
    if request.GET.get("dashboard") == "1":
        data["dashboard"] = dashboard_live(dashboard_summary())
    page_job = request.GET.get("job", "")
    ids = _ids(request.GET.get("ids", "")) + ([int(page_job)] if page_job.isdigit() else [])
    if ids:
        jobs = list(job_list_row_queryset().filter(pk__in=ids))
        annotate_job_rows(jobs, operate=can_operate(request))
        data["jobs"] = {
            str(job.pk): {
                "status": job.status,
                "terminal": job.status in TERMINAL_JOB_STATUSES,
                "cells": {name: str(getattr(model_admin, name)(job)) for name in LIST_CELLS},
            }
            for job in jobs
        }
    if page_job.isdigit():
        job = MediaProcessingJob.objects.filter(pk=int(page_job)).first()
        if job is not None:
            annotate_job_rows([job], operate=can_operate(request))
            entry = data["jobs"].setdefault(str(job.pk), {})
            entry["fields"] = {
                name: str(getattr(model_admin, name)(job)) for name in LIVE_PAGE_FIELDS
            }
            timeline = timeline_context(job)
            entry["events"] = timeline["event_count"]
            if str(timeline["event_count"]) != request.GET.get("events"):
                entry["timeline"] = render_to_string(
                    "media_jobs/includes/timeline.html", timeline, request=request
                )
    return JsonResponse(data)  # admin_view adds never_cache
