"""factory_boy factories for the two SPEC tables."""

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


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MediaProcessingJob

    listing_identity_id = factory.Sequence(lambda n: 1000 + n)
    status = JobStatus.PENDING
    provider = JobProvider.STEP_FUNCTIONS
    retry_count = 0
    created_at = factory.LazyFunction(timezone.now)


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
