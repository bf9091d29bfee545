"""TEMPORARY contender for bench.zip: the project's own ZIP format writer, as it was
before zipstream-ng took the format part, so the two can be measured side by side."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from media_jobs.pipeline.zipper import DEFLATE_LEVEL, ByteSink

STORED = 0
DEFLATED = 8
# general purpose flags: bit 3 = sizes and CRC in a data descriptor; bit 11 = UTF-8 name
FLAG_DATA_DESCRIPTOR = 0x0008
FLAG_UTF8 = 0x0800
VERSION_DEFAULT = 20  # 2.0: deflate, folders
VERSION_ZIP64 = 45  # 4.5: ZIP64
VERSION_MADE_BY = (3 << 8) | 63  # UNIX, APPNOTE 6.3
EXTERNAL_ATTRIBUTES = (0o100644 & 0xFFFF) << 16  # a regular file, rw-r--r--
# Above this, a size or offset goes into ZIP64 fields (see the module docstring).
ZIP64_LIMIT = (1 << 31) - 1
ZIP_FILECOUNT_LIMIT = 0xFFFF
MAX_U32 = 0xFFFFFFFF
MAX_U16 = 0xFFFF

SIG_LOCAL_HEADER = 0x04034B50
SIG_DATA_DESCRIPTOR = 0x08074B50
SIG_CENTRAL_HEADER = 0x02014B50
SIG_ZIP64_END = 0x06064B50
SIG_ZIP64_LOCATOR = 0x07064B50
SIG_END = 0x06054B50
EXTRA_ZIP64 = 0x0001
EXTRA_TIMESTAMP = 0x5455  # "UT": the modification time as a UTC unix time


@dataclass(frozen=True)
class ZipEntry:
    name: str
    method: int
    crc32: int
    compressed_size: int
    size: int
    header_offset: int
    modified: datetime
    zip64_local: bool  # the local header has a ZIP64 extra; the data descriptor is 8-byte


class ZipStreamWriter:
    """Writes a ZIP archive sequentially to a sink that can only append.

    Usage: ``add_entry()`` for each file, then ``close()`` for the central directory.
    Memory: the chunk being written plus one small record per entry.
    """

    def __init__(self, sink: ByteSink, *, force_zip64: bool = False) -> None:
        self._sink = sink
        self._force_zip64 = force_zip64
        self._offset = 0
        self._entries: list[ZipEntry] = []
        self._names: set[str] = set()
        self._closed = False

    @property
    def bytes_written(self) -> int:
        return self._offset

    @property
    def entries(self) -> list[ZipEntry]:
        return list(self._entries)

    @property
    def unzipped_size(self) -> int:
        return sum(entry.size for entry in self._entries)

    def _write(self, data: bytes) -> None:
        if data:
            self._sink.write(data)
            self._offset += len(data)

    def add_entry(
        self,
        name: str,
        chunks: Iterable[bytes],
        *,
        compress: bool,
        size_hint: int | None = None,
        modified: datetime | None = None,
    ) -> ZipEntry:
        """Stream one file into the archive.

        ``size_hint`` (the expected uncompressed size) decides whether the local header
        announces ZIP64 sizes; without it ZIP64 is assumed, which is always safe.
        """
        if self._closed:
            raise ValueError("the archive is closed")
        _check_entry_name(name)
        if name in self._names:
            raise ValueError(f"duplicate entry name {name!r}")
        modified = _clamp_dos_range(modified or datetime.now(UTC))
        method = DEFLATED if compress else STORED
        zip64_local = (
            self._force_zip64 or size_hint is None or _worst_case_size(size_hint) > ZIP64_LIMIT
        )
        header_offset = self._offset
        encoded_name = name.encode("utf-8")
        dos_time, dos_date = _dos_datetime(modified)
        extra = _timestamp_extra(modified)
        if zip64_local:
            # sizes unknown yet: zero here, the real ones follow in the data descriptor
            extra += struct.pack("<HHQQ", EXTRA_ZIP64, 16, 0, 0)
        self._write(
            struct.pack(
                "<IHHHHHIIIHH",
                SIG_LOCAL_HEADER,
                VERSION_ZIP64 if zip64_local else VERSION_DEFAULT,
                FLAG_DATA_DESCRIPTOR | FLAG_UTF8,
                method,
                dos_time,
                dos_date,
                0,
                MAX_U32 if zip64_local else 0,
                MAX_U32 if zip64_local else 0,
                len(encoded_name),
                len(extra),
            )
            + encoded_name
            + extra
        )

        crc = 0
        size = 0
        data_start = self._offset
        compressor = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -15) if compress else None
        for chunk in chunks:
            if not chunk:
                continue
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
            self._write(compressor.compress(chunk) if compressor else chunk)
        if compressor is not None:
            self._write(compressor.flush())
        compressed_size = self._offset - data_start

        if not zip64_local and max(size, compressed_size) > MAX_U32:
            # The local header promised 32-bit sizes; the archive cannot be made correct.
            raise ValueError(
                f"{name!r} grew to {size} bytes, beyond its announced size of {size_hint}"
            )
        if zip64_local:
            descriptor = struct.pack("<IIQQ", SIG_DATA_DESCRIPTOR, crc, compressed_size, size)
        else:
            descriptor = struct.pack("<IIII", SIG_DATA_DESCRIPTOR, crc, compressed_size, size)
        self._write(descriptor)

        entry = ZipEntry(
            name=name,
            method=method,
            crc32=crc,
            compressed_size=compressed_size,
            size=size,
            header_offset=header_offset,
            modified=modified,
            zip64_local=zip64_local,
        )
        self._entries.append(entry)
        self._names.add(name)
        return entry

    def close(self) -> int:
        """Write the central directory and the end records; return the archive size."""
        if self._closed:
            return self._offset
        self._closed = True
        directory_offset = self._offset
        for entry in self._entries:
            self._write(self._central_header(entry))
        directory_size = self._offset - directory_offset
        count = len(self._entries)
        needs_zip64_end = (
            self._force_zip64
            or count > ZIP_FILECOUNT_LIMIT
            or directory_offset > ZIP64_LIMIT
            or directory_size > ZIP64_LIMIT
        )
        if needs_zip64_end:
            zip64_end_offset = self._offset
            self._write(
                struct.pack(
                    "<IQHHIIQQQQ",
                    SIG_ZIP64_END,
                    44,  # size of the rest of this record
                    VERSION_MADE_BY,
                    VERSION_ZIP64,
                    0,
                    0,
                    count,
                    count,
                    directory_size,
                    directory_offset,
                )
            )
            self._write(struct.pack("<IIQI", SIG_ZIP64_LOCATOR, 0, zip64_end_offset, 1))
        if self._force_zip64:
            # Every field points to the ZIP64 record: readers must take the ZIP64 path.
            count16, size32, offset32 = MAX_U16, MAX_U32, MAX_U32
        else:
            count16 = MAX_U16 if count > ZIP_FILECOUNT_LIMIT else count
            size32 = MAX_U32 if directory_size > ZIP64_LIMIT else directory_size
            offset32 = MAX_U32 if directory_offset > ZIP64_LIMIT else directory_offset
        self._write(struct.pack("<IHHHHIIH", SIG_END, 0, 0, count16, count16, size32, offset32, 0))
        return self._offset

    def _central_header(self, entry: ZipEntry) -> bytes:
        force = self._force_zip64
        # ZIP64 extra: only the overflowing fields, in this order (APPNOTE 4.5.3)
        zip64_values: list[int] = []
        size32 = entry.size
        compressed32 = entry.compressed_size
        offset32 = entry.header_offset
        if force or entry.size > ZIP64_LIMIT:
            zip64_values.append(entry.size)
            size32 = MAX_U32
        if force or entry.compressed_size > ZIP64_LIMIT:
            zip64_values.append(entry.compressed_size)
            compressed32 = MAX_U32
        if force or entry.header_offset > ZIP64_LIMIT:
            zip64_values.append(entry.header_offset)
            offset32 = MAX_U32
        extra = _timestamp_extra(entry.modified)
        if zip64_values:
            extra += struct.pack(
                f"<HH{len(zip64_values)}Q", EXTRA_ZIP64, 8 * len(zip64_values), *zip64_values
            )
        uses_zip64 = bool(zip64_values) or entry.zip64_local
        encoded_name = entry.name.encode("utf-8")
        dos_time, dos_date = _dos_datetime(entry.modified)
        return (
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                SIG_CENTRAL_HEADER,
                VERSION_MADE_BY,
                VERSION_ZIP64 if uses_zip64 else VERSION_DEFAULT,
                FLAG_DATA_DESCRIPTOR | FLAG_UTF8,
                entry.method,
                dos_time,
                dos_date,
                entry.crc32,
                compressed32,
                size32,
                len(encoded_name),
                len(extra),
                0,  # comment length
                0,  # disk number start
                0,  # internal attributes
                EXTERNAL_ATTRIBUTES,
                offset32,
            )
            + encoded_name
            + extra
        )


def _check_entry_name(name: str) -> None:
    parts = name.split("/")
    if not name or name.startswith("/") or "\\" in name or ".." in name or "" in parts:
        raise ValueError(f"unsafe ZIP entry name {name!r}")
    if len(name.encode("utf-8")) > MAX_U16:
        raise ValueError("ZIP entry name too long")


def _worst_case_size(size: int) -> int:
    # deflate of incompressible data grows by ~5 bytes per 16 KiB block, plus a little
    return size + size // 1000 + 1024


def _clamp_dos_range(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    low = datetime(1980, 1, 1, tzinfo=UTC)
    high = datetime(2107, 12, 31, 23, 59, 58, tzinfo=UTC)
    return min(max(moment, low), high)


def _dos_datetime(moment: datetime) -> tuple[int, int]:
    """DOS time and date fields (UTC: ZIP has no time zone; the UT extra says it exactly)."""
    dos_time = (moment.hour << 11) | (moment.minute << 5) | (moment.second // 2)
    dos_date = ((moment.year - 1980) << 9) | (moment.month << 5) | moment.day
    return dos_time, dos_date


def _timestamp_extra(moment: datetime) -> bytes:
    return struct.pack("<HHBI", EXTRA_TIMESTAMP, 5, 1, int(moment.timestamp()) & MAX_U32)
