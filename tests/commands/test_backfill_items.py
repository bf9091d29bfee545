"""services.backfill.asset_backfill_derivatives called directly, as the ops_tasks runner
does for each item of backfill_derivatives: the outcome, the one-line detail and the data
of every branch, against MariaDB and the moto S3 server, on real generated media."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest
from PIL import Image

from media_jobs import sample_media
from media_jobs.models import AssetStatus, MediaAsset
from media_jobs.pipeline.storage import Storage
from media_jobs.pipeline.thumbnails import SOURCE_ETAG_METADATA
from media_jobs.services.backfill import asset_backfill_derivatives
from tests.factories import AssetFactory

from .conftest import bucket_snapshot, processed_photo, rows_snapshot

pytestmark = pytest.mark.django_db

LISTING = 7331
RAW = "7331/raw/photo/horizontal/horizontal-01-IMG_0001.jpg"
DERIVATIVES = {
    size: f"7331/processed/photo/horizontal/{size}/horizontal-01-IMG_0001.jpg"
    for size in ("thumbnail", "small", "medium", "large")
}
ALL_SIZES = ["thumbnail", "small", "medium", "large"]


def label(asset: MediaAsset) -> str:
    return f"asset #{asset.pk} PHOTO_HORIZONTAL {RAW}"


def backfilled_photo(storage: Storage) -> MediaAsset:
    """A PROCESSED photo whose derivatives are current and recorded on its row."""
    asset = processed_photo(storage, LISTING, 1)
    assert asset.s3_key_raw == RAW
    assert asset_backfill_derivatives(asset_id=asset.pk).outcome == "done"
    asset.refresh_from_db()
    assert asset.s3_key_processed == DERIVATIVES["large"]
    return asset


def is_jpeg(storage: Storage, key: str) -> bool:
    with storage.open_read(key) as body:
        return Image.open(io.BytesIO(body.read())).format == "JPEG"


def test_an_asset_that_no_longer_exists_is_skipped_naming_it() -> None:
    result = asset_backfill_derivatives(asset_id=987654)

    assert (result.outcome, result.detail, result.data) == (
        "skipped",
        "asset #987654 no longer exists",
        {},
    )


def test_an_asset_that_is_not_processed_is_skipped_saying_its_status() -> None:
    asset = AssetFactory(
        listing_identity_id=LISTING, sequence=1, status=AssetStatus.FAILED, s3_key_raw=RAW
    )

    result = asset_backfill_derivatives(asset_id=asset.pk)

    assert (result.outcome, result.detail, result.data) == (
        "skipped",
        f"{label(asset)}: is FAILED, only PROCESSED assets are backfilled",
        {},
    )


def test_a_processed_asset_without_a_raw_key_fails_as_an_invalid_key() -> None:
    asset = AssetFactory(
        listing_identity_id=LISTING, sequence=1, status=AssetStatus.PROCESSED, s3_key_raw=None
    )

    result = asset_backfill_derivatives(asset_id=asset.pk)

    assert (result.outcome, result.detail, result.data) == (
        "failed",
        f"asset #{asset.pk} PHOTO_HORIZONTAL (no raw key): has no raw key",
        {"error_code": "INVALID_KEY"},
    )


def test_a_missing_raw_object_fails_as_not_found(storage: Storage) -> None:
    asset = processed_photo(storage, LISTING, 1, upload=False)

    result = asset_backfill_derivatives(asset_id=asset.pk)

    assert (result.outcome, result.detail, result.data) == (
        "failed",
        f"{label(asset)}: raw object is missing",
        {"error_code": "OBJECT_NOT_FOUND"},
    )


def test_a_raw_key_outside_the_key_rules_fails_with_the_rule_it_breaks(storage: Storage) -> None:
    """The object exists, but no derivative key can be made from its key."""
    raw_key = "7331/uploads/IMG_0001.jpg"
    storage.write(raw_key, sample_media.jpeg_bytes(64, 48), content_type="image/jpeg")
    asset = AssetFactory(
        listing_identity_id=LISTING, sequence=1, status=AssetStatus.PROCESSED, s3_key_raw=raw_key
    )

    result = asset_backfill_derivatives(asset_id=asset.pk)

    assert (result.outcome, result.detail, result.data) == (
        "failed",
        f"asset #{asset.pk} PHOTO_HORIZONTAL {raw_key}: INVALID_KEY: invalid raw key"
        f" '{raw_key}': no 'raw/' folder",
        {"error_code": "INVALID_KEY"},
    )


def test_by_default_stale_derivatives_are_regenerated_and_logged_as_no_job(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    """Without options the backfill really writes (not a dry run) and also replaces
    derivatives another system made (no source etag: stale, not only missing ones). Its
    step logs carry job id 0: a backfill is no job."""
    asset = processed_photo(storage, LISTING, 1)
    for key in DERIVATIVES.values():
        storage.write(key, sample_media.jpeg_bytes(200, 150), content_type="image/jpeg")

    with caplog.at_level(logging.INFO):
        result = asset_backfill_derivatives(asset_id=asset.pk)

    assert (result.outcome, result.detail, result.data) == (
        "done",
        f"{label(asset)}: regenerated (stale: thumbnail, small, medium, large)",
        {"processed_key": DERIVATIVES["large"], "missing": [], "stale": ALL_SIZES},
    )
    raw_etag = storage.head(RAW).etag
    for key in DERIVATIVES.values():
        assert storage.head(key).metadata[SOURCE_ETAG_METADATA] == raw_etag
    [validated] = [r for r in caplog.records if r.name == "toq.pipeline.validate"]
    assert (validated.job_id, validated.step) == (0, "validate")


def test_by_default_current_derivatives_and_row_are_skipped(storage: Storage) -> None:
    asset = backfilled_photo(storage)
    objects = bucket_snapshot(storage)

    result = asset_backfill_derivatives(asset_id=asset.pk)

    assert (result.outcome, result.detail, result.data) == (
        "skipped",
        f"{label(asset)}: derivatives current",
        {"missing": [], "stale": []},
    )
    assert bucket_snapshot(storage) == objects


def test_missing_only_leaves_stale_derivatives_alone(storage: Storage) -> None:
    asset = processed_photo(storage, LISTING, 1)
    for key in DERIVATIVES.values():
        storage.write(key, sample_media.jpeg_bytes(200, 150), content_type="image/jpeg")
    objects = bucket_snapshot(storage)

    result = asset_backfill_derivatives(asset_id=asset.pk, missing_only=True)

    assert (result.outcome, result.detail, result.data) == (
        "skipped",
        f"{label(asset)}: no derivative missing",
        {"missing": [], "stale": ALL_SIZES},
    )
    assert bucket_snapshot(storage) == objects


def test_missing_only_dry_run_names_the_missing_derivatives(storage: Storage) -> None:
    asset = backfilled_photo(storage)
    storage.delete(DERIVATIVES["small"])
    storage.delete(DERIVATIVES["medium"])
    rows, objects = rows_snapshot(), bucket_snapshot(storage)

    result = asset_backfill_derivatives(asset_id=asset.pk, missing_only=True, dry_run=True)

    assert (result.outcome, result.detail, result.data) == (
        "done",
        f"{label(asset)}: would regenerate 4 outputs (missing: small, medium)",
        {"missing": ["small", "medium"], "stale": []},
    )
    assert (rows_snapshot(), bucket_snapshot(storage)) == (rows, objects)


def test_a_row_that_lost_its_keys_is_updated_from_current_derivatives(storage: Storage) -> None:
    asset = backfilled_photo(storage)
    asset.s3_key_processed = None
    asset.metadata = {"filename": "IMG_0001.jpg"}
    asset.save()
    objects = bucket_snapshot(storage)

    dry = asset_backfill_derivatives(asset_id=asset.pk, dry_run=True)

    assert (dry.outcome, dry.detail, dry.data) == (
        "done",
        f"{label(asset)}: would update the row (derivatives current)",
        {"missing": [], "stale": []},
    )
    asset.refresh_from_db()
    assert asset.s3_key_processed is None

    result = asset_backfill_derivatives(asset_id=asset.pk)

    assert (result.outcome, result.detail, result.data) == (
        "done",
        f"{label(asset)}: row updated (derivatives current)",
        {"missing": [], "stale": []},
    )
    asset.refresh_from_db()
    assert asset.s3_key_processed == DERIVATIVES["large"]
    assert asset.metadata["thumbnailKey"] == DERIVATIVES["thumbnail"]
    assert bucket_snapshot(storage) == objects


def test_a_row_whose_thumbnail_key_points_elsewhere_is_updated(storage: Storage) -> None:
    """The processed key alone matching is not enough: the thumbnail key is checked too."""
    asset = backfilled_photo(storage)
    asset.metadata = {**asset.metadata, "thumbnailKey": "7331/elsewhere/thumb.jpg"}
    asset.save()

    result = asset_backfill_derivatives(asset_id=asset.pk)

    assert (result.outcome, result.detail) == (
        "done",
        f"{label(asset)}: row updated (derivatives current)",
    )
    asset.refresh_from_db()
    assert asset.metadata["thumbnailKey"] == DERIVATIVES["thumbnail"]


def test_force_rewrites_current_photo_derivatives_as_jpeg(storage: Storage) -> None:
    asset = backfilled_photo(storage)
    # damaged in place but still claiming the right source: only force repairs it
    damaged = DERIVATIVES["small"]
    storage.write(damaged, b"garbage", metadata=dict(storage.head(damaged).metadata))

    result = asset_backfill_derivatives(asset_id=asset.pk, force=True)

    assert (result.outcome, result.detail, result.data) == (
        "done",
        f"{label(asset)}: regenerated (forced)",
        {"processed_key": DERIVATIVES["large"], "missing": [], "stale": []},
    )
    raw_etag = storage.head(RAW).etag
    for key in DERIVATIVES.values():
        info = storage.head(key)
        assert (info.content_type, info.metadata[SOURCE_ETAG_METADATA]) == (
            "image/jpeg",
            raw_etag,
        ), key
    assert is_jpeg(storage, damaged)


def test_the_decode_limits_of_the_settings_apply(storage: Storage, settings: Any) -> None:
    """MEDIA_MAX_IMAGE_PIXELS bounds a backfill's render as it bounds the workflow's, with
    or without force; the row is left as it was."""
    asset = backfilled_photo(storage)
    storage.delete(DERIVATIVES["medium"])
    settings.MEDIA_MAX_IMAGE_PIXELS = 1000
    too_many = "TOO_MANY_PIXELS: 640x480 = 307200 pixels exceeds the limit of 1000"

    regenerated = asset_backfill_derivatives(asset_id=asset.pk)
    forced = asset_backfill_derivatives(asset_id=asset.pk, force=True)

    facts = {"missing": ["medium"], "stale": []}
    assert (regenerated.outcome, regenerated.detail, regenerated.data) == (
        "failed",
        f"{label(asset)}: {too_many}",
        {"error_code": "TOO_MANY_PIXELS", **facts},
    )
    assert (forced.outcome, forced.detail, forced.data) == (
        "failed",
        f"{label(asset)}: {too_many}",
        {"error_code": "TOO_MANY_PIXELS", **facts},
    )
    asset.refresh_from_db()
    assert asset.s3_key_processed == DERIVATIVES["large"]


def test_a_raw_object_that_fails_validation_fails_with_the_facts(storage: Storage) -> None:
    asset = backfilled_photo(storage)
    storage.write(RAW, b"%PDF-1.4 not a photo", content_type="image/jpeg")

    result = asset_backfill_derivatives(asset_id=asset.pk)

    assert (result.outcome, result.data) == (
        "failed",
        {"error_code": "UNSUPPORTED_FORMAT", "missing": [], "stale": ALL_SIZES},
    )
    assert result.detail == (
        f"{label(asset)}: UNSUPPORTED_FORMAT: '{RAW}' should be an image: not a known media format"
    )


def test_the_rows_type_not_the_keys_folder_chooses_the_branch(storage: Storage) -> None:
    """A photo uploaded under a video folder is still rendered as the photo its row says."""
    raw_key = "7331/raw/video/horizontal/horizontal-01-IMG_0001.jpg"
    storage.write(raw_key, sample_media.jpeg_bytes(64, 48), content_type="image/jpeg")
    asset = AssetFactory(
        listing_identity_id=LISTING, sequence=1, status=AssetStatus.PROCESSED, s3_key_raw=raw_key
    )

    result = asset_backfill_derivatives(asset_id=asset.pk)

    large = "7331/processed/video/horizontal/large/horizontal-01-IMG_0001.jpg"
    assert (result.outcome, result.data["processed_key"]) == ("done", large), result.detail
    assert is_jpeg(storage, large)


def test_video_row_update_and_force(storage: Storage) -> None:
    """A video's current poster and transcode are recorded without rendering (the poster as
    the thumbnail); force removes and renders them again even when they claim the right
    source."""
    raw_key = "7331/raw/video/horizontal/horizontal-01-tour.mp4"
    poster = "7331/processed/video/horizontal/thumbnail/horizontal-01-tour.mp4"
    transcode = "7331/processed/video/horizontal/original/horizontal-01-tour.mp4"
    storage.write(raw_key, sample_media.mp4_bytes(1.0, 320, 240), content_type="video/mp4")
    video = AssetFactory(
        listing_identity_id=LISTING,
        asset_type="VIDEO_HORIZONTAL",
        sequence=1,
        status=AssetStatus.PROCESSED,
        s3_key_raw=raw_key,
        metadata={"filename": "tour.mp4"},
    )
    assert asset_backfill_derivatives(asset_id=video.pk).outcome == "done"
    video.s3_key_processed = None
    video.metadata = {"filename": "tour.mp4"}
    video.save()

    updated = asset_backfill_derivatives(asset_id=video.pk)

    assert (updated.outcome, updated.detail) == (
        "done",
        f"asset #{video.pk} VIDEO_HORIZONTAL {raw_key}: row updated (derivatives current)",
    )
    video.refresh_from_db()
    assert video.s3_key_processed == transcode
    assert video.metadata == {
        "filename": "tour.mp4",
        "thumbnailKey": poster,
        "thumbnail_video_horizontal": poster,
        "original_video_horizontal": transcode,
    }

    storage.write(poster, b"garbage", metadata=dict(storage.head(poster).metadata))
    forced = asset_backfill_derivatives(asset_id=video.pk, force=True)

    assert (forced.outcome, forced.detail) == (
        "done",
        f"asset #{video.pk} VIDEO_HORIZONTAL {raw_key}: regenerated (forced)",
    )
    assert is_jpeg(storage, poster)
    assert storage.head(poster).metadata[SOURCE_ETAG_METADATA] == storage.head(raw_key).etag
