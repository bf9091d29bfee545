"""Seed a listing for the worker and API tests: real generated media in storage and the
``media_assets`` rows that point at it."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from media_jobs import sample_media
from media_jobs.models import AssetStatus, AssetType, MediaAsset
from media_jobs.pipeline import keys
from media_jobs.pipeline.storage import Storage
from media_jobs.pipeline.thumbnails import SOURCE_ETAG_METADATA
from tests.factories import AssetFactory


@cache
def small_jpeg(seed: int, orientation: int = 1) -> bytes:
    return sample_media.jpeg_bytes(480, 360, orientation=orientation, seed=seed)


@cache
def large_jpeg(seed: int, width: int, height: int) -> bytes:
    return sample_media.jpeg_bytes(width, height, seed=seed)


@cache
def short_mp4() -> bytes:
    return sample_media.mp4_bytes(1.0, 320, 240)


@dataclass
class SeededListing:
    listing_identity_id: int
    photos: list[MediaAsset] = field(default_factory=list)
    videos: list[MediaAsset] = field(default_factory=list)
    corrupt: list[MediaAsset] = field(default_factory=list)
    corrupt_videos: list[MediaAsset] = field(default_factory=list)

    @property
    def assets(self) -> list[MediaAsset]:
        return [*self.photos, *self.videos, *self.corrupt, *self.corrupt_videos]

    def derivative_keys(self) -> list[str]:
        """Every output a successful run writes for the good assets."""
        out = [
            keys.derivative_key(a.s3_key_raw, size)
            for a in self.photos
            for size in keys.IMAGE_SIZES
        ]
        out += [keys.poster_key(a.s3_key_raw) for a in self.videos]
        out += [keys.transcode_key(a.s3_key_raw) for a in self.videos]
        return out


def seed_listing(
    storage: Storage,
    listing_identity_id: int,
    *,
    photos: int = 3,
    videos: int = 0,
    corrupt: int = 0,
    corrupt_videos: int = 0,
    status: str = AssetStatus.PENDING_UPLOAD,
    photo_size: tuple[int, int] | None = None,
) -> SeededListing:
    """``photos`` good JPEGs (horizontal-NN; 480x360 unless ``photo_size`` asks for more
    work per photo), ``videos`` short MP4s, ``corrupt`` truncated JPEGs (vertical-NN),
    ``corrupt_videos`` truncated MP4s (vertical-NN: the MP4 magic passes validation, ffmpeg
    cannot decode them), all written to storage with PENDING_UPLOAD rows."""
    seeded = SeededListing(listing_identity_id)
    for number in range(1, photos + 1):
        raw = keys.raw_key(
            listing_identity_id,
            AssetType.PHOTO_HORIZONTAL,
            f"horizontal-{number:02d}",
            f"IMG_{number}.jpg",
        )
        photo = large_jpeg(number, *photo_size) if photo_size else small_jpeg(number)
        storage.write(raw, photo, content_type="image/jpeg")
        seeded.photos.append(
            _asset(listing_identity_id, AssetType.PHOTO_HORIZONTAL, number, raw, status)
        )
    for number in range(1, videos + 1):
        raw = keys.raw_key(
            listing_identity_id,
            AssetType.VIDEO_HORIZONTAL,
            f"horizontal-{number:02d}",
            f"tour-{number}.mp4",
        )
        storage.write(raw, short_mp4(), content_type="video/mp4")
        seeded.videos.append(
            _asset(listing_identity_id, AssetType.VIDEO_HORIZONTAL, number, raw, status)
        )
    for number in range(1, corrupt + 1):
        raw = keys.raw_key(
            listing_identity_id,
            AssetType.PHOTO_VERTICAL,
            f"vertical-{number:02d}",
            f"BROKEN_{number}.jpg",
        )
        storage.write(raw, sample_media.truncated_jpeg_bytes(), content_type="image/jpeg")
        seeded.corrupt.append(
            _asset(listing_identity_id, AssetType.PHOTO_VERTICAL, number, raw, status)
        )
    for number in range(1, corrupt_videos + 1):
        raw = keys.raw_key(
            listing_identity_id,
            AssetType.VIDEO_VERTICAL,
            f"vertical-{number:02d}",
            f"broken-{number}.mp4",
        )
        storage.write(raw, short_mp4()[:2048], content_type="video/mp4")
        seeded.corrupt_videos.append(
            _asset(listing_identity_id, AssetType.VIDEO_VERTICAL, number, raw, status)
        )
    return seeded


def _asset(listing: int, asset_type: str, sequence: int, raw_key: str, status: str) -> MediaAsset:
    return AssetFactory(
        listing_identity_id=listing,
        asset_type=asset_type,
        sequence=sequence,
        status=status,
        s3_key_raw=raw_key,
        metadata={"filename": raw_key.rsplit("/", 1)[-1]},
    )


def source_etags(storage: Storage, derivative_keys: list[str]) -> dict[str, str | None]:
    """key -> the ``source-etag`` each derivative records (None when the key is missing)."""
    found: dict[str, str | None] = {}
    for key in derivative_keys:
        try:
            found[key] = storage.head(key).metadata.get(SOURCE_ETAG_METADATA)
        except Exception:  # noqa: BLE001 - missing
            found[key] = None
    return found
