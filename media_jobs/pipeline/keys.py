"""Object key rules of docs/contract.md §2, in one place.

Every step derives output keys from the raw key with these functions, so the Lambda engine,
the Celery engine and the portal always agree on where a derivative, a poster frame, a
transcode or the listing ZIP lives.
"""

from __future__ import annotations

import posixpath
import re
import unicodedata
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
    """A raw key split per docs/contract.md §2: ``{prefix}raw/[date/]{segment}/{filename}``."""

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
    shown = repr(raw_key) if len(raw_key) <= 200 else repr(raw_key[:200]) + "..."
    return PipelineError(ErrorCode.INVALID_KEY, f"invalid raw key {shown}: {reason}")


def is_date_folder(part: str) -> bool:
    return _DATE_FOLDER.fullmatch(part) is not None


def split_raw_key(raw_key: str) -> RawKeyParts:
    """Split at the first ``raw/`` folder and drop date folders.

    ``raw`` must be a whole path segment (``123/draw/x.jpg`` has no raw folder). Keys with a
    leading ``/``, empty segments, ``.``/``..`` segments or control characters are refused:
    they could not be stored safely on a file system nor packed into a ZIP without
    ambiguity.
    """
    if not isinstance(raw_key, str) or not raw_key:
        raise _invalid(str(raw_key), "empty key")
    control = next((char for char in raw_key if ord(char) < 0x20 or ord(char) == 0x7F), None)
    if control is not None:
        # S3 lists such keys only URL-encoded, HTTP tools and file systems choke on them
        # (NUL ends a C string), and no upload legitimately has one.
        raise _invalid(raw_key, f"control character {control!r}")
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


# Characters an extractor must never see in a name: Windows refuses <>:"|?* (and reads
# "C:" as a drive), and control, line-separator and bidi-override characters break tools,
# logs and what a person reads ("photo\u202egpj.exe" shows as "photoexe.jpg").
_WINDOWS_FORBIDDEN = frozenset('<>:"|?*')
_INVISIBLE = frozenset("\u200b\u200c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\ufeff")
_INVISIBLE |= frozenset("\u2066\u2067\u2068\u2069")
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
# Device names Windows reserves, whatever the extension ("nul.jpg" too).
_WINDOWS_DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL", *(f"COM{n}" for n in range(1, 10))}
    | {f"LPT{n}" for n in range(1, 10)}
)
# A name segment longer than this (in UTF-8) cannot be extracted on common file systems.
MAX_ENTRY_SEGMENT_BYTES = 255


def _is_unsafe(char: str) -> bool:
    return (
        char in _WINDOWS_FORBIDDEN
        or char in _INVISIBLE
        or unicodedata.category(char) in _UNSAFE_CATEGORIES
    )


def _portable_name_part(part: str) -> str:
    """One path segment as every common extractor can create it (NFC, see zip_entry_name)."""
    part = unicodedata.normalize("NFC", part)
    part = "".join("_" if _is_unsafe(char) else char for char in part)
    # ".." must never appear in an entry name, not even inside a file name ("a..b.jpg"):
    # some extractors treat any ".." as traversal, so collapse runs of dots.
    while ".." in part:
        part = part.replace("..", ".")
    part = part.rstrip(" .")  # Windows drops trailing dots and spaces: "a.jpg." is "a.jpg"
    if part.partition(".")[0].strip().upper() in _WINDOWS_DEVICES:
        part = "_" + part
    return _fit_segment(part)


def _utf8_head(text: str, size: int) -> str:
    """The longest start of ``text`` within ``size`` UTF-8 bytes: never half a character."""
    return text.encode()[:size].decode(errors="ignore")


def _fit_segment(segment: str, limit: int = MAX_ENTRY_SEGMENT_BYTES) -> str:
    """``segment`` cut to ``limit`` UTF-8 bytes, keeping its extension."""
    if len(segment.encode()) <= limit:
        return segment
    stem, ext = posixpath.splitext(segment)
    if len(ext.encode()) > limit // 2:
        stem, ext = segment, ""
    return _utf8_head(stem, limit - len(ext.encode())) + ext


def zip_entry_name(key: str, listing_identity_id: int | str) -> str:
    """The name of ``key`` inside the listing ZIP.

    Drops the ``{listingIdentityId}/`` prefix, then a leading ``raw/`` or ``processed/``, then
    every date folder: ``photo/vertical/vertical-03-IMG_2705.jpg``. Backslashes count as
    separators (Windows extractors treat them so); empty, ``.`` and ``..`` segments are
    dropped, so the name is always relative and never climbs out of the extraction folder.
    Each segment is made portable: Unicode NFC (macOS and Linux then agree on what a name
    is), no control or bidi characters and none Windows refuses (``C:`` is ``C_``), no
    trailing dots or spaces, no device names, at most 255 bytes.
    """
    parts = [p for p in key.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    if parts and parts[0] == str(listing_identity_id):
        parts = parts[1:]
    if parts and parts[0] in (_RAW, _PROCESSED):
        parts = parts[1:]
    parts = [p for p in parts[:-1] if not is_date_folder(p)] + parts[-1:]
    # _portable_name_part strips trailing dots: "." and ".." come back empty
    parts = [safe for safe in (_portable_name_part(p) for p in parts) if safe]
    return "/".join(parts) or "unnamed"


def entry_name_identity(name: str) -> str:
    """What decides whether two entry names are the same file once extracted: macOS and
    Windows ignore case, macOS ignores Unicode normalisation (NFC vs NFD "café")."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def _taken(name: str, used: set[str], folders: set[str]) -> bool:
    identity = entry_name_identity(name)
    return identity in used or identity in folders


def unique_entry_names(names: Iterable[str]) -> list[str]:
    """Make names unique by suffixing `` (2)``, `` (3)``... before the extension.

    Uniqueness is by ``entry_name_identity``: ``IMG.jpg`` and ``img.jpg`` (or an NFC and an
    NFD ``café.jpg``) would overwrite each other when the ZIP is extracted on macOS or
    Windows. A file never takes the name of a folder another entry needs either.
    """
    names = list(names)
    folders = {
        entry_name_identity(name.rsplit("/", count)[0])
        for name in names
        for count in range(1, name.count("/") + 1)
    }
    used: set[str] = set()
    unique: list[str] = []
    for name in names:
        candidate = name
        if _taken(candidate, used, folders):
            folder, filename = posixpath.split(name)
            stem, ext = posixpath.splitext(filename)
            number = 2
            while True:
                suffix = f" ({number}){ext}"
                numbered = _utf8_head(stem, MAX_ENTRY_SEGMENT_BYTES - len(suffix.encode()))
                numbered += suffix
                candidate = posixpath.join(folder, numbered)
                if not _taken(candidate, used, folders):
                    break
                number += 1
        used.add(entry_name_identity(candidate))
        unique.append(candidate)
    return unique


def is_video_type(asset_type: str) -> bool:
    """VIDEO (queue messages) and VIDEO_VERTICAL / VIDEO_HORIZONTAL (asset types)."""
    return asset_type.upper().startswith("VIDEO")


def coarse_type_from_key(key: str) -> str:
    """The type of a plain-key queue message entry: VIDEO when the key has ``/video/``."""
    return "VIDEO" if "/video/" in key else "PHOTO"
