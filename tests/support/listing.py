"""A listing as a finished processing job leaves it (the admin and browser tests): raw photos
and their four derivatives in storage (real JPEGs), assets PROCESSED with their outputs
recorded, ``failed`` photos FAILED with CORRUPT_IMAGE, and the PARTIAL_SUCCESS (or SUCCEEDED)
job that did it."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from media_jobs import sample_media
from media_jobs.models import AssetStatus, AssetType, JobProvider, JobStatus
from media_jobs.pipeline import keys
from media_jobs.pipeline.storage import Storage
from tests.factories import AssetFactory, JobFactory


def processed_listing_in(
    local_media: Storage,
    listing_identity_id: int = 4242,
    *,
    photos: int = 2,
    failed: int = 1,
    filename: str = "IMG_{n}.jpg",
) -> dict:
    assets = []
    for n in range(1, photos + failed + 1):
        name = filename.format(n=n)
        raw = keys.raw_key(
            listing_identity_id, AssetType.PHOTO_HORIZONTAL, f"horizontal-{n:02d}", name
        )
        local_media.write(raw, sample_media.jpeg_bytes(400, 300, seed=n), content_type="image/jpeg")
        if n <= photos:
            outputs = {}
            for size, width in keys.IMAGE_SIZES.items():
                key = keys.derivative_key(raw, size)
                local_media.write(
                    key,
                    sample_media.jpeg_bytes(min(width, 400), min(width, 400) * 3 // 4, seed=n),
                    content_type="image/jpeg",
                )
                outputs[f"{size}_photo_horizontal"] = key
            asset = AssetFactory(
                listing_identity_id=listing_identity_id,
                asset_type=AssetType.PHOTO_HORIZONTAL,
                sequence=n,
                status=AssetStatus.PROCESSED,
                s3_key_raw=raw,
                s3_key_processed=outputs["large_photo_horizontal"],
                metadata={
                    "filename": name,
                    "thumbnailKey": outputs["thumbnail_photo_horizontal"],
                    **outputs,
                },
            )
        else:
            asset = AssetFactory(
                listing_identity_id=listing_identity_id,
                asset_type=AssetType.PHOTO_HORIZONTAL,
                sequence=n,
                status=AssetStatus.FAILED,
                s3_key_raw=raw,
                metadata={
                    "filename": name,
                    "errorCode": "CORRUPT_IMAGE",
                    "error": "image file is truncated",
                },
            )
        assets.append(asset)
    job = JobFactory(
        listing_identity_id=listing_identity_id,
        status=JobStatus.PARTIAL_SUCCESS if failed else JobStatus.SUCCEEDED,
        provider=JobProvider.STEP_FUNCTIONS,
        external_id=f"celery-{listing_identity_id}-abc",
        started_at=timezone.now() - timedelta(minutes=3),
        completed_at=timezone.now() - timedelta(minutes=1),
        last_error="code=DERIVATIVE_ERRORS_DETECTED | 1 derivative failed | CORRUPT_IMAGE"
        if failed
        else None,
        payload={"outputs": len(assets)},
        callback_body='{"jobId": 1, "status": "PARTIAL_SUCCESS"}',
    )
    return {
        "job": job,
        "assets": assets,
        "storage": local_media,
        "listing": listing_identity_id,
    }
