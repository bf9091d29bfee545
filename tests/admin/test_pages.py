"""Dashboard, listing page, error groups, file serving, permissions and the groups migration."""

from __future__ import annotations

import os
import re
import uuid
import zoneinfo
from datetime import UTC, datetime, timedelta

import pytest
import redis
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from media_jobs.models import JobProvider, JobStatus
from media_jobs.pipeline import keys
from media_jobs.selectors import admin as selectors
from media_jobs.selectors import errors as error_selectors
from tests.factories import AssetFactory, JobFactory
from toqportal.celery import app

pytestmark = pytest.mark.django_db
INDEX = reverse("admin:index")
FILE_URL = reverse("admin:media_jobs_media_file")


# -- dashboard ---------------------------------------------------------------------------------


def test_dashboard_counts_chart_top_codes_and_stuck(viewer_client, settings, monkeypatch):
    settings.RECONCILER_TIMEOUT_SECONDS = 600
    monkeypatch.setattr(app.conf, "broker_url", "redis://127.0.0.1:1/0")  # nothing listens
    now = timezone.now()
    for _ in range(3):
        JobFactory(status=JobStatus.SUCCEEDED, created_at=now - timedelta(hours=1))
    JobFactory(
        status=JobStatus.FAILED,
        created_at=now - timedelta(hours=2),
        last_error="code=CORRUPT_IMAGE | bad",
    )
    JobFactory(
        status=JobStatus.FAILED,
        created_at=now - timedelta(days=3),
        last_error="code=CORRUPT_IMAGE | bad",
    )
    JobFactory(
        status=JobStatus.PARTIAL_SUCCESS,
        created_at=now - timedelta(days=5),
        last_error="code=DERIVATIVE_ERRORS_DETECTED | x",
    )
    JobFactory(
        status=JobStatus.SUCCEEDED, created_at=now - timedelta(days=30)
    )  # outside every window
    stuck = JobFactory(
        status=JobStatus.RUNNING,
        created_at=now - timedelta(hours=5),
        started_at=now - timedelta(hours=5),
    )

    html = viewer_client.get(INDEX).content.decode()

    table = html.split('id="toq-status-table"', 1)[1].split("</table>", 1)[0]
    rows = dict(
        re.findall(
            r">([A-Za-z ]+)</a></td>\s*<td class=\"toq-num[^\"]*\">\d+</td>\s*<td class=\"toq-num[^\"]*\">(\d+)<",
            table,
        )
    )
    assert rows["Succeeded"] == "3" and rows["Failed"] == "2" and rows["Partial success"] == "1"
    day_counts = dict(
        re.findall(r">([A-Za-z ]+)</a></td>\s*<td class=\"toq-num[^\"]*\">(\d+)<", table)
    )
    assert day_counts["Succeeded"] == "3" and day_counts["Failed"] == "1"
    # 14 days of stacked bars, server-rendered SVG
    svg = html.split('<svg id="toq-daily-chart"', 1)[1].split("</svg>", 1)[0]
    assert (
        len(re.findall(r"<rect class=\"toq-bar toq-bar--", svg)) == 4
    )  # today ok+failed, day-3, day-5
    assert svg.count('text-anchor="middle"') == 14
    assert "6 finished" in html
    codes = html.split('id="toq-error-codes"', 1)[1].split("</table>", 1)[0]
    assert codes.index("CORRUPT_IMAGE") < codes.index("DERIVATIVE_ERRORS_DETECTED")
    assert re.search(r'id="toq-stuck-count">\s*<a href="[^"]+\?stuck=yes">1<', html)
    assert f"job #{stuck.pk}" in html
    assert re.search(r'id="toq-queue-depth">unknown<', html)


def test_dashboard_queue_depth_from_redis(viewer_client):

    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.skip("no Redis (run through scripts/run_tests.py)")
    queue = f"test-{uuid.uuid4().hex}"
    saved = app.conf.broker_url, app.conf.task_default_queue, app.conf.broker_transport_options
    app.conf.broker_url, app.conf.task_default_queue = url, queue
    app.conf.broker_transport_options = {}
    client = redis.Redis.from_url(url)
    try:
        client.rpush(queue, "a", "b", "c")
        html = viewer_client.get(INDEX).content.decode()
        assert re.search(r'id="toq-queue-depth">3<', html)
        assert f"<code>{queue}</code>" in html
    finally:
        client.delete(queue)
        app.conf.broker_url, app.conf.task_default_queue, app.conf.broker_transport_options = saved


def test_dashboard_queue_depth_from_the_embedded_broker(viewer_client, tmp_path):
    folder = tmp_path / "queue"
    folder.mkdir()
    # the folder broker's messages, one file each: <ms>_<id>.<queue>.msg
    for name in ("1_a.portal-q.msg", "2_b.portal-q.msg", "3_c.other-q.msg"):
        (folder / name).write_text("{}")
    saved = app.conf.broker_url, app.conf.task_default_queue, app.conf.broker_transport_options
    app.conf.broker_url, app.conf.task_default_queue = "filesystem://", "portal-q"
    app.conf.broker_transport_options = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
    }
    try:
        html = viewer_client.get(INDEX).content.decode()
    finally:
        app.conf.broker_url, app.conf.task_default_queue, app.conf.broker_transport_options = saved

    assert re.search(r'id="toq-queue-depth">2<', html)
    assert "Messages waiting in <code>portal-q</code>." in html


def test_dashboard_queries_use_indexed_created_at_ranges(viewer_client):
    JobFactory(status=JobStatus.FAILED, last_error="code=X | y")
    with CaptureQueriesContext(connection) as captured:
        viewer_client.get(INDEX)
    job_queries = [
        q["sql"] for q in captured.captured_queries if "media_processing_jobs" in q["sql"]
    ]
    assert job_queries
    for sql in job_queries:
        # every aggregate is bounded by a created_at range or a LIMIT
        assert "`created_at` >=" in sql or "`created_at` <" in sql or "LIMIT" in sql, sql


def test_dashboard_not_shown_without_permission(staff_client):
    html = staff_client.get(INDEX).content.decode()
    assert "toq-daily-chart" not in html
    assert "You don’t have permission to view or edit anything" in html


def test_jobs_per_day_buckets_by_day_in_the_portals_time_zone():
    """Days are those of TIME_ZONE (America/Sao_Paulo, UTC-3): 02:30 UTC on the 10th is
    still the 9th there. The boundaries are computed in Python: MariaDB without time zone
    tables (CONVERT_TZ gives NULL) counts the same."""
    sao_paulo = zoneinfo.ZoneInfo("America/Sao_Paulo")
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    JobFactory(status=JobStatus.SUCCEEDED, created_at=datetime(2026, 3, 10, 3, 30, tzinfo=UTC))
    JobFactory(status=JobStatus.FAILED, created_at=datetime(2026, 3, 10, 2, 30, tzinfo=UTC))
    JobFactory(status=JobStatus.PARTIAL_SUCCESS, created_at=datetime(2026, 2, 25, 4, 0, tzinfo=UTC))
    JobFactory(status=JobStatus.RUNNING, created_at=datetime(2026, 3, 10, 5, 0, tzinfo=UTC))
    with timezone.override(sao_paulo):
        days = selectors.jobs_per_day(days=14, now=now)
    assert len(days) == 14 and days[-1].day.isoformat() == "2026-03-10"
    assert (days[-1].succeeded, days[-1].failed) == (1, 0)
    assert (days[-2].succeeded, days[-2].failed) == (0, 1)
    assert days[0].day.isoformat() == "2026-02-25" and days[0].partial == 1


# -- listing page ------------------------------------------------------------------------------


def test_listing_page_grid_jobs_and_zip(viewer_client, processed_listing):
    built = processed_listing(7001, failed=0)
    storage = built["storage"]
    storage.write(keys.zip_key(7001), b"PK\x05\x06" + b"\0" * 18, content_type="application/zip")
    zip_job = JobFactory(
        listing_identity_id=7001,
        status=JobStatus.SUCCEEDED,
        provider=JobProvider.STEP_FUNCTIONS_FINALIZATION,
        payload={"assetsZipped": 2, "zipSizeBytes": 22},
        completed_at=timezone.now(),
    )

    html = viewer_client.get(reverse("admin:media_jobs_listing", args=[7001])).content.decode()

    assert html.count('class="toq-grid-item"') == 2
    assert html.count('class="toq-thumb"') == 2
    assert "2 asset(s)" in html and f"job #{zip_job.pk}" in html
    download = (
        re.search(r'href="([^"]+)" id="toq-zip-download"', html).group(1).replace("&amp;", "&")
    )
    response = viewer_client.get(download)
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    assert b"".join(response.streaming_content).startswith(b"PK")
    history = html.split('id="toq-job-history"', 1)[1]
    assert history.index(f">#{zip_job.pk}<") < history.index(f">#{built['job'].pk}<")


def test_listing_page_says_when_the_zip_is_missing(viewer_client, processed_listing):
    processed_listing(7002, failed=0)
    JobFactory(
        listing_identity_id=7002,
        status=JobStatus.SUCCEEDED,
        provider=JobProvider.STEP_FUNCTIONS_FINALIZATION,
    )
    html = viewer_client.get(reverse("admin:media_jobs_listing", args=[7002])).content.decode()
    assert "The ZIP is MISSING from storage." in html


def test_unknown_listing_is_404(viewer_client, local_media):
    assert viewer_client.get(reverse("admin:media_jobs_listing", args=[999999])).status_code == 404


# -- error groups ------------------------------------------------------------------------------


def test_error_groups_group_by_code_and_normalized_message(viewer_client):
    now = timezone.now()
    for listing, minutes in ((11, 5), (12, 50), (11, 90)):
        JobFactory(
            listing_identity_id=listing,
            status=JobStatus.FAILED,
            created_at=now - timedelta(minutes=minutes),
            last_error=f"code=CORRUPT_IMAGE | image '{listing}/raw/x{minutes}.jpg' is truncated at byte {minutes * 7} | more",
        )
    JobFactory(
        listing_identity_id=13,
        status=JobStatus.PARTIAL_SUCCESS,
        last_error="code=DERIVATIVE_ERRORS_DETECTED | 2 derivatives failed",
    )
    JobFactory(
        listing_identity_id=14,
        status=JobStatus.FAILED,
        created_at=now - timedelta(days=20),
        last_error="code=OLD | only in the 30-day window",
    )

    report = error_selectors.error_groups(since=now - timedelta(days=7))
    assert [(g.code, g.count) for g in report.groups] == [
        ("CORRUPT_IMAGE", 3),
        ("DERIVATIVE_ERRORS_DETECTED", 1),
    ]
    top = report.groups[0]
    assert top.message == "image '…' is truncated at byte #"
    assert sorted(top.listing_ids) == [11, 12]
    assert top.first_seen < top.last_seen

    html = viewer_client.get(reverse("admin:media_jobs_error_groups")).content.decode()
    assert "image &#x27;…&#x27; is truncated at byte #" in html
    assert "OLD" not in html
    assert (
        "OLD"
        in viewer_client.get(
            reverse("admin:media_jobs_error_groups"), {"days": "30"}
        ).content.decode()
    )
    assert "?error_code=CORRUPT_IMAGE" in html


def test_error_group_retry_targets_skip_listings_that_ran_again():
    a = JobFactory(listing_identity_id=21, status=JobStatus.FAILED, last_error="code=E | m")
    a_newer = JobFactory(listing_identity_id=21, status=JobStatus.FAILED, last_error="code=E | m")
    b = JobFactory(listing_identity_id=22, status=JobStatus.FAILED, last_error="code=E | m")
    JobFactory(listing_identity_id=22, status=JobStatus.RUNNING)
    group = error_selectors.error_groups(since=timezone.now() - timedelta(days=1)).groups[0]
    assert sorted(group.job_ids) == sorted([a.pk, a_newer.pk, b.pk])
    assert [job.pk for job in error_selectors.error_group_retry_targets(group=group)] == [
        a_newer.pk
    ]


# -- files -------------------------------------------------------------------------------------


def test_file_view_streams_for_staff_and_refuses_traversal(
    viewer_client, staff_client, client, local_media
):
    local_media.write(
        "55/processed/photo/horizontal/thumbnail/a.jpg",
        b"\xff\xd8\xffjpeg",
        content_type="image/jpeg",
    )
    local_media.write(
        "55/raw/project/doc/evil.html", b"<script>alert(1)</script>", content_type="text/html"
    )

    ok = viewer_client.get(FILE_URL, {"key": "55/processed/photo/horizontal/thumbnail/a.jpg"})
    assert ok.status_code == 200 and ok["Content-Type"] == "image/jpeg"
    assert (
        ok["Content-Disposition"].startswith("inline;")
        and ok["X-Content-Type-Options"] == "nosniff"
    )

    html_file = viewer_client.get(FILE_URL, {"key": "55/raw/project/doc/evil.html"})
    assert html_file["Content-Type"] == "application/octet-stream"
    assert html_file["Content-Disposition"].startswith("attachment;")
    assert "sandbox" in html_file["Content-Security-Policy"]

    for bad in ("../etc/passwd", "55/../../x", "/etc/passwd", "55/./a", "a..b/../c", ""):
        assert viewer_client.get(FILE_URL, {"key": bad}).status_code == 400, bad
    assert viewer_client.get(FILE_URL, {"key": "55/nope.jpg"}).status_code == 404
    assert (
        staff_client.get(
            FILE_URL, {"key": "55/processed/photo/horizontal/thumbnail/a.jpg"}
        ).status_code
        == 403
    )
    anonymous = client.get(FILE_URL, {"key": "55/processed/photo/horizontal/thumbnail/a.jpg"})
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]


def test_file_view_redirects_to_a_presigned_url_on_s3(
    viewer_client, settings, moto_server, s3_bucket
):
    settings.MEDIA_STORAGE_BACKEND = "s3"
    settings.MEDIA_BUCKET = s3_bucket
    settings.AWS_S3_ENDPOINT_URL = moto_server.endpoint_url
    response = viewer_client.get(FILE_URL, {"key": "1/processed/zip/listing-media.zip"})
    assert response.status_code == 302
    assert response["Location"].startswith(
        f"{moto_server.endpoint_url}/{s3_bucket}/1/processed/zip/"
    )


# -- permissions and groups --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "admin:media_jobs_error_groups",
        "admin:media_jobs_mediaprocessingjob_changelist",
        "admin:media_jobs_mediaasset_changelist",
        "admin:media_jobs_callbackdelivery_changelist",
    ],
)
def test_staff_without_permissions_gets_403(staff_client, name, local_media):
    assert staff_client.get(reverse(name)).status_code == 403


def test_staff_without_permissions_cannot_open_job_listing_or_storage_pages(
    staff_client, local_media
):
    job = JobFactory(listing_identity_id=31)
    AssetFactory(listing_identity_id=31)
    for url in (
        reverse("admin:media_jobs_mediaprocessingjob_change", args=[job.pk]),
        reverse("admin:media_jobs_listing", args=[31]),
        reverse("admin:media_jobs_storage_check", args=[31]),
        reverse("admin:media_jobs_mediaprocessingjob_execution", args=[job.pk]),
    ):
        assert staff_client.get(url).status_code == 403, url


def test_the_migration_made_both_groups():
    operators = Group.objects.get(name="media operators")
    viewers = Group.objects.get(name="media viewers")
    operator_perms = set(operators.permissions.values_list("codename", flat=True))
    viewer_perms = set(viewers.permissions.values_list("codename", flat=True))
    assert "operate_mediaprocessingjob" in operator_perms
    assert "operate_mediaprocessingjob" not in viewer_perms
    for model in ("mediaprocessingjob", "mediaasset", "mediajobevent", "callbackdelivery"):
        assert f"view_{model}" in operator_perms and f"view_{model}" in viewer_perms
    assert not any(
        p.startswith(("change_", "delete_", "add_")) for p in operator_perms | viewer_perms
    )


def test_nobody_edits_a_job_not_even_a_superuser(admin_client_):
    job = JobFactory(status=JobStatus.FAILED)
    url = reverse("admin:media_jobs_mediaprocessingjob_change", args=[job.pk])
    response = admin_client_.post(url, {"status": "SUCCEEDED"})
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert response.status_code == 403
    assert admin_client_.get(reverse("admin:media_jobs_mediaprocessingjob_add")).status_code == 403
    assert (
        admin_client_.post(
            reverse("admin:media_jobs_mediaprocessingjob_delete", args=[job.pk])
        ).status_code
        == 403
    )


def test_staff_without_a_group_gets_a_styled_403_that_explains_the_groups(
    staff_client, local_media
):
    response = staff_client.get(reverse("admin:media_jobs_mediaprocessingjob_changelist"))
    assert response.status_code == 403
    html = response.content.decode()
    assert "<html" in html and "media_jobs/portal.css" in html  # the portal's own layout
    assert "You are not in a portal group yet" in html
    assert "media viewers" in html and "media operators" in html
    index = staff_client.get(INDEX).content.decode()
    assert "You are not in a portal group yet" in index
