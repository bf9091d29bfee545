"""Hostile photos through the thumbnails step's renderer, each in a child process that
measures what it cost (tests/support/decode_probe.py): bombs by pixels and by scans,
truncated and lying headers, what is not an image at all - and the real large photos that
must keep working. Every case asserts the precise outcome, that exactly the four
derivatives exist when it succeeds, its peak RSS against the memory budget and its CPU
time against the 10 s budget.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from media_jobs import sample_media
from media_jobs.pipeline.decode_budget import DecodeLimits
from media_jobs.pipeline.errors import ErrorCode
from media_jobs.pipeline.keys import IMAGE_SIZES
from tests.fixtures import hostile
from tests.support.decode_probe import DecodeRun, decode_in_child
from tests.support.images import psnr

pytestmark = [pytest.mark.fault, pytest.mark.slow]

MIB = 1024 * 1024
LIMITS = DecodeLimits()  # the defaults: what a worker runs with
# A photo refused from its header never allocates its pixels: what the child holds then is
# interpreter noise, far below any decoded image.
REFUSED_PEAK_BYTES = 32 * MIB
OK = None


@dataclass(frozen=True)
class Case:
    make: Callable[[], bytes]
    code: str | None  # None: the four derivatives
    displayed: tuple[int, int] | None = None  # expected (width, height) as displayed
    decoded: bool = False  # refused only once decoded (else from the header, or at once)


_reported_png = functools.cache(lambda: hostile.png_bomb(13300, 13300))


def _progressive_with_scans(width: int, height: int, scans: int) -> bytes:
    base = hostile.scan_count(hostile.progressive_scan_bomb(16, 16, 0))
    data = hostile.progressive_scan_bomb(width, height, scans - base)
    assert hostile.scan_count(data) == scans
    return data


def _photo(image_format: str, **options: object) -> Callable[[], bytes]:
    def make() -> bytes:
        out = io.BytesIO()
        sample_media.photographic(800, 600).save(out, image_format, **options)
        return out.getvalue()

    return make


CASES: dict[str, Case] = {
    # -- bombs by pixels: refused from the header, or decoded within the budget ----------
    "png-rgba-13300x13300": Case(_reported_png, "MEMORY_BUDGET_EXCEEDED"),
    "png-palette-13000x13000": Case(
        lambda: hostile.png_bomb(13000, 13000, colour_type=3), OK, (13000, 13000)
    ),
    "png-grey16-8000x8000": Case(
        lambda: hostile.png_bomb(8000, 8000, colour_type=0, bit_depth=16), OK, (8000, 8000)
    ),
    # PNG cannot shrink on load: a 45 MP RGB PNG is decoded at full size, within budget
    "png-rgb-8256x5504": Case(
        lambda: hostile.png_bomb(8256, 5504, colour_type=2), OK, (8256, 5504)
    ),
    "webp-13000x13000": Case(lambda: hostile.webp_bomb(13000, 13000), "MEMORY_BUDGET_EXCEEDED"),
    "webp-16383x16383": Case(lambda: hostile.webp_bomb(16383, 16383), "TOO_MANY_PIXELS"),
    "webp-4000x3000": Case(lambda: hostile.webp_bomb(4000, 3000), OK, (4000, 3000)),
    "gif-13000x13000": Case(lambda: hostile.gif_bomb(13000, 13000), OK, (13000, 13000)),
    "gif-20000x20000": Case(lambda: hostile.gif_bomb(20000, 20000), "TOO_MANY_PIXELS"),
    "tiff-13000x13000-one-strip": Case(
        lambda: hostile.tiff_bomb(13000, 13000), "MEMORY_BUDGET_EXCEEDED"
    ),
    "tiff-6000x6000-strips": Case(
        lambda: hostile.tiff_bomb(6000, 6000, rows_per_strip=64), OK, (6000, 6000)
    ),
    # 28 KB: 625 grid tiles that all point at one coded tile
    "heic-grid-12800x12800": Case(lambda: hostile.heic_grid_bomb(25, 25), "MEMORY_BUDGET_EXCEEDED"),
    "heic-grid-5120x5120": Case(lambda: hostile.heic_grid_bomb(10, 10), OK, (5120, 5120)),
    "png-20x70000-extreme-aspect": Case(
        lambda: hostile.png_bomb(20, 70000, colour_type=0), "EXTREME_ASPECT_RATIO"
    ),
    "jpeg-progressive-12000x9000-coefficients": Case(
        lambda: hostile.with_frame_size(hostile.progressive_jpeg(64, 48), 12000, 9000),
        "MEMORY_BUDGET_EXCEEDED",
    ),
    # -- bombs by scans -------------------------------------------------------------------
    "jpeg-30000-scans-0.5MB": Case(
        lambda: hostile.progressive_scan_bomb(2048, 2048, 30000), "TOO_MANY_SCANS"
    ),
    "jpeg-101-scans": Case(lambda: _progressive_with_scans(2048, 2048, 101), "TOO_MANY_SCANS"),
    "jpeg-100-scans-8000x8000": Case(
        lambda: _progressive_with_scans(8000, 8000, 100), OK, (8000, 8000)
    ),
    # -- truncated data and lying headers -------------------------------------------------
    "png-181-bytes-claims-13000x13000": Case(
        lambda: hostile.png_claiming(13000, 13000), "CORRUPT_IMAGE"
    ),
    "png-4000x3000-one-row-short": Case(
        lambda: hostile.png_claiming(4000, 3000, rows=2999), "CORRUPT_IMAGE", decoded=True
    ),
    "png-cut-in-half": Case(lambda: hostile.truncated(_photo("PNG")()), "CORRUPT_IMAGE"),
    "jpeg-cut-in-half": Case(
        lambda: hostile.truncated(sample_media.jpeg_bytes(800, 600)), "CORRUPT_IMAGE"
    ),
    "jpeg-progressive-cut-in-half": Case(
        lambda: hostile.truncated(hostile.progressive_jpeg(800, 600)), "CORRUPT_IMAGE"
    ),
    "gif-cut-in-half": Case(lambda: hostile.truncated(_photo("GIF")()), "CORRUPT_IMAGE"),
    "webp-cut-in-half": Case(
        lambda: hostile.truncated(_photo("WEBP", quality=80)()), "CORRUPT_IMAGE"
    ),
    "tiff-cut-in-half": Case(
        lambda: hostile.truncated(_photo("TIFF", compression="tiff_deflate")()), "CORRUPT_IMAGE"
    ),
    "heic-cut-in-half": Case(
        lambda: hostile.truncated(sample_media.heic_bytes(320, 240)), "CORRUPT_IMAGE"
    ),
    "heic-claims-30000x30000": Case(lambda: hostile.heic_claiming(30000, 30000), "CORRUPT_IMAGE"),
    # -- not an image at all ----------------------------------------------------------------
    "hls-playlist-as-photo": Case(
        lambda: hostile.hls_playlist(["http://127.0.0.1:9/x.ts"]), "UNSUPPORTED_FORMAT"
    ),
    "mp4-as-photo": Case(lambda: sample_media.mp4_bytes(0.5, 160, 120), "UNSUPPORTED_FORMAT"),
}


def expected_size(width: int, height: int, target: int) -> tuple[int, int]:
    out_width = min(target, width)
    return out_width, max(1, round(height * out_width / width))


def assert_within_budget(run: DecodeRun, limits: DecodeLimits = LIMITS) -> None:
    assert run.peak_bytes <= limits.memory_bytes, run.describe()
    assert run.cpu_seconds <= limits.cpu_seconds, run.describe()


def assert_four_derivatives(run: DecodeRun, displayed: tuple[int, int]) -> None:
    assert set(run.derivatives) == set(IMAGE_SIZES), run.describe()
    for size, target in IMAGE_SIZES.items():
        width, height, data = run.derivatives[size]
        assert (width, height) == expected_size(*displayed, target), (size, run.describe())
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "JPEG" and image.size == (width, height)


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_photo(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    run = decode_in_child(case.make(), LIMITS, tmp_path)

    assert run.code == case.code, run.describe()
    assert_within_budget(run)
    if case.code is None:
        assert case.displayed is not None
        assert_four_derivatives(run, case.displayed)
    else:
        assert not run.derivatives
        if not case.decoded:
            assert run.peak_bytes <= REFUSED_PEAK_BYTES, run.describe()


def test_the_reported_files_are_reproduced() -> None:
    """The corpus reproduces the reported files: 0.7 MB for 13300 x 13300 RGBA, 181 bytes
    for 13000 x 13000, ~0.5 MB for 30,000 scans."""
    assert 0.6 * MIB < len(_reported_png()) < 0.8 * MIB
    assert len(hostile.png_claiming(13000, 13000)) == 181
    bomb = hostile.progressive_scan_bomb(2048, 2048, 30000)
    assert hostile.scan_count(bomb) > 30000 and len(bomb) < 0.6 * MIB


# -- the real large photos keep working -------------------------------------------------------


def _similarity_db(derivative: bytes, reference: Image.Image) -> float:
    """PSNR of a derivative against the camera's reference image at the same size."""
    with Image.open(io.BytesIO(derivative)) as image:
        expected = reference.resize(image.size, Image.Resampling.LANCZOS)
        return psnr(image, expected)


@pytest.mark.parametrize(
    ("width", "height", "orientation"),
    [(12000, 8000, 6), (8256, 5504, 1), (8256, 5504, 8)],
    ids=["100MP-orientation6", "45MP-orientation1", "45MP-orientation8"],
)
def test_real_large_camera_photos_make_correct_derivatives_within_budget(
    width: int, height: int, orientation: int, tmp_path: Path
) -> None:
    data = hostile.camera_jpeg(width, height, orientation=orientation, seed=4)
    run = decode_in_child(data, LIMITS, tmp_path)

    assert run.code is None, run.describe()
    assert_within_budget(run)
    assert_four_derivatives(run, (width, height))
    reference = hostile.camera_reference(seed=4)
    for size, (_, _, jpeg) in run.derivatives.items():
        with Image.open(io.BytesIO(jpeg)) as image:
            red, green, blue = image.convert("RGB").getpixel((1, 1))
        assert red > 180 and green < 80 and blue < 80, (size, "orientation not applied")
        # ~24 dB against the reference; a wrongly rotated derivative scores ~10 dB
        assert _similarity_db(jpeg, reference) > 20, size


# -- the CPU budget stops a decode ----------------------------------------------------------


def test_the_cpu_budget_interrupts_an_incremental_decode(tmp_path: Path) -> None:
    """With the scan limit lifted, the 30,000-scan bomb is stopped by the CPU budget at
    the decoder's next read: it costs about the budget, not the minute it used to."""
    limits = DecodeLimits(max_jpeg_scans=10**6, cpu_seconds=1.0)
    run = decode_in_child(hostile.progressive_scan_bomb(2048, 2048, 30000), limits, tmp_path)

    assert run.code == ErrorCode.CPU_BUDGET_EXCEEDED, run.describe()
    assert "MEDIA_DECODE_CPU_SECONDS" in run.message
    # one 64 KiB block of scans past the budget at most (~4000 scans of 64k blocks each)
    assert run.cpu_seconds <= limits.cpu_seconds + 4, run.describe()
    assert not run.derivatives


def test_the_cpu_budget_also_judges_one_shot_decoders(tmp_path: Path) -> None:
    """WebP decodes in one call: the budget is checked when it returns, and the photo fails
    with the same code rather than passing because the decoder could not be interrupted."""
    limits = DecodeLimits(cpu_seconds=0.001)
    run = decode_in_child(hostile.webp_bomb(4000, 3000), limits, tmp_path)

    assert run.code == ErrorCode.CPU_BUDGET_EXCEEDED, run.describe()
    assert not run.derivatives
