"""backfill_derivatives against MariaDB and the moto S3 server, on real generated media."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from PIL import Image

from media_jobs import sample_media
from media_jobs.models import AssetStatus, JobProvider, JobStatus, MediaAsset
from media_jobs.pipeline import keys
from media_jobs.pipeline.storage import ObjectNotFound, Storage
from media_jobs.pipeline.thumbnails import SOURCE_ETAG_METADATA
from media_jobs.services import backfill
from media_jobs.storage import pipeline_storage
from tests.factories import AssetFactory, JobFactory
from tests.fixtures.s3server import MotoServer

from .conftest import bucket_snapshot, processed_photo, put_photo, rows_snapshot, run_command

pytestmark = pytest.mark.django_db

LISTING = 7301
OTHER = 7302


def derivative_keys(asset: MediaAsset) -> dict[str, str]:
    return {size: keys.derivative_key(asset.s3_key_raw, size) for size in keys.IMAGE_SIZES}


def assert_current(storage: Storage, asset: MediaAsset) -> None:
    raw_etag = storage.head(asset.s3_key_raw).etag
    for size, key in derivative_keys(asset).items():
        info = storage.head(key)
        assert info.metadata[SOURCE_ETAG_METADATA] == raw_etag, key
        with storage.open_read(key) as body:
            image = Image.open(io.BytesIO(body.read()))
        assert image.format == "JPEG"
        assert image.width == min(keys.IMAGE_SIZES[size], 640)


def test_regenerates_missing_derivatives_and_records_them_like_a_callback(storage: Storage) -> None:
    assets = [processed_photo(storage, LISTING, n) for n in (1, 2, 3)]
    assets[0].metadata = {"filename": "IMG_0001.jpg", "errorCode": "OLD", "error": "stale"}
    assets[0].save()

    run = run_command("backfill_derivatives", "--listing", str(LISTING))

    assert run.code == 0, run.stderr
    assert "backfill_derivatives: selected=3 done=3 skipped=0 failed=0" in run.stdout
    for asset in assets:
        asset.refresh_from_db()
        assert_current(storage, asset)
        expected = derivative_keys(asset)
        assert asset.status == AssetStatus.PROCESSED
        assert asset.s3_key_processed == expected["large"]
        assert asset.metadata["thumbnailKey"] == expected["thumbnail"]
        for size, key in expected.items():
            assert asset.metadata[f"{size}_photo_horizontal"] == key
        assert asset.metadata["filename"] == f"IMG_{asset.sequence:04d}.jpg"
        assert "errorCode" not in asset.metadata  # merged the way a callback merges

    before = bucket_snapshot(storage)
    again = run_command("backfill_derivatives", "--listing", str(LISTING), "--json")

    assert (again.json["done"], again.json["skipped"], again.json["failed"]) == (0, 3, 0)
    assert bucket_snapshot(storage) == before


def test_dry_run_changes_no_row_and_no_object(storage: Storage) -> None:
    for n in (1, 2):
        processed_photo(storage, LISTING, n)
    rows, objects = rows_snapshot(), bucket_snapshot(storage)

    run = run_command("backfill_derivatives", "--listing", str(LISTING), "--dry-run")

    assert run.code == 0
    assert rows_snapshot() == rows
    assert bucket_snapshot(storage) == objects
    assert (
        run.stdout.count("would regenerate 4 outputs (missing: thumbnail, small, medium, large)")
        == 2
    )
    assert "selected=2 done=2 skipped=0 failed=0 (dry run: nothing changed)" in run.stdout


def test_missing_only_default_and_force(storage: Storage) -> None:
    legacy = processed_photo(storage, LISTING, 1)  # derivatives by another system, no source etag
    for key in derivative_keys(legacy).values():
        storage.write(key, sample_media.jpeg_bytes(200, 150), content_type="image/jpeg")
    partial = processed_photo(storage, LISTING, 2)
    current = processed_photo(storage, LISTING, 3)
    assert run_command("backfill_derivatives", "--asset", f"{partial.pk},{current.pk}").code == 0
    storage.delete(derivative_keys(partial)["medium"])
    # damaged in place but still claiming the right source: only --force repairs it
    damaged_key = derivative_keys(current)["small"]
    storage.write(damaged_key, b"garbage", metadata=dict(storage.head(damaged_key).metadata))

    missing_only = run_command(
        "backfill_derivatives", "--listing", str(LISTING), "--missing-only", "--json"
    )
    assert {i["ref"]: i["outcome"] for i in missing_only.json["items"]} == {
        legacy.pk: "skipped",
        partial.pk: "done",
        current.pk: "skipped",
    }
    assert SOURCE_ETAG_METADATA not in storage.head(derivative_keys(legacy)["large"]).metadata

    default = run_command("backfill_derivatives", "--listing", str(LISTING), "--json")
    assert {i["ref"]: i["outcome"] for i in default.json["items"]} == {
        legacy.pk: "done",  # stale: not made from this raw object
        partial.pk: "skipped",
        current.pk: "skipped",
    }
    assert_current(storage, legacy)
    assert storage.head(damaged_key).size == len(b"garbage")

    forced = run_command("backfill_derivatives", "--listing", str(LISTING), "--force", "--json")
    assert (forced.json["done"], forced.json["skipped"]) == (3, 0)
    assert_current(storage, current)


def test_one_failing_asset_does_not_stop_the_others(storage: Storage) -> None:
    good = processed_photo(storage, LISTING, 1)
    corrupt = processed_photo(storage, LISTING, 2)
    storage.write(
        corrupt.s3_key_raw, sample_media.truncated_jpeg_bytes(), content_type="image/jpeg"
    )
    corrupt.s3_key_processed = "kept/as/it/was.jpg"
    corrupt.save()
    gone = processed_photo(storage, LISTING, 3, upload=False)
    later = processed_photo(storage, LISTING, 4)

    run = run_command("backfill_derivatives", "--listing", str(LISTING), "--batch-size", "2")

    assert run.code == 1
    assert "selected=4 done=2 skipped=0 failed=2" in run.stdout
    assert "2 of 4 assets failed" in run.stderr
    assert f"FAILED asset #{corrupt.pk}" in run.stderr and "CORRUPT_IMAGE" in run.stderr
    assert f"FAILED asset #{gone.pk}" in run.stderr and "raw object is missing" in run.stderr
    for asset in (good, later):
        assert_current(storage, asset)
    corrupt.refresh_from_db()
    assert (corrupt.status, corrupt.s3_key_processed) == (
        AssetStatus.PROCESSED,
        "kept/as/it/was.jpg",
    )
    with pytest.raises(ObjectNotFound):
        storage.head(derivative_keys(gone)["large"])


def test_selection_by_listing_type_date_range_and_status(storage: Storage) -> None:
    now = timezone.now()
    horizontal = processed_photo(storage, LISTING, 1)
    vertical = processed_photo(storage, LISTING, 1, asset_type="PHOTO_VERTICAL")
    elsewhere = processed_photo(storage, OTHER, 1)
    AssetFactory(listing_identity_id=LISTING, sequence=5, status=AssetStatus.FAILED)
    JobFactory(
        listing_identity_id=LISTING,
        status=JobStatus.SUCCEEDED,
        provider=JobProvider.STEP_FUNCTIONS,
        completed_at=now - timedelta(days=10),
    )
    JobFactory(
        listing_identity_id=OTHER,
        status=JobStatus.SUCCEEDED,
        provider=JobProvider.STEP_FUNCTIONS,
        completed_at=now - timedelta(days=1),
    )

    def selected(*args: str) -> set[int]:
        run = run_command("backfill_derivatives", "--dry-run", "--json", *args)
        assert run.code == 0, run.stderr
        return {item["ref"] for item in run.json["items"]}

    assert selected() == {horizontal.pk, vertical.pk, elsewhere.pk}  # never the FAILED one
    assert selected("--listing", str(LISTING)) == {horizontal.pk, vertical.pk}
    assert selected("--asset-type", "photo_vertical") == {vertical.pk}
    assert selected("--asset-type", "PHOTO_VERTICAL,PHOTO_HORIZONTAL", "--listing", str(OTHER)) == {
        elsewhere.pk
    }
    since = (now - timedelta(days=3)).date().isoformat()
    assert selected("--since", since) == {elsewhere.pk}
    until = (now - timedelta(days=5)).isoformat()
    assert selected("--until", until) == {horizontal.pk, vertical.pk}


def test_video_backfill_makes_poster_and_transcode(storage: Storage) -> None:
    raw_key = keys.raw_key(LISTING, "VIDEO_HORIZONTAL", "horizontal-01", "tour.mp4")
    storage.write(raw_key, sample_media.mp4_bytes(1.0, 320, 240), content_type="video/mp4")
    video = AssetFactory(
        listing_identity_id=LISTING,
        asset_type="VIDEO_HORIZONTAL",
        sequence=1,
        status=AssetStatus.PROCESSED,
        s3_key_raw=raw_key,
    )

    run = run_command("backfill_derivatives", "--asset", str(video.pk), "--json")

    assert run.code == 0, run.stderr
    raw_etag = storage.head(raw_key).etag
    for key in (keys.poster_key(raw_key), keys.transcode_key(raw_key)):
        assert storage.head(key).metadata[SOURCE_ETAG_METADATA] == raw_etag
    video.refresh_from_db()
    assert video.metadata["thumbnailKey"] == keys.poster_key(raw_key)
    # as on the workflow: the MP4 is the best output, the poster frame the thumbnail
    assert video.s3_key_processed == keys.transcode_key(raw_key)
    assert video.metadata["original_video_horizontal"] == keys.transcode_key(raw_key)
    again = run_command("backfill_derivatives", "--asset", str(video.pk), "--json")
    assert again.json["skipped"] == 1


def test_a_video_processed_under_the_old_poster_rule_is_moved_to_the_backends_key(
    storage: Storage,
) -> None:
    """Videos processed before the poster followed the backend's URL rule have their poster
    at thumbnail/<stem>.jpg (Go: thumbnail/<raw file name>): the default backfill writes it
    at the transcode's name and records it; the old object stays the asset's own (no
    orphan in verify_storage)."""
    raw_key = keys.raw_key(LISTING, "VIDEO_VERTICAL", "vertical-01", "walk.mov")
    storage.write(raw_key, sample_media.mp4_bytes(1.0, 240, 320), content_type="video/mp4")
    raw_etag = storage.head(raw_key).etag
    [old_poster, go_poster] = keys.legacy_poster_keys(raw_key)
    transcode = keys.transcode_key(raw_key)
    for key, data, kind in (
        (old_poster, sample_media.jpeg_bytes(200, 266), "image/jpeg"),
        (go_poster, sample_media.jpeg_bytes(200, 266), "image/jpeg"),  # referenced by no row
        (transcode, sample_media.mp4_bytes(1.0, 240, 320), "video/mp4"),
    ):
        storage.write(key, data, content_type=kind, metadata={SOURCE_ETAG_METADATA: raw_etag})
    video = AssetFactory(
        listing_identity_id=LISTING,
        asset_type="VIDEO_VERTICAL",
        sequence=1,
        status=AssetStatus.PROCESSED,
        s3_key_raw=raw_key,
        s3_key_processed=transcode,
        metadata={"thumbnailKey": old_poster, "thumbnail_video_thumbnail": old_poster},
    )
    assert go_poster.endswith("/thumbnail/vertical-01-walk.mov")

    run = run_command("backfill_derivatives", "--asset", str(video.pk), "--json")

    assert run.code == 0, run.stderr
    assert run.json["items"][0]["data"]["missing"] == ["poster"]
    poster = keys.poster_key(raw_key)
    assert poster.endswith("/thumbnail/vertical-01-walk.mp4")
    info = storage.head(poster)
    assert (info.content_type, info.metadata[SOURCE_ETAG_METADATA]) == ("image/jpeg", raw_etag)
    video.refresh_from_db()
    assert video.metadata["thumbnailKey"] == poster
    assert video.metadata["thumbnail_video_vertical"] == poster
    assert video.s3_key_processed == transcode
    verify = run_command("verify_storage", "--listing", str(LISTING), "--json")
    [item] = verify.json["items"]
    assert item["data"]["orphan_derivatives"] == [], item
    assert item["data"]["processed_missing"] == [], item


@pytest.mark.parametrize(
    "args, message",
    [
        (("--since", "2024-05-01", "--until", "2024-04-01"), "range is empty or inverted"),
        (("--since", "yesterday"), "'yesterday' is not a date"),
        (("--listing", "12,abc"), "'abc' is not a listing id"),
        (("--asset-type", "THUMBNAIL"), "unknown asset type 'THUMBNAIL'"),
        (("--force", "--missing-only"), "contradict"),
        (("--limit", "-3"), "must be at least 1"),
    ],
)
def test_bad_arguments_exit_2(storage: Storage, args: tuple[str, ...], message: str) -> None:
    run = run_command("backfill_derivatives", *args)

    assert run.code == 2
    assert message in run.stderr
    assert "Traceback" not in run.stderr


@pytest.fixture
def versioned_storage(s3_settings: Any, moto_server: MotoServer) -> Iterator[Storage]:
    """The storage port on a bucket of its own with S3 versioning on: every write of a key
    leaves a version behind, so a test can count the writes."""
    s3 = moto_server.client("s3")
    bucket = f"toq-versioned-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3_settings.MEDIA_BUCKET = bucket
    yield pipeline_storage()
    listing = s3.list_object_versions(Bucket=bucket)
    for version in listing.get("Versions", []) + listing.get("DeleteMarkers", []):
        s3.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
    s3.delete_bucket(Bucket=bucket)


def test_force_writes_each_photo_derivative_once_with_its_source(
    versioned_storage: Storage, moto_server: MotoServer, s3_settings: Any
) -> None:
    storage = versioned_storage
    asset = processed_photo(storage, LISTING, 1)
    assert run_command("backfill_derivatives", "--asset", str(asset.pk)).code == 0

    forced = run_command("backfill_derivatives", "--asset", str(asset.pk), "--force")

    assert forced.code == 0, forced.stderr
    assert_current(storage, asset)
    # the forced render carries the source etag, so the thumbnail step that follows finds
    # the derivatives current and does not write them a second time
    s3 = moto_server.client("s3")
    for key in derivative_keys(asset).values():
        versions = s3.list_object_versions(Bucket=s3_settings.MEDIA_BUCKET, Prefix=key)
        assert len([v for v in versions["Versions"] if v["Key"] == key]) == 2, key


def test_a_raw_object_replaced_during_a_forced_backfill_is_rendered_once_from_the_new_one(
    versioned_storage: Storage,
    moto_server: MotoServer,
    s3_settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A new upload of the raw object lands after the backfill looked at the derivatives
    and before validation: the forced render reads the new object and carries the etag
    validation saw (the new one), so the thumbnail step after it finds the derivatives
    current and does not write them a second time."""
    storage = versioned_storage
    asset = processed_photo(storage, LISTING, 1)
    assert run_command("backfill_derivatives", "--asset", str(asset.pk)).code == 0
    validate = backfill.validate_assets

    def upload_then_validate(event: Any, **kwargs: Any) -> Any:
        put_photo(storage, asset.s3_key_raw, seed=99)
        return validate(event, **kwargs)

    monkeypatch.setattr(backfill, "validate_assets", upload_then_validate)
    old_etag = storage.head(asset.s3_key_raw).etag

    forced = run_command("backfill_derivatives", "--asset", str(asset.pk), "--force")

    assert forced.code == 0, forced.stderr
    assert storage.head(asset.s3_key_raw).etag != old_etag
    assert_current(storage, asset)
    s3 = moto_server.client("s3")
    for key in derivative_keys(asset).values():
        versions = s3.list_object_versions(Bucket=s3_settings.MEDIA_BUCKET, Prefix=key)
        assert len([v for v in versions["Versions"] if v["Key"] == key]) == 2, key


def test_a_raw_object_that_fails_validation_is_reported_with_its_reason(
    storage: Storage,
) -> None:
    asset = processed_photo(storage, LISTING, 1, upload=False)
    storage.write(asset.s3_key_raw, b"%PDF-1.4 not a photo", content_type="image/jpeg")

    run = run_command("backfill_derivatives", "--asset", str(asset.pk), "--json")

    assert run.code == 1
    [item] = run.json["items"]
    assert (item["outcome"], item["data"]["error_code"]) == ("failed", "UNSUPPORTED_FORMAT")
    assert item["detail"] == (
        f"asset #{asset.pk} PHOTO_HORIZONTAL 7301/raw/photo/horizontal/horizontal-01-IMG_0001.jpg:"
        " UNSUPPORTED_FORMAT: '7301/raw/photo/horizontal/horizontal-01-IMG_0001.jpg' should be"
        " an image: not a known media format"
    )


def test_the_reason_names_the_missing_and_the_stale_derivatives(storage: Storage) -> None:
    asset = processed_photo(storage, LISTING, 1)
    assert run_command("backfill_derivatives", "--asset", str(asset.pk)).code == 0
    keys_of = derivative_keys(asset)
    storage.delete(keys_of["medium"])
    # rewritten by another system: no source etag
    storage.write(keys_of["small"], sample_media.jpeg_bytes(200, 150), content_type="image/jpeg")

    run = run_command("backfill_derivatives", "--asset", str(asset.pk), "--dry-run", "--json")

    [item] = run.json["items"]
    assert item["detail"].endswith(
        ": would regenerate 4 outputs (missing: medium; stale: small)"
    ), item


def test_a_row_that_lost_its_derivative_keys_is_updated_without_rendering(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    asset = processed_photo(storage, LISTING, 1)
    with caplog.at_level(logging.INFO, logger="toq.operations"):
        assert run_command("backfill_derivatives", "--asset", str(asset.pk)).code == 0
    [logged] = [r for r in caplog.records if r.name == "toq.operations" and "backfilled" in r.msg]
    assert logged.getMessage() == f"backfilled derivatives of asset {asset.pk}"
    assert (logged.step, logged.listing_identity_id) == ("backfill", LISTING)
    asset.refresh_from_db()
    referenced = (asset.s3_key_processed, asset.metadata["thumbnailKey"])
    asset.s3_key_processed = None
    asset.metadata = {"filename": "IMG_0001.jpg"}
    asset.save()
    objects = bucket_snapshot(storage)

    run = run_command("backfill_derivatives", "--asset", str(asset.pk), "--json")

    assert run.code == 0, run.stderr
    [item] = run.json["items"]
    assert item["outcome"] == "done"
    assert item["detail"].endswith(": row updated (derivatives current)"), item
    asset.refresh_from_db()
    assert (asset.s3_key_processed, asset.metadata["thumbnailKey"]) == referenced
    assert bucket_snapshot(storage) == objects
