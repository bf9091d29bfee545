"""rebuild_zips against MariaDB and the moto S3 server (the finalization itself runs on a
real worker in test_enqueue_workers.py)."""

from __future__ import annotations

import pytest

from media_jobs.models import AssetStatus, JobProvider, JobStatus, MediaAsset, MediaProcessingJob
from media_jobs.pipeline import keys
from media_jobs.pipeline.storage import Storage
from tests.factories import AssetFactory, JobFactory

from .conftest import run_command
from .test_verify_storage import wait_for_next_second, write_outputs

pytestmark = pytest.mark.django_db

MISSING, CURRENT, STALE, RUNNING, NOT_READY, NEVER = 7601, 7602, 7603, 7604, 7605, 7606


def finalized_listing(storage: Storage, listing: int, *, zip_written: bool = True) -> None:
    """A listing whose assets are PROCESSED with outputs, finalized once before."""
    asset = AssetFactory(listing_identity_id=listing, sequence=1, status=AssetStatus.PROCESSED)
    storage.write(asset.s3_key_raw, b"raw")
    write_outputs(storage, asset)
    JobFactory(
        listing_identity_id=listing,
        provider=JobProvider.STEP_FUNCTIONS_FINALIZATION,
        status=JobStatus.SUCCEEDED,
    )
    if zip_written:
        storage.write(keys.zip_key(listing), b"zip")


def finalizations(listing: int) -> list[MediaProcessingJob]:
    return list(
        MediaProcessingJob.objects.filter(
            listing_identity_id=listing, provider=JobProvider.STEP_FUNCTIONS_FINALIZATION
        ).order_by("pk")
    )


@pytest.fixture
def listings(storage: Storage) -> None:
    finalized_listing(storage, STALE)
    finalized_listing(storage, MISSING, zip_written=False)
    finalized_listing(storage, CURRENT)
    finalized_listing(storage, RUNNING, zip_written=False)
    JobFactory(
        listing_identity_id=RUNNING,
        provider=JobProvider.STEP_FUNCTIONS_FINALIZATION,
        status=JobStatus.RUNNING,
    )
    finalized_listing(storage, NOT_READY, zip_written=False)
    AssetFactory(listing_identity_id=NOT_READY, sequence=2, status=AssetStatus.FAILED)
    finalized_listing(storage, NEVER, zip_written=False)
    MediaProcessingJob.objects.filter(listing_identity_id=NEVER).delete()
    wait_for_next_second()
    # the STALE listing's processed output is rewritten after its ZIP
    asset = MediaAsset.objects.get(listing_identity_id=STALE)
    storage.write(asset.s3_key_processed, b"newer large")


def test_finalizes_listings_whose_zip_is_missing_or_stale(listings: None) -> None:
    run = run_command("rebuild_zips", "--json")

    assert run.code == 0, run.stderr
    outcomes = {item["ref"]: item["outcome"] for item in run.json["items"]}
    assert outcomes == {
        MISSING: "done",
        CURRENT: "skipped",
        STALE: "done",
        RUNNING: "skipped",
        NOT_READY: "skipped",
    }  # NEVER was never finalized: not selected without --listing
    assert run.json["counters"] == {"not_ready": 1}
    for listing in (MISSING, STALE):
        new = finalizations(listing)[-1]
        assert new.status == JobStatus.RUNNING and new.external_id and new.started_at
    details = {item["ref"]: item["detail"] for item in run.json["items"]}
    assert "ZIP missing" in details[MISSING] and "ZIP stale" in details[STALE]
    assert f"finalization job #{finalizations(RUNNING)[-1].pk} is RUNNING" in details[RUNNING]
    assert "not ready" in details[NOT_READY] and "FAILED" in details[NOT_READY]

    # running it again starts nothing new: the finalizations just started are still running
    again = run_command("rebuild_zips", "--json")
    assert (again.json["done"], again.json["skipped"]) == (0, 5)


def test_named_listings_include_never_finalized_ones_and_force(listings: None) -> None:
    run = run_command("rebuild_zips", "--listing", f"{NEVER},{CURRENT}", "--force", "-v", "2")

    assert run.code == 0, run.stderr
    assert "rebuild_zips: selected=2 done=2 skipped=0 failed=0" in run.stdout
    assert f"listing {CURRENT}: finalization job" in run.stdout and "(forced)" in run.stdout
    assert len(finalizations(NEVER)) == 1


def test_dry_run_starts_nothing(listings: None) -> None:
    before = list(MediaProcessingJob.objects.values())

    run = run_command("rebuild_zips", "--dry-run")

    assert list(MediaProcessingJob.objects.values()) == before
    assert f"would listing {MISSING}: would start a finalization (ZIP missing)" in run.stdout
    assert (
        "selected=5 done=2 skipped=3 failed=0 not_ready=1 (dry run: nothing changed)" in run.stdout
    )


def test_a_listing_without_assets_fails_alone(listings: None) -> None:
    empty = 7607
    run = run_command("rebuild_zips", "--listing", f"{empty},{MISSING}")

    assert run.code == 1
    assert f"FAILED listing {empty}" in run.stderr and "no media assets" in run.stderr
    assert len(finalizations(MISSING)) == 2


def test_bad_listing_exits_2() -> None:
    run = run_command("rebuild_zips", "--listing", "12a")

    assert run.code == 2 and "'12a' is not a listing id" in run.stderr
