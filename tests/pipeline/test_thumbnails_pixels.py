"""Every pixel format the Pillow path meets, made opaque 8-bit grey or RGB before resampling
(thumbnails' ``_opaque_converter``): real PNG, GIF and TIFF files written here and opened
again, with exact expected pixels - alpha composited on white, palettes expanded, 1-bit
made grey, 16- and 32-bit tones scaled to 8 bits - and each file rendered end to end."""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence

import pytest
from PIL import Image

from media_jobs.pipeline import thumbnails
from media_jobs.pipeline.thumbnails import render_derivatives

WHITE_RED_BLUE = [255, 255, 255, 230, 20, 20, 0, 0, 255]  # palette entries 0, 1, 2


def _file(image: Image.Image, image_format: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, image_format, **params)
    return out.getvalue()


def _opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _row(image: Image.Image, y: int = 0) -> list[object]:
    return [image.getpixel((x, y)) for x in range(image.width)]


def _opaque(image: Image.Image, strip: Image.Image | None = None) -> Image.Image:
    """``strip`` (default: the whole image) as ``_reduce_opaque`` gets it back."""
    return thumbnails._opaque_converter(image)(image if strip is None else strip)


def _palette(size: tuple[int, int], pixels: list[int]) -> Image.Image:
    image = Image.new("P", size)
    image.putpalette(WHITE_RED_BLUE + [0] * (768 - len(WHITE_RED_BLUE)))
    image.putdata(pixels)
    return image


def _palette_alpha_tiff(size: tuple[int, int], pixels: list[tuple[int, int]]) -> bytes:
    image = Image.new("PA", size)
    image.putpalette(WHITE_RED_BLUE + [0] * (768 - len(WHITE_RED_BLUE)))
    image.putdata(pixels)
    return _file(image, "TIFF")


def _grey_tiff(mode: str, size: tuple[int, int], pixels: Sequence[float]) -> bytes:
    """A 32-bit integer (I), float (F) or big-endian 16-bit (I;16B) grey TIFF."""
    if mode == "I;16B":
        image = Image.frombytes(mode, size, struct.pack(f">{len(pixels)}H", *map(int, pixels)))
    else:
        image = Image.new(mode, size)
        image.putdata(pixels)
    return _file(image, "TIFF")


def _sixteen_bit_png(size: tuple[int, int], pixels: list[int], **params: object) -> bytes:
    image = Image.new("I;16", size)
    image.putdata(pixels)
    return _file(image, "PNG", **params)


def _premultiplied_grey_alpha_tiff(size: tuple[int, int], pixels: list[tuple[int, int]]) -> bytes:
    """A grey TIFF whose alpha is associated (ExtraSamples = 1): ``pixels`` are stored as
    given, grey already multiplied by alpha. Pillow opens it as La."""
    stored = Image.frombytes("LA", size, b"".join(bytes(pixel) for pixel in pixels))
    data = bytearray(_file(stored, "TIFF"))
    unassociated = struct.pack("<HHIH", 338, 3, 1, 2)  # ExtraSamples, SHORT, 1, value 2
    at = data.index(unassociated)
    data[at + 8 : at + 10] = struct.pack("<H", 1)
    return bytes(data)


# -- the converter, pixel by pixel -----------------------------------------------------------


def test_palette_transparency_is_composited_on_white() -> None:
    """tRNS gives palette entries an alpha: 0 is white, 255 keeps the colour, 128 is half
    way to white."""
    image = _opened(_file(_palette((3, 1), [0, 1, 2]), "PNG", transparency=bytes([0, 255, 128])))
    assert image.mode == "P"

    opaque = _opaque(image)

    assert opaque.mode == "RGB"
    assert _row(opaque) == [(255, 255, 255), (230, 20, 20), (127, 127, 255)]


def test_a_palette_without_transparency_is_expanded_to_rgb() -> None:
    image = _opened(_file(_palette((3, 1), [2, 1, 0]), "GIF"))
    assert image.mode == "P" and "transparency" not in image.info

    opaque = _opaque(image)

    assert opaque.mode == "RGB"
    assert _row(opaque) == [(0, 0, 255), (230, 20, 20), (255, 255, 255)]


def test_a_palette_with_an_alpha_channel_is_composited_on_white() -> None:
    image = _opened(_palette_alpha_tiff((3, 1), [(1, 255), (1, 0), (2, 128)]))
    assert image.mode == "PA"

    opaque = _opaque(image)

    assert opaque.mode == "RGB"
    assert _row(opaque) == [(230, 20, 20), (255, 255, 255), (127, 127, 255)]


def test_one_bit_black_and_white_becomes_grey() -> None:
    one_bit = Image.new("1", (4, 1))
    one_bit.putdata([0, 1, 1, 0])
    image = _opened(_file(one_bit, "PNG"))
    assert image.mode == "1"

    opaque = _opaque(image)

    assert opaque.mode == "L"
    assert _row(opaque) == [0, 255, 255, 0]


SIXTEEN_BIT_TONES = [0, 257, 32896, 40000, 65280, 65535]
# x 255 / 65535, truncated: 257 is one 8-bit step, 32896 exactly 128, 40000 is 155.6
EIGHT_BIT_TONES = [0, 1, 128, 155, 254, 255]


@pytest.mark.parametrize(
    ("data", "mode"),
    [
        pytest.param(_sixteen_bit_png((6, 1), SIXTEEN_BIT_TONES), "I;16", id="png"),
        pytest.param(_grey_tiff("I;16B", (6, 1), SIXTEEN_BIT_TONES), "I;16B", id="tiff-big-endian"),
    ],
)
def test_sixteen_bit_grey_is_scaled_to_eight_bits_not_clipped(data: bytes, mode: str) -> None:
    """Pillow's own 16-bit -> L conversion clips everything above 255 to white."""
    image = _opened(data)
    assert image.mode == mode

    opaque = _opaque(image)

    assert opaque.mode == "L"
    assert _row(opaque) == EIGHT_BIT_TONES


@pytest.mark.parametrize(
    ("mode", "tones", "expected"),
    [
        pytest.param("I", [0, 100, 255], [0, 100, 255], id="int-up-to-255-is-8-bit"),
        pytest.param("I", [0, 255, 256], [0, 0, 0], id="int-above-255-is-16-bit"),
        pytest.param("I", SIXTEEN_BIT_TONES, EIGHT_BIT_TONES, id="int-16-bit-range"),
        pytest.param("F", [0.0, 100.0, 255.0], [0, 100, 255], id="float-up-to-255-is-8-bit"),
        pytest.param(
            "F", [0.0, 257.0, 32896.0, 65535.0], [0, 1, 128, 255], id="float-16-bit-range"
        ),
    ],
)
def test_32_bit_grey_above_255_is_taken_as_16_bit_tones(
    mode: str, tones: list[float], expected: list[int]
) -> None:
    """A 32-bit integer or float TIFF whose brightest pixel is at most 255 holds 8-bit tones
    (kept); one brighter holds 16-bit tones (x 255 / 65535)."""
    image = _opened(_grey_tiff(mode, (len(tones), 1), tones))
    assert image.mode == mode

    opaque = _opaque(image)

    assert opaque.mode == "L"
    assert _row(opaque) == expected


def test_the_32_bit_scale_is_measured_once_on_the_whole_image() -> None:
    """A strip of dim pixels of a 16-bit-range image is scaled as the rest of it is (it
    would come out bright if each strip measured its own maximum)."""
    image = _opened(_grey_tiff("I", (2, 2), [100, 200, 65535, 0]))

    top, bottom = (_opaque(image, image.crop((0, y, 2, y + 1))) for y in (0, 1))

    assert (_row(top), _row(bottom)) == ([0, 0], [255, 0])


@pytest.mark.parametrize(
    ("data", "mode"),
    [
        pytest.param(
            _file(Image.frombytes("LA", (3, 1), bytes([200, 128, 40, 255, 0, 0])), "PNG"),
            "LA",
            id="png",
        ),
        # the same pixels with grey multiplied by alpha: 200 x 128 / 255 = 100
        pytest.param(
            _premultiplied_grey_alpha_tiff((3, 1), [(100, 128), (40, 255), (0, 0)]),
            "La",
            id="tiff-premultiplied",
        ),
    ],
)
def test_grey_with_alpha_is_composited_on_white_and_stays_grey(data: bytes, mode: str) -> None:
    """Grey 200 at alpha 128 over white: 200 x 128/255 + 255 x 127/255 = 227."""
    image = _opened(data)
    assert image.mode == mode

    opaque = _opaque(image)

    assert opaque.mode == "L"
    assert _row(opaque) == [227, 40, 255]


RGBA_PIXELS = bytes([200, 100, 50, 128, 0, 0, 255, 0, 40, 80, 120, 255])


@pytest.mark.parametrize("mode", ["RGBA", "RGBa"])
def test_colour_with_alpha_is_composited_on_white(mode: str) -> None:
    """Straight (RGBA, as PNG stores it) or premultiplied (RGBa) alpha: the same colours
    over white. Half-transparent (200, 100, 50) is (227, 177, 152)."""
    image = _opened(_file(Image.frombytes("RGBA", (3, 1), RGBA_PIXELS), "PNG")).convert(mode)

    opaque = _opaque(image)

    assert opaque.mode == "RGB"
    assert _row(opaque) == [(227, 177, 152), (255, 255, 255), (40, 80, 120)]


def test_ycbcr_is_converted_to_rgb() -> None:
    """Y 81, Cb 90, Cr 240 is a red (JPEG's equations, in Pillow's fixed point): R = 81 +
    1.402 x 112 = 238, G = 81 + 0.344 x 38 - 0.714 x 112 = 14, B = 81 - 1.772 x 38 = 13."""
    image = _opened(_file(Image.new("YCbCr", (2, 1), (81, 90, 240)), "TIFF"))
    assert image.mode == "YCbCr"

    opaque = _opaque(image)

    assert opaque.mode == "RGB"
    assert _row(opaque) == [(238, 14, 13), (238, 14, 13)]


@pytest.mark.parametrize(
    ("mode", "key", "pixels", "expected"),
    [
        pytest.param("L", 7, [7, 90, 8], [255, 90, 8], id="grey"),
        pytest.param(
            "RGB",
            (10, 200, 30),
            [(10, 200, 30), (90, 60, 30), (10, 200, 31)],
            [(255, 255, 255), (90, 60, 30), (10, 200, 31)],
            id="colour",
        ),
    ],
)
def test_a_colour_key_makes_its_one_value_white_and_keeps_the_mode(
    mode: str, key: object, pixels: list[object], expected: list[object]
) -> None:
    """A PNG tRNS colour key: pixels of exactly that value are transparent (white here),
    a value one step off is not; grey stays grey, colour stays colour."""
    image = Image.new(mode, (3, 1))
    image.putdata(pixels)  # type: ignore[arg-type]
    image = _opened(_file(image, "PNG", transparency=key))
    assert image.mode == mode and image.info["transparency"] == key

    opaque = _opaque(image)

    assert opaque.mode == mode
    assert _row(opaque) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            _file(Image.new("1", (3, 1)), "PNG", transparency=0), [255, 255, 255], id="one-bit"
        ),
        # 40000 / 65535 x 255 = 155.6; the key (7) and one step off it (8) are both ~0 in 8 bits
        pytest.param(
            _sixteen_bit_png((3, 1), [7, 40000, 8], transparency=7), [255, 155, 0], id="16-bit"
        ),
    ],
)
def test_a_colour_key_on_one_bit_or_16_bit_grey_is_white_too(
    data: bytes, expected: list[int]
) -> None:
    """The key of a 1-bit or 16-bit grey PNG is honoured like an 8-bit one's (these
    used to come out black: their conversions to 8-bit grey drop the key)."""
    image = _opened(data)
    assert "transparency" in image.info

    opaque = _opaque(image)

    assert opaque.mode == "L"
    assert _row(opaque) == expected


def test_a_32_bit_grey_strip_with_a_key_is_scaled_like_the_whole_image() -> None:
    """An I image (32-bit) with a key: the key's pixels white, the others scaled by the
    whole image's factor (its maximum is over 255: x 255/65535)."""
    image = Image.new("I", (3, 1))
    image.putdata([7, 40000, 8])
    image.info["transparency"] = 7

    assert _row(_opaque(image)) == [255, 155, 0]


# -- end to end ------------------------------------------------------------------------------

SIZE = (96, 64)
PIXELS = SIZE[0] * SIZE[1]


@pytest.mark.parametrize(
    ("data", "colour"),
    [
        pytest.param(
            _file(_palette(SIZE, [2] * PIXELS), "PNG", transparency=bytes([0, 255, 128])),
            (127, 127, 255),
            id="palette-png-transparency",
        ),
        pytest.param(_file(_palette(SIZE, [1] * PIXELS), "GIF"), (230, 20, 20), id="gif"),
        # red at alpha 128 over white: 230 x 128/255 + 127, 20 x 128/255 + 127
        pytest.param(_palette_alpha_tiff(SIZE, [(1, 128)] * PIXELS), (242, 137, 137), id="pa-tiff"),
        pytest.param(_file(Image.new("1", SIZE, 1), "PNG"), (255, 255, 255), id="one-bit-png"),
        pytest.param(
            _file(Image.new("1", SIZE, 0), "PNG", transparency=0),
            (255, 255, 255),
            id="one-bit-png-colour-key",
        ),
        pytest.param(
            _sixteen_bit_png(SIZE, [7] * PIXELS, transparency=7),
            (255, 255, 255),
            id="16-bit-png-colour-key",
        ),
        pytest.param(_sixteen_bit_png(SIZE, [40000] * PIXELS), (155, 155, 155), id="16-bit-png"),
        pytest.param(
            _grey_tiff("I;16B", SIZE, [40000] * PIXELS), (155, 155, 155), id="16-bit-tiff"
        ),
        pytest.param(_grey_tiff("I", SIZE, [40000] * PIXELS), (155, 155, 155), id="int-tiff"),
        pytest.param(_grey_tiff("F", SIZE, [32896.0] * PIXELS), (128, 128, 128), id="float-tiff"),
        pytest.param(_file(Image.new("LA", SIZE, (200, 128)), "PNG"), (227, 227, 227), id="la-png"),
        pytest.param(
            _premultiplied_grey_alpha_tiff(SIZE, [(100, 128)] * PIXELS),
            (227, 227, 227),
            id="la-premultiplied-tiff",
        ),
        pytest.param(
            _file(Image.new("YCbCr", SIZE, (81, 90, 240)), "TIFF"), (238, 14, 14), id="ycbcr-tiff"
        ),
    ],
)
def test_every_pixel_format_renders_to_rgb_derivatives_of_its_colour(
    data: bytes, colour: tuple[int, int, int]
) -> None:
    """The whole photo, one colour, through render_derivatives: four RGB JPEGs of that
    colour (JPEG keeps a flat colour to within a step or two)."""
    derivatives = render_derivatives(io.BytesIO(data))

    assert [d.size for d in derivatives] == ["large", "medium", "small", "thumbnail"]
    for derivative in derivatives:
        image = _opened(derivative.data)
        assert image.mode == "RGB"
        pixel = image.getpixel((image.width // 2, image.height // 2))
        assert isinstance(pixel, tuple)
        assert all(abs(got - want) <= 2 for got, want in zip(pixel, colour, strict=True)), (
            derivative.size,
            pixel,
        )
