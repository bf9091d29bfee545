"""The thumbnails step's memory estimate of a photo, to the byte: a photo exactly at
MEDIA_DECODE_MEMORY_BYTES renders, one byte less refuses it with the figures in MiB.

Each expected peak is worked out by hand from what the step holds (docs/workers.md): the
decoded image (4 bytes a pixel for RGB and RGBA, 1 for L; a JPEG at its DCT scale), the
decoder's own buffers (a multi-scan JPEG's coefficients: 128 bytes a block), the reduction
to ``large`` (an integer-reduced copy for converted modes, the resampler's intermediate -
``large`` wide x reduced high - and three ``large`` images), 3 strips of 8 MiB for converted
modes, and 24 MiB fixed. A PNG may turn out to be rotated (its EXIF is read late): the
larger of the upright and the turned estimate counts.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable

import pytest
from PIL import Image

from media_jobs import sample_media
from media_jobs.pipeline.decode_budget import DecodeLimits
from media_jobs.pipeline.errors import ErrorCode, PipelineError
from media_jobs.pipeline.thumbnails import render_derivatives
from tests.fixtures import hostile

FIXED = 24 * 1024 * 1024


def _flat_jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 150)).save(out, "JPEG", quality=85)
    return out.getvalue()


def _deflated_tiff(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 150)).save(out, "TIFF", compression="tiff_deflate")
    return out.getvalue()


def _flat_heif(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 150)).save(out, "HEIF")
    return out.getvalue()


def _grey_png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (width, height), 128).save(out, "PNG", compress_level=1)
    return out.getvalue()


PHOTOS: dict[str, tuple[Callable[[], bytes], int, str]] = {
    # stored 2400 x 1600, shown turned (EXIF 5 to 8): large is 1200 x 1800 as shown, 1800 x
    # 1200 stored; the draft cannot shrink (1600 / 1200 < 2): decoded 2400 x 1600
    **{
        f"turned-jpeg-{orientation}": (
            functools.partial(sample_media.jpeg_bytes, 1600, 2400, orientation=orientation),
            2400 * 1600 * 4 + 1800 * 1600 * 4 + 3 * 1800 * 1200 * 4 + FIXED,
            "2400x1600 RGB JPEG image would take about 75 MiB (15 decoded, 0 in the decoder, "
            "36 to reduce it); the per-photo budget is 75 MiB",
        )
        for orientation in (5, 6, 7, 8)
    },
    # 640 x 480 progressive: the decoder keeps 80 x 60 luma and 2 x 40 x 30 chroma blocks,
    # less than the reduction holds (they are not held at once)
    "progressive-jpeg": (
        lambda: hostile.progressive_jpeg(640, 480),
        640 * 480 * 4 + max((80 * 60 + 2 * 40 * 30) * 128, 640 * 480 * 4 * 4) + FIXED,
        "640x480 RGB progressive JPEG image would take about 30 MiB (2 decoded, 1 in the "
        "decoder, 5 to reduce it); the per-photo budget is 30 MiB",
    ),
    # 60000 x 100 drafted at 1/8: 7500 x 13; large 1200 x 2, so a 2 x 2 reduction first
    # (3750 x 7, rows rounded up) before resampling
    "very-wide-jpeg": (
        lambda: _flat_jpeg(60000, 100),
        7500 * 13 * 4 + 3750 * 7 * 4 + 1200 * 7 * 4 + 3 * 1200 * 2 * 4 + FIXED,
        "60000x100 RGB JPEG image would take about 25 MiB (1 decoded, 0 in the decoder, "
        "1 to reduce it); the per-photo budget is 25 MiB",
    ),
    # RGBA is converted strip by strip: a full-size converted copy (no reduction fits a gap
    # of 2), 3 strips; turned, large would be 600 x 1500 as shown (1500 x 600 stored), which
    # is larger than the upright 1200 x 480
    "rgba-png": (
        lambda: sample_media.png_alpha_bytes(1500, 600),
        1500 * 600 * 4
        + (1500 * 600 * 4 + 1500 * 600 * 4 + 3 * 1500 * 600 * 4 + 3 * 8 * 1024 * 1024)
        + FIXED,
        "1500x600 RGBA PNG image would take about 69 MiB (4 decoded, 0 in the decoder, "
        "42 to reduce it); the per-photo budget is 69 MiB",
    ),
    # grey, 1 byte a pixel decoded; turned (300 x 7200 as shown) it is not reduced and its
    # large is the whole image, more than upright (reduced 2 x 2 to 3600 x 150, large 1200 x 50)
    "wide-grey-png": (
        lambda: _grey_png(7200, 300),
        7200 * 300 * 1 + 7200 * 300 * 4 + 3 * 7200 * 300 * 4 + FIXED,
        "7200x300 L PNG image would take about 60 MiB (3 decoded, 0 in the decoder, "
        "33 to reduce it); the per-photo budget is 60 MiB",
    ),
    # a deflated TIFF in strips of 21 rows (Pillow's choice for 3000-byte rows): libtiff
    # holds one strip (21 x 1000 x 4 bytes) beside the 3868-byte file, not the whole image
    "stripped-tiff": (
        lambda: _deflated_tiff(1000, 800),
        1000 * 800 * 4 + 1000 * 800 * 4 * 4 + FIXED,
        "1000x800 RGB TIFF image would take about 40 MiB (4 decoded, 1 in the decoder, "
        "13 to reduce it); the per-photo budget is 40 MiB",
    ),
    # 8-bit 4:2:0 HEIF: libheif's planes are 1.5 bytes a pixel, then 3 for the RGB copy,
    # beside the 785-byte file: 1.55 MiB (10-bit samples would take 2 bytes: 2.06 MiB)
    "heif": (
        lambda: _flat_heif(600, 600),
        600 * 600 * 4 + 600 * 600 * 4 * 4 + FIXED,
        "600x600 RGB HEIF image would take about 31 MiB (2 decoded, 2 in the decoder, "
        "6 to reduce it); the per-photo budget is 31 MiB",
    ),
}


@pytest.mark.parametrize("name", list(PHOTOS))
def test_the_memory_estimate_of_a_photo_is_exact(name: str) -> None:
    make, peak, message = PHOTOS[name]
    data = make()

    derivatives = render_derivatives(io.BytesIO(data), limits=DecodeLimits(memory_bytes=peak))
    assert len(derivatives) == 4
    with pytest.raises(PipelineError) as caught:
        render_derivatives(io.BytesIO(data), limits=DecodeLimits(memory_bytes=peak - 1))

    assert caught.value.code == ErrorCode.MEMORY_BUDGET_EXCEEDED
    assert caught.value.message == f"decoding this {message} (MEDIA_DECODE_MEMORY_BYTES)"


def test_a_large_square_rgba_png_is_budgeted_with_its_reduction() -> None:
    """4801 x 4801 RGBA: large is 1200 x 1200 either way it turns, so the converted copy is
    first reduced 2 x 2 (within a gap of 2) to 2401 x 2401 (rounded up); the resampler's
    intermediate is 1200 x 2401. Refused one byte under its peak (the decode itself, 92 MB,
    is not for the fast suite)."""
    out = io.BytesIO()
    Image.new("RGBA", (4801, 4801), (90, 120, 150, 255)).save(out, "PNG", compress_level=1)
    decoded = 4801 * 4801 * 4
    working = 2401 * 2401 * 4 + 1200 * 2401 * 4 + 3 * 1200 * 1200 * 4 + 3 * 8 * 1024 * 1024
    peak = decoded + working + FIXED

    with pytest.raises(PipelineError) as caught:
        render_derivatives(io.BytesIO(out.getvalue()), limits=DecodeLimits(memory_bytes=peak - 1))

    assert caught.value.code == ErrorCode.MEMORY_BUDGET_EXCEEDED
    assert caught.value.message == (
        "decoding this 4801x4801 RGBA PNG image would take about 186 MiB (88 decoded, 0 in the "
        "decoder, 74 to reduce it); the per-photo budget is 186 MiB (MEDIA_DECODE_MEMORY_BYTES)"
    )


def test_a_tiffs_whole_file_counts_to_the_byte_in_its_decoder_estimate() -> None:
    """libtiff holds the file beside one strip (21 x 1000 x 4 = 84000 bytes): a TIFF padded
    (after its last strip, as some writers leave it) to 3 MiB - 84000 bytes comes to exactly
    3 MiB in the decoder; one byte longer is 4 (the figures are rounded up)."""
    tiff = _deflated_tiff(1000, 800)
    exact = tiff + bytes(3 * 1024 * 1024 - 84000 - len(tiff))
    assert len(render_derivatives(io.BytesIO(exact))) == 4  # the padding is harmless

    messages = []
    for data in (exact, exact + b"\0"):
        with pytest.raises(PipelineError) as caught:
            render_derivatives(io.BytesIO(data), limits=DecodeLimits(memory_bytes=1))
        messages.append(caught.value.message)

    template = (
        "decoding this 1000x800 RGB TIFF image would take about 40 MiB (4 decoded, {} in the "
        "decoder, 13 to reduce it); the per-photo budget is 1 MiB (MEDIA_DECODE_MEMORY_BYTES)"
    )
    assert messages == [template.format(3), template.format(4)]
