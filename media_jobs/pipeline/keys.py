"""Object key rules of SPEC §2, in one place.

Every step derives output keys from the raw key with these functions, so the Lambda engine,
the Celery engine and the portal always agree on where a derivative, a poster frame, a
transcode or the listing ZIP lives.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass

from media_jobs.pipeline.errors import ErrorCode, PipelineError

SEGMENT_BY_TYPE: dict[str, str] = {
    "PHOTO_VERTICAL": "photo/vertical",
    "PHOTO_HORIZONTAL": "photo/horizontal",
    "VIDEO_VERTICAL": "video/vertical",
    "VIDEO_HORIZONTAL": "video/horizontal",
    "PROJECT_DOC": "project/doc",
    "PROJECT_RENDER": "project/render",
}

# Target widths; the height follows the aspect ratio after EXIF orientation.
IMAGE_SIZES: dict[str, int] = {"thumbnail": 200, "small": 400, "medium": 800, "large": 1200}

POSTER_FOLDER = "thumbnail"
TRANSCODE_FOLDER = "original"
ZIP_FILENAME = "listing-media.zip"

_RAW = "raw"
_PROCESSED = "processed"
_DATE_FOLDER = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class RawKeyParts:
    """A raw key split per SPEC §2: ``{prefix}raw/[date/]{segment}/{filename}``."""

    prefix: str  # everything before ``raw/``, with its trailing slash ("123/"), or ""
    segment: str  # "photo/vertical"; "" when the file sits directly under raw/
    filename: str  # "vertical-03-IMG_2705.jpg"

    @property
    def stem(self) -> str:
        stem, _ = posixpath.splitext(self.filename)
        return stem or self.filename

    def processed_folder(self, folder: str) -> str:
        """``{prefix}processed/{segment}/{folder}/`` (the folder of one kind of output)."""
        parts = [_PROCESSED, self.segment, folder]
        return self.prefix + "/".join(p for p in parts if p) + "/"


def _invalid(raw_key: str, reason: str) -> PipelineError:
    return PipelineError(ErrorCode.INVALID_KEY, f"invalid raw key {raw_key!r}: {reason}")


def is_date_folder(part: str) -> bool:
    return _DATE_FOLDER.fullmatch(part) is not None


def split_raw_key(raw_key: str) -> RawKeyParts:
    """Split at the first ``raw/`` folder and drop date folders.

    ``raw`` must be a whole path segment (``123/draw/x.jpg`` has no raw folder). Keys with a
    leading ``/``, empty segments, or ``.``/``..`` segments are refused: they could not be
    stored safely on a file system nor packed into a ZIP without ambiguity.
    """
    if not isinstance(raw_key, str) or not raw_key:
        raise _invalid(str(raw_key), "empty key")
    parts = raw_key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise _invalid(raw_key, "empty, '.' or '..' path segment (or a leading '/')")
    try:
        raw_index = parts.index(_RAW)
    except ValueError:
        raise _invalid(raw_key, "no 'raw/' folder") from None
    rest = [part for part in parts[raw_index + 1 :] if not is_date_folder(part)]
    if not rest:
        raise _invalid(raw_key, "no filename after 'raw/'")
    prefix = "".join(part + "/" for part in parts[:raw_index])
    return RawKeyParts(prefix=prefix, segment="/".join(rest[:-1]), filename=rest[-1])


def raw_key(listing_identity_id: int | str, asset_type: str, reference: str, filename: str) -> str:
    """``{listingIdentityId}/raw/{segment}/{reference}-{filename}``."""
    try:
        segment = SEGMENT_BY_TYPE[asset_type]
    except KeyError:
        raise ValueError(f"unknown asset type {asset_type!r}") from None
    for label, value in (("reference", reference), ("filename", filename)):
        if not value or "/" in value or value in (".", ".."):
            raise ValueError(f"{label} must be a non-empty name without '/', got {value!r}")
    return f"{listing_identity_id}/{_RAW}/{segment}/{reference}-{filename}"


def derivative_key(raw_key: str, size: str) -> str:
    """``{prefix}processed/{segment}/{size}/{stem}.jpg``: derivatives are always JPEG."""
    if size not in IMAGE_SIZES:
        raise ValueError(f"unknown derivative size {size!r}; expected one of {list(IMAGE_SIZES)}")
    parts = split_raw_key(raw_key)
    return f"{parts.processed_folder(size)}{parts.stem}.jpg"


def transcode_filename(raw_key: str) -> str:
    """``{stem}.mp4``: the file name of a video's transcode, and of its poster frame."""
    return f"{split_raw_key(raw_key).stem}.mp4"


def poster_key(raw_key: str) -> str:
    """``{prefix}processed/{segment}/thumbnail/{stem}.mp4``: a video's poster frame.

    A JPEG under the transcode's file name (stored as ``image/jpeg``), because the TOQ
    backend builds every download URL as ``processed/{segment}/{resolution}/`` plus the
    base name of the asset's processed key, and a video's processed key is its transcode
    (docs/contract.md §2). For an ``.mp4`` raw this is the raw file's own name, the key
    the Go system writes.
    """
    parts = split_raw_key(raw_key)
    return f"{parts.processed_folder(POSTER_FOLDER)}{transcode_filename(raw_key)}"


def legacy_poster_keys(raw_key: str) -> list[str]:
    """Where earlier releases put a video's poster frame, newest rule first:
    ``thumbnail/{stem}.jpg`` (this project before the backend's URL rule was followed) and
    ``thumbnail/{raw file name}`` (the Go system; the same as ``poster_key`` for ``.mp4``).
    The storage audit counts them as the asset's own objects, not as orphans."""
    parts = split_raw_key(raw_key)
    folder = parts.processed_folder(POSTER_FOLDER)
    current = poster_key(raw_key)
    found: list[str] = []
    for key in (f"{folder}{parts.stem}.jpg", f"{folder}{parts.filename}"):
        if key != current and key not in found:
            found.append(key)
    return found


def transcode_folder(raw_key: str) -> str:
    """``{prefix}processed/{segment}/original/`` (MediaConvert's output destination)."""
    return split_raw_key(raw_key).processed_folder(TRANSCODE_FOLDER)


def transcode_key(raw_key: str) -> str:
    """``{prefix}processed/{segment}/original/{stem}.mp4``."""
    return f"{transcode_folder(raw_key)}{transcode_filename(raw_key)}"


def output_name(resolution: str, raw_asset_type: str) -> str:
    """The name of one output in a callback's ``outputs`` map and in the asset's metadata:
    ``{resolution folder}_{lowercased type of the RAW asset}`` (``large_photo_vertical``,
    ``thumbnail_video_horizontal`` for a poster, ``original_video_horizontal`` for a
    transcode), the consolidate rule of the Go system."""
    kind = raw_asset_type.strip().lower().replace(" ", "_") or "unknown"
    return f"{resolution.strip().lower() or TRANSCODE_FOLDER}_{kind}"


def zip_key(listing_identity_id: int | str) -> str:
    return f"{listing_identity_id}/{_PROCESSED}/zip/{ZIP_FILENAME}"


def _safe_name_part(part: str) -> str:
    # ".." must never appear in an entry name, not even inside a file name ("a..b.jpg"):
    # some extractors treat any ".." as traversal, so collapse runs of dots.
    while ".." in part:
        part = part.replace("..", ".")
    return part


def zip_entry_name(key: str, listing_identity_id: int | str) -> str:
    """The name of ``key`` inside the listing ZIP.

    Drops the ``{listingIdentityId}/`` prefix, then a leading ``raw/`` or ``processed/``, then
    every date folder: ``photo/vertical/vertical-03-IMG_2705.jpg``. Backslashes count as
    separators (Windows extractors treat them so); empty, ``.`` and ``..`` segments are
    dropped, so the name is always relative and never climbs out of the extraction folder.
    """
    parts = [p for p in key.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    if parts and parts[0] == str(listing_identity_id):
        parts = parts[1:]
    if parts and parts[0] in (_RAW, _PROCESSED):
        parts = parts[1:]
    if len(parts) > 1:
        parts = [p for p in parts[:-1] if not is_date_folder(p)] + parts[-1:]
    parts = [safe for safe in (_safe_name_part(p) for p in parts) if safe not in ("", ".")]
    return "/".join(parts) or "unnamed"


def unique_entry_names(names: Iterable[str]) -> list[str]:
    """Make names unique by suffixing `` (2)``, `` (3)``... before the extension.

    Uniqueness is case-insensitive: ``IMG.jpg`` and ``img.jpg`` would overwrite each other
    when the ZIP is extracted on macOS or Windows.
    """
    used: set[str] = set()
    unique: list[str] = []
    for name in names:
        candidate = name
        if candidate.casefold() in used:
            folder, filename = posixpath.split(name)
            stem, ext = posixpath.splitext(filename)
            number = 2
            while True:
                candidate = posixpath.join(folder, f"{stem} ({number}){ext}")
                if candidate.casefold() not in used:
                    break
                number += 1
        used.add(candidate.casefold())
        unique.append(candidate)
    return unique


def is_video_type(asset_type: str) -> bool:
    """VIDEO (queue messages) and VIDEO_VERTICAL / VIDEO_HORIZONTAL (asset types)."""
    return asset_type.upper().startswith("VIDEO")


def coarse_type_from_key(key: str) -> str:
    """The type of a plain-key queue message entry: VIDEO when the key has ``/video/``."""
    return "VIDEO" if "/video/" in key else "PHOTO"
