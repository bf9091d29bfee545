"""services.raw_import called directly: the sequence a raw key's new row gets."""

from __future__ import annotations

import pytest

from media_jobs.models import AssetStatus, AssetType, MediaAsset
from media_jobs.services.raw_import import raw_asset_import
from tests.factories import AssetFactory

pytestmark = pytest.mark.django_db

LISTING = 7631
OTHER = 7632


def test_the_next_free_sequence_counts_only_the_listings_own_rows() -> None:
    """Sequences are per listing and type: higher ones of another listing, or of another
    type of the same listing, do not move the next free one."""
    AssetFactory(listing_identity_id=LISTING, asset_type=AssetType.PHOTO_HORIZONTAL, sequence=1)
    AssetFactory(listing_identity_id=LISTING, asset_type=AssetType.PHOTO_VERTICAL, sequence=7)
    AssetFactory(listing_identity_id=OTHER, asset_type=AssetType.PHOTO_HORIZONTAL, sequence=9)
    raw_key = f"{LISTING}/raw/photo/horizontal/abc123-kitchen.jpg"

    result = raw_asset_import(raw_key=raw_key)

    row = MediaAsset.objects.get(s3_key_raw=raw_key)
    assert (row.listing_identity_id, row.asset_type, row.sequence, row.status) == (
        LISTING,
        AssetType.PHOTO_HORIZONTAL,
        2,
        AssetStatus.PENDING_UPLOAD,
    )
    assert result.outcome == "done"
    assert result.detail == (
        f"{raw_key}: PHOTO_HORIZONTAL #2 of listing {LISTING}: created asset #{row.pk} "
        "(non-numeric reference, next free sequence 2)"
    )
