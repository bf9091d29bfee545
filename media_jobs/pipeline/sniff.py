"""Media format detection from magic numbers (the first bytes), never from file names.

Validation reads the first 64 bytes of each raw object and asks ``sniff``: a text file named
``.jpg`` is refused before any decoder sees it, and a photo uploaded as a video (or the other
way round) is reported with a precise code instead of failing deep inside a step.
"""

from __future__ import annotations

# Bytes that validation reads; enough for every signature below, ftyp brand lists included.
SNIFF_BYTES = 64

IMAGE_FORMATS = frozenset({"jpeg", "png", "gif", "webp", "heic", "heif", "avif", "tiff"})
VIDEO_FORMATS = frozenset({"mp4", "mov", "m4v", "3gp", "webm", "mkv", "avi"})

# ISO base media "ftyp" brands. Images first: a HEIC file also lists "mif1".
_FTYP_BRANDS: dict[bytes, str] = {
    b"heic": "heic",
    b"heix": "heic",
    b"heim": "heic",
    b"heis": "heic",
    b"hevc": "heic",
    b"hevx": "heic",
    b"avif": "avif",
    b"avis": "avif",
    b"mif1": "heif",
    b"msf1": "heif",
    b"qt  ": "mov",
    b"M4V ": "m4v",
    b"M4VH": "m4v",
    b"M4VP": "m4v",
    b"isom": "mp4",
    b"iso2": "mp4",
    b"iso3": "mp4",
    b"iso4": "mp4",
    b"iso5": "mp4",
    b"iso6": "mp4",
    b"mp41": "mp4",
    b"mp42": "mp4",
    b"avc1": "mp4",
    b"dash": "mp4",
    b"MSNV": "mp4",
    b"f4v ": "mp4",
    b"3gp4": "3gp",
    b"3gp5": "3gp",
    b"3gp6": "3gp",
    b"3g2a": "3gp",
    # audio-only MPEG-4: known, so that it is not mistaken for a video via "isom"
    b"M4A ": "m4a",
    b"M4B ": "m4a",
    b"M4P ": "m4a",
}
_BRAND_PRIORITY = ("heic", "avif", "heif", "mov", "m4v", "mp4", "3gp")
# QuickTime files from old cameras start with an atom other than ftyp.
_QUICKTIME_ATOMS = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})


def _sniff_ftyp(head: bytes) -> str | None:
    box_size = int.from_bytes(head[0:4], "big")
    end = min(len(head), box_size if box_size >= 16 else len(head))
    brands = [head[8:12]] + [head[i : i + 4] for i in range(16, end - 3, 4)]
    major = _FTYP_BRANDS.get(brands[0])
    found = {_FTYP_BRANDS[b] for b in brands if b in _FTYP_BRANDS}
    if major in ("heic", "avif", "heif"):
        # an image major brand wins; "heif" is refined by a more precise compatible brand
        return next(f for f in _BRAND_PRIORITY if f in found)
    if major is not None:
        return major
    return next((f for f in _BRAND_PRIORITY if f in found), None)


def sniff(head_bytes: bytes) -> str | None:
    """The format name of a file starting with ``head_bytes``, or None when unknown."""
    head = bytes(head_bytes)
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and len(head) >= 12:
        if head[8:12] == b"WEBP":
            return "webp"
        if head[8:12] == b"AVI ":
            return "avi"
        return None
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):  # TIFF and BigTIFF
        return "tiff"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return _sniff_ftyp(head)
    if len(head) >= 8 and head[4:8] in _QUICKTIME_ATOMS:
        return "mov"
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: Matroska or WebM, told by DocType
        return "webm" if b"webm" in head else "mkv"
    return None


def is_image_format(name: str | None) -> bool:
    return name in IMAGE_FORMATS


def is_video_format(name: str | None) -> bool:
    return name in VIDEO_FORMATS
