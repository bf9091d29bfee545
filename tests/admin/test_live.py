"""The live view behind static/media_jobs/live.js: staff only, the same HTML the pages render,
the timeline again only when it grew; and the pages carry what the script needs (and work
without it)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from media_jobs.admin.live import LIST_CELLS
from media_jobs.models import AssetStatus, EventKind, JobStatus, MediaProcessingJob
from media_jobs.pipeline.callback import serialise_payload
from media_jobs.services.callbacks import callback_apply
from media_jobs.services.events import event_record
from tests.factories import AssetFactory, JobFactory

pytestmark = pytest.mark.django_db
LIVE = reverse("admin:media_jobs_job_status")
LIST_URL = reverse("admin:media_jobs_mediaprocessingjob_changelist")


def running_job(listing: int = 7700) -> MediaProcessingJob:
    AssetFactory(listing_identity_id=listing, status=AssetStatus.PROCESSING)
    return JobFactory(listing_identity_id=listing, status=JobStatus.RUNNING)


def test_list_rows_come_back_with_the_cells_the_list_renders(viewer_client: Client):
    job = running_job()
    data = viewer_client.get(LIVE, {"ids": f"{job.pk},999999"}).json()
    entry = data["jobs"][str(job.pk)]
    assert entry["status"] == "RUNNING" and entry["terminal"] is False
    assert set(entry["cells"]) == set(LIST_CELLS)
    assert set(LIST_CELLS) <= set(admin.site._registry[MediaProcessingJob].list_display)
    assert "toq-badge--running" in entry["cells"]["status_badge"]
    assert "999999" not in data["jobs"]
    # the list marks the row for the script, and the list renders the same cell
    html = viewer_client.get(LIST_URL).content.decode()
    assert f'data-job="{job.pk}" data-status="RUNNING"' in html
    assert entry["cells"]["status_badge"] in html

    body = {"jobId": job.pk, "listingIdentityId": 7700, "status": "SUCCEEDED", "outputs": []}
    callback_apply(raw_body=serialise_payload(body), verify=False)
    entry = viewer_client.get(LIVE, {"ids": str(job.pk)}).json()["jobs"][str(job.pk)]
    assert entry["terminal"] is True and "toq-badge--ok" in entry["cells"]["status_badge"]


def test_the_job_page_gets_its_fields_and_the_timeline_when_it_grew(viewer_client: Client):
    job = running_job(7701)
    page = viewer_client.get(
        reverse("admin:media_jobs_mediaprocessingjob_change", args=[job.pk])
    ).content.decode()
    assert 'id="toq-live-job"' in page and 'data-events="0"' in page

    unchanged = viewer_client.get(LIVE, {"job": job.pk, "events": "0"}).json()["jobs"][str(job.pk)]
    assert "timeline" not in unchanged and unchanged["events"] == 0
    assert "toq-badge--running" in unchanged["fields"]["status_badge"]

    event_record(job=job, step="validate", kind=EventKind.STARTED, detail={"n": 1})
    grown = viewer_client.get(LIVE, {"job": job.pk, "events": "0"}).json()["jobs"][str(job.pk)]
    assert grown["events"] == 1 and "<code>validate</code>" in grown["timeline"]


def test_the_dashboard_figures(viewer_client: Client):
    running_job(7702)
    JobFactory(status=JobStatus.FAILED, last_error="code=X | y")
    figures = viewer_client.get(LIVE, {"dashboard": "1"}).json()["dashboard"]
    assert figures["active"] == 1
    assert figures["status"]["RUNNING"] == [1, 1] and figures["status"]["FAILED"] == [1, 1]
    assert figures["unresolved"] == "1"
    index = viewer_client.get(reverse("admin:index")).content.decode()
    assert 'id="toq-dashboard"' in index and 'data-active="1"' in index


def test_the_live_view_is_for_staff_with_the_view_permission(
    staff_client: Client, client: Client, viewer_client: Client, settings: Any
):
    job = running_job(7703)
    assert staff_client.get(LIVE, {"ids": str(job.pk)}).status_code == 403
    anonymous = client.get(LIVE, {"ids": str(job.pk)})
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    response = viewer_client.get(LIVE, {"ids": "1,x,<script>"})
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]


def test_pages_load_the_live_script_and_stay_complete_without_it(viewer_client: Client):
    running_job(7704)
    html = viewer_client.get(LIST_URL).content.decode()
    assert "media_jobs/live.js" in html
    # the rendered page already says everything: the script only refreshes it
    assert "toq-badge--running" in html
