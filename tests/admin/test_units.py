"""Pure pieces of the portal: error code parsing, message normalization, the chart geometry,
the queue depth of the embedded broker, the asset list."""

from __future__ import annotations

import logging
from datetime import date, timedelta

import pytest
from django.urls import reverse

from media_jobs import errorcodes
from media_jobs.admin.charts import _ticks, daily_bar_chart
from media_jobs.models import AssetStatus
from media_jobs.selectors import admin as selectors
from media_jobs.selectors import errors as error_selectors
from media_jobs.services.broker import queue_depth
from tests.factories import AssetFactory
from toqportal.celery import app


@pytest.mark.parametrize(
    ("last_error", "code"),
    [
        ("code=ZIP_FAILED | boom", "ZIP_FAILED"),
        ("code=States.TaskFailed | x", "States.TaskFailed"),
        ("code=A\nsecond line", "A"),
        ("code=A:B | colon allowed", "A:B"),
        ("code=A;B | not a code", None),
        ("reconciler marked failed after 1h0m0s without callback", None),
        ("", None),
        (None, None),
    ],
)
def test_error_code_of(last_error, code):
    assert errorcodes.error_code_of(last_error) == code


def test_a_line_names_its_assets_codes_from_meta_or_failure_reason():
    line = (
        "code=DERIVATIVE_ERRORS_DETECTED | derivative errors detected | 3 of 5 assets failed: "
        'CORRUPT_IMAGE x2, OBJECT_NOT_FOUND x1 | meta={"errorCodes": {"CORRUPT_IMAGE": 2, '
        '"OBJECT_NOT_FOUND": 1}, "failedAssets": 3}'
    )
    (parsed,) = errorcodes.parse_last_error(line)
    assert parsed.code == "DERIVATIVE_ERRORS_DETECTED"
    assert parsed.message == "derivative errors detected"
    assert parsed.failure_reason.startswith("3 of 5 assets failed")
    assert parsed.asset_codes == {"CORRUPT_IMAGE": 2, "OBJECT_NOT_FOUND": 1}
    # the head only (meta cut off): the failureReason still names them
    head = line[: line.index('"OBJECT_NOT_FOUND": 1}')]
    assert errorcodes.parse_last_error(head)[0].asset_codes == {
        "CORRUPT_IMAGE": 2,
        "OBJECT_NOT_FOUND": 1,
    }
    assert errorcodes.error_codes_of(line + "\ncode=RECONCILER_TIMEOUT | late") == [
        "DERIVATIVE_ERRORS_DETECTED",
        "CORRUPT_IMAGE",
        "OBJECT_NOT_FOUND",
        "RECONCILER_TIMEOUT",
    ]


@pytest.mark.parametrize(
    ("message", "normalized"),
    [
        (
            "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d5c8a0b2c0] moov atom not found",
            "[mov,mp4,m4a,3gp,3g2,mj2 @ <addr>] moov atom not found",
        ),
        (
            "raw object 12/raw/photo/a.jpg missing after 3 tries (etag 9f8e7d6c5b4a3f2e)",
            "raw object <key> missing after # tries (etag <hex>)",
        ),
        (
            "/tmp/tmpab12cd/input.mp4: Invalid data found when processing input",
            "<tmp>: Invalid data found when processing input",
        ),
        ("image '12/raw/x5.jpg' is truncated at byte 35.", "image '…' is truncated at byte #."),
        ("job 0af76519-16cd-43dd-8448-eb211c80319c took 1.5s", "job <id> took 1.5s"),
        ("6000x4000 is over 180000000 pixels", "#x# is over # pixels"),
        ("HTTP 503 from http://backend:8080/api/v2/x, retry", "HTTP # from <url>, retry"),
        ("can't decode H264 in mp4", "can't decode H264 in mp4"),
    ],
)
def test_messages_are_masked_as_whole_tokens(message, normalized):
    assert errorcodes.normalize_error_message(message) == normalized


def test_error_code_filter_refuses_odd_codes():
    assert str(error_selectors.job_error_code_q("x' OR 1=1 --")) == str(
        error_selectors.job_error_code_q("")
    )


@pytest.mark.parametrize(
    ("tallest", "ticks"),
    [
        (0, [0, 1]),
        (1, [0, 1]),
        (3, [0, 1, 2, 3]),
        (5, [0, 2, 4, 6]),
        (7, [0, 2, 4, 6, 8]),
        (11, [0, 5, 10, 15]),
        (240, [0, 100, 200, 300]),
    ],
)
def test_chart_ticks_are_whole_numbers(tallest, ticks):
    top, values = _ticks(tallest)
    assert values == ticks and top == ticks[-1]
    chart = daily_bar_chart([selectors.DayCounts(date(2026, 1, 1), succeeded=tallest)])
    assert [tick.label for tick in chart.ticks] == [str(v) for v in ticks]


def test_chart_geometry():
    days = [selectors.DayCounts(date(2026, 1, 1) + timedelta(days=i)) for i in range(14)]
    days[13] = selectors.DayCounts(date(2026, 1, 14), succeeded=6, partial=1, failed=3)
    chart = daily_bar_chart(days)
    assert chart.total == 10 and len(chart.labels) == 14
    assert [s.css for s in chart.segments] == ["ok", "partial", "failed"]
    top = chart.segments[-1]
    assert top.y == pytest.approx(10, abs=0.1)  # 10 of a 0..10 axis reaches the top margin
    assert sum(s.height for s in chart.segments) == pytest.approx(chart.plot_bottom - 10, abs=0.5)


def test_queue_depth_of_the_embedded_broker(tmp_path):
    folder = tmp_path / "queue"
    folder.mkdir()
    for name in ("1_a.media.msg", "2_b.media.msg", "3_c.other.msg"):
        (folder / name).write_text("{}")
    saved = app.conf.broker_url, app.conf.broker_transport_options
    app.conf.broker_url = "filesystem://"
    app.conf.broker_transport_options = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
    }
    try:
        assert queue_depth("media") == 2
        app.conf.broker_url = "redis://127.0.0.1:1/0"  # nothing listens there
        assert queue_depth("media", timeout_s=0.5) is None
    finally:
        app.conf.broker_url, app.conf.broker_transport_options = saved


def test_a_broker_that_cannot_be_asked_is_logged(caplog):
    saved = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"  # nothing listens there
    try:
        with caplog.at_level(logging.INFO, logger="toq.media.broker"):
            assert queue_depth("media", timeout_s=0.5) is None
    finally:
        app.conf.broker_url = saved
    (record,) = [r for r in caplog.records if r.name == "toq.media.broker"]
    assert record.levelname == "INFO"
    assert record.getMessage().startswith("queue depth unknown: ")
    assert "Connection refused" in record.getMessage()


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
