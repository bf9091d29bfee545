"""factory_boy factories for the two tables of docs/contract.md §3."""

from __future__ import annotations

import factory
from django.utils import timezone

from media_jobs.models import (
    AssetStatus,
    AssetType,
    JobProvider,
    JobStatus,
    MediaAsset,
    MediaProcessingJob,
)
from media_jobs.services.job_errors import job_errors_backfill

FAILURE_STATUSES = (JobStatus.FAILED, JobStatus.PARTIAL_SUCCESS)


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MediaProcessingJob
        skip_postgeneration_save = True

    listing_identity_id = factory.Sequence(lambda n: 1000 + n)
    status = JobStatus.PENDING
    provider = JobProvider.STEP_FUNCTIONS
    retry_count = 0
    created_at = factory.LazyFunction(timezone.now)

    @factory.post_generation
    def error_codes(job: MediaProcessingJob, create: bool, extracted: object, **kwargs: object):
        """A failed job as the portal keeps it: its codes in media_job_errors too, read from
        last_error the way migration 0004 fills them in for older jobs."""
        if create and job.status in FAILURE_STATUSES and job.last_error:
            job_errors_backfill(jobs=[job])


class AssetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MediaAsset

    listing_identity_id = 1000
    asset_type = AssetType.PHOTO_HORIZONTAL
    sequence = factory.Sequence(lambda n: n + 1)
    status = AssetStatus.PROCESSING
    s3_key_raw = factory.LazyAttribute(
        lambda a: (
            f"{a.listing_identity_id}/raw/photo/horizontal/horizontal-{a.sequence:02d}-IMG_{a.sequence}.jpg"
        )
    )
    metadata = factory.LazyAttribute(lambda a: {"filename": f"IMG_{a.sequence}.jpg"})
