"""The derivatives' pixel work on libvips (pyvips + pyvips-binary: libvips with mozjpeg and
SIMD resampling), for the photos most uploads are: 8-bit RGB JPEGs and RGB PNGs.

The thumbnails step still opens every photo with Pillow and applies every header check of
the decode budget (pixels, scans, memory) first. A JPEG is then decoded by Pillow at the
DCT scale ``large`` needs (libjpeg-turbo decodes ~8 % faster than libvips' mozjpeg, and
the decode stays interruptible by the CPU budget) and handed over as pixels; a PNG is
decoded here (spng inflates ~3x faster than Pillow), in one streaming pipeline that
box-shrinks and resamples to ``large`` without holding the full decode. Every smaller size
is resampled from the previous one.

Why not Pillow for the rest: Pillow's resampling is not vectorised; at 12 MP its resize to
``large`` alone cost about as much as sharp's (libvips') whole step. The encoder is mozjpeg
with Huffman tables optimised per image, as sharp's defaults are (baseline, 4:2:0 at
quality 85).

Without pyvips (``available()`` is False) the step renders everything with Pillow.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("toq.pipeline.thumbnails")

try:  # pragma: no branch - either way is a supported deployment
    import pyvips
except Exception as exc:  # noqa: BLE001 - no usable libvips here: Pillow renders everything
    pyvips = None
    _MISSING = f"{type(exc).__name__}: {exc}"
else:
    _MISSING = ""
    # One thread per photo (a worker renders one photo per core, as with Pillow), and no
    # operation cache: a worker must not keep the last photos' pixels between photos.
    pyvips.concurrency_set(1)
    pyvips.cache_set_max(0)

# The first, big step (decoded -> large): libvips box-shrinks by the integer part of the
# factor down to within GAP x the target, then resamples with this kernel. The smaller
# sizes are each resampled from the previous one. Measured against sharp (Lanczos3
# throughout) in bench/derivatives.py; the kernels are chosen there (BENCHMARKS.md §1).
FIRST_KERNEL = "lanczos3"
SMALLER_KERNEL = "lanczos3"
GAP = 2.0
# Orientation (EXIF 1-8) -> the rotation, then whether to mirror left-right after it.
_ORIENT: dict[int, tuple[str | None, bool]] = {
    1: (None, False),
    2: (None, True),
    3: ("d180", False),
    4: ("d180", True),
    5: ("d90", True),
    6: ("d90", False),
    7: ("d270", True),
    8: ("d270", False),
}


def available() -> bool:
    """True when libvips can render here (JPEG and PNG loaders, JPEG saver)."""
    return pyvips is not None and _HAS_LOADERS


# jpegsave's ``keep`` (what metadata to write) arrived in libvips 8.15.
MIN_VERSION = (8, 15)


def _has_loaders() -> bool:
    if pyvips is None:
        return False
    try:
        if (pyvips.version(0), pyvips.version(1)) < MIN_VERSION:
            return False
        return all(
            pyvips.type_find("VipsOperation", name) != 0
            for name in ("jpegload_source", "pngload_source", "jpegsave_buffer")
        )
    except Exception:  # noqa: BLE001 - a libvips we cannot query is one we do not use
        return False


_HAS_LOADERS = _has_loaders()


def missing_reason() -> str:
    if _MISSING or available():
        return _MISSING
    assert pyvips is not None
    version = f"{pyvips.version(0)}.{pyvips.version(1)}"
    return f"libvips {version}: older than 8.15 or without the JPEG or PNG loader"


class VipsDecodeError(Exception):
    """libvips refused the data (damaged or truncated): the photo is CORRUPT_IMAGE."""


@dataclass(frozen=True)
class Rendered:
    width: int
    height: int
    data: bytes


def render(
    data: Any,
    *,
    orientation: int,
    targets: list[tuple[int, int]],
    icc_profile: bytes | None,
    quality: int,
    pixels: tuple[int, int] | None = None,
) -> tuple[list[Rendered], float]:
    """Render ``targets`` (displayed width x height, largest first) from a PNG's encoded
    ``data``, or, with ``pixels`` (width, height), from ``data`` as decoded 8-bit RGB pixels
    (a JPEG: Pillow's libjpeg-turbo decodes it, DCT-scaled, see thumbnails._render_vips).

    Returns the derivatives and the CPU seconds the process spent (libvips computes on its
    own worker thread, which the calling thread's clock does not see; the process clock
    also counts the step's I/O threads, so the figure errs on the high side).
    """
    assert pyvips is not None
    cpu_started = time.process_time()
    try:
        if pixels is not None:
            image = pyvips.Image.new_from_memory(data, pixels[0], pixels[1], 3, "uchar")
            image = image.copy(interpretation="srgb")
            if icc_profile:
                image.set_type(pyvips.GValue.blob_type, "icc-profile-data", icc_profile)
        else:
            source = pyvips.Source.new_from_memory(data)  # not copied
            image = pyvips.Image.pngload_source(source, access="sequential", fail_on="truncated")
        large_width, large_height = targets[0]
        rotate, mirror = _ORIENT.get(orientation, (None, False))
        turned = rotate in ("d90", "d270")
        stored_large = (large_height, large_width) if turned else (large_width, large_height)
        current = _resize(image, stored_large, FIRST_KERNEL)
        current = _to_srgb(current, icc_profile)
        if (rotate or mirror) and pixels is None:
            current = current.copy_memory()  # a PNG is read once, in order: turn it in memory
        if rotate is not None:
            current = current.rot(rotate)
        if mirror:
            current = current.fliphor()
        large = current.copy_memory()
        previous = large
        outputs: list[Rendered] = []
        for width, height in targets:
            if (previous.width, previous.height) == (width, height):
                sized = previous
            else:
                sized = previous = _resize(previous, (width, height), SMALLER_KERNEL).copy_memory()
            encoded = sized.jpegsave_buffer(
                Q=quality, optimize_coding=True, keep="none", interlace=False
            )
            outputs.append(Rendered(sized.width, sized.height, bytes(encoded)))
    except pyvips.Error as exc:
        raise VipsDecodeError(_first_line(exc)) from exc
    return outputs, time.process_time() - cpu_started


def _resize(image: Any, size: tuple[int, int], kernel: str) -> Any:
    if (image.width, image.height) == size:
        return image
    resized = image.resize(
        size[0] / image.width, vscale=size[1] / image.height, kernel=kernel, gap=GAP
    )
    if (resized.width, resized.height) != size:  # float rounding: at most a pixel
        resized = resized.gravity("north-west", *size, extend="copy")
    return resized


def _to_srgb(image: Any, icc_profile: bytes | None) -> Any:
    """sRGB pixels: an embedded profile is applied (perceptual, as the Pillow path does);
    a broken one is ignored, as browsers do."""
    if icc_profile:
        try:
            # 8-bit out whatever came in: a 16-bit PNG's transform would otherwise stay
            # 16-bit, and a cast to 8 bits clips (every pixel white) instead of scaling
            return image.icc_transform("srgb", embedded=True, intent="perceptual", depth=8)
        except pyvips.Error:
            logger.warning("ignoring unusable ICC profile", extra={"step": "thumbnails"})
    return image


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(dict.fromkeys(lines[:3]))[:300] or type(exc).__name__
