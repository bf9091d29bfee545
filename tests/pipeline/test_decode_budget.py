"""The header checks of decode_budget on real files: they must refuse what they are for and
never a valid photo."""

from __future__ import annotations

import io
import random
import re
import shutil
import struct
import subprocess
import time
import zlib

import pillow_heif
import pytest
from PIL import Image

from media_jobs import sample_media
from media_jobs.pipeline import thumbnails
from media_jobs.pipeline.config import PipelineConfig
from media_jobs.pipeline.decode_budget import (
    BudgetedReader,
    CpuBudget,
    DecodeLimits,
    MemoryEstimate,
    check_memory,
    check_png_complete,
    estimate_peak_bytes,
    load_png_verified,
    png_exif,
    png_expected_bytes,
    read_jpeg_layout,
)
from media_jobs.pipeline.errors import ErrorCode, PipelineError
from tests.fixtures import hostile


def _png(image: Image.Image, level: int = 6) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=level)
    return out.getvalue()


def _interlaced_rgb_png(width: int, height: int) -> bytes:
    """An Adam7-interlaced 8-bit RGB PNG (Pillow cannot write one)."""
    pixels = sample_media.photographic(width, height).load()
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4))
    passes += ((1, 0, 2, 2), (0, 1, 1, 2))
    raw = bytearray()
    for x0, y0, dx, dy in passes:
        for y in range(y0, height, dy):
            columns = range(x0, width, dx)
            if not columns:
                continue
            raw.append(0)
            for x in columns:
                raw.extend(pixels[x, y])
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 1)
    return (
        hostile.PNG_SIGNATURE
        + hostile.png_chunk(b"IHDR", header)
        + hostile.png_chunk(b"IDAT", zlib.compress(bytes(raw)))
        + hostile.png_chunk(b"IEND", b"")
    )


VALID_PNGS = {
    "rgb": lambda: _png(sample_media.photographic(301, 203)),
    "rgba": lambda: _png(sample_media.photographic(301, 203).convert("RGBA")),
    "grey": lambda: _png(sample_media.photographic(301, 203).convert("L")),
    "grey-alpha": lambda: _png(sample_media.photographic(301, 203).convert("LA")),
    "palette": lambda: _png(sample_media.photographic(301, 203).convert("P")),
    "one-bit": lambda: _png(sample_media.photographic(301, 203).convert("1")),
    "sixteen-bit": sample_media.png16_bytes,
    "many-idat-chunks": lambda: _png(sample_media.photographic(800, 600)),
    "interlaced": lambda: _interlaced_rgb_png(37, 29),
    "interlaced-tiny": lambda: _interlaced_rgb_png(3, 2),
}


@pytest.mark.parametrize("name", list(VALID_PNGS))
def test_a_complete_png_passes_and_the_image_still_decodes(name: str) -> None:
    data = VALID_PNGS[name]()
    if name == "many-idat-chunks":
        assert len(_chunks(data, b"IDAT")) > 1
    stream = io.BytesIO(data)
    stream.seek(17)
    assert check_png_complete(stream) is True
    assert stream.tell() == 17  # position restored
    Image.open(io.BytesIO(data)).load()


def test_png_expected_bytes_match_what_pillow_writes() -> None:
    for mode, colour_type, depth in [("RGB", 2, 8), ("L", 0, 8), ("RGBA", 6, 8), ("1", 0, 1)]:
        data = _png(sample_media.photographic(97, 31).convert(mode))
        idat = b"".join(
            data[start + 8 : start + 8 + length] for start, length in _chunks(data, b"IDAT")
        )
        expected = png_expected_bytes(97, 31, depth, colour_type, interlaced=False)
        assert len(zlib.decompress(idat)) == expected, mode


def _chunks(data: bytes, kind: bytes) -> list[tuple[int, int]]:
    found, position = [], 8
    while position < len(data):
        length, name = struct.unpack(">I4s", data[position : position + 8])
        if name == kind:
            found.append((position, length))
        position += 12 + length
    return found


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.95])
def test_a_png_cut_short_is_corrupt_with_the_rows_it_has(fraction: float) -> None:
    data = _png(sample_media.photographic(400, 300))
    with pytest.raises(PipelineError) as caught:
        check_png_complete(io.BytesIO(hostile.truncated(data, fraction)))
    assert caught.value.code == ErrorCode.CORRUPT_IMAGE
    assert "of 300 rows" in caught.value.message


def test_a_short_zlib_stream_behind_a_complete_file_is_corrupt() -> None:
    with pytest.raises(PipelineError) as caught:
        check_png_complete(io.BytesIO(hostile.png_claiming(13000, 13000)))
    assert "about 2 of 13000 rows" in caught.value.message


def test_the_probe_stops_early_on_a_bomb() -> None:
    bomb = hostile.png_bomb(6000, 6000)  # 144 MB of pixels
    started = time.process_time()
    assert check_png_complete(io.BytesIO(bomb), stop_after=1 << 20) is False
    assert time.process_time() - started < 0.5  # inflated ~1 MiB, not 144


def test_the_probe_stops_once_exactly_its_bytes_came_out() -> None:
    """The first IDAT chunk inflates to exactly ``stop_after`` bytes (half the rows): the
    probe stops there and says the stream was not checked to its end."""
    width, height = 100, 100  # 8-bit grey: 101 bytes a row, 10100 in all
    rows = bytes(range(101)) * height
    compressor = zlib.compressobj()
    first = compressor.compress(rows[:5050]) + compressor.flush(zlib.Z_FULL_FLUSH)
    second = compressor.compress(rows[5050:]) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = (
        hostile.PNG_SIGNATURE
        + hostile.png_chunk(b"IHDR", header)
        + hostile.png_chunk(b"IDAT", first)
        + hostile.png_chunk(b"IDAT", second)
        + hostile.png_chunk(b"IEND", b"")
    )
    assert check_png_complete(io.BytesIO(data)) is True  # the whole stream is complete
    assert check_png_complete(io.BytesIO(data), stop_after=5050) is False
    assert check_png_complete(io.BytesIO(data), stop_after=5049) is False


def test_jpeg_layouts_of_real_files() -> None:
    baseline = read_jpeg_layout(io.BytesIO(sample_media.jpeg_bytes(640, 480)), max_scans=100)
    assert (baseline.width, baseline.height, baseline.scans) == (640, 480, 1)
    assert not baseline.multi_scan and baseline.coefficient_bytes() == 0
    assert baseline.sampling == ((2, 2), (1, 1), (1, 1))  # 4:2:0

    data = hostile.progressive_jpeg(640, 480)
    progressive = read_jpeg_layout(io.BytesIO(data), max_scans=100)
    assert progressive.progressive and progressive.scans == hostile.scan_count(data) == 10
    # 80x60 luma blocks + 2 x 40x30 chroma blocks, 128 bytes each
    assert progressive.coefficient_bytes() == (80 * 60 + 2 * 40 * 30) * 128


def test_coefficient_blocks_are_rounded_up_to_whole_mcus() -> None:
    """648 x 488 at 4:2:0 is 40.5 x 30.5 MCUs of 16 x 16: libjpeg allocates 41 x 31."""
    layout = read_jpeg_layout(io.BytesIO(hostile.progressive_jpeg(648, 488)), max_scans=100)
    assert layout.sampling == ((2, 2), (1, 1), (1, 1))
    # luma 81 x 61 blocks rounded up to 82 x 62; chroma 41 x 31 blocks, 128 bytes each
    assert layout.coefficient_bytes() == (82 * 62 + 2 * 41 * 31) * 128


def test_scans_are_counted_up_to_the_limit_only() -> None:
    bomb = hostile.progressive_scan_bomb(64, 64, 5000)
    with pytest.raises(PipelineError) as caught:
        read_jpeg_layout(io.BytesIO(bomb), max_scans=100)
    assert caught.value.code == ErrorCode.TOO_MANY_SCANS
    assert read_jpeg_layout(io.BytesIO(bomb), max_scans=10_000).scans == hostile.scan_count(bomb)


def test_an_exif_thumbnail_is_not_counted_as_a_scan() -> None:
    """A camera JPEG carries a whole JPEG (SOS included) inside its EXIF segment."""
    thumbnail = sample_media.jpeg_bytes(160, 120)
    exif = Image.Exif()
    exif[0x0112] = 1
    payload = exif.tobytes() + thumbnail
    photo = sample_media.jpeg_bytes(640, 480)
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    layout = read_jpeg_layout(io.BytesIO(photo[:2] + app1 + photo[2:]), max_scans=1)
    assert layout.scans == 1 and (layout.width, layout.height) == (640, 480)


def test_a_standalone_marker_between_segments_is_skipped() -> None:
    """T.81 lets a restart marker (no length) stand between segments; libjpeg and Pillow
    skip it, and so does the layout reader: the frame and the scan after it still count."""
    photo = sample_media.jpeg_bytes(640, 480)
    (app0_length,) = struct.unpack(">H", photo[4:6])
    after_app0 = 4 + app0_length
    data = photo[:after_app0] + b"\xff\xd0" + photo[after_app0:]
    assert Image.open(io.BytesIO(data)).size == (640, 480)
    layout = read_jpeg_layout(io.BytesIO(data), max_scans=100)
    assert (layout.width, layout.height, layout.scans) == (640, 480, 1)


def test_a_damaged_jpeg_structure_is_corrupt() -> None:
    with pytest.raises(PipelineError) as caught:
        read_jpeg_layout(io.BytesIO(b"\xff\xd8\xff\xc0\x00"), max_scans=100)
    assert caught.value.code == ErrorCode.CORRUPT_IMAGE


def test_a_reader_over_its_cpu_budget_stops_the_next_read() -> None:
    budget = CpuBudget(0.01)
    reader = BudgetedReader(io.BytesIO(b"x" * 10), budget)
    assert reader.read(1) == b"x"
    deadline = time.thread_time() + 0.05
    while time.thread_time() < deadline:
        pass  # burn this thread's CPU
    with pytest.raises(PipelineError) as caught:
        reader.read(1)
    assert caught.value.code == ErrorCode.CPU_BUDGET_EXCEEDED
    assert caught.value.message.endswith(
        " s of CPU (decoding); the per-photo budget is 0.01 s (MEDIA_DECODE_CPU_SECONDS)"
    )


LARGE_COMPLETE_PNGS = {
    # well over the probe's 16 MiB of rows, so the last-row marker decides
    "rgb-photo": lambda: _png(sample_media.photographic(1400, 1200).resize((2800, 2400)), level=1),
    "rgba-zeros": lambda: hostile.png_bomb(3000, 2000),
    "grey-zeros": lambda: hostile.png_bomb(5000, 5000, colour_type=0),
    "grey16-zeros": lambda: hostile.png_bomb(3500, 3500, colour_type=0, bit_depth=16),
    "palette-zeros": lambda: hostile.png_bomb(5000, 5000, colour_type=3),
    "one-bit-zeros": lambda: hostile.png_bomb(12000, 12000, colour_type=0, bit_depth=1),
}


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("name", list(LARGE_COMPLETE_PNGS))
@pytest.mark.slow  # decodes large PNGs
def test_a_large_complete_png_is_decoded_once_and_passes(name: str) -> None:
    data = LARGE_COMPLETE_PNGS[name]()
    stream = io.BytesIO(data)
    assert check_png_complete(stream, stop_after=16 << 20) is False  # too big to probe
    image = Image.open(io.BytesIO(data))
    load_png_verified(image, io.BytesIO(data), CpuBudget(60))
    reference = Image.open(io.BytesIO(data))
    reference.load()
    assert image.tobytes() == reference.tobytes()  # the marker was overwritten everywhere


def test_a_large_png_one_row_short_is_corrupt() -> None:
    data = hostile.png_claiming(4000, 3000, rows=2999)
    image = Image.open(io.BytesIO(data))
    with pytest.raises(PipelineError) as caught:
        load_png_verified(image, io.BytesIO(data), CpuBudget(60))
    assert caught.value.code == ErrorCode.CORRUPT_IMAGE
    assert "before the last of its 3000 rows" in caught.value.message


def test_an_interlaced_png_is_checked_by_inflating() -> None:
    complete = _interlaced_rgb_png(37, 29)
    load_png_verified(Image.open(io.BytesIO(complete)), io.BytesIO(complete), CpuBudget(60))
    idat_start, length = _chunks(complete, b"IDAT")[0]
    payload = zlib.compress(
        zlib.decompress(complete[idat_start + 8 : idat_start + 8 + length])[:-40]
    )
    short = (
        complete[:idat_start]
        + hostile.png_chunk(b"IDAT", payload)
        + hostile.png_chunk(b"IEND", b"")
    )
    with pytest.raises(PipelineError) as caught:
        load_png_verified(Image.open(io.BytesIO(short)), io.BytesIO(short), CpuBudget(60))
    assert caught.value.code == ErrorCode.CORRUPT_IMAGE


def test_a_jpeg_cut_inside_its_frame_header_says_so() -> None:
    photo = sample_media.jpeg_bytes(64, 48)
    frame = photo.index(b"\xff\xc0")  # Pillow writes a baseline (SOF0) frame
    with pytest.raises(PipelineError) as caught:
        read_jpeg_layout(io.BytesIO(photo[: frame + 6]), max_scans=100)
    assert caught.value.code == ErrorCode.CORRUPT_IMAGE
    assert caught.value.message == "damaged JPEG structure: the file ends inside the frame header"


def test_an_interlaced_png_short_of_its_extra_filter_bytes_is_corrupt() -> None:
    """37 x 29 RGB inflates to 3275 bytes interlaced (56 rows over the seven passes), 3248
    if it were not: 10 bytes short is short of the interlaced count only."""
    complete = _interlaced_rgb_png(37, 29)
    idat_start, length = _chunks(complete, b"IDAT")[0]
    rows = zlib.decompress(complete[idat_start + 8 : idat_start + 8 + length])
    assert len(rows) == 3275
    short = (
        complete[:idat_start]
        + hostile.png_chunk(b"IDAT", zlib.compress(rows[:-10]))
        + hostile.png_chunk(b"IEND", b"")
    )
    with pytest.raises(PipelineError) as caught:
        check_png_complete(io.BytesIO(short))
    assert caught.value.message == (
        "truncated PNG: the image data ends after 3265 of 3275 bytes (about 29 of 29 rows)"
    )


def test_a_tiled_tiff_holds_one_tile_in_the_decoder() -> None:
    """A tiled TIFF (written by libvips: 512 wide, 128 long tiles) is decoded a tile at a
    time: 128 x 512 pixels of 4 bytes (RGBA) beside the file itself."""
    pyvips = pytest.importorskip("pyvips")
    data = pyvips.Image.black(1024, 512, bands=3).tiffsave_buffer(
        tile=True, tile_width=512, tile_height=128, compression="deflate"
    )
    image = Image.open(io.BytesIO(data))
    estimate = estimate_peak_bytes(
        image_format="TIFF",
        mode=image.mode,
        decoded_size=image.size,
        full_size=image.size,
        file_size=len(data),
        working_bytes=0,
        tiff_tags=dict(image.tag_v2),
    )
    assert estimate.decoder == 128 * 512 * 4 + len(data)


def test_tiff_bits_per_sample_given_as_one_number_or_none() -> None:
    """The tags mapping may hold BitsPerSample as a single number (16 bits: 2 bytes a
    sample) or as an empty list (8 bits assumed); both are sized, not refused."""
    sizes = []
    for bits in (16, ()):
        estimate = estimate_peak_bytes(
            image_format="TIFF",
            mode="RGB",
            decoded_size=(100, 50),
            full_size=(100, 50),
            file_size=0,
            working_bytes=0,
            tiff_tags={258: bits, 277: 3, 278: 10},
        )
        sizes.append(estimate.decoder)
    assert sizes == [10 * 100 * 6, 10 * 100 * 4]


def test_a_webp_decoder_holds_its_memory_while_the_image_is_reduced() -> None:
    """libwebp's canvases live until the image is closed: a WebP's peak is the sum of the
    decoded image, the decoder and the reduction, not the larger phase."""
    out = io.BytesIO()
    sample_media.photographic(200, 100).save(out, "WEBP")
    data = out.getvalue()
    image = Image.open(io.BytesIO(data))
    estimate = estimate_peak_bytes(
        image_format=image.format or "",
        mode=image.mode,
        decoded_size=image.size,
        full_size=image.size,
        file_size=len(data),
        working_bytes=1_000_000,
    )
    assert (image.format, image.mode) == ("WEBP", "RGB")
    # 200 x 100 x 4 decoded (Pillow pads RGB) + 12 a pixel and the file in libwebp
    # + working + 24 MiB fixed
    assert estimate.total == 80_000 + (240_000 + len(data)) + 1_000_000 + 24 * 1024 * 1024


@pytest.mark.parametrize(
    ("size", "tags", "strip_bytes"),
    [
        # one row a strip: a single row of 4-byte pixels, not two
        ((100, 50), {258: (8, 8, 8), 277: 3, 278: 1}, 1 * 100 * 4),
        # a one-pixel-wide image: one column, not two
        ((1, 50), {258: (8, 8, 8), 277: 3, 278: 50}, 50 * 1 * 4),
        # no RowsPerStrip: the spec's default, the whole image in one strip
        ((100, 50), {258: (8, 8, 8), 277: 3}, 50 * 100 * 4),
        # 16-bit RGB as Pillow lists it (one entry a sample): 6 bytes a pixel
        ((100, 50), {258: (16, 16, 16), 277: 3, 278: 10}, 10 * 100 * 6),
        # 9-bit samples take two whole bytes each
        ((100, 50), {258: (9, 9, 9), 277: 3, 278: 10}, 10 * 100 * 6),
        # no SamplesPerPixel: the spec's default, one sample (32-bit float grey: 4 bytes)
        ((100, 50), {258: 32, 278: 10}, 10 * 100 * 4),
        # TileWidth without TileLength is no tile layout: sized by its strips
        ((100, 50), {322: 16, 258: (8, 8, 8), 277: 3, 278: 10}, 10 * 100 * 4),
    ],
    ids=[
        "one-row-strips",
        "one-pixel-wide",
        "no-rows-per-strip",
        "16-bit-rgb",
        "9-bit",
        "no-samples-per-pixel",
        "half-tiled",
    ],
)
def test_a_tiff_strip_is_sized_from_its_tags_and_the_spec_defaults(
    size: tuple[int, int], tags: dict[int, object], strip_bytes: int
) -> None:
    """libtiff's buffer is one strip (or tile) of whole-byte samples, at least 4 bytes a
    pixel (Pillow's RGBA reads); a tag the file leaves out takes the TIFF spec's default."""
    estimate = estimate_peak_bytes(
        image_format="TIFF",
        mode="RGB",
        decoded_size=size,
        full_size=size,
        file_size=1000,
        working_bytes=0,
        tiff_tags=tags,
    )
    assert estimate.decoder == strip_bytes + 1000


@pytest.mark.parametrize(
    ("width", "depth", "colour_type", "given", "message"),
    [
        # 1-bit grey, 10 wide: 2 bytes of pixels + the filter byte a row
        (10, 1, 0, 30, "ends after 30 of 60 bytes (about 10 of 20 rows)"),
        # a colour type PNG does not define is sized as the widest pixel (4 channels)
        (10, 8, 5, 205, "ends after 205 of 820 bytes (about 5 of 20 rows)"),
    ],
    ids=["one-bit-grey", "unknown-colour-type"],
)
def test_a_truncated_png_reports_the_whole_rows_it_has(
    width: int, depth: int, colour_type: int, given: int, message: str
) -> None:
    """``check_png_complete`` reads the header itself (it also runs before Pillow decodes):
    the rows it reports are the declared layout's, filter byte included."""
    header = struct.pack(">IIBBBBB", width, 20, depth, colour_type, 0, 0, 0)
    data = (
        hostile.PNG_SIGNATURE
        + hostile.png_chunk(b"IHDR", header)
        + hostile.png_chunk(b"IDAT", zlib.compress(bytes(given)))
        + hostile.png_chunk(b"IEND", b"")
    )
    with pytest.raises(PipelineError) as caught:
        check_png_complete(io.BytesIO(data))
    assert caught.value.code == ErrorCode.CORRUPT_IMAGE
    assert caught.value.message == f"truncated PNG: the image data {message}"


class _ReadSizes(io.BytesIO):
    """A stream that remembers the size of every read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.sizes: list[int | None] = []

    def read(self, size: int | None = -1) -> bytes:
        self.sizes.append(size)
        return super().read(size)


def _with_fill_bytes_ending_the_first_read(data: bytes) -> bytes:
    """``data`` (a progressive JPEG) with 0xFF fill bytes before its EOI marker (T.81
    allows any number before a marker), so many that the last scan's data plus the fill
    bytes plus the marker's own 0xFF are exactly one MiB: the 0xD9 is the first byte of
    the next MiB read."""
    *_, (last_scan_start, _), (eoi, _) = [
        (start, marker) for marker, start, _ in hostile.jpeg_segments(data)
    ]
    (header_length,) = struct.unpack(">H", data[last_scan_start + 2 : last_scan_start + 4])
    scan_data_start = last_scan_start + 2 + header_length
    fill = (1 << 20) - 1 - (eoi - scan_data_start)
    return data[:eoi] + b"\xff" * fill + data[eoi:]


def test_a_marker_split_between_two_reads_of_scan_data_is_found() -> None:
    """Scan data is searched a MiB at a time (a 100 MB photo is never read into memory to
    count its scans); a marker whose 0xFF ends one read and whose code starts the next is
    still the marker."""
    original = hostile.progressive_jpeg(64, 48)
    data = _with_fill_bytes_ending_the_first_read(original)
    assert len(data) > 1 << 20
    reference = Image.open(io.BytesIO(original))
    reference.load()
    filled = Image.open(io.BytesIO(data))
    filled.load()
    assert filled.tobytes() == reference.tobytes()  # a valid JPEG for the decoder too

    stream = _ReadSizes(data)
    layout = read_jpeg_layout(stream, max_scans=100)

    assert (layout.width, layout.height, layout.scans, layout.progressive) == (64, 48, 10, True)
    assert 1 << 20 in stream.sizes
    assert all(isinstance(size, int) and size <= 1 << 20 for size in stream.sizes)


def test_a_budgeted_reader_is_a_readable_seekable_stream() -> None:
    """Decoders get the reader where they would get the file: it reads, seeks and tells as
    the stream does, says it is readable and seekable, and passes anything else on."""
    stream = io.BytesIO(b"0123456789")
    reader = BudgetedReader(stream, CpuBudget(60))
    assert (reader.readable(), reader.seekable()) == (True, True)
    assert reader.seek(4) == 4 and reader.read(3) == b"456" and reader.tell() == 7
    assert reader.getvalue() == b"0123456789"


MIB = 1024 * 1024


def test_a_photo_over_the_memory_budget_is_refused_with_its_figures() -> None:
    """The message gives the estimate and its parts in MiB, rounded up (one byte over 64
    MiB is 65), and names the setting; a photo exactly at the budget passes."""
    estimate = MemoryEstimate(decoded=16 * MIB + 1, decoder=5 * MIB, working=10 * MIB)
    assert estimate.total == 50 * MIB + 1  # decoded + the larger phase + 24 MiB fixed
    check_memory(estimate, DecodeLimits(memory_bytes=50 * MIB + 1), "4000x3000 RGB JPEG image")
    with pytest.raises(PipelineError) as caught:
        check_memory(estimate, DecodeLimits(memory_bytes=50 * MIB), "4000x3000 RGB JPEG image")
    assert caught.value.code == ErrorCode.MEMORY_BUDGET_EXCEEDED
    assert caught.value.message == (
        "decoding this 4000x3000 RGB JPEG image would take about 51 MiB (17 decoded, 5 in the "
        "decoder, 10 to reduce it); the per-photo budget is 50 MiB (MEDIA_DECODE_MEMORY_BYTES)"
    )


# -- PNG completeness: the chunk walk, the zlib stream, the probe ------------------------------


def _grey_png(width: int, height: int, *idat: bytes, after_iend: bytes = b"") -> bytes:
    """An 8-bit grey PNG with one IDAT chunk per payload given (a zlib stream split as a
    writer may split it), then IEND and whatever follows it."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunks = b"".join(hostile.png_chunk(b"IDAT", payload) for payload in idat)
    return (
        hostile.PNG_SIGNATURE
        + hostile.png_chunk(b"IHDR", header)
        + chunks
        + hostile.png_chunk(b"IEND", b"")
        + after_iend
    )


def _spent_budget() -> CpuBudget:
    """A CPU budget of 1 ms that this thread has already spent."""
    budget = CpuBudget(0.001)
    deadline = time.thread_time() + 0.01
    while time.thread_time() < deadline:
        pass  # burn this thread's CPU
    return budget


@pytest.mark.parametrize(
    "data",
    [
        # a text chunk where the header must be: a PNG's first chunk is IHDR
        hostile.PNG_SIGNATURE
        + hostile.png_chunk(b"tEXt", b"Comment\x00written before the header by mistake")
        + hostile.png_chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0)),
        # the file ends inside the IHDR chunk (its name is there, its fields are not)
        (
            hostile.PNG_SIGNATURE
            + hostile.png_chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0))
        )[:20],
    ],
    ids=["text-chunk-first", "cut-inside-ihdr"],
)
def test_a_png_that_does_not_start_with_a_whole_ihdr_is_corrupt(data: bytes) -> None:
    """Without its header the rows cannot be counted: the check refuses the file instead
    of reading sizes out of another chunk (or out of too few bytes)."""
    with pytest.raises(PipelineError) as caught:
        check_png_complete(io.BytesIO(data))
    assert caught.value.code == ErrorCode.CORRUPT_IMAGE
    assert caught.value.message == "PNG without an IHDR chunk"


def test_image_data_that_is_no_zlib_stream_is_corrupt_with_zlib_reason() -> None:
    """zlib's own reason is kept in the message the job's callback carries."""
    data = _grey_png(8, 8, b"this is not a zlib stream")
    with pytest.raises(PipelineError) as caught:
        check_png_complete(io.BytesIO(data))
    assert caught.value.code == ErrorCode.CORRUPT_IMAGE
    assert caught.value.message == (
        "damaged PNG image data: Error -3 while decompressing data: incorrect header check"
    )


def test_the_zlib_stream_is_checked_to_its_end_after_the_last_row() -> None:
    """All 800 bytes of rows come out of the first IDAT chunk (flushed there); the second
    holds the stream's end and a wrong Adler-32 checksum. The check inflates that chunk
    too: a damaged checksum is a damaged file, even with every row present."""
    rows = bytes(range(100)) * 8  # 8 rows of a 99 x 8 grey image, filter byte 0
    compressor = zlib.compressobj()
    first = compressor.compress(rows) + compressor.flush(zlib.Z_SYNC_FLUSH)
    end = compressor.flush()
    assert zlib.decompressobj().decompress(first) == rows
    bad_checksum = end[:-4] + bytes(b ^ 0xFF for b in end[-4:])
    with pytest.raises(PipelineError) as caught:
        check_png_complete(io.BytesIO(_grey_png(99, 8, first, bad_checksum)))
    assert caught.value.code == ErrorCode.CORRUPT_IMAGE
    assert caught.value.message == (
        "damaged PNG image data: Error -3 while decompressing data: incorrect data check"
    )
    assert check_png_complete(io.BytesIO(_grey_png(99, 8, first, end))) is True


def _zero_run_deflate(matches: int) -> bytes:
    """A zlib stream of one zero byte, then ``matches`` times "258 more of the same"
    (length 258, distance 1), in deflate's fixed codes - 13 bits for every 258 zero
    bytes, whatever zlib version runs the test - cut after the last match (no end of
    block, no checksum)."""
    bits: list[int] = []

    def field(value: int, count: int) -> None:  # header fields: least significant bit first
        bits.extend((value >> i) & 1 for i in range(count))

    def code(value: int, count: int) -> None:  # Huffman codes: most significant bit first
        bits.extend((value >> (count - 1 - i)) & 1 for i in range(count))

    field(1, 1)  # the last block
    field(1, 2)  # fixed Huffman codes
    code(0x30, 8)  # literal 0
    for _ in range(matches):
        code(0b11000101, 8)  # length code 285: 258 bytes
        code(0, 5)  # distance code 0: one byte back
    bits.extend([0] * (-len(bits) % 8))
    packed = bytes(
        sum(bit << j for j, bit in enumerate(bits[i : i + 8])) for i in range(0, len(bits), 8)
    )
    return b"\x78\x01" + packed


def test_rows_still_inside_zlib_at_the_end_of_a_chunk_are_counted() -> None:
    """The last match of this stream straddles the 1 MiB an inflate call may return: zlib
    has taken every input byte and still holds 195 bytes of output. The check asks for
    them before it counts the rows: 1 + 4065 x 258 = 1048771 bytes, not 1048576."""
    stream = _zero_run_deflate(4065)
    inflater = zlib.decompressobj()
    first = inflater.decompress(stream, 1 << 20)
    assert (len(first), inflater.unconsumed_tail) == (1 << 20, b"")  # output still pending
    data = _grey_png(1023, 2048, stream)  # 1024 bytes a row, 2048 rows
    with pytest.raises(PipelineError) as caught:
        check_png_complete(io.BytesIO(data))
    assert caught.value.message == (
        "truncated PNG: the image data ends after 1048771 of 2097152 bytes "
        "(about 1024 of 2048 rows)"
    )


def _rows_in_two_chunks(width: int, height: int, first_rows: int) -> tuple[bytes, bytes]:
    """A grey image's rows of zeros as a zlib stream in two IDAT payloads: the first ends
    (fully flushed) after ``first_rows`` rows, the second holds the rest."""
    row = bytes(width + 1)
    compressor = zlib.compressobj()
    first = compressor.compress(row * first_rows) + compressor.flush(zlib.Z_FULL_FLUSH)
    second = compressor.compress(row * (height - first_rows)) + compressor.flush()
    return first, second


def test_the_probe_stops_one_inflate_past_its_limit_across_chunks() -> None:
    """1023 x 2560 grey: 2.5 MiB of rows, 0.5 MiB in the first IDAT chunk and 2 MiB in the
    second. Probing 1 MiB, the second chunk is inflated only while the probe still wants
    bytes: one MiB more (1.5 MiB in all), not to the end - so it cannot say complete."""
    first, second = _rows_in_two_chunks(1023, 2560, 512)
    data = _grey_png(1023, 2560, first, second)
    assert check_png_complete(io.BytesIO(data), stop_after=1 << 20) is False
    assert check_png_complete(io.BytesIO(data)) is True


def test_a_probe_that_reaches_the_last_row_says_the_png_is_complete() -> None:
    """A small PNG (one IDAT chunk) inflates whole in the probe's first call: every row is
    there, so the probe answers True (checked to the end), not False (stopped early)."""
    data = _grey_png(63, 40, zlib.compress(bytes(range(64)) * 40))
    assert check_png_complete(io.BytesIO(data), stop_after=100) is True


def test_what_follows_iend_is_not_image_data() -> None:
    """A PNG ends at IEND: an IDAT chunk appended after it (the missing rows of the file
    before it) does not complete the image - decoders stop at IEND too."""
    first, second = _rows_in_two_chunks(63, 100, 50)
    data = _grey_png(63, 100, first, after_iend=hostile.png_chunk(b"IDAT", second))
    with pytest.raises(PipelineError) as caught:
        check_png_complete(io.BytesIO(data))
    assert caught.value.message == (
        "truncated PNG: the image data ends after 3200 of 6400 bytes (about 50 of 100 rows)"
    )
    assert check_png_complete(io.BytesIO(_grey_png(63, 100, first, second))) is True


def test_an_idat_chunk_of_one_byte_is_read() -> None:
    """Writers split the zlib stream where they like; a one-byte IDAT chunk is valid, and
    the walk keeps its place after it (byte, CRC, next chunk)."""
    rows = bytes(range(64)) * 40  # 40 rows of a 63 x 40 grey image: filter 0, pixels 1-63
    stream = zlib.compress(rows)
    data = _grey_png(63, 40, stream[:10], stream[10:11], stream[11:])
    assert check_png_complete(io.BytesIO(data)) is True
    assert Image.open(io.BytesIO(data)).tobytes() == bytes(range(1, 64)) * 40  # Pillow agrees


def test_a_chunk_length_past_the_end_of_the_file_reads_what_is_there() -> None:
    """A damaged IDAT length (0xFFFFFF00: over the 2**31 - 1 PNG allows) does not send the
    walk backwards: the chunk's data is read up to the end of the file, and the rows it
    holds are counted."""
    first, _ = _rows_in_two_chunks(63, 100, 50)
    header = struct.pack(">IIBBBBB", 63, 100, 8, 0, 0, 0, 0)
    data = (
        hostile.PNG_SIGNATURE
        + hostile.png_chunk(b"IHDR", header)
        + struct.pack(">I", 0xFFFFFF00)
        + b"IDAT"
        + first
    )
    with pytest.raises(PipelineError) as caught:
        check_png_complete(io.BytesIO(data))
    assert caught.value.message == (
        "truncated PNG: the image data ends after 3200 of 6400 bytes (about 50 of 100 rows)"
    )


def test_a_width_over_two_to_the_31_is_counted_as_a_huge_image() -> None:
    """IHDR's sizes are unsigned 32-bit numbers: a (hostile) width of 2**31 is a row of
    2 GiB, which 100 bytes of data do not fill - not a negative size that passes."""
    header = struct.pack(">IIBBBBB", 1 << 31, 1, 8, 0, 0, 0, 0)
    data = (
        hostile.PNG_SIGNATURE
        + hostile.png_chunk(b"IHDR", header)
        + hostile.png_chunk(b"IDAT", zlib.compress(bytes(100)))
        + hostile.png_chunk(b"IEND", b"")
    )
    with pytest.raises(PipelineError) as caught:
        check_png_complete(io.BytesIO(data))
    assert caught.value.message == (
        "truncated PNG: the image data ends after 100 of 2147483649 bytes (about 0 of 1 rows)"
    )


def test_the_png_check_reads_a_large_idat_chunk_a_mib_at_a_time() -> None:
    """The check streams the file: a 1.1 MB IDAT chunk is read in pieces of at most 1 MiB,
    and no read asks for the whole rest of the file."""
    rng = random.Random(7)
    rows = b"".join(b"\x00" + rng.randbytes(1023) for _ in range(1100))
    data = _grey_png(1023, 1100, zlib.compress(rows, 1))
    assert len(data) > 1 << 20
    stream = _ReadSizes(data)
    assert check_png_complete(stream) is True
    assert 1 << 20 in stream.sizes
    assert all(isinstance(size, int) and size <= 1 << 20 for size in stream.sizes)


_CPU_MESSAGE = re.compile(
    r"stopped after \d+\.\d s of CPU \(checking the PNG data\); "
    r"the per-photo budget is 0\.001 s \(MEDIA_DECODE_CPU_SECONDS\)"
)


def test_the_png_check_stops_when_the_cpu_budget_is_spent() -> None:
    """Inflating a bomb takes CPU: the budget is checked after every piece inflated, and
    the message names the stage."""
    data = _grey_png(63, 40, zlib.compress(bytes(range(64)) * 40))
    with pytest.raises(PipelineError) as caught:
        check_png_complete(io.BytesIO(data), _spent_budget())
    assert caught.value.code == ErrorCode.CPU_BUDGET_EXCEEDED
    assert _CPU_MESSAGE.fullmatch(caught.value.message), caught.value.message


def test_an_interlaced_png_is_inflated_under_the_photo_cpu_budget() -> None:
    """An interlaced PNG is checked by inflating its stream once more before decoding:
    that pass counts against the photo's CPU budget like the decode itself."""
    data = _interlaced_rgb_png(37, 29)
    with pytest.raises(PipelineError) as caught:
        load_png_verified(Image.open(io.BytesIO(data)), io.BytesIO(data), _spent_budget())
    assert caught.value.code == ErrorCode.CPU_BUDGET_EXCEEDED
    assert _CPU_MESSAGE.fullmatch(caught.value.message), caught.value.message


def test_a_last_row_of_exactly_64_bits_holds_the_marker() -> None:
    """An 8-pixel-wide grey PNG has 64 bits in the first pixels of its last row: just
    enough for the random marker, so a missing last row is found by the marker (not by
    inflating the stream again, which words its message by bytes)."""
    rows = (b"\x00" + bytes(range(10, 18))) * 99  # 99 of the 100 rows declared
    data = _grey_png(8, 100, zlib.compress(rows))
    image = Image.open(io.BytesIO(data))
    with pytest.raises(PipelineError) as caught:
        load_png_verified(image, io.BytesIO(data), CpuBudget(60))
    assert caught.value.code == ErrorCode.CORRUPT_IMAGE
    assert caught.value.message == (
        "truncated PNG: the image data ends before the last of its 100 rows"
    )


# -- HEIF: libheif's planes ----------------------------------------------------------------

pillow_heif.register_heif_opener()  # as the thumbnails step does when it is imported


def _heif(image: Image.Image, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, "HEIF", **options)
    return out.getvalue()


def _heif_10_bit() -> bytes:
    """A 64 x 64 HEIF of 10-bit samples (libheif writes 16-bit RGB as 10-bit 4:2:0)."""
    sample = (40000).to_bytes(2, "little")
    heif = pillow_heif.from_bytes(mode="RGB;16", size=(64, 64), data=sample * 3 * 64 * 64)
    out = io.BytesIO()
    heif.save(out)
    return out.getvalue()


HEIFS = {
    # 4:2:0 planes of 2-byte samples (2 x 1.5) and Pillow's 3-byte RGB copy: 6 a pixel
    "10-bit-420-rgb": (_heif_10_bit, (10, 420, "RGB"), 6),
    # 4:4:4 planes and the alpha plane of 1-byte samples (4) and RGBA's 4 bytes: 8 a pixel
    "8-bit-444-rgba": (
        lambda: _heif(Image.new("RGBA", (64, 64), (90, 120, 150, 100)), chroma=444),
        (8, 444, "RGBA"),
        8,
    ),
    # monochrome: pillow_heif names no chroma, so 3 planes are assumed (4:4:4), + 1 for L
    "8-bit-grey": (lambda: _heif(Image.new("L", (64, 64), 90)), (8, None, "L"), 4),
}


@pytest.mark.parametrize("name", list(HEIFS))
def test_a_heif_decoder_holds_its_planes_by_depth_chroma_and_alpha(name: str) -> None:
    """libheif decodes to planes (two bytes a sample above 8 bits; 1.5, 2 or 3 planes for
    4:2:0, 4:2:2, 4:4:4; one more for alpha), then pillow_heif copies them interleaved to
    Pillow: bytes a pixel x 64 x 64, beside the file itself."""
    make, header, per_pixel = HEIFS[name]
    data = make()
    image = Image.open(io.BytesIO(data))
    assert (image.info["bit_depth"], image.info.get("chroma"), image.mode) == header
    estimate = estimate_peak_bytes(
        image_format="HEIF",
        mode=image.mode,
        decoded_size=image.size,
        full_size=image.size,
        file_size=len(data),
        working_bytes=0,
        info=image.info,
    )
    assert estimate.decoder == per_pixel * 64 * 64 + len(data)


@pytest.mark.parametrize(
    ("info", "per_pixel"),
    [
        ({"bit_depth": 9, "chroma": 422}, 2 * 2.0 + 3),  # 9 bits: already two bytes a sample
        ({"bit_depth": 8, "chroma": 422}, 1 * 2.0 + 3),
        ({"chroma": 420}, 2 * 1.5 + 3),  # no depth given: assume the larger samples
    ],
    ids=["9-bit", "8-bit", "no-depth"],
)
def test_heif_samples_above_8_bits_take_two_bytes(info: dict[str, int], per_pixel: float) -> None:
    """HEVC and AV1 allow any depth from 8 to 16 bits: every depth over 8 is held in two
    bytes a sample, and a header without its depth is sized as if it had them."""
    estimate = estimate_peak_bytes(
        image_format="AVIF",
        mode="RGB",
        decoded_size=(100, 50),
        full_size=(100, 50),
        file_size=1000,
        working_bytes=0,
        info=info,
    )
    assert estimate.decoder == int(100 * 50 * per_pixel) + 1000


# -- JPEG structure: what a damaged marker stream is called ----------------------------------


def _grey_jpeg() -> bytes:
    """A 64 x 48 baseline grey JPEG as Pillow writes it: SOI, APP0 (bytes 2-19), DQT
    (20-88), SOF0 (89-101), two DHT, SOS, EOI."""
    out = io.BytesIO()
    Image.new("L", (64, 48), 100).save(out, "JPEG")
    data = out.getvalue()
    assert data[89:91] == b"\xff\xc0" and data[20:22] == b"\xff\xdb"
    return data


def _sof0(*fields: int, components: bytes) -> bytes:
    """A baseline frame header: precision, height, width, component count, components."""
    segment = struct.pack(">BHHB", *fields) + components
    return b"\xff\xc0" + struct.pack(">H", len(segment) + 2) + segment


_SOI = b"\xff\xd8"

DAMAGED_JPEGS = {
    "no-soi": (lambda: _grey_jpeg()[2:], "no start-of-image marker"),
    "png": (lambda: _png(Image.new("L", (8, 8))), "no start-of-image marker"),
    # SOI and APP0, then the end of the file where the next marker must be
    "ends-after-a-segment": (lambda: _grey_jpeg()[:20], "the file ends inside a marker"),
    # ... or the 0xFF of the next marker and nothing after it
    "ends-on-a-marker-prefix": (lambda: _grey_jpeg()[:21], "the file ends inside a marker"),
    "a-byte-where-a-marker-must-be": (
        lambda: (data := _grey_jpeg())[:20] + b"\x00" + data[20:],
        "expected a marker at offset 20",
    ),
    "a-segment-length-of-one": (lambda: _SOI + b"\xff\xe0\x00\x01", "segment length 1"),
    "ends-inside-a-segment-length": (
        lambda: _SOI + b"\xff\xe0\x00",
        "the file ends inside a segment length",
    ),
    # the scan header (SOS at byte 318) cut after its component count
    "ends-inside-a-scan-header": (
        lambda: _grey_jpeg()[:323],
        "the file ends inside a scan header",
    ),
    "frame-header-of-5-bytes": (
        lambda: _SOI + b"\xff\xc0\x00\x07" + b"\x08\x00\x30\x00\x40" + b"\xff\xd9",
        "short frame header",
    ),
    "frame-header-of-no-component": (
        lambda: _SOI + _sof0(8, 48, 64, 0, components=b"") + b"\xff\xd9",
        "frame header without its components",
    ),
    "frame-header-missing-a-component": (
        lambda: _SOI + _sof0(8, 48, 64, 3, components=b"\x01\x22\x00\x02\x11\x01") + b"\xff\xd9",
        "frame header without its components",
    ),
    "sampling-5x1": (
        lambda: _SOI + _sof0(8, 48, 64, 1, components=b"\x01\x51\x00") + b"\xff\xd9",
        "sampling factors 5x1",
    ),
    "sampling-1x5": (
        lambda: _SOI + _sof0(8, 48, 64, 1, components=b"\x01\x15\x00") + b"\xff\xd9",
        "sampling factors 1x5",
    ),
    "a-scan-before-the-frame": (
        lambda: _SOI + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + b"\xff\xd9",
        "a scan before the frame header",
    ),
    "no-frame": (lambda: _SOI + b"\xff\xd9", "no frame header"),
}


@pytest.mark.parametrize("name", list(DAMAGED_JPEGS))
def test_a_damaged_jpeg_marker_stream_is_corrupt_and_says_where(name: str) -> None:
    """Every refusal of the layout reader says what was wrong: the job's callback carries
    the message, and support reads it."""
    make, message = DAMAGED_JPEGS[name]
    with pytest.raises(PipelineError) as caught:
        read_jpeg_layout(io.BytesIO(make()), max_scans=100)
    assert caught.value.code == ErrorCode.CORRUPT_IMAGE
    assert caught.value.message == f"damaged JPEG structure: {message}"


def test_sampling_factors_of_four_are_valid() -> None:
    """T.81 allows factors 1 to 4: a grey JPEG whose one component says 4x4 (a single
    component is decoded a block at a time whatever it says) decodes, and its layout
    keeps the factors as written."""
    data = bytearray(_grey_jpeg())
    assert data[100] == 0x11  # the component's sampling byte in SOF0
    data[100] = 0x44
    image = Image.open(io.BytesIO(bytes(data)))
    image.load()
    assert image.size == (64, 48)
    layout = read_jpeg_layout(io.BytesIO(bytes(data)), max_scans=100)
    assert (layout.width, layout.height, layout.sampling) == (64, 48, ((4, 4),))


def test_an_empty_segment_is_skipped() -> None:
    """A segment's length counts its own two bytes: an empty comment (FF FE 00 02) is a
    valid segment of nothing, skipped like any other."""
    photo = sample_media.jpeg_bytes(64, 48)
    data = photo[:2] + b"\xff\xfe\x00\x02" + photo[2:]
    assert Image.open(io.BytesIO(data)).size == (64, 48)
    layout = read_jpeg_layout(io.BytesIO(data), max_scans=100)
    assert (layout.width, layout.height, layout.scans) == (64, 48, 1)


def test_a_segment_over_32_kib_is_skipped_whole() -> None:
    """Segment lengths are unsigned 16-bit numbers: an APP segment of 40,000 bytes (an
    XMP packet, an ICC profile) is skipped to its end, not read as a negative length."""
    photo = sample_media.jpeg_bytes(64, 48)
    payload = b"http://ns.adobe.com/xap/1.0/\x00" + b" " * 39_970
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    data = photo[:2] + app1 + photo[2:]
    assert Image.open(io.BytesIO(data)).size == (64, 48)
    layout = read_jpeg_layout(io.BytesIO(data), max_scans=100)
    assert (layout.width, layout.height, layout.scans) == (64, 48, 1)


def test_a_sequential_jpeg_is_read_up_to_its_one_interleaved_scan() -> None:
    """A baseline JPEG whose first scan holds all three components has no other scan
    libjpeg would decode: the count stops there (one scan, within a limit of 1) and the
    rest of the file - here a second copy of that scan - is not read. The decoder refuses
    such a file by itself."""
    photo = sample_media.jpeg_bytes(64, 48)
    segments = list(hostile.jpeg_segments(photo))
    ((scan_start, scan_end),) = [(s, e) for marker, s, e in segments if marker == 0xDA]
    assert photo[scan_start + 4] == 3  # components in the scan
    eoi = len(photo) - 2
    data = photo[:eoi] + photo[scan_start:scan_end] + photo[eoi:]
    layout = read_jpeg_layout(io.BytesIO(data), max_scans=1)
    assert (layout.scans, layout.progressive, layout.multi_scan) == (1, False, False)
    with pytest.raises(OSError):
        Image.open(io.BytesIO(data)).load()


def test_scans_with_empty_headers_still_count() -> None:
    """A scan header of no bytes (length 2) names no component: it cannot be the one
    interleaved scan, so the scans after it are counted - and refused over the limit."""
    frame = _sof0(8, 48, 64, 1, components=b"\x01\x11\x00")
    data = _SOI + frame + (b"\xff\xda\x00\x02" + b"\x12\x34") * 2 + b"\xff\xd9"
    assert read_jpeg_layout(io.BytesIO(data), max_scans=2).scans == 2
    with pytest.raises(PipelineError) as caught:
        read_jpeg_layout(io.BytesIO(data), max_scans=1)
    assert caught.value.code == ErrorCode.TOO_MANY_SCANS
    assert caught.value.message == (
        "the JPEG has more than 1 scans (MEDIA_MAX_JPEG_SCANS); "
        "each scan is a pass over the whole image"
    )


def test_a_lossless_jpeg_is_told_from_a_baseline_one() -> None:
    """ffmpeg's ljpeg encoder writes a lossless (SOF3) JPEG: the layout says lossless (the
    thumbnails step keeps such files off libvips), and a baseline photo says not."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg is not installed")
    command = [ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi"]
    command += ["-i", "testsrc=size=64x48:rate=1", "-frames:v", "1", "-c:v", "ljpeg"]
    command += ["-pix_fmt", "bgr24", "-f", "mjpeg", "-"]
    data = subprocess.run(command, check=True, capture_output=True, timeout=60).stdout
    assert b"\xff\xc3" in data  # SOF3: lossless, Huffman-coded
    lossless = read_jpeg_layout(io.BytesIO(data), max_scans=100)
    assert (lossless.width, lossless.height) == (64, 48)
    assert (lossless.lossless, lossless.progressive, lossless.scans) == (True, False, 1)
    baseline = read_jpeg_layout(io.BytesIO(sample_media.jpeg_bytes(64, 48)), max_scans=100)
    assert baseline.lossless is False


# -- the budgets themselves ----------------------------------------------------------------


def test_the_limits_come_from_the_settings() -> None:
    """Each MEDIA_* setting sets its own limit (from the environment, as a worker reads
    them)."""
    config = PipelineConfig.from_env(
        {
            "MEDIA_MAX_IMAGE_PIXELS": "1000000",
            "MEDIA_DECODE_MEMORY_BYTES": "2000000",
            "MEDIA_DECODE_CPU_SECONDS": "3.5",
            "MEDIA_MAX_JPEG_SCANS": "4",
        }
    )
    assert DecodeLimits.from_config(config) == DecodeLimits(
        max_pixels=1_000_000, memory_bytes=2_000_000, cpu_seconds=3.5, max_jpeg_scans=4
    )


def test_cpu_charged_from_other_threads_adds_up() -> None:
    """libvips computes on its own thread; what it spent is charged to the photo, each
    charge on top of the last: 2 + 2 s is over a 3 s budget, and the message says so."""
    budget = CpuBudget(3.0)
    budget.charge(2.0)
    budget.check("rendering")
    budget.charge(2.0)
    with pytest.raises(PipelineError) as caught:
        budget.check("rendering")
    assert caught.value.code == ErrorCode.CPU_BUDGET_EXCEEDED
    assert caught.value.message == (
        "stopped after 4.0 s of CPU (rendering); the per-photo budget is 3 s "
        "(MEDIA_DECODE_CPU_SECONDS)"
    )


def test_a_photo_may_use_exactly_its_cpu_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget is a maximum, like the memory budget: with this thread's clock held
    still, a photo charged exactly 10 s of a 10 s budget goes on; a little more stops."""
    monkeypatch.setattr(time, "thread_time", lambda: 100.0)
    budget = CpuBudget(10.0)
    budget.charge(10.0)
    budget.check("rendering")
    budget.charge(0.5)
    with pytest.raises(PipelineError) as caught:
        budget.check("rendering")
    assert caught.value.message.startswith("stopped after 10.5 s of CPU (rendering)")


@pytest.mark.parametrize(
    ("frozen_clock", "stage"),
    [
        (False, "decoding"),  # Pillow's decode of the JPEG spends this thread's CPU
        (True, "rendering"),  # only libvips' CPU, charged after its render
    ],
)
def test_the_libvips_path_names_the_stage_that_spent_the_budget(
    monkeypatch: pytest.MonkeyPatch, frozen_clock: bool, stage: str
) -> None:
    """A JPEG on the libvips path: with no CPU budget at all, the decode (on this thread)
    is what overruns it; with this thread's clock held still, libvips' own CPU, charged
    once the render is back, is. The message names the stage."""
    data = sample_media.jpeg_bytes(640, 480)
    image = Image.open(io.BytesIO(data))
    jpeg = read_jpeg_layout(io.BytesIO(data), max_scans=100)
    assert thumbnails._on_vips(image, jpeg)
    if frozen_clock:
        monkeypatch.setattr(time, "thread_time", lambda: 100.0)

    with pytest.raises(PipelineError) as caught:
        thumbnails._render_vips(image, io.BytesIO(data), jpeg, CpuBudget(0.0))

    assert caught.value.code == ErrorCode.CPU_BUDGET_EXCEEDED
    assert re.fullmatch(
        rf"stopped after \d+\.\d s of CPU \({stage}\); the per-photo budget is 0 s "
        r"\(MEDIA_DECODE_CPU_SECONDS\)",
        caught.value.message,
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_a_pngs_exif_is_found_before_or_after_the_image_data() -> None:
    """The eXIf chunk's content (TIFF-structured, as written), wherever it is: PNG lets it
    come before the image data or after it; b"" when there is none."""
    exif = Image.Exif()
    exif[0x0112] = 6
    block = exif.tobytes().removeprefix(b"Exif\x00\x00")
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (90, 120, 150)).save(out, "PNG", exif=exif.tobytes())
    before = out.getvalue()
    assert before.index(b"eXIf") < before.index(b"IDAT")
    assert png_exif(before) == block

    plain = _png(Image.new("RGB", (8, 8), (90, 120, 150)))
    iend = plain.index(b"IEND") - 4
    after = plain[:iend] + _chunk(b"eXIf", block) + plain[iend:]
    assert png_exif(after) == block
    assert png_exif(plain) == b""
    # nothing is read past IEND, nor past a chunk that claims more than the file holds
    assert png_exif(plain + _chunk(b"eXIf", block)) == b""
    cut = plain[:iend] + struct.pack(">I", 10**6) + b"tEXt" + _chunk(b"eXIf", block)
    assert png_exif(cut) == b""
    # a length over 2**31 (the spec's maximum) is a jump past the end, never a step back
    huge = plain[:iend] + struct.pack(">I", 2**32 - 16) + b"tEXt" + _chunk(b"eXIf", block)
    assert png_exif(huge) == b""
    # a file cut inside a chunk header: no eXIf, and no error
    assert png_exif(plain[: iend + 3]) == b""


def test_a_truncated_png_on_the_pillow_path_is_refused_by_the_step() -> None:
    """The render itself, not only the loader: a grey PNG (rendered by Pillow) whose data
    stops before its last row is CORRUPT_IMAGE, not a photo with a black last row."""
    rows = (b"\x00" + bytes(range(10, 18))) * 99  # 99 of the 100 rows declared
    data = _grey_png(8, 100, zlib.compress(rows))
    with pytest.raises(PipelineError) as caught:
        thumbnails.render_derivatives(io.BytesIO(data), limits=DecodeLimits())
    assert caught.value.code == ErrorCode.CORRUPT_IMAGE
    assert caught.value.message == (
        "truncated PNG: the image data ends before the last of its 100 rows"
    )


def test_the_pillow_path_names_the_decoding_stage_that_spent_the_budget() -> None:
    """A grey PNG (Pillow's path) with no CPU budget at all: the decode overruns it, and the
    message says so."""
    data = _png(sample_media.photographic(64, 48).convert("L"))
    image = Image.open(io.BytesIO(data))
    with pytest.raises(PipelineError) as caught:
        thumbnails._render(image, io.BytesIO(data), DecodeLimits(), CpuBudget(0.0))
    assert caught.value.code == ErrorCode.CPU_BUDGET_EXCEEDED
    assert re.fullmatch(
        r"stopped after \d+\.\d s of CPU \(decoding\); the per-photo budget is 0 s "
        r"\(MEDIA_DECODE_CPU_SECONDS\)",
        caught.value.message,
    )
