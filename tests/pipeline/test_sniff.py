"""The magic-number sniffer's tables, entry by entry: every ISO base media brand and
QuickTime atom it knows, and how a file naming several brands is told."""

from __future__ import annotations

import pytest

from media_jobs.pipeline.sniff import is_image_format, is_video_format, sniff


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    payload = major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return (8 + len(payload)).to_bytes(4, "big") + b"ftyp" + payload


MAJOR_BRANDS = {
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
    b"M4A ": "m4a",
    b"M4B ": "m4a",
    b"M4P ": "m4a",
}


@pytest.mark.parametrize(("brand", "expected"), list(MAJOR_BRANDS.items()), ids=repr)
def test_every_known_major_brand_names_its_format(brand: bytes, expected: str) -> None:
    """The major brand alone decides (its own name as the only compatible brand too, as
    encoders write it)."""
    assert sniff(_ftyp(brand)) == expected
    assert sniff(_ftyp(brand, brand)) == expected


@pytest.mark.parametrize(
    ("compatible", "expected"),
    [
        # an unknown major brand: the first format in priority order among the compatible
        ((b"3gp4", b"mp42"), "mp4"),
        ((b"mp42", b"M4V "), "m4v"),
        ((b"isom", b"qt  "), "mov"),
        ((b"qt  ", b"mif1"), "heif"),
        ((b"mif1", b"avif"), "avif"),
        ((b"avif", b"heic"), "heic"),
        ((b"M4A ",), None),  # audio only is no format here
        ((b"abcd", b"efgh"), None),
        # the first compatible brand may be the one that decides
        ((b"heic", b"mif1", b"abcd"), "heic"),
        ((b"M4V ", b"mp42", b"abcd"), "m4v"),
        # brands are whole 4-byte words: "heic" across two of them is no brand
        ((b"ahei", b"cxyz"), None),
    ],
)
def test_an_unknown_major_brand_is_told_by_its_compatible_brands(
    compatible: tuple[bytes, ...], expected: str | None
) -> None:
    assert sniff(_ftyp(b"XAVC", *compatible)) == expected


@pytest.mark.parametrize(
    ("major", "compatible", "expected"),
    [
        (b"mif1", (b"mif1", b"avif"), "avif"),
        (b"mif1", (b"mif1", b"heix"), "heic"),
        (b"msf1", (b"msf1", b"hevc"), "heic"),
        (b"mif1", (b"mif1", b"mp42"), "heif"),  # a video brand never makes it a video
        (b"avif", (b"avif", b"heic"), "heic"),
        # a video major brand is not refined: a QuickTime file listing "mp42" is a mov
        (b"qt  ", (b"qt  ", b"mp42"), "mov"),
        (b"mp42", (b"mp42", b"mif1"), "mp4"),
    ],
)
def test_an_image_major_brand_is_refined_by_a_more_precise_compatible_one(
    major: bytes, compatible: tuple[bytes, ...], expected: str
) -> None:
    assert sniff(_ftyp(major, *compatible)) == expected


@pytest.mark.parametrize("atom", [b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"])
def test_an_old_quicktime_file_is_told_by_any_of_its_first_atoms(atom: bytes) -> None:
    assert sniff(b"\x00\x00\x00\x08" + atom + b"\x00" * 8) == "mov"
    assert sniff(b"\x00\x00\x00\x08" + atom) == "mov"  # eight bytes are enough


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),
        (b"RIFF\x00\x00\x00\x00AVI LIST", "avi"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", None),
        (b"RIFF\x00\x00\x00\x00WEB", None),  # too short to say
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "webm"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska", "mkv"),
        (b"II*\x00\x08\x00\x00\x00", "tiff"),
        (b"MM\x00*\x00\x00\x00\x08", "tiff"),
        (b"II+\x00\x08\x00\x00\x00", "tiff"),
        (b"MM\x00+\x00\x08\x00\x00", "tiff"),
        (b"GIF87a\x01\x00", "gif"),
        (b"GIF89a\x01\x00", "gif"),
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"\xff\xd8\xff\xe0", "jpeg"),
        (b"\x00\x00\x00\x0cftypmif1", "heif"),  # a box shorter than a brand list
        (b"RIFF\x00\x00\x00\x00WEBP", "webp"),  # twelve bytes are enough
        (b"RIFF\x00\x00\x00\x00AVI ", "avi"),
        # the box ends after one compatible brand: what follows it is not a brand
        (_ftyp(b"mif1", b"mif1") + b"heic" + bytes(8), "heif"),
        (_ftyp(b"XAVC", b"mp42") + b"qt  " + bytes(8), "mp4"),
        # size 0: the box runs to the end of the file, so every brand in the head counts
        (b"\x00\x00\x00\x00ftypmif1\x00\x00\x00\x00mif1heic", "heic"),
        # a 16-byte box has no compatible brands: the next box's bytes are not read as some
        (_ftyp(b"mif1") + b"\x00\x00\x00\x18free" + b"avif" * 4, "heif"),
        # a size beyond the head (over 16 MiB): every brand the head holds counts
        (b"\x01\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1avifheic", "heic"),
    ],
)
def test_signatures(head: bytes, expected: str | None) -> None:
    assert sniff(head) == expected


def test_image_and_video_formats_are_told_apart() -> None:
    for name in ("jpeg", "png", "gif", "webp", "heic", "heif", "avif", "tiff"):
        assert is_image_format(name) and not is_video_format(name), name
    for name in ("mp4", "mov", "m4v", "3gp", "webm", "mkv", "avi"):
        assert is_video_format(name) and not is_image_format(name), name
    for other in ("m4a", None):
        assert not is_image_format(other) and not is_video_format(other)
