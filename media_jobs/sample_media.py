"""Generated sample media: the demo listing of ``make run``, the test fixtures, the benchmarks.

Everything is made on the fly (no binary files in the repository). Photos carry a red marker
in the top-left corner *as displayed*, so a test can check that EXIF orientation was applied:
after a correct rotation the derivative's top-left pixel is red.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pillow_heif
from PIL import Image, ImageDraw, ImageFilter

MARKER_RGB = (230, 20, 20)

# The transpose that turns the displayed image into the stored one for each EXIF
# orientation: the inverse of what a viewer (ImageOps.exif_transpose) applies.
_STORE_TRANSPOSE: dict[int, Image.Transpose | None] = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _noise(size: tuple[int, int], sigma: int, rng: random.Random) -> Image.Image:
    """Grey noise around mid-grey with about ``sigma`` of spread (uniform, so
    ``sigma * sqrt(12)`` wide). Seeded, unlike Image.effect_noise, and ten times cheaper."""
    width = min(255, round(sigma * 3.46))
    low = 128 - width // 2
    raw = Image.frombytes("L", size, rng.randbytes(size[0] * size[1]))
    return raw.point(lambda v: low + v * width // 256)


# Pictures up to this many pixels are kept (the last eight): the tests' sizes. The
# benchmarks' 12-24 MP inputs are made afresh, so they do not stay in memory.
KEPT_PIXELS = 4_000_000


def _photographic(width: int, height: int, seed: int) -> Image.Image:
    rng = random.Random(seed)
    base = Image.linear_gradient("L").resize((width, height))
    other = Image.radial_gradient("L").resize((width, height))
    noise = _noise((max(1, width // 4), max(1, height // 4)), 40 + seed % 20, rng)
    noise = noise.resize((width, height), Image.Resampling.BILINEAR)
    img = Image.merge("RGB", (base, other, noise))
    draw = ImageDraw.Draw(img)
    step = max(8, min(width, height) // 12)
    for i in range(0, width, step * 2):
        shade = (i * 7 + seed * 31) % 255
        draw.rectangle(
            (i, height // 3, i + step, height // 3 + step), fill=(shade, 255 - shade, 128)
        )
    img = img.filter(ImageFilter.BoxBlur(1))  # softened edges; a Gaussian costs 2.4x
    return Image.blend(img, _noise((width, height), 25, rng).convert("RGB"), 0.15)


def photographic(width: int, height: int, *, seed: int = 0) -> Image.Image:
    """An RGB image with gradients, shapes and noise: JPEG-realistic, not flat colour. The
    same arguments give the same pixels (the tests ask for the same pictures many times:
    the last few are kept, and each caller gets its own copy)."""
    if width * height > KEPT_PIXELS:
        return _photographic(width, height, seed)
    return _kept_photographic(width, height, seed).copy()


_kept_photographic = functools.lru_cache(maxsize=8)(_photographic)


def with_marker(img: Image.Image) -> Image.Image:
    """Paint the orientation marker: a red square in the top-left corner."""
    img = img.copy()
    size = max(4, min(img.size) // 5)
    ImageDraw.Draw(img).rectangle((0, 0, size, size), fill=MARKER_RGB)
    return img


def stored_for_orientation(displayed: Image.Image, orientation: int) -> Image.Image:
    """The pixels a camera stores for ``displayed`` when it writes EXIF ``orientation``."""
    transpose = _STORE_TRANSPOSE[orientation]
    return displayed.transpose(transpose) if transpose is not None else displayed


def jpeg_bytes(
    width: int = 640,
    height: int = 480,
    *,
    orientation: int = 1,
    quality: int = 90,
    seed: int = 0,
    gps: bool = False,
) -> bytes:
    """A JPEG that *displays* as width x height with the marker top-left, stored rotated
    for the given EXIF orientation (1-8)."""
    stored = stored_for_orientation(
        with_marker(photographic(width, height, seed=seed)), orientation
    )
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "TOQ sample camera"
    if gps:
        exif[0x8825] = {1: "N", 2: (45.0, 30.0, 0.0), 3: "W", 4: (73.0, 35.0, 0.0)}
    out = io.BytesIO()
    stored.save(out, "JPEG", quality=quality, exif=exif.tobytes())
    return out.getvalue()


def png_alpha_bytes(width: int = 320, height: int = 240) -> bytes:
    """RGBA PNG: transparent background around an opaque marker."""
    img = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    ImageDraw.Draw(img).rectangle(
        (width // 4, height // 4, width // 2, height // 2), fill=(*MARKER_RGB, 255)
    )
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def cmyk_jpeg_bytes(width: int = 320, height: int = 240) -> bytes:
    out = io.BytesIO()
    with_marker(photographic(width, height)).convert("CMYK").save(out, "JPEG", quality=90)
    return out.getvalue()


def png16_bytes(width: int = 320, height: int = 240) -> bytes:
    """16-bit greyscale PNG (mode I;16)."""
    img = Image.linear_gradient("L").resize((width, height)).convert("I")
    img = img.point(lambda v: v * 257).convert("I;16")
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def heic_bytes(width: int = 320, height: int = 240) -> bytes:

    pillow_heif.register_heif_opener()
    out = io.BytesIO()
    with_marker(photographic(width, height)).save(out, "HEIF", quality=80)
    return out.getvalue()


def truncated_jpeg_bytes() -> bytes:
    data = jpeg_bytes(640, 480)
    return data[: len(data) // 2]


def bomb_png_bytes(width: int = 20_000, height: int = 20_000) -> bytes:
    """A small file that decodes to width*height pixels (a decompression bomb). Its
    compression costs ~1 s of CPU: kept like the clips."""

    def make() -> bytes:
        out = io.BytesIO()
        Image.new("1", (width, height), 0).save(out, "PNG", optimize=True)
        return out.getvalue()

    return kept(f"bomb png {width}x{height}", make)


def mp4_bytes(
    seconds: float = 1.0, width: int = 320, height: int = 240, *, ffmpeg: str = "ffmpeg"
) -> bytes:
    """A short H.264 test-pattern video made by ffmpeg's testsrc."""
    return _mp4(shutil.which(ffmpeg) or ffmpeg, seconds, width, height)


# A folder where made media is kept for other processes: the test run points it at one folder
# its workers share. Unset, each process makes its own.
SHARED_DIR_VARIABLE = "SAMPLE_MEDIA_DIR"


def kept(name: str, make: Callable[[], bytes]) -> bytes:
    """``make()``, or what an earlier call with the same ``name`` made, when
    SAMPLE_MEDIA_DIR is set. ``name`` must say everything that decides the bytes."""
    shared = os.environ.get(SHARED_DIR_VARIABLE)
    if not shared:
        return make()
    path = Path(shared) / hashlib.sha256(name.encode("utf-8")).hexdigest()[:24]
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    data = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.part")
    partial.write_bytes(data)
    os.replace(partial, path)  # whole or absent, whoever reads it
    return data


@functools.cache
def _mp4(binary: str, seconds: float, width: int, height: int) -> bytes:
    """Made once per binary and size: testsrc, sine and x264 give the same bytes for the same
    arguments, and the test suite asks for the same few clips again and again (an ffmpeg run
    each, ~0.2-0.5 s of CPU)."""
    return kept(
        f"mp4 {binary} {seconds} {width}x{height}",
        lambda: _render_mp4(binary, seconds, width, height),
    )


def _render_mp4(binary: str, seconds: float, width: int, height: int) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sample.mp4"
        subprocess.run(
            [
                binary,
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                f"testsrc=size={width}x{height}:rate=25:duration={seconds}",
                "-f",
                "lavfi",
                "-i",
                f"sine=frequency=440:duration={seconds}",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-shortest",
                str(path),
            ],
            check=True,
            timeout=120,
        )
        return path.read_bytes()
