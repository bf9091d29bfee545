"""A failure shows what became of it: its retry lineage ("retried as #N — Succeeded") and
whether it is resolved (a later job of the same listing and kind succeeded); the "Failed"
shortcut and the dashboard list the unresolved ones; the list stays a fixed number of
queries."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from media_jobs.models import AssetStatus, CallbackDelivery, JobStatus, MediaProcessingJob
from media_jobs.pipeline.callback import serialise_payload
from media_jobs.selectors import resolution
from media_jobs.services.callbacks import callback_apply
from media_jobs.services.retry import job_retry_and_dispatch
from tests.admin.html import job_ids_in, row_of
from tests.factories import AssetFactory, JobFactory

pytestmark = pytest.mark.django_db
LIST_URL = reverse("admin:media_jobs_mediaprocessingjob_changelist")


@pytest.fixture(autouse=True)
def _celery(settings):
    settings.MEDIA_PIPELINE_ENGINE = "celery"  # queued after commit: never, in these tests


def finish(job: MediaProcessingJob, status: str) -> MediaProcessingJob:
    """Apply the pipeline's result through the callback receiver."""
    body = {"jobId": job.pk, "listingIdentityId": job.listing_identity_id, "status": status}
    if status != "SUCCEEDED":
        body["error"] = {"code": "CORRUPT_IMAGE", "message": "image file is truncated"}
    callback_apply(raw_body=serialise_payload(body), verify=False)
    return MediaProcessingJob.objects.get(pk=job.pk)


def failed_job(listing: int) -> MediaProcessingJob:
    AssetFactory(listing_identity_id=listing, status=AssetStatus.FAILED)
    return JobFactory(
        listing_identity_id=listing, status=JobStatus.FAILED, last_error="code=CORRUPT_IMAGE | x"
    )


def test_a_retried_failure_shows_its_lineage_and_is_resolved(viewer_client):
    first = failed_job(4100)
    second = finish(job_retry_and_dispatch(job=first, actor="test"), "PROCESSING_FAILED")
    third = finish(job_retry_and_dispatch(job=second, actor="test"), "SUCCEEDED")
    open_failure = failed_job(4101)

    html = viewer_client.get(LIST_URL).content.decode()

    first_row = row_of(html, first.pk)
    assert (
        f'retried as <a href="{reverse("admin:media_jobs_mediaprocessingjob_change", args=[second.pk])}">#{second.pk}</a>'
        in first_row
    )
    assert "toq-badge--failed" in first_row.split("retried as", 1)[1]  # #second failed too
    assert "resolved by <a href" in first_row and f">#{third.pk}</a>" in first_row
    second_row = row_of(html, second.pk)
    assert f'>#{third.pk}</a> <span class="toq-badge toq-badge--ok">Succeeded' in second_row
    assert "resolved by" in second_row
    assert "unresolved" in row_of(html, open_failure.pk)

    page = viewer_client.get(
        reverse("admin:media_jobs_mediaprocessingjob_change", args=[first.pk])
    ).content.decode()
    chain = page.split("retried as", 1)[1].split("</span>", 3)
    assert f"#{second.pk}</a>" in page and f"#{third.pk}</a>" in page
    assert page.index(f">#{second.pk}</a>") < page.index(f">#{third.pk}</a>")
    assert chain
    third_page = viewer_client.get(
        reverse("admin:media_jobs_mediaprocessingjob_change", args=[third.pk])
    ).content.decode()
    assert "a retry of <a href" in third_page and f">#{second.pk}</a>" in third_page


def test_the_unresolved_filter_is_the_failed_shortcut_and_the_dashboard_count(viewer_client):
    resolved = failed_job(4200)
    finish(job_retry_and_dispatch(job=resolved, actor="test"), "SUCCEEDED")
    partial = JobFactory(
        listing_identity_id=4201,
        status=JobStatus.PARTIAL_SUCCESS,
        last_error="code=DERIVATIVE_ERRORS_DETECTED | x",
    )
    failed = failed_job(4202)
    # a later success of the other kind (the ZIP) resolves nothing
    JobFactory(
        listing_identity_id=4202, status=JobStatus.SUCCEEDED, provider="STEP_FUNCTIONS_FINALIZATION"
    )
    # a success before the failure resolves nothing either
    earlier = JobFactory(listing_identity_id=4203, status=JobStatus.SUCCEEDED)
    after = JobFactory(
        listing_identity_id=4203, status=JobStatus.FAILED, last_error="code=ZIP_FAILED | x"
    )
    assert earlier.pk < after.pk

    unresolved = job_ids_in(
        viewer_client.get(LIST_URL, {"resolution": "unresolved"}).content.decode()
    )
    assert sorted(unresolved) == sorted([partial.pk, failed.pk, after.pk])
    assert job_ids_in(viewer_client.get(LIST_URL, {"resolution": "resolved"}).content.decode()) == [
        resolved.pk
    ]

    dashboard = viewer_client.get(reverse("admin:index")).content.decode()
    assert re.search(
        rf'href="{LIST_URL}\?resolution=unresolved"[^>]*>Failed \(unresolved\)<', dashboard
    )
    assert re.search(
        rf'id="toq-unresolved-count">\s*<a href="{LIST_URL}\?resolution=unresolved">3<', dashboard
    )


def test_job_resolutions_cost_a_fixed_number_of_queries(viewer_client, monkeypatch):
    monkeypatch.setattr(admin.site._registry[MediaProcessingJob], "list_per_page", 100)

    def make(n: int, start: int) -> None:
        for i in range(n):
            job = failed_job(start + i)
            if i % 2:
                finish(job_retry_and_dispatch(job=job, actor="t"), "SUCCEEDED")
            CallbackDelivery.objects.create(
                job=job, url="http://x", request_body="{}", signature="s", succeeded=bool(i % 3)
            )

    make(5, 10_000)
    viewer_client.get(LIST_URL)  # warm the cached filter choices and calendar
    with CaptureQueriesContext(connection) as few:
        viewer_client.get(LIST_URL, {"resolution": "unresolved"})
    make(45, 20_000)
    with CaptureQueriesContext(connection) as many:
        html = viewer_client.get(LIST_URL, {"resolution": "unresolved"}).content.decode()
    assert len(job_ids_in(html)) >= 20
    assert len(few) == len(many)


def test_resolution_of_a_page_is_three_queries_at_most():
    first, second, third = (failed_job(4300 + i) for i in range(3))
    retried = finish(job_retry_and_dispatch(job=first, actor="t"), "SUCCEEDED")
    jobs = list(MediaProcessingJob.objects.filter(pk__in=[first.pk, second.pk, third.pk]))
    with CaptureQueriesContext(connection) as captured:
        found = resolution.job_resolutions(jobs=jobs)
    assert len(captured) == 3
    assert found[first.pk] == resolution.Resolution(retried.pk, JobStatus.SUCCEEDED, retried.pk)
    assert not found[second.pk].resolved and found[second.pk].retried_as is None
