"""From the decoded photo to its four derivatives on the Pillow path: the one big step down
to ``large`` (thumbnails' ``_reduce_opaque``: resized directly in an opaque mode, else
converted and integer-reduced a strip at a time), then the turn, the colour conversion and
the smaller sizes (``_render_loaded``). Real images made here, with exact expected pixels."""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
from PIL import Image

from media_jobs import sample_media
from media_jobs.pipeline import decode_budget, thumbnails, vips_render
from media_jobs.pipeline.decode_budget import DecodeLimits
from media_jobs.pipeline.errors import ErrorCode, PipelineError
from media_jobs.pipeline.thumbnails import Derivative, render_derivatives
from tests.pipeline.test_thumbnails_pixels import _file, _opened, _row

RED = (230, 20, 20)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)


def _near(got: object, want: tuple[int, ...], tolerance: int = 2) -> bool:
    assert isinstance(got, tuple), got
    return all(abs(a - b) <= tolerance for a, b in zip(got, want, strict=True))


def _by_size(data: bytes, limits: DecodeLimits | None = None) -> dict[str, Derivative]:
    derivatives = render_derivatives(io.BytesIO(data), limits=limits or DecodeLimits())
    return {d.size: d for d in derivatives}


# -- the opaque modes: one resize --------------------------------------------------------------


def test_an_opaque_image_larger_than_the_target_is_resized_to_it() -> None:
    """Grey 8 x 4, 40 on the left half and 200 on the right, halved to 4 x 2 (bicubic:
    the edge between the halves softens, and overshoots by 2 at the outer columns)."""
    image = Image.new("L", (8, 4), 40)
    image.paste(200, (4, 0, 8, 4))

    reduced = thumbnails._reduce_opaque(image, (4, 2), None)

    assert reduced.size == (4, 2)
    assert _row(reduced, 0) == _row(reduced, 1) == [38, 51, 189, 202]


def test_the_draft_crop_box_is_applied_even_when_the_decoded_size_is_the_target() -> None:
    """A JPEG decoded at a DCT scale comes with the box of its real pixels: 2400 x 1603 at
    1/2 is 1200 x 802 pixels, the last row half real (box 1200 x 801.5), and large is 1200 x
    802 too. The box is resampled even when the decoded size is already the target. Here
    the box is the left 4 columns of a 12 x 2 grey image whose left half is dark, stretched
    to 12 x 2: all dark, none of the light right half shows."""
    image = Image.new("L", (12, 2), 10)
    image.paste(250, (6, 0, 12, 2))

    reduced = thumbnails._reduce_opaque(image, (12, 2), (0.0, 0.0, 4.0, 2.0))

    assert _row(reduced) == [10] * 12


def test_an_opaque_image_at_the_target_size_without_a_box_is_kept() -> None:
    """Already the large size (and no crop box): the decode itself, no second copy."""
    image = Image.new("RGB", (6, 4), RED)

    assert thumbnails._reduce_opaque(image, (6, 4), None) is image


# -- converted modes: a strip at a time --------------------------------------------------------


def _red_clear_blue(width: int, height: int) -> Image.Image:
    """RGBA thirds: opaque red, fully transparent (black underneath), opaque blue."""
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    image.paste((*RED, 255), (0, 0, width // 3, height))
    image.paste((*BLUE, 255), (2 * width // 3, 0, width, height))
    return image


@pytest.fixture
def strips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Every crop box taken of an image and every integer reduction made, in order."""
    seen: list[object] = []
    real_crop, real_reduce = Image.Image.crop, Image.Image.reduce

    def crop(self: Image.Image, box: object = None) -> Image.Image:
        seen.append(("crop", box))
        return real_crop(self, box)  # type: ignore[arg-type]

    def reduce(self: Image.Image, factor: object, box: object = None) -> Image.Image:
        seen.append(("reduce", self.size, factor))
        return real_reduce(self, factor, box)  # type: ignore[arg-type]

    monkeypatch.setattr(Image.Image, "crop", crop)
    monkeypatch.setattr(Image.Image, "reduce", reduce)
    yield seen


@pytest.mark.parametrize(
    ("source", "target", "strip_bytes", "expected"),
    [
        # reduced 3 x 2 (within a gap of 2 of 1200 x 2); 4 bytes x 7200 x 2 rows a strip
        pytest.param(
            (7200, 10),
            (1200, 2),
            4 * 7200 * 2,
            [
                step
                for top in (0, 2, 4, 6, 8)
                for step in (("crop", (0, top, 7200, top + 2)), ("reduce", (7200, 2), (3, 2)))
            ],
            id="3x2-strips-of-2-rows",
        ),
        # 4 rows a strip (twice the bytes); the last strip is what is left: 2 rows
        pytest.param(
            (7200, 10),
            (1200, 2),
            4 * 7200 * 4,
            [
                ("crop", (0, 0, 7200, 4)),
                ("reduce", (7200, 4), (3, 2)),
                ("crop", (0, 4, 7200, 8)),
                ("reduce", (7200, 4), (3, 2)),
                ("crop", (0, 8, 7200, 10)),
                ("reduce", (7200, 2), (3, 2)),
            ],
            id="3x2-strips-of-4-rows",
        ),
        # large is 1200 x round(1.5) = 2: 4 x wider, only 3 x taller -> 2 x 1
        pytest.param(
            (4800, 6),
            (1200, 2),
            8 * 1024 * 1024,
            [("crop", (0, 0, 4800, 6)), ("reduce", (4800, 6), (2, 1))],
            id="2x1",
        ),
        # large is 1200 x round(1.25) = 1: 3.99 x wider, 5 x taller -> 1 x 2
        pytest.param(
            (4790, 5),
            (1200, 1),
            8 * 1024 * 1024,
            [("crop", (0, 0, 4790, 5)), ("reduce", (4790, 5), (1, 2))],
            id="1x2",
        ),
    ],
)
def test_a_transparent_image_is_converted_and_reduced_strip_by_strip(
    source: tuple[int, int],
    target: tuple[int, int],
    strip_bytes: int,
    expected: list[object],
    strips: list[object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RGBA far wider than large: cut into strips of whole reduction rows, each converted
    (alpha on white) and reduced by the whole factors that stay within 2 x of the target,
    pasted in place, then resampled to the target. The strip budget (8 MiB in production)
    is made small here so the rule shows on a small image. The thirds stay red, white and
    blue to both edges."""
    monkeypatch.setattr(thumbnails, "STRIP_BYTES", strip_bytes)

    reduced = thumbnails._reduce_opaque(_red_clear_blue(*source), target, None)

    assert strips == expected
    assert (reduced.mode, reduced.size) == ("RGB", target)
    for y in range(target[1]):
        for x, colour in ((0, RED), (100, RED), (600, WHITE), (1100, BLUE), (1199, BLUE)):
            assert _near(reduced.getpixel((x, y)), colour), (x, y, reduced.getpixel((x, y)))


def test_a_transparent_image_at_the_target_size_is_converted_without_resampling(
    strips: list[object],
) -> None:
    """No reduction and no resize: the converted pixels exactly (transparent -> white)."""
    reduced = thumbnails._reduce_opaque(_red_clear_blue(6, 2), (6, 2), None)

    assert strips == [("crop", (0, 0, 6, 2))]
    assert reduced.mode == "RGB"
    assert _row(reduced, 1) == [RED, RED, WHITE, WHITE, BLUE, BLUE]


# -- the JPEG size limit ---------------------------------------------------------------------


def _flat_rgb_png(width: int, height: int) -> bytes:
    """An RGB PNG of one colour, written row by row (never the whole image in memory)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    deflate = zlib.compressobj(9)
    row = b"\0" + bytes([90]) * (3 * width)  # filter type 0, then the pixels
    body = b"".join(
        deflate.compress(row * min(1000, height - top)) for top in range(0, height, 1000)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", body + deflate.flush())
        + chunk(b"IEND", b"")
    )


def test_only_the_large_derivatives_height_is_held_to_jpegs_limit() -> None:
    """801 x 65501: large is the photo itself, one pixel taller than a JPEG can be, while
    medium (800 x 65419) would fit. The large size decides: refused before decoding."""
    assert vips_render.available(), vips_render.missing_reason()  # else Pillow decodes 52 MP
    data = _flat_rgb_png(801, 65501)

    with pytest.raises(PipelineError) as caught:
        _by_size(data, DecodeLimits(memory_bytes=2**34))

    assert caught.value.code == ErrorCode.EXTREME_ASPECT_RATIO
    assert caught.value.message == (
        "801x65501 (as displayed): the large derivative would be 801x65501, over JPEG's "
        "65500 px limit"
    )


# -- _render_loaded ---------------------------------------------------------------------------


def _stripes_png(orientation: int) -> bytes:
    """A grey PNG displayed 640 x 480 as one-pixel columns, 60 and 190 in turn, stored
    turned for EXIF ``orientation`` (eXIf chunk)."""
    row = bytes(60 if x % 2 == 0 else 190 for x in range(640))
    displayed = Image.frombytes("L", (640, 480), row * 480)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = sample_media.stored_for_orientation(displayed, orientation)
    return _file(stored, "PNG", exif=exif.tobytes())


@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
def test_a_turned_photo_at_the_large_size_keeps_its_finest_detail(orientation: int) -> None:
    """A photo stored turned (EXIF 5 to 8) whose large size is the photo itself is only
    turned, never resampled: one-pixel columns stay one-pixel columns (squeezing the stored
    image to the displayed shape and back would blur them to grey)."""
    large = _opened(_by_size(_stripes_png(orientation))["large"].data).convert("L")

    assert large.size == (640, 480)
    for y in (1, 240, 478):
        row = large.crop((8, y, 632, y + 1)).tobytes()  # columns 8 (dark) to 631 (light)
        dark, light = row[0::2], row[1::2]
        assert max(dark) <= 75 and min(light) >= 175, (y, min(light), max(dark))


def test_the_smaller_sizes_are_resampled_with_lanczos() -> None:
    """A grey sine of period 2.1 pixels at 1200 wide is finer than the medium size (800
    wide) can hold: Lanczos fades it to its mean grey, 128 within 5, in medium and small
    alike, where bicubic leaves a moire of +-10 and more. The large size keeps it."""
    row = bytes(round(128 + 100 * math.sin(2 * math.pi * x / 2.1)) for x in range(1200))
    data = _file(Image.frombytes("L", (1200, 60), row * 60), "PNG")

    derivatives = _by_size(data)

    low, high = _opened(derivatives["large"].data).convert("L").getextrema()
    assert low < 40 and high > 215  # type: ignore[operator]
    for size in ("medium", "small"):
        image = _opened(derivatives[size].data).convert("L")
        inner = image.crop((4, 1, image.width - 4, image.height - 1))
        low, high = inner.getextrema()
        assert 123 <= low and high <= 133, (size, low, high)  # type: ignore[operator]


class _FakeCpu:
    """The CPU clock the photo's budget reads: it moves only when a stage says it spent time."""

    def __init__(self) -> None:
        self.now = 0.0

    def spend(self, seconds: float, real: Callable[..., object]) -> Callable[..., object]:
        def timed(*args: object) -> object:
            result = real(*args)
            self.now += seconds
            return result

        return timed


@pytest.fixture
def cpu(monkeypatch: pytest.MonkeyPatch) -> _FakeCpu:
    clock = _FakeCpu()
    monkeypatch.setattr(decode_budget, "time", SimpleNamespace(thread_time=lambda: clock.now))
    return clock


GREY_PNG = _file(Image.new("L", (1600, 400), 90), "PNG")


def test_a_reduction_over_the_cpu_budget_stops_the_photo_naming_the_stage(
    cpu: _FakeCpu, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reduction to large taking 5 s of a 1 s budget: refused right after it."""
    monkeypatch.setattr(thumbnails, "_reduce_opaque", cpu.spend(5.0, thumbnails._reduce_opaque))

    with pytest.raises(PipelineError) as caught:
        _by_size(GREY_PNG, DecodeLimits(cpu_seconds=1.0))

    assert caught.value.code == ErrorCode.CPU_BUDGET_EXCEEDED
    assert caught.value.message == (
        "stopped after 5.0 s of CPU (reducing); the per-photo budget is 1 s "
        "(MEDIA_DECODE_CPU_SECONDS)"
    )


def test_encoding_over_the_cpu_budget_stops_the_photo_at_the_size_it_was_encoding(
    cpu: _FakeCpu, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each encode taking 2 s of a 3 s budget: large fits, medium goes over."""
    monkeypatch.setattr(thumbnails, "_encode_jpeg", cpu.spend(2.0, thumbnails._encode_jpeg))

    with pytest.raises(PipelineError) as caught:
        _by_size(GREY_PNG, DecodeLimits(cpu_seconds=3.0))

    assert caught.value.message == (
        "stopped after 4.0 s of CPU (encoding medium); the per-photo budget is 3 s "
        "(MEDIA_DECODE_CPU_SECONDS)"
    )


# -- _to_srgb ---------------------------------------------------------------------------------


def _linear_grey_profile() -> bytes:
    """A minimal ICC v2 grey display profile (D50 white, gamma 1.0 tone curve)."""

    def xyz(values: tuple[float, ...]) -> bytes:
        return b"XYZ \0\0\0\0" + b"".join(struct.pack(">i", round(v * 65536)) for v in values)

    text = b"test linear grey\0"
    white = (0.9642, 1.0, 0.8249)
    tags = [
        (b"desc", b"desc\0\0\0\0" + struct.pack(">I", len(text)) + text + bytes(78)),
        (b"wtpt", xyz(white)),
        (b"kTRC", b"curv\0\0\0\0" + struct.pack(">IH", 1, 0x0100) + b"\0\0"),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, body = struct.pack(">I", len(tags)), b""
    for signature, content in tags:
        content += bytes(-len(content) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(content))
        body += content
    header = (
        struct.pack(">I", offset + len(body))
        + bytes(4)
        + struct.pack(">I", 0x02100000)
        + b"mntrGRAYXYZ "
        + bytes(12)
        + b"acsp"
        + bytes(28)
        + xyz(white)[8:]
        + bytes(48)
    )
    assert len(header) == 128
    return header + table + body


def test_a_grey_photo_with_a_grey_icc_profile_is_converted_to_srgb(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Grey 128 in a linear grey profile is half the light: sRGB 188 (its gamma curve),
    in RGB derivatives; the profile is usable, so nothing is logged."""
    data = _file(Image.new("L", (64, 48), 128), "PNG", icc_profile=_linear_grey_profile())
    assert "icc_profile" in _opened(data).info

    derivatives = _by_size(data)

    assert not [r for r in caplog.records if "ICC" in r.getMessage()]
    for derivative in derivatives.values():
        image = _opened(derivative.data)
        assert image.mode == "RGB"
        assert _near(image.getpixel((10, 10)), (188, 188, 188)), image.getpixel((10, 10))
