"""services.storage_audit called directly (as the ``ops_tasks`` worker task does), against
MariaDB and the moto S3 server: what each item reports, word for word and in its data."""

from __future__ import annotations

from typing import Any

import pytest

from media_jobs.models import AssetStatus, JobProvider, JobStatus, MediaAsset, MediaProcessingJob
from media_jobs.pipeline.storage import Storage
from media_jobs.services.storage_audit import listing_zip_rebuild
from media_jobs.storage import pipeline_storage
from tests.factories import AssetFactory

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
