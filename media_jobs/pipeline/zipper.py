"""The CreateZipBundle step (docs/contract.md §5): the listing's media as one streamed ZIP.

The archive is written front to back into a multipart upload, one object after the other,
each read in chunks: memory stays bounded by a few queued chunks plus one upload part,
whatever the listing's size (the Go system built the whole archive in memory). Reading,
zipping and uploading run in three threads joined by small queues, and the next objects are
opened (their GET sent) before their turn, so the step is as fast as its slowest direction
rather than the sum of its request latencies. Sizes and CRCs are only
known after an entry's data, so every entry has a data descriptor (flag bit 3); the central
directory at the end carries the final values, which is what readers use.

ZIP64 structures are written where a size, an offset or the entry count needs them. The
threshold is 2 GiB - 1 rather than 4 GiB - 1, like CPython's zipfile, because some readers
treat the 32-bit fields as signed. ``force_zip64`` writes them for any archive, which is how
the tests check ZIP64 against real extractors without writing 4 GiB.

Already-compressed media (by extension) are STORED; everything else is DEFLATED, unless the
first 256 KiB do not shrink by 3% (a PDF of scans, a camera RAW): those are STORED too, as
deflating incompressible data is slow (~55 MB/s) and saves nothing.

The object only appears when the upload completes; on any failure the upload is aborted, so
the previous ZIP of the listing stays in place, untouched.
"""

from __future__ import annotations

import itertools
import logging
import posixpath
import queue
import struct
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO, Protocol

from media_jobs.pipeline.config import PipelineConfig
from media_jobs.pipeline.errors import ErrorCode, PipelineError
from media_jobs.pipeline.keys import unique_entry_names, zip_entry_name, zip_key
from media_jobs.pipeline.storage import (
    InvalidKey,
    MultipartWriter,
    ObjectInfo,
    ObjectNotFound,
    Storage,
)

logger = logging.getLogger("toq.pipeline.zipper")

CHUNK_SIZE = 1024 * 1024
# Hand-off to the upload thread: blocks of ~1 MiB, at most 8 waiting (bounded memory).
UPLOAD_BLOCK_BYTES = 1024 * 1024
UPLOAD_MAX_PENDING_BLOCKS = 8
# Chunks read ahead of the zipping (each up to CHUNK_SIZE).
READ_AHEAD_CHUNKS = 8
# Objects opened (GET sent) before the read reaches them: those starting within this many
# bytes of the read position, at most this many at a time.
OPEN_AHEAD_BYTES = 8 * 1024 * 1024
OPEN_AHEAD_OBJECTS = 4
# Concurrent HEAD requests when checking the assets before zipping.
HEAD_CONCURRENCY = 8
DEFLATE_LEVEL = 6
# Other types are deflated unless a sample of their start does not shrink by this much.
COMPRESSIBILITY_SAMPLE_BYTES = 256 * 1024
MIN_DEFLATE_SAVING = 0.03
ZIP_CONTENT_TYPE = "application/zip"
# Already-compressed media: deflating them costs CPU and gains nothing.
STORED_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".heic",
        ".heif",
        ".mp4",
        ".mov",
        ".png",
        ".webp",
        ".zip",
        ".gif",
        ".avif",
        ".m4v",
    }
)

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


class ByteSink(Protocol):
    """Where the archive goes: a ``MultipartWriter``, a file, a BytesIO."""

    def write(self, data: bytes) -> int: ...


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


def is_stored(name: str) -> bool:
    """True for already-compressed media, which are STORED instead of DEFLATED."""
    return posixpath.splitext(name)[1].lower() in STORED_EXTENSIONS


def worth_deflating(sample: bytes) -> bool:
    """False when the start of a file is incompressible (a scanned PDF, a camera RAW).

    zlib crawls through incompressible data (~55 MB/s on one core, whatever the level) and
    saves nothing, so such a file is STORED even though its type is not on the list.
    """
    sample = sample[:COMPRESSIBILITY_SAMPLE_BYTES]
    if len(sample) < 4096:
        return True  # too small to judge, and too small to matter
    deflated = zlib.compress(sample, 1, wbits=-15)
    return len(deflated) <= len(sample) * (1 - MIN_DEFLATE_SAVING)


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


class _UploadPipeline:
    """A sink that feeds the upload from a worker thread.

    Reading (and deflating) the next bytes then overlaps the upload of the previous part,
    instead of waiting for it: the step runs close to the speed of the slower of the two
    directions, not their sum. Memory stays bounded: at most ``max_pending`` blocks wait,
    each about ``block_size`` (the read chunks) or smaller.
    An upload error is raised on the next ``write()`` or on ``finish()``.
    """

    def __init__(
        self,
        upload: MultipartWriter,
        *,
        block_size: int = UPLOAD_BLOCK_BYTES,
        max_pending: int = UPLOAD_MAX_PENDING_BLOCKS,
    ) -> None:
        self._upload = upload
        self._block_size = block_size
        self._pending = bytearray()
        self._blocks: queue.Queue[bytes | None] = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="zip-upload", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while (block := self._blocks.get()) is not None:
            if self._error is None:  # after a failure, keep draining so no writer blocks
                try:
                    self._upload.write(block)
                except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                    self._error = exc

    def _raise_upload_error(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, data: bytes) -> int:
        self._raise_upload_error()
        if len(data) >= self._block_size:
            # a whole chunk of an object: handed over as it is, never copied
            self._hand_over_pending()
            self._blocks.put(bytes(data))
        else:
            # headers, descriptors, deflate output: gathered into blocks
            self._pending += data
            if len(self._pending) >= self._block_size:
                self._hand_over_pending()
        return len(data)

    def _hand_over_pending(self) -> None:
        if self._pending:
            self._blocks.put(bytes(self._pending))
            self._pending = bytearray()

    def finish(self) -> None:
        """Hand over what is left and wait until the upload has received every byte."""
        self._hand_over_pending()
        self._blocks.put(None)
        self._thread.join()
        self._raise_upload_error()

    def stop(self) -> None:
        """Drop what is pending and wait for the worker (idempotent; never raises)."""
        self._pending = bytearray()
        if self._thread.is_alive():
            self._error = self._error or RuntimeError("upload stopped")
            self._blocks.put(None)
            self._thread.join()


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


class _ReadAhead:
    """Streams the assets' bytes, in order, from a worker thread.

    The objects are read one after the other, but each is opened (the GET request and its
    first-byte latency, a few ms per object even on a fast store) before the previous one is
    finished: the next objects that start within ``open_ahead_bytes`` of the read position,
    at most ``max_open_ahead`` of them, are opened by a small pool. A listing is mostly
    photos of a few MB, so sequential GETs would spend a large part of the step waiting for
    first bytes. An opened stream waits at most for ``open_ahead_bytes`` to be read, so a
    store never sees a long-idle response. At most ``max_pending`` chunks wait in memory.
    A read error is raised, in order, when the consumer reaches the object that failed.
    """

    _END = b""

    def __init__(
        self,
        storage: Storage,
        keys: list[str],
        sizes: list[int],
        *,
        chunk_size: int,
        max_pending: int,
        open_ahead_bytes: int = OPEN_AHEAD_BYTES,
        max_open_ahead: int = OPEN_AHEAD_OBJECTS,
    ) -> None:
        self._storage = storage
        self._keys = keys
        # where each object starts in the stream of all their bytes (as sized beforehand)
        self._starts = list(itertools.accumulate(sizes, initial=0))
        self._chunk_size = chunk_size
        self._open_ahead_bytes = open_ahead_bytes
        self._max_open_ahead = max_open_ahead
        self._opening: dict[int, Future[tuple[ExitStack, BinaryIO]]] = {}
        self._next_to_open = 0
        self._chunks: queue.Queue[tuple[int, bytes | BaseException]] = queue.Queue(max_pending)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._read_all, name="zip-read", daemon=True)
        self._thread.start()

    def _offer(self, item: tuple[int, bytes | BaseException]) -> bool:
        while not self._stopping.is_set():
            try:
                self._chunks.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _open(self, key: str) -> tuple[ExitStack, BinaryIO]:
        resources = ExitStack()
        return resources, resources.enter_context(self._storage.open_read(key))

    def _open_ahead(self, opener: ThreadPoolExecutor, index: int, position: int) -> None:
        """Open object ``index`` unless it is already, and the next ones the read nears."""
        while self._next_to_open < len(self._keys):
            number = self._next_to_open
            near = (
                number - index <= self._max_open_ahead
                and self._starts[number] <= position + self._open_ahead_bytes
            )
            if number > index and not near:
                return
            self._opening[number] = opener.submit(self._open, self._keys[number])
            self._next_to_open += 1

    def _read_all(self) -> None:
        opener = ThreadPoolExecutor(self._max_open_ahead, thread_name_prefix="zip-open")
        try:
            self._read_objects(opener)
        finally:
            opener.shutdown(wait=True, cancel_futures=True)
            for future in self._opening.values():  # opened ahead, never read
                if not future.cancelled() and future.exception() is None:
                    future.result()[0].close()

    def _read_objects(self, opener: ThreadPoolExecutor) -> None:
        position = 0
        for index in range(len(self._keys)):
            self._open_ahead(opener, index, position)
            try:
                resources, stream = self._opening.pop(index).result()
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                self._offer((index, exc))
                return
            with resources:
                try:
                    while chunk := stream.read(self._chunk_size):
                        position += len(chunk)
                        self._open_ahead(opener, index, position)
                        if not self._offer((index, chunk)):
                            return
                except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                    self._offer((index, exc))
                    return
            position = max(position, self._starts[index + 1])
            if not self._offer((index, self._END)):
                return

    def chunks(self, index: int) -> Iterator[bytes]:
        """The bytes of object ``index``; objects must be consumed in order."""
        while True:
            source, item = self._chunks.get()
            if source != index:
                raise RuntimeError(f"read-ahead out of order: got {source}, expected {index}")
            if isinstance(item, BaseException):
                raise item
            if item is self._END or not item:
                return
            yield item

    def close(self) -> None:
        """Stop reading (the worker closes its streams); never raises."""
        self._stopping.set()
        self._thread.join(timeout=5)


def _asset_keys(assets: Iterable[Any]) -> list[str]:
    """The asset keys in order, without duplicates (a key listed twice is zipped once)."""
    keys: list[str] = []
    seen: set[str] = set()
    for asset in assets:
        key = asset if isinstance(asset, str) else asset.get("key")
        if not isinstance(key, str) or not key:
            raise PipelineError(ErrorCode.ZIP_FAILED, f"asset without a key: {asset!r}")
        if key not in seen:
            seen.add(key)
            keys.append(key)
    return keys


def create_zip_bundle(
    event: dict[str, Any],
    *,
    storage: Storage,
    config: PipelineConfig,
    force_zip64: bool = False,
    chunk_size: int = CHUNK_SIZE,
) -> dict[str, Any]:
    """CreateZipBundle: write ``{listing}/processed/zip/listing-media.zip`` and report it.

    With no assets, nothing is written and every figure is empty. A missing asset fails the
    step with OBJECT_NOT_FOUND naming the keys (checked before anything is uploaded); any
    other failure aborts the upload and raises ZIP_FAILED. Either way the previous ZIP stays.
    """
    listing_identity_id = event["listingIdentityId"]
    log_context = {
        "job_id": event.get("jobId"),
        "listing_identity_id": listing_identity_id,
        "step": "zip",
        "traceparent": event.get("traceparent"),
    }
    keys = _asset_keys(event.get("assets") or [])
    if not keys:
        logger.info("no assets: no ZIP written", extra=log_context)
        return {
            "body": {
                "zipKey": "",
                "assetsZipped": 0,
                "zipBundles": [],
                "zipSizeBytes": 0,
                "unzippedSizeBytes": 0,
            }
        }

    started = time.perf_counter()
    target = zip_key(listing_identity_id)
    infos = _stat_all(storage, keys, listing_identity_id)
    names = unique_entry_names(zip_entry_name(key, listing_identity_id) for key in keys)

    upload = storage.open_multipart(target, content_type=ZIP_CONTENT_TYPE)
    pipeline = _UploadPipeline(upload)
    reader = _ReadAhead(
        storage,
        keys,
        [info.size for info in infos],
        chunk_size=chunk_size,
        max_pending=READ_AHEAD_CHUNKS,
    )
    current_key = ""
    try:
        archive = ZipStreamWriter(pipeline, force_zip64=force_zip64)
        for index, (key, name, info) in enumerate(zip(keys, names, infos, strict=True)):
            current_key = key
            chunks = reader.chunks(index)
            first = next(chunks, b"")
            archive.add_entry(
                name,
                itertools.chain([first], chunks),
                compress=not is_stored(name) and worth_deflating(first),
                size_hint=info.size,
                modified=info.last_modified,
            )
        current_key = ""
        archive.close()
        pipeline.finish()
        completed = upload.complete()
    except BaseException as exc:
        reader.close()
        pipeline.stop()  # no part upload may still be running when the upload is aborted
        with suppress(Exception):
            upload.abort()
        if not isinstance(exc, Exception):
            raise
        logger.error(
            "ZIP failed; upload aborted, the previous ZIP is unchanged",
            exc_info=exc,
            extra={**log_context, "zip_key": target, "source_key": current_key},
        )
        if isinstance(exc, ObjectNotFound):
            raise PipelineError(
                ErrorCode.OBJECT_NOT_FOUND, f"asset vanished while zipping: {current_key}"
            ) from exc
        where = f" while reading {current_key}" if current_key else ""
        raise PipelineError(
            ErrorCode.ZIP_FAILED,
            f"cannot write {target}{where}: {type(exc).__name__}: {exc}",
        ) from exc

    unzipped = sum(entry.size for entry in archive.entries)
    zip_size = completed.size or archive.bytes_written
    logger.info(
        "ZIP written",
        extra={
            **log_context,
            "zip_key": target,
            "assets_zipped": len(keys),
            "zip_size_bytes": zip_size,
            "unzipped_size_bytes": unzipped,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return {
        "body": {
            "zipKey": target,
            "assetsZipped": len(keys),
            "zipBundles": [target],
            "zipSizeBytes": zip_size,
            "unzippedSizeBytes": unzipped,
        }
    }


def _stat_all(
    storage: Storage, keys: list[str], listing_identity_id: int | str
) -> list[ObjectInfo]:
    """Size and date of every asset, before anything is uploaded: a missing one fails now.

    One LIST of the assets' common folder answers for up to 1000 keys per request (a
    listing has hundreds of assets; a HEAD each would be hundreds of round trips). Keys the
    listing did not return are HEADed, concurrently, to tell missing from listed-late.
    """
    wanted = set(keys)
    found: dict[str, ObjectInfo] = {}
    folder = _common_folder(keys)
    if folder:
        try:
            found = {info.key: info for info in storage.list(folder) if info.key in wanted}
        except Exception as exc:
            raise PipelineError(
                ErrorCode.ZIP_FAILED, f"cannot list {folder}: {type(exc).__name__}: {exc}"
            ) from exc

    def head(key: str) -> ObjectInfo | None:
        try:
            return storage.head(key)
        except ObjectNotFound:
            return None
        except InvalidKey as exc:
            raise PipelineError(ErrorCode.INVALID_KEY, f"cannot zip {key!r}: {exc}") from exc
        except Exception as exc:
            raise PipelineError(
                ErrorCode.ZIP_FAILED, f"cannot read {key}: {type(exc).__name__}: {exc}"
            ) from exc

    unlisted = [key for key in keys if key not in found]
    if unlisted:
        with ThreadPoolExecutor(max_workers=min(HEAD_CONCURRENCY, len(unlisted))) as pool:
            for key, info in zip(unlisted, pool.map(head, unlisted), strict=True):
                if info is not None:
                    found[key] = info
    missing = [key for key in keys if key not in found]
    if missing:
        raise PipelineError(
            ErrorCode.OBJECT_NOT_FOUND,
            f"cannot zip listing {listing_identity_id}: missing asset(s): {', '.join(missing)}",
        )
    return [found[key] for key in keys]


def _common_folder(keys: list[str]) -> str:
    """The deepest folder holding every key (``"5150/raw/"``), or "" when there is none."""
    folders = [key.split("/")[:-1] for key in keys]
    common: list[str] = []
    for segments in zip(*folders, strict=False):
        if any(segment != segments[0] for segment in segments):
            break
        common.append(segments[0])
    return "".join(segment + "/" for segment in common)
