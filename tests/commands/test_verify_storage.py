"""verify_storage against MariaDB and the moto S3 server."""

from __future__ import annotations

import time

import pytest

from media_jobs.models import AssetStatus, JobProvider, JobStatus
from media_jobs.pipeline import keys
from media_jobs.pipeline.storage import Storage
from tests.factories import AssetFactory, JobFactory

from .conftest import bucket_snapshot, processed_photo, put_photo, rows_snapshot, run_command

pytestmark = pytest.mark.django_db

CLEAN = 7201
DRIFTING = 7202


def write_outputs(storage: Storage, asset) -> None:
    """Derivatives of ``asset`` in storage and on its row, as a successful callback leaves."""
    outputs = {}
    for size in keys.IMAGE_SIZES:
        key = keys.derivative_key(asset.s3_key_raw, size)
        storage.write(key, b"jpeg " + size.encode(), content_type="image/jpeg")
        outputs[f"{size}_{asset.asset_type.lower()}"] = key
    asset.s3_key_processed = outputs[f"large_{asset.asset_type.lower()}"]
    asset.metadata = {
        **asset.meta,
        **outputs,
        "thumbnailKey": outputs[f"thumbnail_{asset.asset_type.lower()}"],
    }
    asset.save()


def wait_for_next_second() -> None:
    """S3 modification times have one-second resolution: make the next write strictly later."""
    time.sleep(1.05 - (time.time() % 1.0))


def test_a_consistent_listing_has_no_drift(storage: Storage) -> None:
    for sequence in (1, 2):
        write_outputs(storage, processed_photo(storage, CLEAN, sequence))
    AssetFactory(
        listing_identity_id=CLEAN, sequence=9, status=AssetStatus.PENDING_UPLOAD
    )  # not uploaded yet
    storage.write(keys.zip_key(CLEAN), b"zip")
    JobFactory(
        listing_identity_id=CLEAN,
        provider=JobProvider.STEP_FUNCTIONS_FINALIZATION,
        status=JobStatus.SUCCEEDED,
    )

    run = run_command("verify_storage", "--listing", str(CLEAN))

    assert run.code == 0, run.stderr
    assert "verify_storage: selected=1 done=1 skipped=0 failed=0" in run.stdout
    assert "drift" not in run.stdout


def test_drift_is_reported_per_kind_and_exits_1(storage: Storage) -> None:
    good = processed_photo(storage, DRIFTING, 1)
    write_outputs(storage, good)
    storage.write(keys.zip_key(DRIFTING), b"old zip")
    wait_for_next_second()
    # the ZIP is now older than this asset's newest output
    storage.write(keys.derivative_key(good.s3_key_raw, "large"), b"newer large")
    raw_gone = processed_photo(storage, DRIFTING, 2, upload=False)
    write_outputs(storage, raw_gone)
    processed_gone = processed_photo(storage, DRIFTING, 3)
    write_outputs(storage, processed_gone)
    storage.delete(processed_gone.s3_key_processed)
    no_key = processed_photo(storage, DRIFTING, 4)
    orphan = f"{DRIFTING}/processed/photo/horizontal/large/deleted-asset.jpg"
    storage.write(orphan, b"orphan")
    stray_raw = f"{DRIFTING}/raw/photo/vertical/vertical-07-never-recorded.jpg"
    put_photo(storage, stray_raw, size=(32, 24))

    run = run_command("verify_storage", "--listing", str(DRIFTING), "--json")

    assert run.code == 1
    assert "drift found in 1 of 1 listings" in run.stderr
    [report] = run.json["items"]
    data = report["data"]
    assert data["counts"] == {
        "raw_missing": 1,
        "processed_missing": 3,
        "orphan_derivatives": 1,
        "raw_without_asset": 1,
        "stale_zip": 1,
        "missing_zip": 0,
    }
    assert data["raw_missing"] == [
        {"asset_id": raw_gone.pk, "status": "PROCESSED", "key": raw_gone.s3_key_raw}
    ]
    assert {(d["asset_id"], d["field"]) for d in data["processed_missing"]} == {
        # the processed key and the metadata output both point at the deleted object
        (processed_gone.pk, "s3_key_processed"),
        (processed_gone.pk, "large_photo_horizontal"),
        (no_key.pk, "s3_key_processed"),
    }
    assert data["orphan_derivatives"] == [orphan]
    assert data["raw_without_asset"] == [stray_raw]
    assert data["zip"]["state"] == "stale"
    assert data["zip"]["newest_processed_key"] == keys.derivative_key(good.s3_key_raw, "large")
    assert run.json["counters"] == {"drift": 1}

    text = run_command("verify_storage", "--listing", str(DRIFTING))
    assert text.code == 1
    assert f"done [drift] listing {DRIFTING}" in text.stdout
    assert f"orphan derivative: {orphan}" in text.stdout
    assert f"raw without asset: {stray_raw}" in text.stdout
    assert "stale ZIP:" in text.stdout


def test_missing_zip_is_drift_only_after_a_successful_finalization(storage: Storage) -> None:
    write_outputs(storage, processed_photo(storage, CLEAN, 1))

    never_finalized = run_command("verify_storage", "--listing", str(CLEAN), "--json")
    JobFactory(
        listing_identity_id=CLEAN,
        provider=JobProvider.STEP_FUNCTIONS_FINALIZATION,
        status=JobStatus.SUCCEEDED,
    )
    finalized = run_command("verify_storage", "--listing", str(CLEAN), "--json")

    assert never_finalized.code == 0
    assert finalized.code == 1
    assert finalized.json["items"][0]["data"]["counts"]["missing_zip"] == 1


def test_default_selection_is_every_listing_and_nothing_changes(storage: Storage) -> None:
    write_outputs(storage, processed_photo(storage, CLEAN, 1))
    processed_photo(storage, DRIFTING, 1)  # PROCESSED without processed key
    rows, objects = rows_snapshot(), bucket_snapshot(storage)

    run = run_command("verify_storage", "--json", "--batch-size", "1", "--dry-run")

    assert [i["ref"] for i in run.json["items"]] == [CLEAN, DRIFTING]
    assert [i["data"]["has_drift"] for i in run.json["items"]] == [False, True]
    assert rows_snapshot() == rows and bucket_snapshot(storage) == objects


def test_the_report_counts_rows_and_objects_and_dates_the_zip(storage: Storage) -> None:
    for sequence in (1, 2):
        write_outputs(storage, processed_photo(storage, CLEAN, sequence))
    AssetFactory(listing_identity_id=CLEAN, sequence=9, status=AssetStatus.PENDING_UPLOAD)
    storage.write(keys.zip_key(CLEAN), b"zip")
    zip_modified = storage.head(keys.zip_key(CLEAN)).last_modified
    assert zip_modified is not None

    text = run_command("verify_storage", "--listing", str(CLEAN), "-v", "2")
    run = run_command("verify_storage", "--listing", str(CLEAN), "--json")

    # 3 rows; 2 raw photos with 4 derivatives each, and the ZIP
    assert f"listing {CLEAN} (3 assets, 11 objects): no drift" in text.stdout
    data = run.json["items"][0]["data"]
    assert (data["assets"], data["objects"]) == (3, 11)
    assert data["zip"]["state"] == "current"
    assert data["zip"]["zip_modified"] == zip_modified.isoformat()
