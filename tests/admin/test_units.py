"""Pure pieces of the portal: error code parsing, message normalization, the chart geometry,
the queue depth of the embedded broker, the asset list."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.urls import reverse

from media_jobs.admin.charts import _nice_max, daily_bar_chart
from media_jobs.models import AssetStatus
from media_jobs.selectors import admin as selectors
from tests.factories import AssetFactory


@pytest.mark.parametrize(
    ("last_error", "code"),
    [
        ("code=ZIP_FAILED | boom", "ZIP_FAILED"),
        ("code=States.TaskFailed | x", "States.TaskFailed"),
        ("code=A\nsecond line", "A"),
        ("reconciler marked failed after 1h0m0s without callback", None),
        ("", None),
        (None, None),
    ],
)
def test_error_code_of(last_error, code):
    assert selectors.error_code_of(last_error) == code


def test_split_error_head_normalizes_what_varies():
    head = 'code=OBJECT_NOT_FOUND | raw object 12/raw/photo/a.jpg missing after 3 tries (etag 9f8e7d6c5b4a3f2e) | reason | meta={"k": 1}'
    code, message = selectors.split_error_head(head)
    assert code == "OBJECT_NOT_FOUND"
    assert message == "raw object <key> missing after # tries (etag <hex>)"
    same = selectors.split_error_head(
        "code=OBJECT_NOT_FOUND | raw object 99/raw/x/b.jpg missing after 5 tries (etag 0123456789abcdef)"
    )
    assert selectors.error_group_key(*same) == selectors.error_group_key(code, message)
    assert selectors.split_error_head(None) == ("(no code)", "(no message)")


def test_error_code_q_refuses_odd_codes():
    assert str(selectors.error_code_q("x' OR 1=1 --")) == str(selectors.error_code_q(""))


def test_chart_geometry():
    assert [_nice_max(v) for v in (0, 1, 3, 7, 11, 240)] == [1, 1, 5, 10, 20, 500]
    days = [selectors.DayCounts(date(2026, 1, 1) + timedelta(days=i)) for i in range(14)]
    days[13] = selectors.DayCounts(date(2026, 1, 14), succeeded=6, partial=1, failed=3)
    chart = daily_bar_chart(days)
    assert chart.total == 10 and len(chart.labels) == 14
    assert [s.css for s in chart.segments] == ["ok", "partial", "failed"]
    top = chart.segments[-1]
    assert top.y == pytest.approx(10, abs=0.1)  # 10 of a 0..10 axis reaches the top margin
    assert sum(s.height for s in chart.segments) == pytest.approx(chart.plot_bottom - 10, abs=0.5)


def test_queue_depth_of_the_embedded_broker(settings, tmp_path):
    folder = tmp_path / "queue"
    folder.mkdir()
    for name in ("1_a.media.msg", "2_b.media.msg", "3_c.other.msg"):
        (folder / name).write_text("{}")
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(folder)}
    settings.CELERY_TASK_DEFAULT_QUEUE = "media"
    assert selectors.celery_queue_depth() == 2
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    assert selectors.celery_queue_depth() is None


@pytest.mark.django_db
def test_asset_list_filters_and_searches(viewer_client, processed_listing):
    built = processed_listing(9191)
    AssetFactory(listing_identity_id=9192, status=AssetStatus.PENDING_UPLOAD)
    url = reverse("admin:media_jobs_mediaasset_changelist")
    html = viewer_client.get(url, {"q": "9191/raw/photo/horizontal/horizontal-0"}).content.decode()
    assert html.count('class="toq-thumb-small"') == 2
    assert "CORRUPT_IMAGE" in html
    assert "9192" not in html.split('id="result_list"', 1)[1]
    failed = viewer_client.get(url, {"status__exact": "FAILED"}).content.decode()
    assert f"/mediaasset/{built['assets'][2].pk}/change/" in failed
    assert f"/mediaasset/{built['assets'][0].pk}/change/" not in failed
    detail = viewer_client.get(
        reverse("admin:media_jobs_mediaasset_change", args=[built["assets"][0].pk])
    ).content.decode()
    assert "thumbnail_photo_horizontal" in detail and "&quot;filename&quot;" in detail


@pytest.mark.django_db
def test_listing_asset_counts_by_outcome():
    for status in (
        AssetStatus.PROCESSED,
        AssetStatus.PROCESSED,
        AssetStatus.FAILED,
        AssetStatus.PROCESSING,
        AssetStatus.PENDING_UPLOAD,
    ):
        AssetFactory(listing_identity_id=7001, status=status)
    AssetFactory(listing_identity_id=7002, status=AssetStatus.FAILED)
    AssetFactory(listing_identity_id=7003, status=AssetStatus.PROCESSED)  # not asked for

    counts = selectors.listing_asset_counts(listing_ids=[7001, 7002, 7001, 7004])

    assert counts == {
        7001: selectors.AssetCounts(total=5, processed=2, failed=1),
        7002: selectors.AssetCounts(total=1, processed=0, failed=1),
    }
    assert selectors.listing_asset_counts(listing_ids=[]) == {}
