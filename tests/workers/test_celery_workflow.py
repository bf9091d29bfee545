"""The Celery engine end to end: a real worker process on Redis, MariaDB, the S3 server."""

from __future__ import annotations

import io
import zipfile

import pytest

from media_jobs.models import AssetStatus, JobStatus, MediaAsset, MediaProcessingJob
from media_jobs.pipeline import keys
from media_jobs.services.dispatch import listing_start_finalization, listing_start_processing
from media_jobs.storage import pipeline_storage
from tests.fixtures.worker import wait_until
from tests.workers.listing import seed_listing, source_etags

pytestmark = [pytest.mark.worker, pytest.mark.slow]


def finished(job_id: int) -> MediaProcessingJob | None:
    job = MediaProcessingJob.objects.get(pk=job_id)
    return job if job.is_terminal else None


def test_processing_and_finalization_on_a_real_worker(celery_worker) -> None:
    storage = pipeline_storage()
    listing = seed_listing(storage, 4101, photos=3, videos=1, corrupt=1)
    celery_worker.start()

    job = listing_start_processing(listing_identity_id=4101)
    assert job.status == JobStatus.PENDING
    done = wait_until(lambda: finished(job.pk), timeout=180, what="processing job terminal")

    assert done.status == JobStatus.PARTIAL_SUCCESS, done.last_error
    assert done.external_id and done.external_id.startswith(f"celery-{job.pk}-")
    assert done.started_at is not None and done.completed_at is not None
    assert "code=DERIVATIVE_ERRORS_DETECTED" in done.last_error
    etags = source_etags(storage, listing.derivative_keys())
    assert all(etags.values()), [k for k, v in etags.items() if not v]

    for asset in listing.photos:
        asset.refresh_from_db()
        assert asset.status == AssetStatus.PROCESSED
        assert asset.s3_key_processed == keys.derivative_key(asset.s3_key_raw, "large")
        assert asset.metadata["thumbnailKey"] == keys.derivative_key(asset.s3_key_raw, "thumbnail")
        assert asset.metadata["small_photo_horizontal"] == keys.derivative_key(
            asset.s3_key_raw, "small"
        )
    video = MediaAsset.objects.get(pk=listing.videos[0].pk)
    assert video.status == AssetStatus.PROCESSED
    # The transcoded MP4 is the video's best output; its poster frame is its thumbnail.
    assert video.s3_key_processed == keys.transcode_key(video.s3_key_raw)
    assert video.metadata["thumbnailKey"] == keys.poster_key(video.s3_key_raw)
    broken = MediaAsset.objects.get(pk=listing.corrupt[0].pk)
    assert broken.status == AssetStatus.FAILED
    assert broken.metadata["errorCode"] == "CORRUPT_IMAGE"

    steps = {(e.step, e.kind) for e in done.events.all()}
    for expected in [
        ("validate", "succeeded"),
        ("thumbnails", "succeeded"),
        ("video_thumbnails", "succeeded"),
        ("video_transcode", "succeeded"),
        ("consolidate", "succeeded"),
        ("callback", "succeeded"),
    ]:
        assert expected in steps

    # The failed photo is fixed by the photographer; the listing is then processed fully.
    MediaAsset.objects.filter(pk=broken.pk).delete()
    final = listing_start_finalization(listing_identity_id=4101)
    assert final.status == JobStatus.RUNNING and final.external_id and final.started_at
    zipped = wait_until(lambda: finished(final.pk), timeout=120, what="finalization terminal")
    assert zipped.status == JobStatus.SUCCEEDED, zipped.last_error
    zip_key = keys.zip_key(4101)
    assert zipped.payload["zipBundles"] == [zip_key]
    assert zipped.payload["assetsZipped"] == 4
    with pipeline_storage().open_read(zip_key) as stream:
        archive = zipfile.ZipFile(io.BytesIO(stream.read()))
    assert sorted(archive.namelist()) == sorted(
        keys.zip_entry_name(a.s3_key_raw, 4101) for a in [*listing.photos, *listing.videos]
    )
