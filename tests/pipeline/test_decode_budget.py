"""The header checks of decode_budget on real files: they must refuse what they are for and
never a valid photo."""

from __future__ import annotations

import io
import struct
import time
import zlib

import pytest
from PIL import Image

from media_jobs import sample_media
from media_jobs.pipeline.decode_budget import (
    BudgetedReader,
    CpuBudget,
    DecodeLimits,
    MemoryEstimate,
    check_memory,
    check_png_complete,
    estimate_peak_bytes,
    load_png_verified,
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
