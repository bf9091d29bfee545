"""services.storage_audit called directly (as the ``ops_tasks`` worker task and the admin's
storage check do), against MariaDB and the moto S3 server: what each item reports, word for
word and in its data, and what the check expects of every object."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from media_jobs.models import (
    AssetStatus,
    AssetType,
    JobProvider,
    JobStatus,
    MediaAsset,
    MediaProcessingJob,
)
from media_jobs.pipeline.storage import ObjectInfo, Storage
from media_jobs.pipeline.storage_s3 import S3Storage
from media_jobs.services.storage_audit import (
    ExpectedObject,
    expected_objects,
    listing_audit,
    listing_verify,
    listing_zip_rebuild,
    listing_zip_status,
    storage_check,
)
from media_jobs.storage import pipeline_storage
from tests.factories import AssetFactory, JobFactory
from tests.fixtures.s3server import MotoServer
from tests.support.wrapped_storage import WrappedStorage

pytestmark = pytest.mark.django_db

LISTING = 7621


@pytest.fixture
def storage(s3_settings: Any) -> Storage:
    """The portal's storage (settings) on the moto server's per-test-emptied bucket."""
    return pipeline_storage()


def ready_asset(listing: int = LISTING, sequence: int = 1) -> MediaAsset:
    """PROCESSED with raw and processed keys: nothing keeps the listing from a ZIP."""
    return AssetFactory(
        listing_identity_id=listing,
        sequence=sequence,
        status=AssetStatus.PROCESSED,
        s3_key_processed=f"{listing}/processed/photo/horizontal/large/IMG_{sequence}.jpg",
    )


def missing_zip_facts(listing: int = LISTING) -> dict[str, Any]:
    """The ZIP facts of a listing whose bucket holds neither a ZIP nor any output."""
    return {
        "key": f"{listing}/processed/zip/listing-media.zip",
        "state": "missing",
        "zip_modified": None,
        "newest_processed": None,
        "newest_processed_key": None,
    }


def finalizations(listing: int = LISTING) -> list[MediaProcessingJob]:
    return list(
        MediaProcessingJob.objects.filter(
            listing_identity_id=listing, provider=JobProvider.STEP_FUNCTIONS_FINALIZATION
        ).order_by("pk")
    )


def test_zip_rebuild_by_default_skips_a_current_zip_with_its_facts(storage: Storage) -> None:
    asset = ready_asset()
    storage.write(asset.s3_key_processed, b"large")
    storage.write(f"{LISTING}/processed/zip/listing-media.zip", b"zip")
    zip_modified = storage.head(f"{LISTING}/processed/zip/listing-media.zip").last_modified
    large_modified = storage.head(asset.s3_key_processed).last_modified

    result = listing_zip_rebuild(listing_identity_id=LISTING)

    assert (result.outcome, result.detail) == ("skipped", f"listing {LISTING}: ZIP is current")
    assert result.data == {
        "key": f"{LISTING}/processed/zip/listing-media.zip",
        "state": "current",
        "zip_modified": zip_modified.isoformat(),
        "newest_processed": large_modified.isoformat(),
        "newest_processed_key": asset.s3_key_processed,
    }
    assert finalizations() == []


def test_zip_rebuild_by_default_starts_a_finalization_naming_the_job(storage: Storage) -> None:
    """Without options a missing ZIP really gets a finalization (not a dry run)."""
    ready_asset()
    result = listing_zip_rebuild(listing_identity_id=LISTING)
    (job,) = finalizations()
    assert job.status == JobStatus.RUNNING
    assert result.outcome == "done"
    assert result.detail == f"listing {LISTING}: finalization job #{job.pk} started (ZIP missing)"
    assert result.data == {"job_id": job.pk, **missing_zip_facts()}


def test_zip_rebuild_dry_run_says_what_it_would_start(storage: Storage) -> None:
    ready_asset()
    result = listing_zip_rebuild(listing_identity_id=LISTING, dry_run=True)
    assert (result.outcome, result.detail) == (
        "done",
        f"listing {LISTING}: would start a finalization (ZIP missing)",
    )
    assert result.data == missing_zip_facts()
    assert finalizations() == []


def test_zip_rebuild_that_the_finalization_refuses_fails_with_the_reason(
    storage: Storage,
) -> None:
    """A listing without assets has no blocker, but nothing to finalize either."""
    result = listing_zip_rebuild(listing_identity_id=LISTING)
    assert (result.outcome, result.detail) == (
        "failed",
        f"listing {LISTING}: listing {LISTING} has no media assets to finalize",
    )
    assert result.data == missing_zip_facts()


def blocker(asset: MediaAsset) -> dict[str, Any]:
    return {
        "assetId": asset.pk,
        "assetType": "PHOTO_HORIZONTAL",
        "sequence": asset.sequence,
        "status": "FAILED",
        "problems": ["status is FAILED, not PROCESSED", "no processed key"],
    }


@pytest.mark.parametrize(
    "count, more",
    [(1, ""), (3, ""), (4, " (+1 more)"), (6, " (+3 more)")],
    ids=["one", "three-all-named", "four-one-more", "six-three-more"],
)
def test_zip_rebuild_of_a_listing_not_ready_names_its_first_three_blockers(
    storage: Storage, count: int, more: str
) -> None:
    """The detail names the first three assets not ready, each with its problems, and
    counts the rest; the data lists them all."""
    assets = [
        AssetFactory(listing_identity_id=LISTING, sequence=n, status=AssetStatus.FAILED)
        for n in range(1, count + 1)
    ]
    result = listing_zip_rebuild(listing_identity_id=LISTING)
    named = "; ".join(
        f"asset #{a.pk} status is FAILED, not PROCESSED, no processed key" for a in assets[:3]
    )
    assert (result.outcome, result.tags) == ("skipped", ("not_ready",))
    assert result.detail == f"listing {LISTING}: ZIP missing but not ready: {named}{more}"
    assert result.data == {"blockers": [blocker(a) for a in assets], **missing_zip_facts()}
    assert finalizations() == []


# -- the drift audit (verify_storage) ------------------------------------------------------


def test_every_key_the_pipeline_could_derive_from_a_raw_is_the_asset_s_not_an_orphan(
    storage: Storage,
) -> None:
    """A video's raw owns its photo-rule derivatives, its poster and transcode and the
    poster names of earlier releases; only what no rule derives is an orphan."""
    raw = "7622/raw/video/horizontal/horizontal-01-CLIP_1.mov"
    AssetFactory(
        listing_identity_id=7622,
        asset_type=AssetType.VIDEO_HORIZONTAL,
        sequence=1,
        status=AssetStatus.PROCESSING,
        s3_key_raw=raw,
    )
    owned = [
        "7622/processed/video/horizontal/thumbnail/horizontal-01-CLIP_1.jpg",
        "7622/processed/video/horizontal/small/horizontal-01-CLIP_1.jpg",
        "7622/processed/video/horizontal/medium/horizontal-01-CLIP_1.jpg",
        "7622/processed/video/horizontal/large/horizontal-01-CLIP_1.jpg",
        "7622/processed/video/horizontal/thumbnail/horizontal-01-CLIP_1.mp4",  # poster
        "7622/processed/video/horizontal/original/horizontal-01-CLIP_1.mp4",  # transcode
        "7622/processed/video/horizontal/thumbnail/horizontal-01-CLIP_1.mov",  # Go poster
    ]
    orphan = "7622/processed/video/horizontal/large/horizontal-02-GONE.jpg"
    for key in [raw, *owned, orphan]:
        storage.write(key, b"x")

    drift = listing_audit(listing_identity_id=7622)

    assert drift.orphan_derivatives == [orphan]
    assert (drift.raw_missing, drift.processed_missing, drift.raw_without_asset) == ([], [], [])


def test_verify_checks_keys_outside_the_listing_with_a_head_and_names_every_kind_of_drift(
    storage: Storage,
) -> None:
    """Raw and processed keys outside ``{listing}/`` (moved by hand) are asked for one by
    one; an asset that is not PROCESSED ahead of the others does not end the audit."""
    failed = AssetFactory(listing_identity_id=7623, sequence=1, status=AssetStatus.FAILED)
    moved = AssetFactory(
        listing_identity_id=7623,
        sequence=2,
        status=AssetStatus.PROCESSED,
        s3_key_raw="legacy/raw/photo/horizontal/IMG_2.jpg",
        s3_key_processed="legacy/processed/photo/horizontal/large/IMG_2.jpg",
        metadata={"thumbnailKey": "7623/processed/photo/horizontal/thumbnail/IMG_2.jpg"},
    )
    lost = AssetFactory(
        listing_identity_id=7623,
        sequence=3,
        status=AssetStatus.PROCESSED,
        s3_key_raw="legacy/raw/photo/horizontal/IMG_3.jpg",
        s3_key_processed=None,
    )
    storage.write(failed.s3_key_raw, b"raw 1")
    storage.write("legacy/raw/photo/horizontal/IMG_2.jpg", b"raw 2")
    storage.write("legacy/processed/photo/horizontal/large/IMG_2.jpg", b"large 2")

    result = listing_verify(listing_identity_id=7623)

    assert (result.outcome, result.tags) == ("done", ("drift",))
    assert result.detail == (
        "listing 7623 (3 assets, 1 objects): raw_missing=1, processed_missing=2"
    )
    assert result.data["raw_missing"] == [
        {"asset_id": lost.pk, "status": "PROCESSED", "key": "legacy/raw/photo/horizontal/IMG_3.jpg"}
    ]
    assert result.data["processed_missing"] == [
        {
            "asset_id": moved.pk,
            "field": "thumbnailKey",
            "key": "7623/processed/photo/horizontal/thumbnail/IMG_2.jpg",
        },
        {"asset_id": lost.pk, "field": "s3_key_processed", "key": None},
    ]
    assert result.data["counts"] == {
        "raw_missing": 1,
        "processed_missing": 2,
        "orphan_derivatives": 0,
        "raw_without_asset": 0,
        "stale_zip": 0,
        "missing_zip": 0,
    }


def test_folder_markers_and_the_rows_own_raw_objects_cost_no_lookup(
    storage: Storage, django_assert_num_queries: Any
) -> None:
    """A zero-byte ``.../`` folder marker under ``raw/`` is no object without an asset, and
    raw objects this listing's rows name are not looked up again: the listing's rows and
    its finalizations are the audit's only two queries."""
    asset = AssetFactory(listing_identity_id=7624, sequence=1, status=AssetStatus.PROCESSING)
    storage.write(asset.s3_key_raw, b"raw")
    storage.write("7624/raw/photo/horizontal/", b"")

    with django_assert_num_queries(2):
        drift = listing_audit(listing_identity_id=7624)

    assert (drift.raw_without_asset, drift.has_drift) == ([], False)
    assert drift.summary_line() == "listing 7624 (1 assets, 2 objects): no drift"


def test_the_newest_output_is_found_past_assets_not_processed_and_outputs_not_there(
    storage: Storage,
) -> None:
    """The ZIP is compared with the newest output of any PROCESSED asset: an asset still
    FAILED and an output that is absent are passed over, not the end of the search."""
    AssetFactory(listing_identity_id=7625, sequence=1, status=AssetStatus.FAILED)
    AssetFactory(
        listing_identity_id=7625,
        sequence=2,
        status=AssetStatus.PROCESSED,
        s3_key_processed="7625/processed/photo/horizontal/large/IMG_2.jpg",
        metadata={"thumbnailKey": "7625/processed/photo/horizontal/thumbnail/IMG_2.jpg"},
    )
    storage.write("7625/processed/photo/horizontal/thumbnail/IMG_2.jpg", b"thumb")
    thumb_modified = storage.head(
        "7625/processed/photo/horizontal/thumbnail/IMG_2.jpg"
    ).last_modified
    assert thumb_modified is not None

    status = listing_zip_status(listing_identity_id=7625)

    assert status.as_json() == {
        "key": "7625/processed/zip/listing-media.zip",
        "state": "missing",
        "zip_modified": None,
        "newest_processed": thumb_modified.isoformat(),
        "newest_processed_key": "7625/processed/photo/horizontal/thumbnail/IMG_2.jpg",
    }


# -- the admin's storage check -------------------------------------------------------------


def test_storage_check_lists_each_expected_object_with_what_it_is_and_whose(
    storage: Storage,
) -> None:
    """A PROCESSED photo requires its raw, its four derivatives and the key its row
    recorded; a FAILED video's poster and transcode are expected but optional; the ZIP of a
    listing finalized before is required. Each key once, under what first expected it."""
    photo = AssetFactory(
        listing_identity_id=7626,
        sequence=1,
        status=AssetStatus.PROCESSED,
        s3_key_raw="7626/raw/photo/horizontal/horizontal-01-IMG_1.jpg",
        s3_key_processed="7626/processed/photo/horizontal/large/IMG_1.jpg",
    )
    video = AssetFactory(
        listing_identity_id=7626,
        asset_type=AssetType.VIDEO_HORIZONTAL,
        sequence=1,
        status=AssetStatus.FAILED,
        s3_key_raw="7626/raw/video/horizontal/horizontal-01-CLIP_1.mov",
    )
    JobFactory(
        listing_identity_id=7626,
        provider=JobProvider.STEP_FUNCTIONS_FINALIZATION,
        status=JobStatus.SUCCEEDED,
    )
    storage.write("7626/raw/photo/horizontal/horizontal-01-IMG_1.jpg", b"raw 1")
    storage.write("7626/processed/photo/horizontal/thumbnail/horizontal-01-IMG_1.jpg", b"t")
    storage.write("7626/processed/photo/horizontal/large/IMG_1.jpg", b"large!")
    storage.write("7626/processed/photo/horizontal/large/stray.jpg", b"?")
    storage.write("7626/raw/video/horizontal/horizontal-01-CLIP_1.mov", b"movie")

    check = storage_check(listing_identity_id=7626, storage=storage)

    p, v = photo.pk, video.pk
    folder = "7626/processed/photo/horizontal"
    assert check.expected == [
        ExpectedObject(
            "7626/raw/photo/horizontal/horizontal-01-IMG_1.jpg", "raw", p, True, True, 5
        ),
        ExpectedObject(
            f"{folder}/thumbnail/horizontal-01-IMG_1.jpg", "thumbnail", p, True, True, 1
        ),
        ExpectedObject(f"{folder}/small/horizontal-01-IMG_1.jpg", "small", p, True),
        ExpectedObject(f"{folder}/medium/horizontal-01-IMG_1.jpg", "medium", p, True),
        ExpectedObject(f"{folder}/large/horizontal-01-IMG_1.jpg", "large", p, True),
        ExpectedObject(f"{folder}/large/IMG_1.jpg", "recorded", p, True, True, 6),
        ExpectedObject(
            "7626/raw/video/horizontal/horizontal-01-CLIP_1.mov", "raw", v, True, True, 5
        ),
        ExpectedObject(
            "7626/processed/video/horizontal/thumbnail/horizontal-01-CLIP_1.mp4", "poster", v, False
        ),
        ExpectedObject(
            "7626/processed/video/horizontal/original/horizontal-01-CLIP_1.mp4",
            "transcode",
            v,
            False,
        ),
        ExpectedObject("7626/processed/zip/listing-media.zip", "zip", None, True),
    ]
    assert [info.key for info in check.unexpected] == [f"{folder}/large/stray.jpg"]
    assert (check.listing_identity_id, check.prefix, check.listed, check.truncated) == (
        7626,
        "7626/",
        5,
        False,
    )
    assert (check.error, check.notes, check.ok, check.complete) == (None, [], False, False)
    assert (len(check.missing), check.present, check.absent_optional) == (4, 4, 2)


def test_storage_check_heads_keys_outside_the_listing_and_notes_raw_keys_it_cannot_derive(
    storage: Storage,
) -> None:
    """A raw key outside ``{listing}/`` gets a HEAD (present with its size, or absent); a
    raw key the key rules refuse is still expected, with a note instead of derivatives; a
    row without a raw key expects nothing."""
    AssetFactory(
        listing_identity_id=7627, sequence=1, status=AssetStatus.PENDING_UPLOAD, s3_key_raw=None
    )
    odd = AssetFactory(
        listing_identity_id=7627, sequence=2, status=AssetStatus.FAILED, s3_key_raw="7627/IMG_2.jpg"
    )
    moved = AssetFactory(
        listing_identity_id=7627,
        asset_type=AssetType.THUMBNAIL,
        sequence=1,
        status=AssetStatus.FAILED,
        s3_key_raw="legacy/covers/cover-1.jpg",
    )
    gone = AssetFactory(
        listing_identity_id=7627,
        asset_type=AssetType.THUMBNAIL,
        sequence=2,
        status=AssetStatus.FAILED,
        s3_key_raw="legacy/covers/cover-2.jpg",
    )
    storage.write("7627/IMG_2.jpg", b"raw 2")
    storage.write("legacy/covers/cover-1.jpg", b"cover!")

    check = storage_check(listing_identity_id=7627, storage=storage)

    assert check.expected == [
        ExpectedObject("7627/IMG_2.jpg", "raw", odd.pk, True, True, 5),
        ExpectedObject("legacy/covers/cover-1.jpg", "raw", moved.pk, True, True, 6),
        ExpectedObject("legacy/covers/cover-2.jpg", "raw", gone.pk, True),
    ]
    assert check.expected[2].present is False
    assert check.notes == [f"asset {odd.pk}: invalid raw key '7627/IMG_2.jpg': no 'raw/' folder"]
    assert (check.error, check.listed, check.unexpected) == (None, 1, [])
    assert [obj.key for obj in check.missing] == ["legacy/covers/cover-2.jpg"]


@pytest.mark.parametrize(
    ("limit", "listed", "truncated", "seen"),
    [
        (2, 3, True, ["7628/a.jpg", "7628/b.jpg"]),
        (3, 3, False, ["7628/a.jpg", "7628/b.jpg", "7628/c.jpg"]),
    ],
    ids=["over-the-limit", "exactly-the-limit"],
)
def test_storage_check_stops_listing_past_its_limit_and_says_so(
    storage: Storage, limit: int, listed: int, truncated: bool, seen: list[str]
) -> None:
    """``limit`` objects are looked at; the one after them only marks the check truncated."""
    for name in ("a", "b", "c"):
        storage.write(f"7628/{name}.jpg", b"x")

    check = storage_check(listing_identity_id=7628, storage=storage, limit=limit)

    assert (check.listed, check.truncated) == (listed, truncated)
    assert [info.key for info in check.unexpected] == seen


class _ManyObjects(WrappedStorage):
    """A listing of ``count`` one-byte objects, made up as they are read (10,001 real
    uploads would take minutes for a check that only counts them)."""

    def __init__(self, inner: Storage, count: int) -> None:
        super().__init__(inner)
        self.count = count

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return (ObjectInfo(f"{prefix}{n:05}.jpg", 1, "e") for n in range(self.count))


@pytest.mark.parametrize(("count", "truncated"), [(10_000, False), (10_001, True)])
def test_storage_check_looks_at_ten_thousand_objects_by_default(
    storage: Storage, count: int, truncated: bool
) -> None:
    """The page's default: a listing of 10,000 objects is shown whole, one more is cut."""
    check = storage_check(listing_identity_id=7629, storage=_ManyObjects(storage, count))

    assert (check.listed, check.truncated) == (min(count, 10_001), truncated)
    assert len(check.unexpected) == 10_000


def test_storage_check_of_an_unreachable_bucket_names_the_error(moto_server: MotoServer) -> None:
    """The page shows why the storage could not be listed instead of failing."""
    missing_bucket = S3Storage("toq-no-such-bucket", endpoint_url=moto_server.endpoint_url)

    check = storage_check(listing_identity_id=7630, storage=missing_bucket)

    assert check.error == (
        "NoSuchBucket: An error occurred (NoSuchBucket) when calling the ListObjectsV2 "
        "operation: The specified bucket does not exist"
    )
    assert check.ok is False


def test_a_key_two_rows_expect_is_required_when_either_requires_it() -> None:
    """A FAILED first upload and its PROCESSED re-upload share a raw key: the derivatives
    the FAILED row may lack are required all the same by the PROCESSED one."""
    raw = "7631/raw/photo/horizontal/horizontal-01-IMG_1.jpg"
    first = AssetFactory(
        listing_identity_id=7631, sequence=1, status=AssetStatus.FAILED, s3_key_raw=raw
    )
    again = AssetFactory(
        listing_identity_id=7631,
        sequence=2,
        status=AssetStatus.PROCESSED,
        s3_key_raw=raw,
        s3_key_processed="7631/processed/photo/horizontal/large/horizontal-01-IMG_1.jpg",
    )

    expected, notes = expected_objects(
        listing_identity_id=7631, assets=[first, again], zip_expected=False
    )

    folder = "7631/processed/photo/horizontal"
    assert expected == [
        ExpectedObject(raw, "raw", first.pk, True),
        ExpectedObject(f"{folder}/thumbnail/horizontal-01-IMG_1.jpg", "thumbnail", first.pk, True),
        ExpectedObject(f"{folder}/small/horizontal-01-IMG_1.jpg", "small", first.pk, True),
        ExpectedObject(f"{folder}/medium/horizontal-01-IMG_1.jpg", "medium", first.pk, True),
        ExpectedObject(f"{folder}/large/horizontal-01-IMG_1.jpg", "large", first.pk, True),
    ]
    assert notes == []
