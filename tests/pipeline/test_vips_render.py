"""vips_render's own rules: when libvips is used at all, how its errors are worded for
the CORRUPT_IMAGE message a job's callback carries, and what ``render`` makes of decoded
pixels and PNGs - orientation, sizes, colour profiles and the JPEGs it writes."""

from __future__ import annotations

import io
import logging
import struct
import time
from collections.abc import Callable

import pytest
from PIL import Image, ImageCms

from media_jobs import sample_media
from media_jobs.pipeline import vips_render
from tests.fixtures import hostile

pyvips = pytest.importorskip("pyvips")


def test_the_message_keeps_libvips_first_three_lines_once_each() -> None:
    """libvips repeats a warning once per occurrence; the message keeps the first three
    lines of its error, each once, on one line."""
    error = pyvips.Error(
        "unable to copy to memory",
        "VipsJpeg: Corrupt JPEG data: 29 extraneous bytes before marker 0xc4\n"
        "VipsJpeg: Corrupt JPEG data: 29 extraneous bytes before marker 0xc4\n"
        "VipsJpeg: Invalid progressive/lossless parameters Ss=0 Se=0 Ah=11 Al=4\n",
    )
    assert vips_render._first_line(error) == (
        "unable to copy to memory; "
        "VipsJpeg: Corrupt JPEG data: 29 extraneous bytes before marker 0xc4"
    )


def test_the_message_is_at_most_300_characters() -> None:
    error = pyvips.Error("unable to call jpegload_source", "VipsJpeg: " + "x" * 400)
    message = vips_render._first_line(error)
    assert message == "unable to call jpegload_source; VipsJpeg: " + "x" * 258
    assert len(message) == 300


def test_an_error_without_text_is_named_by_its_class() -> None:
    assert vips_render._first_line(pyvips.Error("", "\n")) == "Error"


def test_libvips_is_not_used_without_pyvips_or_when_it_cannot_be_queried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No pyvips (its import failed): Pillow renders everything. A libvips whose version
    query fails is one we do not know: not used either."""
    monkeypatch.setattr(vips_render, "pyvips", None)
    assert vips_render._has_loaders() is False
    monkeypatch.undo()

    def broken(flag: int) -> int:
        raise pyvips.Error("unable to query the libvips version", "\n")

    monkeypatch.setattr(pyvips, "version", broken)
    assert vips_render._has_loaders() is False


def test_a_png_libvips_cannot_read_is_a_decode_error() -> None:
    """A PNG whose header is zeros: CORRUPT_IMAGE for the step, not a crash."""
    with pytest.raises(vips_render.VipsDecodeError):
        vips_render.render(
            b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
            orientation=1,
            targets=[(8, 8)],
            icc_profile=None,
            quality=85,
        )


def _flat_pixels(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """Decoded 8-bit RGB pixels of one colour, as the thumbnails step hands a JPEG over."""
    return Image.new("RGB", (width, height), rgb).tobytes()


def _rendered_pixel(rendered: vips_render.Rendered, xy: tuple[int, int]) -> tuple[int, ...]:
    """One pixel of a derivative, decoded."""
    return tuple(Image.open(io.BytesIO(rendered.data)).convert("RGB").getpixel(xy))


def _profiled_centre(profile: bytes) -> tuple[int, ...]:
    """Pixels of (200, 100, 50) carrying ``profile``, rendered at 64 x 48: the centre."""
    outputs, _ = vips_render.render(
        _flat_pixels(64, 48, (200, 100, 50)),
        orientation=1,
        targets=[(64, 48)],
        icc_profile=profile,
        quality=95,
        pixels=(64, 48),
    )
    return _rendered_pixel(outputs[0], (32, 24))


def test_each_direction_is_scaled_to_its_target() -> None:
    """Pillow drafts a 9601 x 801 JPEG at 1/8 to 1201 x 101 pixels, and its large is 1200 x
    100: 100/101 down, not the 1200/1201 of the width. Scaled both ways to fit, the last
    row of the decode (black here, the rest white) is still the bottom of the large."""
    decode = Image.new("RGB", (1201, 101), (255, 255, 255))
    decode.paste((0, 0, 0), (0, 100, 1201, 101))
    outputs, _ = vips_render.render(
        decode.tobytes(),
        orientation=1,
        targets=[(1200, 100)],
        icc_profile=None,
        quality=95,
        pixels=(1201, 101),
    )
    assert (outputs[0].width, outputs[0].height) == (1200, 100)
    large = Image.open(io.BytesIO(outputs[0].data)).convert("L")
    assert large.size == (1200, 100)
    assert large.getpixel((600, 99)) < 64  # the black row, squeezed into the last one
    assert large.getpixel((600, 90)) > 240


def _display_p3_profile() -> bytes:
    """libvips' own Display P3 profile (a matrix profile, as cameras and phones embed)."""
    flat = (pyvips.Image.black(8, 8, bands=3) + [200, 100, 50]).cast("uchar")
    exported = flat.copy(interpretation="srgb").icc_export(output_profile="p3")
    return bytes(exported.get("icc-profile-data"))


def test_pixels_with_a_display_p3_profile_come_out_in_srgb() -> None:
    """The embedded profile is applied: P3 (200, 100, 50) is sRGB (215, 93, 32), as lcms
    computes it through Pillow's ImageCms (perceptual intent) - give or take the JPEG's
    own rounding."""
    profile = _display_p3_profile()
    expected = ImageCms.profileToProfile(
        Image.new("RGB", (1, 1), (200, 100, 50)),
        ImageCms.ImageCmsProfile(io.BytesIO(profile)),
        ImageCms.createProfile("sRGB"),
        renderingIntent=ImageCms.Intent.PERCEPTUAL,
    )
    assert expected is not None and expected.getpixel((0, 0)) == (215, 93, 32)
    pixel = _profiled_centre(profile)
    assert all(abs(a - b) <= 2 for a, b in zip(pixel, (215, 93, 32), strict=True)), pixel


def test_a_device_link_profile_is_ignored_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A readable profile of the wrong class (a device link: it says nothing of the
    photo's colours) cannot be applied: the pixels are rendered as they are, as browsers
    do, and a warning names the step. (A profile lcms cannot parse at all, libvips
    replaces with sRGB by itself, with its own warning.)"""
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    assert profile[12:16] == b"mntr"
    profile[12:16] = b"link"  # the profile/device class field of the ICC header
    with caplog.at_level(logging.WARNING, logger="toq.pipeline.thumbnails"):
        pixel = _profiled_centre(bytes(profile))
    assert all(abs(a - b) <= 2 for a, b in zip(pixel, (200, 100, 50), strict=True)), pixel
    ours = [r for r in caplog.records if r.name == "toq.pipeline.thumbnails"]
    assert [(r.levelno, r.getMessage()) for r in ours] == [
        (logging.WARNING, "ignoring unusable ICC profile")
    ]
    assert ours[0].step == "thumbnails"  # type: ignore[attr-defined]


def test_a_16_bit_png_with_a_profile_keeps_its_colours() -> None:
    """A 16-bit RGB PNG (Pillow opens it as RGB, so libvips renders it) with a Display P3
    profile comes out as the Pillow path renders it: sRGB (215, 93, 32), not white."""
    profile = _display_p3_profile()
    flat = (pyvips.Image.black(64, 48, bands=3) + [200, 100, 50]).cast("uchar")
    deep = (flat.cast("ushort") * 257).copy(interpretation="rgb16")
    deep.set_type(pyvips.GValue.blob_type, "icc-profile-data", profile)
    data = deep.pngsave_buffer(bitdepth=16)
    assert Image.open(io.BytesIO(data)).mode == "RGB"
    outputs, _ = vips_render.render(
        data,
        orientation=1,
        targets=[(64, 48)],
        icc_profile=profile,
        quality=95,
    )
    pixel = _rendered_pixel(outputs[0], (32, 24))
    assert all(abs(a - b) <= 2 for a, b in zip(pixel, (215, 93, 32), strict=True)), pixel


def test_the_profile_transform_gives_8_bit_srgb_whatever_came_in() -> None:
    """A 16-bit image's transform would stay 16-bit (rgb16); it is asked for 8 bits, so the
    steps after it (resizes, jpegsave) work on uchar sRGB, half the memory of the large."""
    profile = _display_p3_profile()
    flat = (pyvips.Image.black(8, 8, bands=3) + [200, 100, 50]).cast("uchar")
    deep = (flat.cast("ushort") * 257).cast("ushort").copy(interpretation="rgb16")
    deep.set_type(pyvips.GValue.blob_type, "icc-profile-data", profile)

    converted = vips_render._to_srgb(deep, profile)

    assert (converted.format, converted.interpretation) == ("uchar", "srgb")
    assert all(abs(a - b) <= 2 for a, b in zip(converted(4, 4), (215, 93, 32), strict=True))


def test_a_truncated_png_is_a_decode_error_not_a_partial_picture() -> None:
    """A PNG cut short (large ones reach libvips without a full inflate first) is refused
    with libvips' reason, instead of rendering the rows it has over a grey rest."""
    image = sample_media.photographic(320, 240)
    out = io.BytesIO()
    image.save(out, "PNG")
    data = out.getvalue()
    with pytest.raises(vips_render.VipsDecodeError) as caught:
        vips_render.render(
            data[: len(data) * 6 // 10],
            orientation=1,
            targets=[(320, 240)],
            icc_profile=None,
            quality=85,
        )
    assert str(caught.value) == "unable to copy to memory; vipspng: libpng read error"


# The BITS lists (codes of each length, 1 to 16 bits) of the four example Huffman tables
# of T.81 Annex K, which an encoder writes when it does not optimise its tables.
_ANNEX_K_BITS = {
    bytes.fromhex("00010501010101010100000000000000"),  # luminance DC
    bytes.fromhex("0002010303020403050504040000017d"),  # luminance AC
    bytes.fromhex("00030101010101010101010000000000"),  # chrominance DC
    bytes.fromhex("00020102040403040705040400010277"),  # chrominance AC
}


def test_derivatives_are_lean_baseline_jpegs() -> None:
    """Each derivative is a baseline JPEG (SOF0, one scan: every viewer decodes it in one
    pass) with Huffman tables made for its own data, and nothing else: no EXIF, no ICC
    profile, no JFIF segment - even when the photo carried an EXIF block and a profile."""
    exif = Image.Exif()
    exif[0x010F] = "TOQ sample camera"
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    out = io.BytesIO()
    sample_media.photographic(320, 240).save(out, "PNG", exif=exif.tobytes(), icc_profile=profile)
    outputs, _ = vips_render.render(
        out.getvalue(),
        orientation=1,
        targets=[(320, 240), (150, 113)],
        icc_profile=profile,
        quality=85,
    )
    assert [(o.width, o.height) for o in outputs] == [(320, 240), (150, 113)]
    for rendered in outputs:
        segments = list(hostile.jpeg_segments(rendered.data))
        markers = [marker for marker, _, _ in segments]
        assert markers == [0xDB, 0xDB, 0xC0, 0xC4, 0xC4, 0xC4, 0xC4, 0xDA, 0xD9]
        tables = [rendered.data[s + 5 : s + 21] for marker, s, _ in segments if marker == 0xC4]
        assert not _ANNEX_K_BITS & set(tables)
        assert Image.open(io.BytesIO(rendered.data)).size == (rendered.width, rendered.height)


_RED, _BLUE = (230, 20, 20), (20, 20, 230)


def _corner_colours(image: Image.Image) -> list[str]:
    """Red, blue or neither in each corner: top-left, top-right, bottom-left, bottom-right."""
    rgb = image.convert("RGB")
    corners = ((3, 3), (rgb.width - 4, 3), (3, rgb.height - 4), (rgb.width - 4, rgb.height - 4))
    names = []
    for xy in corners:
        r, _, b = rgb.getpixel(xy)
        names.append("red" if r > 180 > b else "blue" if b > 180 > r else "-")
    return names


@pytest.mark.parametrize("source", ["pixels", "png"])
@pytest.mark.parametrize("orientation", [*range(1, 9), 0, 9])
def test_every_orientation_turns_the_stored_pixels_upright(source: str, orientation: int) -> None:
    """A 320 x 240 photo (as displayed: red top-left, blue top-right) stored as a camera
    stores it for each EXIF orientation comes out upright at 160 x 120 and 80 x 60, from
    decoded pixels (a JPEG) and from a PNG alike; 0 and 9 are no orientation (as 1)."""
    displayed = Image.new("RGB", (320, 240), (128, 128, 128))
    displayed.paste(_RED, (0, 0, 48, 48))
    displayed.paste(_BLUE, (272, 0, 320, 48))
    stored = sample_media.stored_for_orientation(
        displayed, orientation if 1 <= orientation <= 8 else 1
    )
    if source == "pixels":
        data, pixels = stored.tobytes(), stored.size
    else:
        out = io.BytesIO()
        stored.save(out, "PNG")
        data, pixels = out.getvalue(), None
    outputs, _ = vips_render.render(
        data,
        orientation=orientation,
        targets=[(160, 120), (80, 60)],
        icc_profile=None,
        quality=90,
        pixels=pixels,
    )
    assert [(o.width, o.height) for o in outputs] == [(160, 120), (80, 60)]
    for rendered, side in zip(outputs, (24, 12), strict=True):
        image = Image.open(io.BytesIO(rendered.data))
        assert image.size == (rendered.width, rendered.height)
        assert _corner_colours(image) == ["red", "blue", "-", "-"], (orientation, image.size)
        # the 48-pixel red square is still square: scaled alike both ways, after turning
        assert abs(_red_run(image, horizontal=True) - side) <= 2
        assert abs(_red_run(image, horizontal=False) - side) <= 2


def test_a_tall_png_is_turned_in_memory() -> None:
    """libvips reads a PNG once, top to bottom: a 600 x 4000 PNG stored for orientation 6
    (4000 x 600 as displayed) is held in memory before it is turned, not read again out
    of order - which libvips refuses ("out of order read")."""
    displayed = Image.new("RGB", (4000, 600), (128, 128, 128))
    displayed.paste(_RED, (0, 0, 100, 100))
    displayed.paste(_BLUE, (3900, 0, 4000, 100))
    out = io.BytesIO()
    sample_media.stored_for_orientation(displayed, 6).save(out, "PNG", compress_level=1)
    outputs, _ = vips_render.render(
        out.getvalue(),
        orientation=6,
        targets=[(1200, 180)],
        icc_profile=None,
        quality=90,
    )
    image = Image.open(io.BytesIO(outputs[0].data))
    assert image.size == (1200, 180)
    assert _corner_colours(image) == ["red", "blue", "-", "-"]


def _red_run(image: Image.Image, *, horizontal: bool) -> int:
    """How many red pixels run from the top-left corner along the fourth row (or
    column)."""
    rgb = image.convert("RGB")
    length = rgb.width if horizontal else rgb.height
    run = 0
    for i in range(length):
        r, _, b = rgb.getpixel((i, 3) if horizontal else (3, i))
        if not r > 180 > b:
            break
        run += 1
    return run


@pytest.mark.parametrize(
    ("quality", "luminance", "chrominance"),
    [(50, (16, 11, 12), (17, 18, 18)), (85, (5, 3, 4), (5, 5, 5))],
)
def test_the_quality_scales_the_quantisation_tables(
    quality: int, luminance: tuple[int, ...], chrominance: tuple[int, ...]
) -> None:
    """The quality asked for is the encoder's: at 50 the tables are T.81 Annex K's own
    (their first entries 16, 11, 12 and 17, 18, 18), at 85 libjpeg's scaling takes 30 %
    of them, rounded."""
    outputs, _ = vips_render.render(
        _flat_pixels(64, 48, (90, 120, 150)),
        orientation=1,
        targets=[(64, 48)],
        icc_profile=None,
        quality=quality,
        pixels=(64, 48),
    )
    data = outputs[0].data
    tables = [data[s + 4 : s + 8] for marker, s, _ in hostile.jpeg_segments(data) if marker == 0xDB]
    assert tables == [bytes((0, *luminance)), bytes((1, *chrominance))]


def test_the_cpu_time_returned_is_spent_during_the_call() -> None:
    """libvips works on its own thread, so render reports the process's CPU time over the
    call (what the photo's CPU budget is charged): never negative, never more than the
    process spent meanwhile."""
    before = time.process_time()
    _, cpu_seconds = vips_render.render(
        _flat_pixels(640, 480, (90, 120, 150)),
        orientation=6,
        targets=[(360, 480), (150, 200)],
        icc_profile=None,
        quality=85,
        pixels=(640, 480),
    )
    spent = time.process_time() - before
    assert 0.0 <= cpu_seconds <= spent


@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
def test_a_turned_photo_is_resized_once_to_its_size_as_stored(orientation: int) -> None:
    """A turned photo's large is computed as stored (height and width swapped), so the
    picture is halved once, the same both ways: 2-pixel black and white stripes (320 x
    240 as displayed) stay 1-pixel stripes at 160 x 120 - not squeezed to 3/8 and
    stretched back, which leaves a flat grey."""
    columns = bytes(255 if (x // 2) % 2 == 0 else 0 for x in range(320))
    displayed = Image.frombytes("L", (320, 240), columns * 240).convert("RGB")
    stored = sample_media.stored_for_orientation(displayed, orientation)
    outputs, _ = vips_render.render(
        stored.tobytes(),
        orientation=orientation,
        targets=[(160, 120)],
        icc_profile=None,
        quality=95,
        pixels=stored.size,
    )
    large = Image.open(io.BytesIO(outputs[0].data)).convert("L")
    assert large.size == (160, 120)
    row = [large.getpixel((x, 60)) for x in range(10, 150)]
    assert min(row) < 64 and max(row) > 192, (min(row), max(row))


def _s15(value: float) -> bytes:
    """An ICC s15Fixed16Number."""
    return struct.pack(">i", round(value * 65536))


def _rgb_to_lab_lut8(corner: Callable[[int, int, int], tuple[int, int, int]]) -> bytes:
    """An ICC lut8Type from RGB to Lab: identity matrix and curves, a 2 x 2 x 2 grid whose
    corners (r, g, b each 0 or 1) give 8-bit Lab (L 0-255 for 0-100, a and b + 128)."""
    body = b"mft1" + bytes(4) + bytes([3, 3, 2, 0])
    body += b"".join(_s15(1.0 if i == j else 0.0) for i in range(3) for j in range(3))
    body += bytes(range(256)) * 3
    body += b"".join(bytes(corner(r, g, b)) for r in (0, 1) for g in (0, 1) for b in (0, 1))
    return body + bytes(range(256)) * 3


def _profile_with_two_intents() -> bytes:
    """A display profile (ICC v2, RGB to Lab) whose perceptual table (A2B0) keeps the
    colours and whose colorimetric one (A2B1) turns everything grey: the two intents
    give visibly different pixels, unlike the matrix profiles of cameras."""
    vivid = _rgb_to_lab_lut8(
        lambda r, g, b: (round(255 * (r + g + b) / 3), 128 + 60 * (r - g), 128 + 60 * (g - b))
    )
    grey = _rgb_to_lab_lut8(lambda r, g, b: (round(255 * (r + g + b) / 3), 128, 128))
    description = b"two intents\x00"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(description)) + description + bytes(78)
    white = b"XYZ " + bytes(4) + _s15(0.9642) + _s15(1.0) + _s15(0.8249)
    tags = [(b"desc", desc), (b"wtpt", white), (b"A2B0", vivid), (b"A2B1", grey)]
    table, data = struct.pack(">I", len(tags)), b""
    start = 128 + 4 + 12 * len(tags)
    for signature, body in tags:
        data += bytes(-(start + len(data)) % 4)  # tags start on 4-byte boundaries
        table += signature + struct.pack(">II", start + len(data), len(body))
        data += body
    header = struct.pack(">I", start + len(data)) + b"lcms" + bytes([2, 0x10, 0, 0])
    header += b"mntr" + b"RGB " + b"Lab " + bytes(12) + b"acsp" + bytes(28)
    header += _s15(0.9642) + _s15(1.0) + _s15(0.8249)  # the D50 illuminant
    return header + bytes(128 - len(header)) + table + data


def test_a_profile_is_applied_with_the_perceptual_intent() -> None:
    """The Pillow path converts with the perceptual intent, and so does libvips: with a
    profile whose perceptual and colorimetric tables differ, (200, 100, 50) becomes lcms's
    perceptual (149, 93, 90), not the colorimetric grey (108, 108, 108)."""
    profile = _profile_with_two_intents()
    for intent, expected in [
        (ImageCms.Intent.PERCEPTUAL, (149, 93, 90)),
        (ImageCms.Intent.RELATIVE_COLORIMETRIC, (108, 108, 108)),
    ]:
        converted = ImageCms.profileToProfile(
            Image.new("RGB", (1, 1), (200, 100, 50)),
            ImageCms.ImageCmsProfile(io.BytesIO(profile)),
            ImageCms.createProfile("sRGB"),
            renderingIntent=intent,
        )
        assert converted is not None and converted.getpixel((0, 0)) == expected
    pixel = _profiled_centre(profile)
    assert all(abs(a - b) <= 2 for a, b in zip(pixel, (149, 93, 90), strict=True)), pixel
