"""The jobs list: columns, filters, index-friendly search, bounded counting, constant queries."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from django.contrib import admin
from django.contrib.admin.templatetags.admin_list import items_for_result
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import resolve, reverse
from django.utils import timezone

from media_jobs.models import (
    AssetStatus,
    JobProvider,
    JobStatus,
    MediaAsset,
    MediaProcessingJob,
)
from media_jobs.selectors.admin import BoundedCountPaginator
from media_jobs.services.dispatch import listing_start_processing
from tests.admin.html import job_ids_in, row_of
from tests.factories import AssetFactory, JobFactory

pytestmark = pytest.mark.django_db
LIST_URL = reverse("admin:media_jobs_mediaprocessingjob_changelist")


def result_ids(response) -> list[int]:
    return job_ids_in(response.content.decode())


def test_columns_show_status_badge_duration_assets_and_error_first_line(viewer_client):
    now = timezone.now().replace(microsecond=0)
    job = JobFactory(
        listing_identity_id=777,
        status=JobStatus.FAILED,
        provider=JobProvider.STEP_FUNCTIONS_FINALIZATION,
        started_at=now - timedelta(minutes=2, seconds=5),
        completed_at=now,
        last_error="code=ZIP_FAILED | the zip broke | bucket unreachable\nsecond line never shown",
    )

    response = viewer_client.get(LIST_URL)

    assert response.status_code == 200
    html = response.content.decode()
    assert result_ids(response) == [job.pk]
    assert 'class="toq-badge toq-badge--failed">Failed<' in html
    assert "Finalization (ZIP)" in html
    assert "2m 05s" in html
    assert "code=ZIP_FAILED | the zip broke | bucket unreachable" in html
    assert "second line never shown" not in html
    assert reverse("admin:media_jobs_listing", args=[777]) in html
    # one timestamp format: seconds and the zone (TIME_ZONE, America/Sao_Paulo by default)
    text = re.sub(r"<[^>]+>", "", html)
    assert timezone.localtime(now).strftime("%Y-%m-%d %H:%M:%S -03") in text


def test_assets_column_counts_the_jobs_own_assets_not_the_listing_now(viewer_client):
    """The failed job took 3 assets and processed 2; the listing has 5 now, all processed
    by a later job: the failed job's row still says 2 / 1 of 3."""
    failed = listing_start_processing_with(listing=778, assets=3)
    payload = {"assetsTotal": 3, "assetsProcessed": 2, "assetsFailed": 1}
    MediaProcessingJob.objects.filter(pk=failed.pk).update(
        status=JobStatus.PARTIAL_SUCCESS, payload=payload
    )
    AssetFactory.create_batch(2, listing_identity_id=778, status=AssetStatus.PROCESSED)
    MediaAsset.objects.filter(listing_identity_id=778).update(status=AssetStatus.PROCESSED)
    running = listing_start_processing_with(listing=779, assets=4)

    html = viewer_client.get(LIST_URL).content.decode()

    assert re.search(
        r'toq-ok">2</span> / <span class="toq-failed">1</span> <span class="toq-muted">of 3',
        row_of(html, failed.pk),
    )
    assert '<span class="toq-muted">of 4</span>' in row_of(html, running.pk)  # nothing known yet


def listing_start_processing_with(*, listing: int, assets: int) -> MediaProcessingJob:

    AssetFactory.create_batch(
        assets, listing_identity_id=listing, status=AssetStatus.PENDING_UPLOAD
    )
    with override_settings(MEDIA_PIPELINE_ENGINE="celery"):
        return listing_start_processing(listing_identity_id=listing)  # queued after commit


def test_status_kind_stuck_and_error_code_filters(viewer_client, settings):
    settings.RECONCILER_TIMEOUT_SECONDS = 3600
    old = timezone.now() - timedelta(hours=3)
    failed_zip = JobFactory(status=JobStatus.FAILED, last_error="code=ZIP_FAILED | boom")
    failed_zip_longer = JobFactory(status=JobStatus.FAILED, last_error="code=ZIP_FAILED_AGAIN | x")
    failed_code_only = JobFactory(status=JobStatus.FAILED, last_error="code=ZIP_FAILED")
    ok = JobFactory(status=JobStatus.SUCCEEDED, provider=JobProvider.STEP_FUNCTIONS_FINALIZATION)
    stuck_running = JobFactory(status=JobStatus.RUNNING, created_at=old, started_at=old)
    stuck_pending = JobFactory(status=JobStatus.PENDING, created_at=old)
    fresh_running = JobFactory(status=JobStatus.RUNNING)
    late_start = JobFactory(status=JobStatus.RUNNING, created_at=old, started_at=timezone.now())

    failed = result_ids(viewer_client.get(LIST_URL, {"status__exact": "FAILED"}))
    assert sorted(failed) == sorted([failed_zip.pk, failed_zip_longer.pk, failed_code_only.pk])

    finalization = result_ids(
        viewer_client.get(LIST_URL, {"provider__exact": "STEP_FUNCTIONS_FINALIZATION"})
    )
    assert finalization == [ok.pk]

    stuck = result_ids(viewer_client.get(LIST_URL, {"stuck": "yes"}))
    assert sorted(stuck) == sorted([stuck_running.pk, stuck_pending.pk])
    assert fresh_running.pk not in stuck and late_start.pk not in stuck

    by_code = viewer_client.get(LIST_URL, {"error_code": "ZIP_FAILED"})
    assert sorted(result_ids(by_code)) == sorted([failed_zip.pk, failed_code_only.pk])
    assert "ZIP_FAILED_AGAIN" in by_code.content.decode()  # offered as a choice


def test_search_by_job_id_listing_external_id_and_raw_key_prefix(viewer_client):
    a = JobFactory(
        listing_identity_id=5001, external_id="arn:aws:states:us-east-1:1:execution:p:job-a"
    )
    b = JobFactory(listing_identity_id=5002, external_id="celery-xyz-1")
    c = JobFactory(listing_identity_id=a.pk)  # a listing id equal to a job id
    AssetFactory(
        listing_identity_id=5002, s3_key_raw="5002/raw/photo/horizontal/horizontal-01-beach.jpg"
    )

    assert sorted(result_ids(viewer_client.get(LIST_URL, {"q": str(a.pk)}))) == sorted([a.pk, c.pk])
    assert result_ids(viewer_client.get(LIST_URL, {"q": "5002"})) == [b.pk]
    assert result_ids(viewer_client.get(LIST_URL, {"q": "celery-xyz"})) == [b.pk]
    assert result_ids(
        viewer_client.get(LIST_URL, {"q": "arn:aws:states:us-east-1:1:execution:p:"})
    ) == [a.pk]
    assert result_ids(viewer_client.get(LIST_URL, {"q": "5002/raw/photo/horizontal/horiz"})) == [
        b.pk
    ]
    # prefix only: the middle of a key or of an external id finds nothing
    assert result_ids(viewer_client.get(LIST_URL, {"q": "raw/photo/horizontal"})) == []
    assert result_ids(viewer_client.get(LIST_URL, {"q": "xyz-1"})) == []


def test_search_never_uses_a_leading_wildcard(viewer_client):
    JobFactory(external_id="celery-abc")
    with CaptureQueriesContext(connection) as captured:
        viewer_client.get(LIST_URL, {"q": "celery-ab"})
        viewer_client.get(LIST_URL, {"q": "77/raw/photo"})
    sql = "\n".join(q["sql"] for q in captured.captured_queries)
    assert "LIKE" in sql
    assert "'%" not in sql and "%%" not in sql.replace("%%'", "")


def _count_queries(client, url, params=None) -> tuple[int, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params or {})
    assert response.status_code == 200
    return len(captured), [q["sql"] for q in captured.captured_queries]


@pytest.mark.parametrize(
    "params", [{}, {"status__exact": "FAILED"}, {"q": "6000"}, {"stuck": "yes"}]
)
def test_query_count_is_the_same_for_10_and_100_rows(viewer_client, params, settings, monkeypatch):
    settings.RECONCILER_TIMEOUT_SECONDS = 60
    monkeypatch.setattr(admin.site._registry[MediaProcessingJob], "list_per_page", 100)
    old = timezone.now() - timedelta(hours=2)

    def make(n: int, start: int) -> None:
        for i in range(n):
            listing = 6000 if i % 3 == 0 else start + i
            JobFactory(
                listing_identity_id=listing,
                status=JobStatus.FAILED if i % 2 else JobStatus.RUNNING,
                created_at=old,
                last_error="code=X | y",
            )
            AssetFactory(listing_identity_id=listing, status=AssetStatus.PROCESSED)

    make(10, 10_000)
    viewer_client.get(LIST_URL, params)  # warm: the error-code choices are cached a minute
    few, _ = _count_queries(viewer_client, LIST_URL, params)
    make(90, 20_000)
    many, sql = _count_queries(viewer_client, LIST_URL, params)
    shown = len(result_ids(viewer_client.get(LIST_URL, params)))
    assert shown >= 30  # (the filters keep a share of the 100 rows; all 100 unfiltered)
    assert few == many
    # the assets column is the job's own figures: the listing's assets are never read
    assert sum("media_assets" in q for q in sql) == 0


def test_no_full_count_on_the_list(viewer_client):
    for _ in range(3):
        JobFactory()
    _, sql = _count_queries(viewer_client, LIST_URL)
    counts = [q for q in sql if "COUNT(" in q.upper() and "media_processing_jobs" in q]
    assert counts, "the list still counts (bounded)"
    for query in counts:
        assert "LIMIT" in query.upper(), f"unbounded count: {query}"


def test_count_stops_at_the_cap_and_says_more_than(viewer_client, monkeypatch):
    monkeypatch.setattr(BoundedCountPaginator, "cap", 5)
    monkeypatch.setattr(admin.site._registry[MediaProcessingJob], "list_per_page", 2)
    for _ in range(8):
        JobFactory()
    response = viewer_client.get(LIST_URL)
    html = response.content.decode()
    assert "more than 5 media processing jobs" in html
    assert len(result_ids(response)) == 2
    # a page past the cap is refused the way Django refuses a bad page (redirect with ?e=1)
    assert viewer_client.get(LIST_URL, {"p": "9"}).status_code == 302


def _local_noon(year: int, month: int, day: int) -> datetime:
    """Noon of that day where the operators are (TIME_ZONE): the calendar shows local days,
    so a time taken from the clock (21:00-24:00 in Sao Paulo is the next day in UTC) would
    move the job to a neighbouring day depending on when the test runs."""
    return timezone.make_aware(datetime(year, month, day, 12))


def test_date_hierarchy_offers_the_calendar_without_distinct_scans(viewer_client):
    JobFactory(created_at=_local_noon(2024, 3, 5))
    JobFactory(created_at=_local_noon(2025, 7, 9))
    with CaptureQueriesContext(connection) as captured:
        html = viewer_client.get(LIST_URL).content.decode()
    assert "created_at__year=2024" in html and "created_at__year=2025" in html
    assert not any(
        "DISTINCT" in q["sql"].upper() and "media_processing_jobs" in q["sql"]
        for q in captured.captured_queries
    )
    # only the months and days that have jobs
    year = viewer_client.get(LIST_URL, {"created_at__year": "2025"}).content.decode()
    assert "created_at__month=7" in year and "created_at__month=12" not in year
    month = viewer_client.get(LIST_URL, {"created_at__year": "2025", "created_at__month": "7"})
    assert len(result_ids(month)) == 1
    days = re.findall(r"created_at__day=(\d+)", month.content.decode())
    assert set(days) == {"9"}


def test_list_is_sorted_newest_first_and_only_by_indexed_columns(viewer_client):
    older = JobFactory(created_at=timezone.now() - timedelta(days=1))
    newer = JobFactory()
    response = viewer_client.get(LIST_URL)
    assert result_ids(response) == [newer.pk, older.pk]
    html = response.content.decode()
    assert 'class="sortable column-id' in html
    assert 'class="sortable column-duration' not in html
    assert MediaProcessingJob.objects.count() == 2


def test_rows_are_the_html_of_djangos_own_result_list(operator, rf):
    """The one-pass rows (JobChangeList.result_table) give, cell for cell, what Django's
    generic ``items_for_result`` gives for the same list: checkbox, id link keeping the
    filters, every column (all filled: an empty cell stays empty where Django prints "-")."""
    now = timezone.now()
    for n, status in enumerate((JobStatus.FAILED, JobStatus.PARTIAL_SUCCESS, JobStatus.FAILED)):
        JobFactory(
            listing_identity_id=880 + n % 2,
            status=status,
            provider=JobProvider.STEP_FUNCTIONS_FINALIZATION if n else JobProvider.STEP_FUNCTIONS,
            started_at=now - timedelta(minutes=5),
            completed_at=now - timedelta(minutes=1),
            last_error=f"code=E{n} | <b>bold</b> & more | reason",
        )
    AssetFactory(listing_identity_id=880, status=AssetStatus.PROCESSED)
    AssetFactory(listing_identity_id=881, status=AssetStatus.FAILED)
    request = rf.get(LIST_URL, {"status__exact": "FAILED"})
    request.user = operator
    request.resolver_match = resolve(LIST_URL)
    changelist = admin.site._registry[MediaProcessingJob].get_changelist_instance(request)
    assert changelist.result_count == 2

    ours = ["".join(row) for row in changelist.result_table()["results"]]
    django_rows = [
        "".join(items_for_result(changelist, job, None)) for job in changelist.result_list
    ]

    assert ours == django_rows
    assert 'class="action-select"' in ours[0]
    assert "_changelist_filters=status__exact%3DFAILED" in ours[0]
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; more" in ours[0]


def test_date_links_are_cached_a_minute_but_rows_are_read_every_time(viewer_client):
    JobFactory(created_at=_local_noon(2024, 3, 5))
    with CaptureQueriesContext(connection) as first:
        viewer_client.get(LIST_URL)
    assert any("MIN(" in q["sql"].upper() for q in first.captured_queries)

    newer = JobFactory()
    with CaptureQueriesContext(connection) as second:
        response = viewer_client.get(LIST_URL)
    assert not any("MIN(" in q["sql"].upper() for q in second.captured_queries)
    assert newer.pk in result_ids(response)  # the rows are never cached
    assert "created_at__year=2024" in response.content.decode()


def test_list_reads_the_head_of_last_error_with_its_rows_and_counts_ids_only(viewer_client):
    JobFactory(status=JobStatus.FAILED, last_error="code=BIG | " + "x" * 60_000)
    viewer_client.get(LIST_URL)  # the cached filter choices read last_error heads once
    with CaptureQueriesContext(connection) as captured:
        response = viewer_client.get(LIST_URL, {"status__exact": "FAILED"})
    job_sql = [q["sql"] for q in captured.captured_queries if "`media_processing_jobs`" in q["sql"]]
    for sql in job_sql:
        for before in re.findall(r"(\S*)`media_processing_jobs`\.`last_error`", sql):
            assert before.endswith("SUBSTRING("), sql  # never the whole 64 KiB column
    counts = [sql for sql in job_sql if "COUNT(" in sql.upper()]
    assert counts and not any("last_error" in sql for sql in counts)
    html = response.content.decode()
    assert "code=BIG | " + "x" * 100 in html
    assert "x" * 290 not in html  # the head: ERROR_HEAD_CHARS (300) characters at most
