"""Fixtures of the admin portal tests: users in the two migration-made groups, local storage
with real generated media, and a processed listing as the pipeline leaves it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from media_jobs import sample_media
from media_jobs.models import AssetStatus, AssetType, JobProvider, JobStatus
from media_jobs.pipeline import keys
from media_jobs.pipeline.storage import Storage
from media_jobs.storage import pipeline_storage
from tests.admin.users import OPERATORS, VIEWERS, make_user
from tests.factories import AssetFactory, JobFactory


@pytest.fixture(autouse=True)
def _fresh_cache():
    """The error-code choices are cached a minute; every test starts without them."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def operator(db):
    return make_user("olga-operator", group=OPERATORS)


@pytest.fixture
def viewer(db):
    return make_user("victor-viewer", group=VIEWERS)


@pytest.fixture
def staff_without_permissions(db):
    return make_user("sam-staff")


@pytest.fixture
def superuser(db):
    return make_user("root-admin", superuser=True)


def _client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def operator_client(operator) -> Client:
    return _client_for(operator)


@pytest.fixture
def viewer_client(viewer) -> Client:
    return _client_for(viewer)


@pytest.fixture
def staff_client(staff_without_permissions) -> Client:
    return _client_for(staff_without_permissions)


@pytest.fixture
def admin_client_(superuser) -> Client:
    return _client_for(superuser)


@pytest.fixture
def local_media(settings, tmp_path: Path) -> Storage:
    """The local storage backend in tmp_path (what ``make run`` uses by default)."""
    settings.MEDIA_STORAGE_BACKEND = "local"
    settings.MEDIA_LOCAL_ROOT = tmp_path / "media"
    return pipeline_storage()


@pytest.fixture
def celery_engine(settings):
    settings.MEDIA_PIPELINE_ENGINE = "celery"
    settings.CALLBACK_URL = ""


ProcessedListing = Callable[..., dict]


@pytest.fixture
def processed_listing(local_media: Storage, celery_engine) -> ProcessedListing:
    """A listing as a finished processing job leaves it: raw photos and their derivatives in
    storage (real JPEGs), assets PROCESSED with outputs recorded, one FAILED asset."""

    def build(
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
            local_media.write(
                raw, sample_media.jpeg_bytes(400, 300, seed=n), content_type="image/jpeg"
            )
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

    return build
