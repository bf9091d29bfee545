"""The thumbnails step on real generated media, against both storage adapters."""

from __future__ import annotations

import io
import logging
import struct
import tempfile
import threading
import zlib
from typing import BinaryIO

import pytest
from PIL import Image, ImageCms, ImageDraw, PngImagePlugin

from media_jobs import sample_media
from media_jobs.pipeline import thumbnails, vips_render
from media_jobs.pipeline.config import PipelineConfig
from media_jobs.pipeline.decode_budget import DecodeLimits
from media_jobs.pipeline.errors import ErrorCode, PipelineError
from media_jobs.pipeline.keys import IMAGE_SIZES, derivative_key
from media_jobs.pipeline.storage import Storage
from media_jobs.pipeline.thumbnails import Derivative, generate_thumbnails, render_derivatives
from media_jobs.pipeline.types import ValidatedAsset, ValidationResult
from tests.support.images import psnr
from tests.support.wrapped_storage import WrappedStorage

MAX_PIXELS = 180_000_000
LISTING = 4242


def render(data: bytes, *, max_pixels: int = MAX_PIXELS) -> dict[str, Derivative]:
    limits = DecodeLimits(max_pixels=max_pixels)
    return {d.size: d for d in render_derivatives(io.BytesIO(data), limits=limits)}


def decoded(derivative: Derivative) -> Image.Image:
    image = Image.open(io.BytesIO(derivative.data))
    image.load()
    return image


def is_marker_red(pixel: tuple[int, ...]) -> bool:
    red, green, blue = pixel[:3]
    return red > 180 and green < 80 and blue < 80


def expected_size(width: int, height: int, target: int) -> tuple[int, int]:
    out_width = min(target, width)
    return out_width, max(1, round(height * out_width / width))


@pytest.fixture(params=["libvips", "pillow"])
def renderer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test on both paths: libvips (the photos it suits) and Pillow (everything else,
    and every photo where libvips is missing)."""
    monkeypatch.setattr(thumbnails, "USE_VIPS", request.param == "libvips")
    return str(request.param)


@pytest.fixture
def vips_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The formats libvips rendered (the real renderer, observed): "JPEG" for a photo
    handed over as Pillow's pixels, "PNG" for one libvips decodes itself."""
    calls: list[str] = []
    real = vips_render.render

    def observed(data: object, **kwargs: object) -> object:
        calls.append("PNG" if kwargs.get("pixels") is None else "JPEG")
        return real(data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(vips_render, "render", observed)
    return calls


def png_bytes_with_orientation(orientation: int, width: int = 640, height: int = 480) -> bytes:
    """An RGB PNG that displays as width x height with the marker top-left (eXIf chunk)."""
    displayed = sample_media.with_marker(sample_media.photographic(width, height))
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    sample_media.stored_for_orientation(displayed, orientation).save(
        out,
        "PNG",
        exif=exif.tobytes(),
        compress_level=1,  # 6 MP at the default level: ~2 s
    )
    return out.getvalue()


# -- render_derivatives ----------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied(
    jpeg_by_orientation: dict[int, bytes], orientation: int, renderer: str
) -> None:
    derivatives = render(jpeg_by_orientation[orientation])

    assert set(derivatives) == set(IMAGE_SIZES)
    for size, target in IMAGE_SIZES.items():
        image = decoded(derivatives[size])
        # 640x480 as displayed, whatever the stored orientation
        assert image.size == expected_size(640, 480, target)
        assert (derivatives[size].width, derivatives[size].height) == image.size
        assert is_marker_red(image.getpixel((2, 2))), (size, image.getpixel((2, 2)))
        assert not is_marker_red(image.getpixel((image.width - 3, image.height - 3)))


def test_large_portrait_source_is_reduced_by_aspect_ratio() -> None:
    # displayed 1800x2700 (portrait), stored landscape with orientation 6: the DCT-scaled
    # decode must follow the displayed width, not the stored one
    data = sample_media.jpeg_bytes(1800, 2700, orientation=6, seed=3)
    derivatives = render(data)

    for size, target in IMAGE_SIZES.items():
        image = decoded(derivatives[size])
        assert image.size == expected_size(1800, 2700, target)
        assert image.format == "JPEG" and image.mode == "RGB"
        assert is_marker_red(image.getpixel((2, 2)))


def test_small_source_is_never_upscaled() -> None:
    derivatives = render(sample_media.jpeg_bytes(300, 200))

    assert decoded(derivatives["thumbnail"]).size == (200, 133)
    for size in ("small", "medium", "large"):
        assert decoded(derivatives[size]).size == (300, 200)
    # the three identical sizes are encoded once
    assert derivatives["small"].data == derivatives["medium"].data == derivatives["large"].data


def test_no_exif_gps_or_icc_metadata_in_derivatives(renderer: str) -> None:
    source = sample_media.jpeg_bytes(900, 600, orientation=6, gps=True)
    assert Image.open(io.BytesIO(source)).getexif().get_ifd(0x8825)  # the source has GPS

    for derivative in render(source).values():
        image = decoded(derivative)
        assert not image.getexif()
        assert "exif" not in image.info and "icc_profile" not in image.info
        assert b"Exif" not in derivative.data[:4096]
        assert b"TOQ sample camera" not in derivative.data


def test_cmyk_is_converted_to_rgb(cmyk_jpeg: bytes) -> None:
    for derivative in render(cmyk_jpeg).values():
        image = decoded(derivative)
        assert image.mode == "RGB"
        assert is_marker_red(image.getpixel((2, 2)))


def test_alpha_is_flattened_on_white(png_alpha: bytes) -> None:
    image = decoded(render(png_alpha)["large"])

    assert image.mode == "RGB" and image.size == (320, 240)
    assert min(image.getpixel((3, 3))) > 245  # transparent corner -> white, not black
    assert is_marker_red(image.getpixel((120, 90)))  # the opaque square keeps its colour


def test_alpha_wider_than_the_large_size_is_flattened_then_resampled() -> None:
    """1500 x 600 RGBA: converted strip by strip at full size (no integer reduction fits
    within the gap), then resampled to each width."""
    derivatives = render(sample_media.png_alpha_bytes(1500, 600))

    for size, target in IMAGE_SIZES.items():
        image = decoded(derivatives[size])
        assert image.size == expected_size(1500, 600, target)
    large = decoded(derivatives["large"])
    assert large.size == (1200, 480)
    assert min(large.getpixel((3, 3))) > 245  # transparent corner -> white
    assert is_marker_red(large.getpixel((450, 180)))  # the opaque rectangle (375..750 wide)


def test_a_grey_scan_far_larger_than_the_large_size_is_reduced_before_resampling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An L image at least 6 x the large size is first reduced by a whole factor (Pillow's
    reducing gap of 3: 7200 x 300 -> 3600 x 150), then resampled; the decode memory check
    counts on that smaller intermediate."""
    scan = sample_media.photographic(7200, 300).convert("L")
    out = io.BytesIO()
    scan.save(out, "PNG", compress_level=1)
    reductions: list[tuple[tuple[int, int], object]] = []
    real_reduce = Image.Image.reduce

    def reduce(self: Image.Image, factor: object, box: object = None) -> Image.Image:
        reductions.append((self.size, factor))
        return real_reduce(self, factor, box)  # type: ignore[arg-type]

    monkeypatch.setattr(Image.Image, "reduce", reduce)

    large = decoded(render(out.getvalue())["large"])

    assert large.size == (1200, 50)
    assert reductions == [((7200, 300), (2, 2))]


def test_palette_with_transparency_and_grey_alpha_are_flattened_on_white() -> None:
    palette = Image.new("P", (64, 48), 0)
    palette.putpalette([0, 0, 0, *sample_media.MARKER_RGB] + [0] * (256 * 3 - 6))
    ImageDraw.Draw(palette).rectangle((32, 24, 63, 47), fill=1)
    palette.info["transparency"] = 0
    grey_alpha = Image.new("LA", (64, 48), (0, 0))
    ImageDraw.Draw(grey_alpha).rectangle((32, 24, 63, 47), fill=(40, 255))

    for source, opaque_check in (
        (palette, is_marker_red),
        (grey_alpha, lambda pixel: max(pixel) < 70),
    ):
        out = io.BytesIO()
        source.save(out, "PNG", transparency=0) if source.mode == "P" else source.save(out, "PNG")
        image = decoded(render(out.getvalue())["large"])
        assert image.mode == "RGB"
        assert min(image.getpixel((2, 2))) > 245
        assert opaque_check(image.getpixel((60, 44)))


def test_sixteen_bit_png_keeps_its_tones(png16: bytes) -> None:
    image = decoded(render(png16)["large"])

    top, middle, bottom = (image.getpixel((5, y))[0] for y in (2, 120, 237))
    assert top < 20 and 100 < middle < 160 and bottom > 235  # a gradient, not clipped white


def test_heic_is_decoded(heic: bytes) -> None:
    image = decoded(render(heic)["large"])

    assert image.size == (320, 240)
    assert is_marker_red(image.getpixel((2, 2)))


def _icc_rgb_profile(
    red: tuple[float, ...], green: tuple[float, ...], blue: tuple[float, ...]
) -> bytes:
    """A minimal ICC v2 matrix/TRC display profile with the given colorants (D50 XYZ)."""

    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def xyz(values: tuple[float, ...]) -> bytes:
        return b"XYZ \0\0\0\0" + b"".join(s15(v) for v in values)

    text = b"test channel-swapped RGB\0"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(text)) + text + bytes(4 + 4 + 2 + 1 + 67)
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, 0x0233) + b"\0\0"  # gamma 2.2
    white = (0.9642, 1.0, 0.8249)
    tags = [
        (b"desc", desc),
        (b"wtpt", xyz(white)),
        (b"rXYZ", xyz(red)),
        (b"gXYZ", xyz(green)),
        (b"bXYZ", xyz(blue)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    table, body = struct.pack(">I", len(tags)), b""
    for signature, content in tags:
        content += bytes(-len(content) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(content))
        body += content
    size = 128 + table_size + len(body)
    header = (
        struct.pack(">I", size)
        + bytes(4)
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + bytes(12)
        + b"acsp"
        + bytes(24)
        + struct.pack(">I", 0)
        + b"".join(s15(v) for v in white)
        + bytes(48)
    )
    assert len(header) == 128
    return header + table + body


def test_embedded_icc_profile_is_converted_to_srgb(renderer: str) -> None:
    # Pixels stored as (B, G, R) with a profile whose first channel is sRGB's *blue* primary
    # and third channel sRGB's red: only a colour-managed conversion shows the marker red.
    srgb_red, srgb_green, srgb_blue = (
        (0.4361, 0.2225, 0.0139),
        (0.3851, 0.7169, 0.0971),
        (0.1431, 0.0606, 0.7141),
    )
    profile = _icc_rgb_profile(srgb_blue, srgb_green, srgb_red)
    displayed = sample_media.with_marker(sample_media.photographic(320, 240))
    red, green, blue = displayed.split()
    stored = Image.merge("RGB", (blue, green, red))
    out = io.BytesIO()
    stored.save(out, "JPEG", quality=92, icc_profile=profile)

    image = decoded(render(out.getvalue())["large"])

    assert is_marker_red(image.getpixel((3, 3))), image.getpixel((3, 3))
    assert "icc_profile" not in image.info


def test_libvips_renders_rgb_jpegs_and_rgb_pngs_only(
    vips_calls: list[str], png_alpha: bytes, cmyk_jpeg: bytes
) -> None:
    assert vips_render.available(), vips_render.missing_reason()
    progressive = io.BytesIO()
    sample_media.photographic(320, 240).save(progressive, "JPEG", progressive=True)
    render(sample_media.jpeg_bytes(320, 240))
    render(progressive.getvalue())
    render(png_bytes_with_orientation(1, 320, 240))
    assert vips_calls == ["JPEG", "JPEG", "PNG"]

    grey = io.BytesIO()
    sample_media.photographic(320, 240).convert("L").save(grey, "JPEG")
    for data in (grey.getvalue(), png_alpha, cmyk_jpeg):
        assert set(render(data)) == set(IMAGE_SIZES)
    assert vips_calls == ["JPEG", "JPEG", "PNG"]  # those three went through Pillow


def test_libvips_is_used_from_8_15_with_its_loaders(monkeypatch: pytest.MonkeyPatch) -> None:
    """The decision ``available()`` keeps (made once, at import: so the check itself is
    called): this machine's libvips qualifies; 8.14 (no jpegsave ``keep``) or a build
    without the PNG loader does not, and Pillow renders everything."""
    pyvips = pytest.importorskip("pyvips")
    assert vips_render._has_loaders() is True
    real_version = pyvips.version
    monkeypatch.setattr(pyvips, "version", lambda flag: (8, 15, 0)[flag])
    assert vips_render._has_loaders() is True
    monkeypatch.setattr(pyvips, "version", lambda flag: (8, 14, 9)[flag])
    assert vips_render._has_loaders() is False
    assert vips_render.missing_reason() == ""  # the decision made at import stands
    monkeypatch.setattr(vips_render, "_HAS_LOADERS", False)
    assert vips_render.missing_reason() == (
        "libvips 8.14: older than 8.15 or without the JPEG or PNG loader"
    )
    monkeypatch.setattr(vips_render, "_HAS_LOADERS", True)
    monkeypatch.setattr(pyvips, "version", real_version)
    real_find = pyvips.type_find
    monkeypatch.setattr(
        pyvips,
        "type_find",
        lambda base, name: 0 if name == "pngload_source" else real_find(base, name),
    )
    assert vips_render._has_loaders() is False


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_png_exif_orientation_is_applied(orientation: int, renderer: str) -> None:
    derivatives = render(png_bytes_with_orientation(orientation))

    for size, target in IMAGE_SIZES.items():
        image = decoded(derivatives[size])
        assert image.size == expected_size(640, 480, target), size
        assert is_marker_red(image.getpixel((2, 2))), (size, image.getpixel((2, 2)))
        assert not is_marker_red(image.getpixel((image.width - 3, image.height - 3)))


def _exif_after_the_pixels(png: bytes) -> bytes:
    """The PNG with its eXIf chunk moved from before IDAT to just before IEND (where some
    encoders write it, and where a reader that stops at the pixels does not look)."""
    chunks, at = [], 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        chunks.append(png[at : at + 12 + length])
        at += 12 + length
    (exif,) = [chunk for chunk in chunks if chunk[4:8] == b"eXIf"]
    rest = [chunk for chunk in chunks if chunk[4:8] != b"eXIf"]
    assert rest[-1][4:8] == b"IEND"
    return png[:8] + b"".join(rest[:-1]) + exif + rest[-1]


@pytest.mark.parametrize("orientation", [6, 8])
def test_a_png_exif_orientation_after_the_pixels_is_applied(
    orientation: int, renderer: str
) -> None:
    data = _exif_after_the_pixels(png_bytes_with_orientation(orientation, 64, 48))
    assert data.index(b"eXIf") > data.index(b"IDAT")

    derivatives = render(data)

    for size, target in IMAGE_SIZES.items():
        image = decoded(derivatives[size])
        assert image.size == expected_size(64, 48, target), size
        assert is_marker_red(image.getpixel((2, 2))), (size, image.getpixel((2, 2)))


def test_a_png_on_the_libvips_path_is_decoded_by_libvips_alone(
    monkeypatch: pytest.MonkeyPatch, vips_calls: list[str]
) -> None:
    """Its orientation too is read without Pillow decoding it (Pillow loads a PNG to look for
    an eXIf after the pixels): one decode, the one the memory check budgeted for."""
    monkeypatch.setattr(thumbnails, "USE_VIPS", True)
    loads: list[str] = []
    real_load = PngImagePlugin.PngImageFile.load

    def counted(image: PngImagePlugin.PngImageFile) -> object:
        loads.append(image.mode)
        return real_load(image)

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", counted)
    derivatives = render(_exif_after_the_pixels(png_bytes_with_orientation(6, 64, 48)))

    assert vips_calls == ["PNG"] and loads == []
    assert decoded(derivatives["large"]).size == (64, 48)


def test_a_png_read_from_a_file_renders_whole(renderer: str) -> None:
    """A download over the memory limit is spooled to a file, not a BytesIO: the PNG is read
    from its first byte."""
    data = png_bytes_with_orientation(1, 64, 48)
    with tempfile.TemporaryFile() as spool:
        spool.write(data)
        spool.seek(0)
        derivatives = {d.size: d for d in render_derivatives(spool, limits=DecodeLimits())}
    assert decoded(derivatives["large"]).size == (64, 48)
    assert is_marker_red(decoded(derivatives["large"]).getpixel((2, 2)))


def test_a_dct_scaled_jpegs_derivatives_keep_the_photos_own_proportions(renderer: str) -> None:
    """2400 x 621 is decoded at half scale (1200 x 311, rounded up): the derivatives'
    heights still come from 2400 x 621 (large 1200 x 310), not from the scaled rounding."""
    derivatives = render(sample_media.jpeg_bytes(2400, 621))
    for size, target in IMAGE_SIZES.items():
        assert decoded(derivatives[size]).size == expected_size(2400, 621, target), size


def _exif_block(*entries: tuple[int, int, int, bytes], data: bytes = b"") -> bytes:
    """A little-endian TIFF-structured EXIF block with one IFD of (tag, type, count, value)
    entries; ``data`` follows the IFD (at offset 8 + 2 + 12 * len(entries) + 4)."""
    block = b"II*\x00" + struct.pack("<IH", 8, len(entries))
    for tag, kind, count, value in entries:
        block += struct.pack("<HHI", tag, kind, count) + value
    return block + struct.pack("<I", 0) + data


@pytest.mark.parametrize(
    "exif",
    [
        pytest.param(_exif_block((0x010F, 2, 4, b"TOQ\x00")), id="make-without-orientation"),
        pytest.param(b"Orientation: rotate 90 (not TIFF)", id="not-a-tiff-structure"),
        pytest.param(_exif_block((0x0112, 3, 1, struct.pack("<HH", 9, 0))), id="short-9"),
        pytest.param(_exif_block((0x0112, 2, 2, b"6\x00\x00\x00")), id="ascii-6"),
        # RATIONAL 6/1: Pillow reads 6.0, which equals 6 but is no EXIF orientation
        pytest.param(
            _exif_block((0x0112, 5, 1, struct.pack("<I", 26)), data=struct.pack("<II", 6, 1)),
            id="rational-6",
        ),
    ],
)
def test_a_png_exif_block_without_a_usable_orientation_is_upright(
    exif: bytes, renderer: str, vips_calls: list[str]
) -> None:
    """A PNG's eXIf block with no orientation, one that is not TIFF-structured, or an
    orientation that is not a SHORT from 1 to 8 leaves the photo as stored (never mirrored
    or turned), like an orientation-1 photo: read by Pillow on the Pillow path, handed over
    by libvips on the other."""
    out = io.BytesIO()
    sample_media.with_marker(sample_media.photographic(320, 240)).save(out, "PNG", exif=exif)

    derivatives = render(out.getvalue())

    assert vips_calls == (["PNG"] if renderer == "libvips" else [])
    assert thumbnails._orientation_of_exif(exif) == 1
    assert thumbnails._orientation(Image.open(io.BytesIO(out.getvalue()))) == 1
    for size, target in IMAGE_SIZES.items():
        image = decoded(derivatives[size])
        assert image.size == expected_size(320, 240, target), size
        assert is_marker_red(image.getpixel((2, 2))), (size, image.getpixel((2, 2)))
        assert not is_marker_red(image.getpixel((image.width - 3, 2))), size


@pytest.mark.parametrize("orientation", [1, 5, 6, 7])
def test_libvips_and_pillow_render_the_same_pictures(
    orientation: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = sample_media.jpeg_bytes(2400, 1600, orientation=orientation, seed=2)
    by_vips = render(data)
    monkeypatch.setattr(thumbnails, "USE_VIPS", False)
    by_pillow = render(data)

    for size in IMAGE_SIZES:
        first, second = decoded(by_vips[size]), decoded(by_pillow[size])
        assert first.size == second.size == expected_size(2400, 1600, IMAGE_SIZES[size])
        # two resamplers and two encoders at quality 85: close, not identical
        assert psnr(first, second) > 33, size


def test_libvips_renders_camera_mpo_files_and_leaves_colour_keyed_pngs_to_pillow(
    vips_calls: list[str], jpeg_by_orientation: dict[int, bytes]
) -> None:
    """An MPO (a camera JPEG with preview frames) is a JPEG to libvips; an RGB PNG with a
    tRNS colour key has transparency, which only the Pillow path handles."""
    primary = Image.open(io.BytesIO(jpeg_by_orientation[1]))
    mpo = io.BytesIO()
    primary.save(mpo, "MPO", save_all=True, append_images=[primary.copy()])
    assert Image.open(io.BytesIO(mpo.getvalue())).format == "MPO"
    keyed = io.BytesIO()
    sample_media.photographic(320, 240).save(keyed, "PNG", transparency=(10, 200, 30))
    assert Image.open(io.BytesIO(keyed.getvalue())).info["transparency"] == (10, 200, 30)

    render(mpo.getvalue())
    render(keyed.getvalue())

    assert vips_calls == ["JPEG"]


@pytest.mark.parametrize(
    ("mode", "key", "kept"), [("RGB", (10, 200, 30), (90, 60, 30)), ("L", 7, 90)]
)
def test_a_colour_keyed_png_is_flattened_on_white(mode: str, key: object, kept: object) -> None:
    """A tRNS colour key makes the pixels of that one value transparent: like any other
    transparency they come out white; every other pixel keeps its value."""
    photo = Image.new(mode, (600, 400), key)  # type: ignore[arg-type]
    photo.paste(kept, (0, 0, 300, 400))  # type: ignore[arg-type]
    keyed = io.BytesIO()
    photo.save(keyed, "PNG", transparency=key)

    large = Image.open(io.BytesIO(render(keyed.getvalue())["large"].data))

    white = (255, 255, 255)
    expected_kept = kept if mode == "RGB" else (kept, kept, kept)
    assert all(abs(a - b) <= 2 for a, b in zip(large.getpixel((450, 200)), white, strict=True))
    assert all(
        abs(a - b) <= 2 for a, b in zip(large.getpixel((100, 200)), expected_kept, strict=True)
    )


def test_a_panorama_strip_keeps_at_least_one_row() -> None:
    """4000 x 10: the heights by aspect ratio are 3, 2, 1 and 0.5 rows; the thumbnail's
    rounds to 0 and is made 1, never less (nor more)."""
    out = io.BytesIO()
    sample_media.photographic(4000, 10).save(out, "JPEG", quality=90)

    sizes = {size: decoded(d).size for size, d in render(out.getvalue()).items()}

    assert sizes == {
        "large": (1200, 3),
        "medium": (800, 2),
        "small": (400, 1),
        "thumbnail": (200, 1),
    }


def test_derivatives_are_encoded_at_quality_85(renderer: str) -> None:
    """Quality 85 scales the standard JPEG quantisation tables to 30 %: the luminance
    table starts 16, 11, 10, 16 -> 5, 3, 3, 5 and the chrominance one 17, 18, 24, 47 -> 5,
    5, 7, 14 (Pillow's default quality, 75, would give 8, 6, 5, 8)."""
    for derivative in render(sample_media.jpeg_bytes(640, 480)).values():
        tables = Image.open(io.BytesIO(derivative.data)).quantization  # type: ignore[attr-defined]
        assert (tables[0][:4], tables[1][:4]) == ([5, 3, 3, 5], [5, 5, 7, 14]), derivative.size


def test_derivatives_carry_huffman_tables_made_for_them(renderer: str) -> None:
    """Optimised tables (as sharp's defaults) make the files ~10 % smaller than the
    standard tables at the same quality."""
    large = render(sample_media.jpeg_bytes(1600, 1200))["large"]
    pixels = decoded(large)
    standard = io.BytesIO()
    pixels.save(standard, "JPEG", quality=thumbnails.JPEG_QUALITY)
    optimised = io.BytesIO()
    pixels.save(optimised, "JPEG", quality=thumbnails.JPEG_QUALITY, optimize=True)

    assert len(large.data) < len(standard.getvalue()) * 0.95
    assert len(large.data) < len(optimised.getvalue()) * 1.05
    assert not pixels.info.get("progressive")


def test_the_cpu_budget_counts_libvips_work(vips_calls: list[str]) -> None:
    """libvips decodes a PNG on its own thread: its CPU time is charged to the photo's
    budget (a 6 MP PNG takes ~60 ms there; opening it here well under 20 ms)."""
    data = png_bytes_with_orientation(1, 3000, 2000)
    with pytest.raises(PipelineError) as caught:
        render_derivatives(io.BytesIO(data), limits=DecodeLimits(cpu_seconds=0.02))
    assert caught.value.code == ErrorCode.CPU_BUDGET_EXCEEDED
    assert "rendering" in caught.value.message
    assert vips_calls == ["PNG"]


def _grey_png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (width, height), 90).save(out, "PNG")
    return out.getvalue()


def test_a_photo_whose_large_derivative_is_too_tall_for_jpeg_is_refused_before_decoding() -> None:
    """10 x 70000 as displayed: every derivative would be 70000 pixels tall, which no JPEG
    can hold; the photo is refused by its size, not failed by the encoder."""
    with pytest.raises(PipelineError) as caught:
        render(_grey_png(10, 70000))
    assert caught.value.code == ErrorCode.EXTREME_ASPECT_RATIO
    assert caught.value.message.startswith(
        "10x70000 (as displayed): the large derivative would be 10x70000, over JPEG's "
    )


def test_jpegs_height_limit_is_65500_pixels() -> None:
    """libjpeg (Pillow's and libvips' encoder) takes at most 65500 pixels a side: a 10 x
    65500 scan renders (10 pixels wide, every derivative is the photo itself), one pixel
    taller is refused as too tall."""
    derivatives = render(_grey_png(10, 65500))
    assert {(d.width, d.height) for d in derivatives.values()} == {(10, 65500)}

    with pytest.raises(PipelineError) as caught:
        render(_grey_png(10, 65501))
    assert caught.value.code == ErrorCode.EXTREME_ASPECT_RATIO
    assert caught.value.message == (
        "10x65501 (as displayed): the large derivative would be 10x65501, "
        "over JPEG's 65500 px limit"
    )


def test_truncated_png_is_corrupt(renderer: str) -> None:
    data = png_bytes_with_orientation(1, 800, 600)
    with pytest.raises(PipelineError) as caught:
        render(data[: len(data) * 2 // 3])
    assert caught.value.code == ErrorCode.CORRUPT_IMAGE
    if renderer == "libvips":  # libvips' own lines, without repeats, on one line
        assert caught.value.message == (
            "cannot decode PNG image: unable to copy to memory; vipspng: libpng read error"
        )


def test_a_png_header_libvips_refuses_is_corrupt_with_its_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An RGB PNG whose IHDR names an unknown compression method: Pillow reads the header,
    libvips refuses it when it looks for the EXIF orientation."""
    monkeypatch.setattr(thumbnails, "USE_VIPS", True)
    data = bytearray(png_bytes_with_orientation(6, 320, 240))
    assert data[12:16] == b"IHDR"
    data[26] = 1  # the compression method byte (only 0 exists)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    assert Image.open(io.BytesIO(bytes(data))).size == (240, 320)
    with pytest.raises(PipelineError) as caught:
        render(bytes(data))
    assert caught.value.code == ErrorCode.CORRUPT_IMAGE
    assert caught.value.message == "cannot decode PNG image: unable to call pngload_source"


def test_truncated_jpeg_is_corrupt(truncated_jpeg: bytes, renderer: str) -> None:
    with pytest.raises(PipelineError) as caught:
        render(truncated_jpeg)
    assert caught.value.code == ErrorCode.CORRUPT_IMAGE


def test_decompression_bomb_is_refused(bomb_png: bytes) -> None:
    with pytest.raises(PipelineError) as caught:
        render(bomb_png)
    assert caught.value.code == ErrorCode.TOO_MANY_PIXELS


def test_pixel_limit_is_checked_from_the_header_before_decoding(truncated_jpeg: bytes) -> None:
    # A truncated body would fail to decode (CORRUPT_IMAGE); the header alone must decide.
    with pytest.raises(PipelineError) as caught:
        render(truncated_jpeg, max_pixels=640 * 480 - 1)
    assert caught.value.code == ErrorCode.TOO_MANY_PIXELS
    assert render(sample_media.jpeg_bytes(640, 480), max_pixels=640 * 480)["large"].width == 640


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"%PDF-1.7 not an image" * 20, ErrorCode.UNSUPPORTED_FORMAT),
        (b"", ErrorCode.UNSUPPORTED_FORMAT),
        (sample_media.png_alpha_bytes()[:40], ErrorCode.CORRUPT_IMAGE),
        (sample_media.jpeg_bytes(64, 48)[:100], ErrorCode.CORRUPT_IMAGE),
    ],
    ids=["pdf", "empty", "png-header-only", "jpeg-header-only"],
)
def test_not_an_image_or_damaged_header(payload: bytes, code: ErrorCode) -> None:
    with pytest.raises(PipelineError) as caught:
        render(payload)
    assert caught.value.code == code


def _damaged(signature: bytes) -> bytes:
    """``signature`` followed by bytes no decoder can parse as the rest of a header."""
    return signature + bytes(range(7, 47))


_IMAGE_BRANDS = ("heic", "heix", "heim", "heis", "hevc", "hevx", "mif1", "msf1", "avif")


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(_damaged(b"\xff\xd8\xff"), id="jpeg"),
        pytest.param(_damaged(b"\x89PNG\r\n\x1a\n"), id="png"),
        pytest.param(_damaged(b"GIF87a"), id="gif87a"),
        pytest.param(_damaged(b"GIF89a"), id="gif89a"),
        pytest.param(_damaged(b"II*\x00"), id="tiff-little-endian"),
        pytest.param(_damaged(b"MM\x00*"), id="tiff-big-endian"),
        # a BMP file header cut 2 bytes short of its pixel-data offset
        pytest.param(b"BM" + b"\x00" * 10, id="bmp"),
        pytest.param(_damaged(b"RIFF\x64\x00\x00\x00WEBP"), id="webp"),
        *(
            pytest.param(
                _damaged(b"\x00\x00\x00\x18ftyp" + brand.encode() + b"\x00\x00\x00\x00mif1"),
                id=f"ftyp-{brand}",
            )
            for brand in _IMAGE_BRANDS
        ),
    ],
)
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")  # Pillow, on the TIFFs
def test_a_known_signature_before_an_unreadable_header_is_a_corrupt_image(
    payload: bytes,
) -> None:
    """Pillow gives up on these without saying why; the file's magic bytes show it is one
    of our formats, damaged, which the operator must hear (not "unsupported")."""
    with pytest.raises(PipelineError) as caught:
        render(payload)
    assert (caught.value.code, caught.value.message) == (
        ErrorCode.CORRUPT_IMAGE,
        "image signature found but the header is unreadable",
    )


@pytest.mark.parametrize(
    "payload",
    [
        _damaged(b"RIFF\x64\x00\x00\x00WAVEfmt "),
        _damaged(b"\x00\x00\x00\x18ftypM4A \x00\x00\x00\x00M4A mp42"),
        _damaged(b"\x00\x00\x00\x18moovheic"),
        _damaged(b"gif89a"),
        _damaged(b"bm"),
    ],
    ids=["wav", "m4a", "heic-brand-without-ftyp", "lower-case-gif", "lower-case-bmp"],
)
def test_other_riff_and_iso_files_and_wrong_case_signatures_are_unsupported(payload: bytes) -> None:
    """RIFF is WebP only with the WEBP form type; an ISO box file is HEIF/AVIF only with an
    ``ftyp`` box naming an image brand; magic bytes are case-sensitive."""
    with pytest.raises(PipelineError) as caught:
        render(payload)
    assert (caught.value.code, caught.value.message) == (
        ErrorCode.UNSUPPORTED_FORMAT,
        "not a supported image",
    )


def test_postscript_is_refused_without_running_ghostscript() -> None:
    # Pillow would open this as EPS and hand it to Ghostscript on load: never for uploads.
    eps = (
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 48\n%%EndComments\n"
        b"newpath 0 0 moveto 64 48 lineto stroke showpage\n%%EOF\n"
    )
    with pytest.raises(PipelineError) as caught:
        render(eps)
    assert caught.value.code == ErrorCode.UNSUPPORTED_FORMAT


def test_multi_picture_camera_jpeg_is_oriented(jpeg_by_orientation: dict[int, bytes]) -> None:
    # Cameras write MPO (JPEG + preview frames); Pillow opens it as its own format.
    primary = Image.open(io.BytesIO(jpeg_by_orientation[6]))
    out = io.BytesIO()
    primary.save(
        out,
        "MPO",
        save_all=True,
        append_images=[primary.copy()],
        exif=primary.getexif().tobytes(),
    )
    assert Image.open(io.BytesIO(out.getvalue())).format == "MPO"

    image = decoded(render(out.getvalue())["large"])

    assert image.size == (640, 480)
    assert is_marker_red(image.getpixel((2, 2)))


def test_video_is_an_unsupported_image_format(mp4: bytes) -> None:
    with pytest.raises(PipelineError) as caught:
        render(mp4)
    assert caught.value.code == ErrorCode.UNSUPPORTED_FORMAT


class _ForwardOnly(io.RawIOBase):
    """A non-seekable stream, like an HTTP body."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = self._data.read(min(len(buffer), 4096))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_non_seekable_source_is_accepted(jpeg_by_orientation: dict[int, bytes]) -> None:
    stream: BinaryIO = io.BufferedReader(_ForwardOnly(jpeg_by_orientation[8]))  # type: ignore[assignment]
    derivatives = render_derivatives(stream)

    assert [d.size for d in derivatives] == ["large", "medium", "small", "thumbnail"]
    assert is_marker_red(decoded(derivatives[-1]).getpixel((2, 2)))


# -- generate_thumbnails ---------------------------------------------------------------------


def _raw_key(name: str, segment: str = "photo/horizontal") -> str:
    return f"{LISTING}/raw/{segment}/{name}"


def _validation(
    storage: Storage, keys: list[str], **extra_assets: ValidatedAsset
) -> ValidationResult:
    assets: list[ValidatedAsset] = []
    for key in keys:
        info = storage.head(key)
        assets.append(
            ValidatedAsset(
                key=key, type="PHOTO_HORIZONTAL", sourceKey=key, size=info.size, etag=info.etag
            )
        )
    assets.extend(extra_assets.values())
    return ValidationResult(
        jobId=7,
        listingIdentityId=LISTING,
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        assets=assets,
        imageAssets=assets,
        videoAssets=[],
        hasImages=bool(assets),
        hasVideos=False,
    )


def test_generate_thumbnails_writes_derivatives_and_reports_each_bad_photo(
    storage: Storage, truncated_jpeg: bytes, bomb_png: bytes
) -> None:
    good = _raw_key("horizontal-01-IMG 2705.JPG")
    portrait = _raw_key("2024-05-01/vertical-02-tall.heic", "photo/vertical")
    corrupt = _raw_key("horizontal-03-broken.jpg")
    bomb = _raw_key("horizontal-04-bomb.png")
    text = _raw_key("horizontal-05-notes.jpg")
    storage.write(
        good, sample_media.jpeg_bytes(1600, 1000, orientation=3), content_type="image/jpeg"
    )
    storage.write(portrait, sample_media.heic_bytes(240, 360))
    storage.write(corrupt, truncated_jpeg)
    storage.write(bomb, bomb_png)
    storage.write(text, b"just some text, not a photo" * 10)
    missing = _raw_key("horizontal-06-gone.jpg")
    validation = _validation(
        storage,
        [good, portrait, corrupt, bomb, text],
        missing=ValidatedAsset(key=missing, type="PHOTO_HORIZONTAL", sourceKey=missing, etag="x"),
        no_raw=ValidatedAsset(
            key="4242/photo/x.jpg", type="PHOTO_HORIZONTAL", sourceKey="4242/photo/x.jpg", etag="y"
        ),
        invalid=ValidatedAsset(
            key=_raw_key("horizontal-07-empty.jpg"),
            type="PHOTO_HORIZONTAL",
            sourceKey=_raw_key("horizontal-07-empty.jpg"),
            error="empty object",
            errorCode="EMPTY_OBJECT",
        ),
    )
    config = PipelineConfig(bucket=storage.bucket)

    result = generate_thumbnails(validation, storage=storage, config=config)

    body = result["body"]
    assert body["status"] == "SUCCESS"
    generated = {(g["sourceKey"], g["key"]) for g in body["generatedAssets"]}
    expected = {
        (raw, derivative_key(raw, size)) for raw in (good, portrait) for size in IMAGE_SIZES
    }
    assert generated == expected
    assert {g["type"] for g in body["generatedAssets"]} == {"PHOTO_HORIZONTAL"}
    errors = {e["sourceKey"]: e["errorCode"] for e in body["errors"]}
    assert errors == {
        corrupt: ErrorCode.CORRUPT_IMAGE,
        bomb: ErrorCode.TOO_MANY_PIXELS,
        text: ErrorCode.UNSUPPORTED_FORMAT,
        missing: ErrorCode.OBJECT_NOT_FOUND,
        "4242/photo/x.jpg": ErrorCode.INVALID_KEY,
    }
    assert all(e["errorMessage"] for e in body["errors"])

    etags = {a["sourceKey"]: a.get("etag") for a in validation["imageAssets"]}
    for raw, key in expected:
        info = storage.head(key)
        assert info.content_type == "image/jpeg"
        assert info.metadata["source-etag"] == etags[raw]
        with storage.open_read(key) as stream:
            image = Image.open(io.BytesIO(stream.read()))
        assert image.format == "JPEG"
        assert is_marker_red(image.getpixel((2, 2)))
    with storage.open_read(derivative_key(portrait, "large")) as stream:
        assert Image.open(io.BytesIO(stream.read())).size == (240, 360)
    assert derivative_key(good, "large").endswith(
        "/processed/photo/horizontal/large/horizontal-01-IMG 2705.jpg"
    )


def test_generate_thumbnails_resumes_only_when_the_source_is_unchanged(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    first = _raw_key("horizontal-01-a.jpg")
    second = _raw_key("horizontal-02-b.jpg")
    storage.write(first, sample_media.jpeg_bytes(500, 400, seed=1))
    storage.write(second, sample_media.jpeg_bytes(500, 400, seed=2))
    config = PipelineConfig(bucket=storage.bucket)
    first_run = generate_thumbnails(
        _validation(storage, [first, second]), storage=storage, config=config
    )

    # the second raw object is replaced: its etag changes, its derivatives are stale
    storage.write(second, sample_media.jpeg_bytes(300, 600, seed=5))
    caplog.set_level(logging.INFO, logger="toq.pipeline.thumbnails")
    second_run = generate_thumbnails(
        _validation(storage, [first, second]), storage=storage, config=config
    )

    assert second_run == first_run
    outcome = {r.source_key: r.skipped for r in caplog.records if hasattr(r, "skipped")}
    assert outcome == {first: True, second: False}
    said = {r.source_key: r.getMessage() for r in caplog.records if hasattr(r, "skipped")}
    assert said == {first: "thumbnails skipped (already current)", second: "thumbnails generated"}
    record = next(r for r in caplog.records if hasattr(r, "skipped"))
    assert (record.job_id, record.listing_identity_id, record.step) == (7, LISTING, "thumbnails")
    assert record.traceparent.startswith("00-0af7651916cd43dd")
    with storage.open_read(derivative_key(second, "large")) as stream:
        assert Image.open(io.BytesIO(stream.read())).size == (300, 600)


def test_unexpected_render_error_fails_only_that_photo(
    local_storage: Storage, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in rendering one photo (here the first) is that photo's error: the photo after
    it is still made."""
    odd, ok = _raw_key("horizontal-01-odd.jpg"), _raw_key("horizontal-02-ok.jpg")
    odd_bytes = sample_media.jpeg_bytes(400, 300, seed=9)
    local_storage.write(ok, sample_media.jpeg_bytes(400, 300, seed=8))
    local_storage.write(odd, odd_bytes)
    real_render = thumbnails.render_derivatives

    def render_or_explode(source: BinaryIO, *, limits: DecodeLimits) -> list[Derivative]:
        data = source.read()
        if data == odd_bytes:
            raise KeyError("an encoder bug")
        return real_render(io.BytesIO(data), limits=limits)

    monkeypatch.setattr(thumbnails, "render_derivatives", render_or_explode)
    result = generate_thumbnails(
        _validation(local_storage, [odd, ok]),
        storage=local_storage,
        config=PipelineConfig(bucket=local_storage.bucket),
    )

    assert {g["sourceKey"] for g in result["body"]["generatedAssets"]} == {ok}
    [error] = result["body"]["errors"]
    assert error["sourceKey"] == odd
    assert error["errorCode"] == ErrorCode.THUMBNAIL_PROCESSING_FAILED
    assert error["errorMessage"] == "KeyError: 'an encoder bug'"
    [logged] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert logged.getMessage() == "thumbnail failed unexpectedly" and logged.exc_info
    assert (logged.source_key, logged.error_code) == (  # type: ignore[attr-defined]
        odd,
        "THUMBNAIL_PROCESSING_FAILED",
    )
    assert (logged.job_id, logged.step) == (7, "thumbnails")  # type: ignore[attr-defined]


class _UnreachableBucket(WrappedStorage):
    """The local adapter, except that reading raw objects fails like a dropped connection."""

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner)

    def open_read(self, key: str) -> object:
        raise ConnectionResetError("connection reset by peer")


def test_storage_failure_propagates_so_the_state_retries(local_storage: Storage) -> None:
    key = _raw_key("horizontal-01-a.jpg")
    local_storage.write(key, sample_media.jpeg_bytes(320, 240))
    validation = _validation(local_storage, [key])

    with pytest.raises(ConnectionResetError):
        generate_thumbnails(
            validation,
            storage=_UnreachableBucket(local_storage),  # type: ignore[arg-type]
            config=PipelineConfig(bucket=local_storage.bucket),
        )


def _io_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("thumbnails-io")]


def test_many_photos_are_reported_in_order_with_every_write_done(storage: Storage) -> None:
    """Downloads run ahead of the rendering and writes behind it: the result still lists
    the photos in the validated order, only after their derivatives exist, and no I/O
    thread outlives the step."""
    raws = [_raw_key(f"horizontal-{n:02d}-p.jpg") for n in range(1, 8)]
    for n, raw in enumerate(raws):
        storage.write(raw, sample_media.jpeg_bytes(420 + 40 * n, 300, seed=n))
    missing = _raw_key("horizontal-04-gone.jpg")
    validation = _validation(storage, raws)
    validation["imageAssets"].insert(
        3, ValidatedAsset(key=missing, type="PHOTO_HORIZONTAL", sourceKey=missing, etag="x")
    )

    result = generate_thumbnails(
        validation, storage=storage, config=PipelineConfig(bucket=storage.bucket)
    )

    generated = [(g["sourceKey"], g["key"]) for g in result["body"]["generatedAssets"]]
    assert generated == [(raw, derivative_key(raw, size)) for raw in raws for size in IMAGE_SIZES]
    assert [e["sourceKey"] for e in result["body"]["errors"]] == [missing]
    for n, raw in enumerate(raws):
        with storage.open_read(derivative_key(raw, "large")) as stream:
            assert Image.open(io.BytesIO(stream.read())).width == 420 + 40 * n
    assert _io_threads() == []


class _FailingWrites(WrappedStorage):
    """The wrapped adapter, except that writing ``failing_key`` fails like a dropped
    connection."""

    def __init__(self, inner: Storage, failing_key: str) -> None:
        super().__init__(inner)
        self._failing_key = failing_key

    def write(self, key: str, data: bytes, **options: object) -> object:
        if key == self._failing_key:
            raise ConnectionResetError("connection reset by peer")
        return self._inner.write(key, data, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("failing_photo", [0, 2])
def test_a_failed_derivative_write_fails_the_step(
    local_storage: Storage, failing_photo: int
) -> None:
    """A write runs behind the rendering, yet its storage error still fails the step (the
    state machine retries it), also when it is the last photo's."""
    raws = [_raw_key(f"horizontal-{n:02d}-w.jpg") for n in range(1, 4)]
    for n, raw in enumerate(raws):
        local_storage.write(raw, sample_media.jpeg_bytes(320, 240, seed=n))
    failing = _FailingWrites(local_storage, derivative_key(raws[failing_photo], "small"))

    with pytest.raises(ConnectionResetError):
        generate_thumbnails(
            _validation(local_storage, raws),
            storage=failing,  # type: ignore[arg-type]
            config=PipelineConfig(bucket=local_storage.bucket),
        )
    assert _io_threads() == []


def test_no_image_assets_is_an_empty_success(storage: Storage) -> None:
    result = generate_thumbnails(
        _validation(storage, []), storage=storage, config=PipelineConfig(bucket=storage.bucket)
    )
    assert result == {"body": {"status": "SUCCESS", "generatedAssets": [], "errors": []}}


def test_each_photo_is_logged_with_its_cpu_milliseconds(
    local_storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    """Decoding and reducing a 3 MP photo costs milliseconds of CPU at the very least: the
    log line gives it in milliseconds, never as 0.0 (seconds / 1000)."""
    raw = _raw_key("horizontal-01-cpu.jpg")
    local_storage.write(raw, sample_media.jpeg_bytes(2000, 1500), content_type="image/jpeg")
    validation = _validation(local_storage, [raw])
    config = PipelineConfig(bucket=local_storage.bucket)
    with caplog.at_level(logging.INFO, logger="toq.pipeline.thumbnails"):
        generate_thumbnails(validation, storage=local_storage, config=config)
    [line] = [r for r in caplog.records if r.getMessage() == "thumbnails generated"]
    assert (line.source_key, line.skipped) == (raw, False)  # type: ignore[attr-defined]
    assert line.cpu_ms >= 1.0  # type: ignore[attr-defined]
    assert line.cpu_ms <= line.duration_ms < 60_000  # type: ignore[attr-defined]


def test_a_drafted_jpeg_keeps_its_geometry_to_the_right_edge() -> None:
    """Pillow decodes a 9601-wide JPEG at 1/8: 1201 pixels, the last one only 1/8 of real
    pixels. The resize takes the exact 1200.125-pixel box, so black and white stripes 16
    pixels wide in the original stay in place up to the right edge (grey: the Pillow
    path)."""
    width, height = 9601, 801
    row = bytes(255 if (x // 16) % 2 == 0 else 0 for x in range(width))
    out = io.BytesIO()
    Image.frombytes("L", (width, height), row * height).save(out, "JPEG", quality=95)

    large = decoded(render(out.getvalue())["large"]).convert("L")

    assert large.size == (1200, 100)
    in_place = 0
    for column in range(1100, 1200):
        centre = (column + 0.5) * width / 1200  # where the column samples the original
        expected = 255 if (int(centre) // 16) % 2 == 0 else 0
        in_place += abs(large.getpixel((column, 50)) - expected) < 64
    assert in_place >= 95  # all 100 in practice; half of them with the 1201-pixel width


def test_an_unusable_icc_profile_is_ignored_with_a_warning(
    renderer: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A profile no colour engine can read is dropped, as browsers do: the photo renders
    from its stored pixels and the log says why its colours were not converted (libvips
    says it itself and falls back to sRGB; the Pillow path says it)."""
    out = io.BytesIO()
    sample_media.with_marker(sample_media.photographic(320, 240)).save(
        out, "JPEG", quality=92, icc_profile=b"not an ICC profile at all" * 8
    )
    with caplog.at_level(logging.WARNING):
        image = decoded(render(out.getvalue())["large"])
    assert is_marker_red(image.getpixel((3, 3))), image.getpixel((3, 3))
    said = {"libvips": "VIPS: corrupt profile", "pillow": "ignoring unusable ICC profile"}
    assert said[renderer] in [r.getMessage() for r in caplog.records]


def test_an_embedded_device_link_profile_is_ignored_with_a_warning(
    renderer: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A readable profile of the wrong class (a device link converts between two devices;
    it says nothing of the photo's colours) cannot be applied: both renderers ignore it,
    render the stored pixels and say so."""
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    assert profile[12:16] == b"mntr"
    profile[12:16] = b"link"  # the profile/device class field of the ICC header
    out = io.BytesIO()
    sample_media.with_marker(sample_media.photographic(320, 240)).save(
        out, "JPEG", quality=92, icc_profile=bytes(profile)
    )
    with caplog.at_level(logging.WARNING, logger="toq.pipeline.thumbnails"):
        image = decoded(render(out.getvalue())["large"])
    assert is_marker_red(image.getpixel((3, 3))), image.getpixel((3, 3))
    warnings = [r for r in caplog.records if r.getMessage() == "ignoring unusable ICC profile"]
    assert [r.step for r in warnings] == ["thumbnails"]  # type: ignore[attr-defined]


def test_each_failed_photo_is_reported_and_logged_with_its_code(
    local_storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    """A missing raw object, a bad key and a photo that does not decode each get an error
    entry with a message that says why, and a warning line with the job's context, the
    key, the code and the time spent on it; the unexpected failure is logged as an error
    with its code."""
    text = _raw_key("horizontal-01-notes.jpg")
    local_storage.write(text, b"just some text, not a photo" * 10)
    missing = _raw_key("horizontal-02-gone.jpg")
    validation = _validation(
        local_storage,
        [text],
        missing=ValidatedAsset(key=missing, type="PHOTO_HORIZONTAL", sourceKey=missing, etag="x"),
        bad_key=ValidatedAsset(
            key="4242/photo/x.jpg", type="PHOTO_HORIZONTAL", sourceKey="4242/photo/x.jpg", etag="y"
        ),
    )
    with caplog.at_level(logging.INFO, logger="toq.pipeline.thumbnails"):
        result = generate_thumbnails(
            validation, storage=local_storage, config=PipelineConfig(bucket=local_storage.bucket)
        )

    errors = {e["sourceKey"]: (e["errorCode"], e["errorMessage"]) for e in result["body"]["errors"]}
    assert errors[text] == ("UNSUPPORTED_FORMAT", "not a supported image")
    assert errors[missing][0] == "OBJECT_NOT_FOUND"
    assert errors[missing][1].startswith("not found: ") and missing in errors[missing][1]
    assert errors["4242/photo/x.jpg"][0] == "INVALID_KEY"
    failed = {r.source_key: r for r in caplog.records if r.getMessage() == "thumbnail failed"}  # type: ignore[attr-defined]
    assert set(failed) == {text, missing, "4242/photo/x.jpg"}
    for key, (code, _) in errors.items():
        record = failed[key]
        assert record.levelno == logging.WARNING
        assert record.error_code == code  # type: ignore[attr-defined]
        assert (record.job_id, record.listing_identity_id, record.step) == (  # type: ignore[attr-defined]
            7,
            LISTING,
            "thumbnails",
        )
        # milliseconds of this photo alone (to 0.1 ms), not of the process or the clock
        assert isinstance(record.duration_ms, float) and 0 <= record.duration_ms < 5_000  # type: ignore[attr-defined]
        assert isinstance(record.cpu_ms, float) and 0 <= record.cpu_ms < 1_000  # type: ignore[attr-defined]
    # opening the text file as an image took some time
    assert failed[text].duration_ms > 0  # type: ignore[attr-defined]
    assert not result["body"]["generatedAssets"]


class _Clocks:
    """thumbnails' ``time`` module, replaced: each reading of a clock gives its next value,
    so the milliseconds a log line reports are known exactly."""

    def __init__(self, perf_counter: list[float], thread_time: list[float]) -> None:
        self._perf_counter = iter(perf_counter)
        self._thread_time = iter(thread_time)

    def perf_counter(self) -> float:
        return next(self._perf_counter)

    def thread_time(self) -> float:
        return next(self._thread_time)


def test_a_failed_photo_is_logged_with_its_milliseconds_to_a_tenth(
    local_storage: Storage, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failure line gives the photo's wall and CPU time in milliseconds, rounded to
    0.1 ms: 120.04 ms of waiting and rendering and 250.04 ms of CPU are 120.0 and 250.0 (the
    clocks read at the start of the photo and when it failed)."""
    text = _raw_key("horizontal-01-notes.jpg")
    local_storage.write(text, b"just some text, not a photo" * 10)
    validation = _validation(local_storage, [text])
    monkeypatch.setattr(
        thumbnails, "time", _Clocks(perf_counter=[500.0, 500.12004], thread_time=[7.0, 7.25004])
    )
    with caplog.at_level(logging.WARNING, logger="toq.pipeline.thumbnails"):
        result = generate_thumbnails(
            validation, storage=local_storage, config=PipelineConfig(bucket=local_storage.bucket)
        )

    assert [e["errorCode"] for e in result["body"]["errors"]] == ["UNSUPPORTED_FORMAT"]
    [line] = [r for r in caplog.records if r.getMessage() == "thumbnail failed"]
    assert (line.source_key, line.error_code) == (text, "UNSUPPORTED_FORMAT")  # type: ignore[attr-defined]
    assert (line.duration_ms, line.cpu_ms) == (120.0, 250.0)  # type: ignore[attr-defined]


@pytest.mark.parametrize("orientation", [0, 9])
def test_an_exif_orientation_outside_1_to_8_is_upright(orientation: int, renderer: str) -> None:
    """EXIF defines orientations 1 to 8 only; any other value is ignored (the photo is
    shown as stored), never read as a mirror or a turn."""
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = orientation
    sample_media.with_marker(sample_media.photographic(320, 240)).save(
        out, "JPEG", quality=90, exif=exif.tobytes()
    )
    image = decoded(render(out.getvalue())["large"])
    assert image.size == (320, 240)
    assert is_marker_red(image.getpixel((2, 2))), image.getpixel((2, 2))
