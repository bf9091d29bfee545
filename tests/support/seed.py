"""Failed jobs as the pipeline leaves them, for the bulk-retry tests: each listing has one real
photo in storage whose asset FAILED (CORRUPT_IMAGE, since uploaded again intact) and a FAILED
processing job. Plain model calls, so it also runs in a ``manage.py shell`` of the embedded
default (tests/fixtures/embedded.py), where factory_boy's test database is not there."""

from __future__ import annotations

import json

from django.utils import timezone

from media_jobs import sample_media
from media_jobs.models import (
    AssetStatus,
    AssetType,
    JobProvider,
    JobStatus,
    MediaAsset,
    MediaProcessingJob,
)
from media_jobs.pipeline import keys
from media_jobs.services.job_errors import job_errors_backfill
from media_jobs.storage import pipeline_storage

FAILED_ERROR = "code=CORRUPT_IMAGE | image file is truncated | derivative processing failed"


def failed_jobs(*, count: int, first_listing: int = 70_000) -> list[int]:
    """``count`` listings with one failed photo and one FAILED job each; returns the job ids."""
    storage = pipeline_storage()
    now = timezone.now().replace(microsecond=0)
    job_ids = []
    for listing in range(first_listing, first_listing + count):
        raw = keys.raw_key(listing, AssetType.PHOTO_HORIZONTAL, "horizontal-01", "room.jpg")
        storage.write(
            raw, sample_media.jpeg_bytes(320, 240, seed=listing), content_type="image/jpeg"
        )
        MediaAsset.objects.create(
            listing_identity_id=listing,
            asset_type=AssetType.PHOTO_HORIZONTAL,
            sequence=1,
            status=AssetStatus.FAILED,
            s3_key_raw=raw,
            metadata={
                "filename": "room.jpg",
                "errorCode": "CORRUPT_IMAGE",
                "error": "image file is truncated",
            },
        )
        job = MediaProcessingJob.objects.create(
            listing_identity_id=listing,
            provider=JobProvider.STEP_FUNCTIONS,
            status=JobStatus.FAILED,
            external_id=f"celery-seeded-{listing}",
            started_at=now,
            completed_at=now,
            last_error=FAILED_ERROR,
            created_at=now,
        )
        job.callback_body = json.dumps(
            {
                "jobId": job.pk,
                "listingIdentityId": listing,
                "status": "PROCESSING_FAILED",
                "error": {"code": "CORRUPT_IMAGE", "message": "image file is truncated"},
                "outputs": [],
            }
        )
        job.save(update_fields=["callback_body"])
        job_errors_backfill(jobs=[job])
        job_ids.append(job.pk)
    return job_ids


def job_statuses(job_ids: list[int] | None = None) -> dict[int, str]:
    """id -> status of these jobs (all jobs when None)."""
    jobs = MediaProcessingJob.objects.all()
    if job_ids is not None:
        jobs = jobs.filter(pk__in=job_ids)
    return dict(jobs.values_list("pk", "status"))
