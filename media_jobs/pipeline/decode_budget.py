"""What decoding one photo may cost: memory, CPU time and progressive JPEG scans.

A photo's header says how much decoding it will take, long before any pixel exists: its
dimensions, bands and bit depth, and for a JPEG its sampling, whether it is progressive and
how many scans it has. So the thumbnails step asks first and decodes only what fits:

1. ``width x height`` over ``max_pixels``: TOO_MANY_PIXELS.
2. A JPEG with more scans than ``max_jpeg_scans`` (counted from its markers, without
   decoding): TOO_MANY_SCANS. Each scan of a progressive JPEG is a pass over every block of
   the image, and a scan can be 16 bytes: 30,000 of them in 0.5 MB cost 78 s of CPU.
3. The estimated peak memory of decoding and reducing the photo (``estimate_peak_bytes``)
   over ``memory_bytes``: MEMORY_BUDGET_EXCEEDED. The estimate is an upper bound per format:
   a JPEG is decoded at the DCT scale the ``large`` size needs (``Image.draft``), plus the
   whole-image coefficient buffer a progressive or multi-scan JPEG needs at full size; PNG,
   GIF, TIFF, WebP and HEIF/AVIF are decoded at full size, plus what their decoders hold
   beside the image (a TIFF strip, WebP's canvases, libheif's planes).
4. While decoding, the CPU time of the decoding thread is checked every time the decoder asks
   for input (``BudgetedReader``: JPEG, PNG and GIF decode incrementally, so a decode is
   interrupted at its next read) and after every stage (decode, reduce, each derivative):
   over ``cpu_seconds`` it is CPU_BUDGET_EXCEEDED. WebP, TIFF and HEIF/AVIF decoders take the
   whole file in one call and are checked when it returns; the memory budget bounds their
   pixels, which bounds their time (docs/workers.md lists the measured worst cases).

The default memory budget keeps a Celery worker's peak RSS under 512 MiB for any admitted
photo, whatever its format (the tests measure it on the worst admitted inputs).

Long on purpose: one estimate per image format (JPEG layout, PNG completeness, TIFF
strips, WebP, HEIF); each reads only its own header, and the budget check needs them all.
"""

from __future__ import annotations

import math
import os
import re
import struct
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from PIL import Image

from media_jobs.pipeline.errors import ErrorCode, PipelineError

if TYPE_CHECKING:
    from media_jobs.pipeline.config import PipelineConfig

MIB = 1024 * 1024
DEFAULT_MEMORY_BYTES = 320 * MIB
DEFAULT_CPU_SECONDS = 10.0
DEFAULT_MAX_JPEG_SCANS = 100
DEFAULT_MAX_PIXELS = 180_000_000
# libjpeg's limit on each side (JPEG_MAX_DIMENSION in its jmorecfg.h, below the format's
# 65535): a derivative taller than this fails in the encoder (Pillow's and libvips').
JPEG_MAX_DIMENSION = 65_500


@dataclass(frozen=True)
class DecodeLimits:
    """The budgets of one photo (settings MEDIA_MAX_IMAGE_PIXELS, MEDIA_DECODE_MEMORY_BYTES,
    MEDIA_DECODE_CPU_SECONDS, MEDIA_MAX_JPEG_SCANS)."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    memory_bytes: int = DEFAULT_MEMORY_BYTES
    cpu_seconds: float = DEFAULT_CPU_SECONDS
    max_jpeg_scans: int = DEFAULT_MAX_JPEG_SCANS

    @classmethod
    def from_config(cls, config: PipelineConfig) -> DecodeLimits:
        return cls(
            max_pixels=config.max_image_pixels,
            memory_bytes=config.decode_memory_bytes,
            cpu_seconds=config.decode_cpu_seconds,
            max_jpeg_scans=config.max_jpeg_scans,
        )


# -- CPU ---------------------------------------------------------------------------------


class CpuBudget:
    """CPU seconds of the calling thread since it was created (the step's I/O threads do not
    count); ``check`` raises CPU_BUDGET_EXCEEDED once they pass the budget."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._start = time.thread_time()
        self._charged = 0.0

    @property
    def used(self) -> float:
        return time.thread_time() - self._start + self._charged

    def charge(self, seconds: float) -> None:
        """Count CPU time spent on other threads for this photo (libvips computes on its own
        worker thread)."""
        self._charged += seconds

    def check(self, stage: str) -> None:
        used = self.used
        if used > self.seconds:
            raise PipelineError(
                ErrorCode.CPU_BUDGET_EXCEEDED,
                f"stopped after {used:.1f} s of CPU ({stage}); the per-photo budget is "
                f"{self.seconds:g} s (MEDIA_DECODE_CPU_SECONDS)",
            )


class BudgetedReader:
    """A read-only view of a seekable stream that checks a CPU budget on every read, so an
    incremental decoder (which reads between chunks of work) stops at its next read."""

    def __init__(self, stream: IO[bytes], budget: CpuBudget) -> None:
        self._stream = stream
        self._budget = budget

    def read(self, size: int = -1) -> bytes:
        self._budget.check("decoding")
        return self._stream.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


# -- JPEG structure ----------------------------------------------------------------------

_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # not DHT, JPG, DAC
_PROGRESSIVE_SOF = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_LOSSLESS_SOF = frozenset({0xC3, 0xC7, 0xCB, 0xCF})
_SOS, _EOI = 0xDA, 0xD9
# In entropy-coded data a 0xFF is followed by 0x00 (stuffing) or a restart marker; anything
# else is the next marker (after optional 0xFF fill bytes).
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_SCAN_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class JpegLayout:
    """What libjpeg will allocate for a JPEG, read from its markers."""

    width: int
    height: int
    sampling: tuple[tuple[int, int], ...]  # (horizontal, vertical) factor per component
    progressive: bool
    lossless: bool
    scans: int  # every scan counted when there can be several, else 1

    @property
    def multi_scan(self) -> bool:
        """Progressive, or sequential with one scan per component: libjpeg then keeps every
        DCT coefficient of the image until the last scan."""
        return self.progressive or self.scans > 1

    def coefficient_bytes(self) -> int:
        """Size of the whole-image coefficient buffer (64 two-byte coefficients per block,
        blocks rounded up to whole MCUs) that a multi-scan JPEG needs, whatever the scale."""
        if not self.multi_scan:
            return 0
        h_max = max(h for h, _ in self.sampling)
        v_max = max(v for _, v in self.sampling)
        total = 0
        for h, v in self.sampling:
            blocks_wide = math.ceil(math.ceil(self.width * h / h_max) / 8)
            blocks_high = math.ceil(math.ceil(self.height * v / v_max) / 8)
            total += _round_up(blocks_wide, h) * _round_up(blocks_high, v) * 128
        return total


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _corrupt(message: str) -> PipelineError:
    return PipelineError(ErrorCode.CORRUPT_IMAGE, f"damaged JPEG structure: {message}")


def read_jpeg_layout(stream: IO[bytes], *, max_scans: int) -> JpegLayout:
    """The layout of the JPEG in ``stream`` (position restored afterwards).

    Reads marker segments up to the first scan. A single-scan sequential JPEG ends there
    (libjpeg refuses a second scan in it); otherwise every scan is counted, skipping the
    entropy-coded data between them, and more than ``max_scans`` is TOO_MANY_SCANS - said
    as soon as the count passes the limit, without reading the rest.
    """
    position = stream.tell()
    try:
        return _read_layout(stream, max_scans)
    finally:
        stream.seek(position)


def _read_exact(stream: IO[bytes], size: int, what: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise _corrupt(f"the file ends inside {what}")
    return data


def _next_marker(stream: IO[bytes]) -> int:
    """The next marker code at the stream position (fill bytes skipped)."""
    byte = _read_exact(stream, 1, "a marker")
    if byte != b"\xff":
        raise _corrupt(f"expected a marker at offset {stream.tell() - 1}")
    while byte == b"\xff":
        byte = _read_exact(stream, 1, "a marker")
    return byte[0]


def _read_layout(stream: IO[bytes], max_scans: int) -> JpegLayout:
    stream.seek(0)
    if stream.read(2) != b"\xff\xd8":
        raise _corrupt("no start-of-image marker")
    frame: tuple[int, int, int, tuple[tuple[int, int], ...]] | None = None
    scans = 0
    while True:
        marker = _next_marker(stream)
        if marker in _STANDALONE_MARKERS:
            continue
        if marker == _EOI:
            break
        (length,) = struct.unpack(">H", _read_exact(stream, 2, "a segment length"))
        if length < 2:
            raise _corrupt(f"segment length {length}")
        if marker in _SOF_MARKERS:
            segment = _read_exact(stream, length - 2, "the frame header")
            frame = _parse_frame(marker, segment)
        elif marker == _SOS:
            segment = _read_exact(stream, length - 2, "a scan header")
            if frame is None:
                raise _corrupt("a scan before the frame header")
            scans += 1
            if scans > max_scans:
                raise PipelineError(
                    ErrorCode.TOO_MANY_SCANS,
                    f"the JPEG has more than {max_scans} scans (MEDIA_MAX_JPEG_SCANS); "
                    "each scan is a pass over the whole image",
                )
            components_in_scan = segment[0] if segment else 0
            marker_code, _, _, sampling = frame
            if scans == 1 and marker_code not in _PROGRESSIVE_SOF:
                if components_in_scan >= len(sampling):
                    break  # one interleaved scan: libjpeg accepts no other
            _skip_entropy_coded_data(stream)
        else:
            stream.seek(length - 2, 1)
    if frame is None:
        raise _corrupt("no frame header")
    marker_code, width, height, sampling = frame
    return JpegLayout(
        width=width,
        height=height,
        sampling=sampling,
        progressive=marker_code in _PROGRESSIVE_SOF,
        lossless=marker_code in _LOSSLESS_SOF,
        scans=max(scans, 1),
    )


def _parse_frame(marker: int, segment: bytes) -> tuple[int, int, int, tuple[tuple[int, int], ...]]:
    if len(segment) < 6:
        raise _corrupt("short frame header")
    _, height, width, count = struct.unpack(">BHHB", segment[:6])
    if len(segment) < 6 + 3 * count or count == 0:
        raise _corrupt("frame header without its components")
    sampling = []
    for index in range(count):
        factors = segment[6 + 3 * index + 1]
        horizontal, vertical = factors >> 4, factors & 0x0F
        if not (1 <= horizontal <= 4 and 1 <= vertical <= 4):
            raise _corrupt(f"sampling factors {horizontal}x{vertical}")
        sampling.append((horizontal, vertical))
    return marker, width, height, tuple(sampling)


def _skip_entropy_coded_data(stream: IO[bytes]) -> None:
    """Move the stream to the 0xFF of the next marker after a scan's data (or to the end)."""
    carry = b""
    while True:
        start = stream.tell() - len(carry)
        chunk = stream.read(_SCAN_CHUNK)
        if not chunk:
            return
        data = carry + chunk
        found = _NEXT_MARKER.search(data)
        if found is not None:
            stream.seek(start + found.start())
            return
        carry = data[-1:] if data.endswith(b"\xff") else b""


# -- memory --------------------------------------------------------------------------------

# Bytes per pixel of Pillow's image memory by mode (everything else is 4).
_PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
# Pixels Pillow's strip conversions and our row reductions hold at once, beside the image.
STRIP_BYTES = 8 * MIB
# What WebP's decoder holds beside the image, per pixel (measured ~10): libwebp's two RGBA
# canvases and Pillow's bytes copy, kept until the image is closed.
_WEBP_DECODER_BYTES_PER_PIXEL = 12.0
# libheif's planes per pixel by chroma subsampling (luma 1 + two chroma planes).
_HEIF_PLANES = {420: 1.5, 422: 2.0, 444: 3.0}
# Interpreter and library working memory of one decode that does not scale with pixels
# (libjpeg's row buffers, zlib's window, lcms transforms, the encoded derivatives).
FIXED_OVERHEAD_BYTES = 24 * MIB


def pixel_bytes(mode: str) -> int:
    return _PIXEL_BYTES.get(mode, 4)


@dataclass(frozen=True)
class MemoryEstimate:
    decoded: int  # the decoded image (at the DCT scale for a JPEG)
    decoder: int  # what the decoder holds beside it while decoding
    working: int  # reductions, conversions and the derivatives, after decoding
    decoder_persists: bool = False  # the decoder's memory lives on while reducing (WebP)
    fixed: int = FIXED_OVERHEAD_BYTES

    @property
    def total(self) -> int:
        """libjpeg, libtiff and libheif free their buffers when the decode ends, before the
        reduction starts: their peak is the larger of the two phases, not the sum."""
        if self.decoder_persists:
            return self.decoded + self.decoder + self.working + self.fixed
        return self.decoded + max(self.decoder, self.working) + self.fixed


def estimate_peak_bytes(
    *,
    image_format: str,
    mode: str,
    decoded_size: tuple[int, int],
    full_size: tuple[int, int],
    file_size: int,
    working_bytes: int,
    jpeg: JpegLayout | None = None,
    info: Mapping[str | tuple[int, int], Any] | None = None,
    tiff_tags: Mapping[int, Any] | None = None,
) -> MemoryEstimate:
    """An upper bound of the memory one photo takes while it is decoded and reduced.

    ``decoded_size`` is what the decoder produces (smaller than ``full_size`` for a drafted
    JPEG); ``working_bytes`` is what reducing it to the derivatives holds at most (the
    thumbnails step computes it from its own pipeline); ``info`` and ``tiff_tags`` are what
    the header said (HEIF bit depth and chroma; a TIFF's tags by number).
    """
    width, height = decoded_size
    full_pixels = full_size[0] * full_size[1]
    decoded = width * height * pixel_bytes(mode)
    decoder = 0
    if jpeg is not None:
        decoder = jpeg.coefficient_bytes()
    elif image_format == "TIFF":
        decoder = _tiff_strip_bytes(tiff_tags or {}, full_size) + file_size
    elif image_format == "WEBP":
        decoder = int(full_pixels * _WEBP_DECODER_BYTES_PER_PIXEL) + file_size
    elif image_format in ("HEIF", "AVIF"):
        decoder = int(full_pixels * _heif_bytes_per_pixel(info or {}, mode)) + file_size
    return MemoryEstimate(
        decoded=decoded,
        decoder=decoder,
        working=working_bytes,
        decoder_persists=image_format == "WEBP",
    )


def _heif_bytes_per_pixel(info: Mapping[str | tuple[int, int], Any], mode: str) -> float:
    """libheif's decoded planes (two bytes a sample above 8 bits), then the interleaved
    8-bit copy pillow_heif hands to Pillow."""
    depth = info.get("bit_depth")
    sample_bytes = 2 if not isinstance(depth, int) or depth > 8 else 1
    planes = _HEIF_PLANES.get(info.get("chroma") or 0, 3.0)  # unknown: assume 4:4:4
    if "A" in mode:
        planes += 1
    return sample_bytes * planes + len(mode)


def _tiff_strip_bytes(tags: Mapping[int, Any], full_size: tuple[int, int]) -> int:
    """The largest strip or tile libtiff decodes into a buffer of its own: its raw samples,
    or 4 bytes per pixel when Pillow reads it as RGBA (subsampled or planar TIFFs)."""
    width, height = full_size
    tile_width, tile_length = tags.get(322), tags.get(323)
    if isinstance(tile_width, int) and isinstance(tile_length, int):
        rows, columns = min(tile_length, height), min(tile_width, width)
    else:
        rows_per_strip = tags.get(278)
        rows = min(rows_per_strip, height) if isinstance(rows_per_strip, int) else height
        columns = width
    samples_per_pixel = tags.get(277)
    samples = samples_per_pixel if isinstance(samples_per_pixel, int) else 1
    bits = tags.get(258)
    bits_per_sample = max(bits) if isinstance(bits, tuple) and bits else 8
    if isinstance(bits, int):
        bits_per_sample = bits
    sample_bytes = samples * math.ceil(bits_per_sample / 8)
    return max(rows, 1) * max(columns, 1) * max(4, sample_bytes)


def check_memory(estimate: MemoryEstimate, limits: DecodeLimits, description: str) -> None:
    if estimate.total > limits.memory_bytes:
        raise PipelineError(
            ErrorCode.MEMORY_BUDGET_EXCEEDED,
            f"decoding this {description} would take about {_mib(estimate.total)} MiB "
            f"({_mib(estimate.decoded)} decoded, {_mib(estimate.decoder)} in the decoder, "
            f"{_mib(estimate.working)} to reduce it); the per-photo budget is "
            f"{_mib(limits.memory_bytes)} MiB (MEDIA_DECODE_MEMORY_BYTES)",
        )


def _mib(value: int) -> int:
    return math.ceil(value / MIB)


# -- PNG completeness ----------------------------------------------------------------------

_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Adam7's seven passes: (x offset, y offset, x step, y step)
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
_INFLATE_CHUNK = 1024 * 1024


def png_expected_bytes(
    width: int, height: int, bit_depth: int, colour_type: int, interlaced: bool
) -> int:
    """Bytes of filtered scanlines (one filter byte per row) the IDAT stream must inflate to."""
    bits_per_pixel = _PNG_CHANNELS.get(colour_type, 4) * bit_depth
    if not interlaced:
        return height * (1 + (width * bits_per_pixel + 7) // 8)
    total = 0
    for x0, y0, dx, dy in _ADAM7:
        columns = max(0, (width - x0 + dx - 1) // dx)
        rows = max(0, (height - y0 + dy - 1) // dy)
        if columns and rows:
            total += rows * (1 + (columns * bits_per_pixel + 7) // 8)
    return total


def png_exif(data: bytes) -> bytes:
    """The content of a PNG's eXIf chunk (a TIFF-structured EXIF block), b"" without one.

    The chunk may come before or after the image data (its ordering is free, like tIME's):
    the chunk headers are walked to IEND, skipping over the data without reading it."""
    at = 8
    while at + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, at)
        if kind == b"eXIf":
            return bytes(data[at + 8 : at + 8 + length])
        if kind == b"IEND":
            break
        at += 12 + length
    return b""


def check_png_complete(
    stream: IO[bytes], budget: CpuBudget | None = None, *, stop_after: int | None = None
) -> bool:
    """CORRUPT_IMAGE unless the image data inflates to exactly the rows the header declares.

    Pillow's PNG decoder stops silently when the zlib stream ends early and leaves the rest
    of the image black (a 181-byte file can claim 13000 x 13000). Inflating once more,
    discarding the output, costs a fraction of decoding and no memory. ``stop_after`` makes
    it a cheap probe: it returns once that many bytes came out (the data may still be
    complete), so a short stream is told apart from a bomb before the memory check. True
    when the whole stream was checked, False when the probe stopped early.
    """
    position = stream.tell()
    try:
        stream.seek(8)
        header = stream.read(25)
        if len(header) < 25 or header[4:8] != b"IHDR":
            raise PipelineError(ErrorCode.CORRUPT_IMAGE, "PNG without an IHDR chunk")
        width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header[8:21])
        expected = png_expected_bytes(width, height, depth, colour_type, interlace == 1)
        inflater = zlib.decompressobj()
        produced = 0
        stream.seek(8)
        while True:
            chunk_header = stream.read(8)
            if len(chunk_header) < 8:
                break
            length, kind = struct.unpack(">I4s", chunk_header)
            if kind == b"IEND":
                break
            if kind != b"IDAT":
                stream.seek(length + 4, 1)
                continue
            remaining = length
            while remaining > 0:
                data = stream.read(min(remaining, _INFLATE_CHUNK))
                if not data:
                    break
                remaining -= len(data)
                wanted = min(expected, stop_after or expected)
                produced += _inflate_count(inflater, data, wanted - produced)
                if budget is not None:
                    budget.check("checking the PNG data")
                if stop_after is not None and stop_after <= produced < expected:
                    return False
            stream.seek(4, 1)  # CRC
            if inflater.eof:
                break
    except zlib.error as exc:
        raise PipelineError(ErrorCode.CORRUPT_IMAGE, f"damaged PNG image data: {exc}") from exc
    finally:
        stream.seek(position)
    if produced < expected:
        rows = _rows_in(produced, width, depth, colour_type)
        raise PipelineError(
            ErrorCode.CORRUPT_IMAGE,
            f"truncated PNG: the image data ends after {produced} of {expected} bytes "
            f"(about {rows} of {height} rows)",
        )
    return True


# Pixels of a PNG's last row marked before decoding (at least 64 bits of randomness).
_MARKED_PIXELS = 64


def load_png_verified(image: Any, stream: IO[bytes], budget: CpuBudget) -> None:
    """Decode a PNG, CORRUPT_IMAGE when its image data ends before its last row.

    Pillow's decoder writes rows in order and stops silently when the zlib stream ends, so
    the first pixels of the last row are set to random values before decoding: if they are
    still there afterwards, the data never reached that row (a complete row matches 64
    random bits with odds of 2**-64). No second inflate. Interlaced PNGs (whose last row
    is written early) and rows too narrow to hold 64 bits are checked by inflating the
    stream once more instead (``check_png_complete``).
    """

    width, height = image.size
    count = min(width, _MARKED_PIXELS)
    box = (0, height - 1, count, height)
    try:
        marker_bytes = len(Image.new(image.mode, (count, 1)).tobytes())
        if image.info.get("interlace") or marker_bytes * 8 < _MARKED_PIXELS:
            raise ValueError("no room for a marker in the last row")
        marker = Image.frombytes(image.mode, (count, 1), os.urandom(marker_bytes))
        image.load_prepare()  # the image memory, which the decoder fills
        image.im.paste(marker.im, box)
    except (ValueError, AttributeError):
        check_png_complete(stream, budget)
        image.load()
        return
    image.load()
    if image.crop(box).tobytes() == marker.tobytes():
        raise PipelineError(
            ErrorCode.CORRUPT_IMAGE,
            f"truncated PNG: the image data ends before the last of its {height} rows",
        )


def _inflate_count(inflater: Any, data: bytes, wanted: int) -> int:
    """Inflate ``data``, keeping none of it, and return how many bytes came out (at most
    ``wanted`` plus one chunk: extra data after the image is not our concern)."""
    produced = 0
    while produced <= wanted and not inflater.eof:
        out = inflater.decompress(data, _INFLATE_CHUNK)
        produced += len(out)
        data = inflater.unconsumed_tail
        if not data and len(out) < _INFLATE_CHUNK:
            break  # all input used and no output pending
    return produced


def _rows_in(produced: int, width: int, depth: int, colour_type: int) -> int:
    row = 1 + (width * _PNG_CHANNELS.get(colour_type, 4) * depth + 7) // 8
    return produced // row
