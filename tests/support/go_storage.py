"""How the TOQ backend finds a processed object (docs/contract.md §2).

A restatement of ``resolveProcessedKey`` / ``extractFilename`` of
``internal/adapter/right/aws_s3/listing_media_storage.go`` (projeto-toq/toq_server): the
backend never reads the ``outputs`` map when it signs a download URL; it rebuilds the key
from the asset's type, the requested resolution and the base name of ``s3_key_processed``
(else of ``s3_key_raw``, else the metadata's file name). ``GenerateDownloadURLs`` asks for
it when the asset is PROCESSED (or PROCESSING); the resolutions clients ask for are
``thumbnail|small|medium|large`` for photos and ``thumbnail|original`` for videos.
"""

from __future__ import annotations

import posixpath

# mediaTypePathSegment
SEGMENT_BY_TYPE = {
    "PHOTO_VERTICAL": "photo/vertical",
    "PHOTO_HORIZONTAL": "photo/horizontal",
    "VIDEO_VERTICAL": "video/vertical",
    "VIDEO_HORIZONTAL": "video/horizontal",
    "PROJECT_DOC": "project/doc",
    "PROJECT_RENDER": "project/render",
    "THUMBNAIL": "thumb",
    "ZIP": "zip",
}
PHOTO_RESOLUTIONS = ("thumbnail", "small", "medium", "large")
VIDEO_RESOLUTIONS = ("thumbnail", "original")


def resolutions_for(asset_type: str) -> tuple[str, ...]:
    return VIDEO_RESOLUTIONS if asset_type.startswith("VIDEO") else PHOTO_RESOLUTIONS


def resolve_processed_key(
    *,
    listing_identity_id: int,
    asset_type: str,
    resolution: str,
    s3_key_processed: str,
    s3_key_raw: str = "",
    filename: str = "",
) -> str:
    """``{listing}/{stage}/{segment of the type}/{resolution or original}/{file name}``."""
    if asset_type == "ZIP" and s3_key_processed:
        return s3_key_processed
    stage = "thumb" if asset_type == "THUMBNAIL" else "processed"
    segment = SEGMENT_BY_TYPE.get(asset_type, "misc")
    name = (
        posixpath.basename(s3_key_processed) or posixpath.basename(s3_key_raw) or filename or "file"
    )
    return f"{listing_identity_id}/{stage}/{segment}/{resolution or 'original'}/{name}"
