"""The CreateZipBundle step (docs/contract.md §5): the listing's media as one streamed ZIP.

The archive is written front to back into a multipart upload, one object after the other,
each read in chunks: memory stays bounded by a few queued chunks plus one upload part,
whatever the listing's size (the Go system built the whole archive in memory). Reading,
zipping and uploading run in three threads joined by small queues, and the next objects are
opened (their GET sent) before their turn, so the step is as fast as its slowest direction
rather than the sum of its request latencies.

The bytes of the format are zipstream-ng's (docs/decisions/0006-zip-writer.md): every entry
has a data descriptor (sizes and CRCs are known only after its data), non-ASCII names carry
the UTF-8 flag, and ZIP64 records are written where a size, an offset or the entry count
needs them (above 2 GiB - 1, like CPython's zipfile, as some readers treat the 32-bit fields
as signed). This module keeps the project's rules around it: safe and unique entry names,
and the method of each entry.

Already-compressed media (by extension) are STORED; everything else is DEFLATED, unless the
first 256 KiB do not shrink by 3% (a PDF of scans, a camera RAW): those are STORED too, as
deflating incompressible data is slow (~55 MB/s) and saves nothing.

The object only appears when the upload completes; on any failure the upload is aborted, so
the previous ZIP of the listing stays in place, untouched.

Long on purpose: the three-thread pipeline (read-ahead, zipping, multipart upload), the
entry rules and the method choice are one step whose parts share its bounded queues and its
abort; the format itself is zipstream-ng's.
"""

from __future__ import annotations

import itertools
import logging
import posixpath
import queue
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, suppress
from typing import Any, BinaryIO, Protocol

from zipstream import ZIP_DEFLATED, ZIP_STORED, ZipStream

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

MAX_ENTRY_NAME_BYTES = 0xFFFF


class ByteSink(Protocol):
    """Where the archive goes: a ``MultipartWriter``, a file, a BytesIO."""

    def write(self, data: bytes) -> int: ...


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

    zipstream-ng produces the bytes; this adds the entry rules (safe, unique names) and
    counts what the step reports. Usage: ``add_entry()`` for each file, then ``close()``
    for the central directory. Memory: the chunk being written plus a small record per entry.
    """

    def __init__(self, sink: ByteSink) -> None:
        self._sink = sink
        self._stream = ZipStream(compress_type=ZIP_STORED)
        self._offset = 0
        self._names: set[str] = set()
        self._unzipped_size = 0
        self._closed = False

    @property
    def bytes_written(self) -> int:
        return self._offset

    @property
    def unzipped_size(self) -> int:
        """The entries' uncompressed bytes, as read (not as announced)."""
        return self._unzipped_size

    def _write_all(self, pieces: Iterable[bytes]) -> None:
        for piece in pieces:
            if piece:
                self._sink.write(piece)
                self._offset += len(piece)

    def _counted(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self._unzipped_size += len(chunk)
            yield chunk

    def add_entry(
        self,
        name: str,
        chunks: Iterable[bytes],
        *,
        compress: bool,
        size_hint: int | None = None,
    ) -> None:
        """Stream one file into the archive.

        ``size_hint`` (the expected uncompressed size) decides whether the local header
        announces ZIP64 sizes; without it ZIP64 is assumed, which is always safe.
        """
        if self._closed:
            raise ValueError("the archive is closed")
        _check_entry_name(name)
        if name in self._names:
            raise ValueError(f"duplicate entry name {name!r}")
        self._names.add(name)
        self._stream.add(
            self._counted(chunks),
            name,
            size=size_hint,
            # zlib's default level (6); no level at all for STORED, or zipstream-ng warns
            compress_type=ZIP_DEFLATED if compress else ZIP_STORED,
        )
        self._write_all(self._stream.all_files())

    def close(self) -> int:
        """Write the central directory and the end records; return the archive size."""
        if not self._closed:
            self._closed = True
            self._write_all(self._stream.footer())
        return self._offset


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
    """Refuse what an extractor could write outside its folder, or would read differently.

    (zipstream-ng would quietly rewrite such a name: cut it at a NUL, drop a leading ``/``.)
    """
    # An empty name, a leading "/" (absolute), "a//b" and a trailing "/" all have an empty part.
    if "\\" in name or "\x00" in name or ".." in name or "" in name.split("/"):
        raise ValueError(f"unsafe ZIP entry name {name!r}")
    if len(name.encode()) > MAX_ENTRY_NAME_BYTES:
        raise ValueError("ZIP entry name too long")


_READER = -1  # the source of an error of the reading thread itself, not of one object


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
        """Open object ``index`` unless it is already, and the next ones the read nears.

        (Object ``index`` itself is always near: the read position is at or past its start.)
        """
        while self._next_to_open < len(self._keys):
            number = self._next_to_open
            near = (
                number - index <= self._max_open_ahead
                and self._starts[number] <= position + self._open_ahead_bytes
            )
            if not near:
                return
            self._opening[number] = opener.submit(self._open, self._keys[number])
            self._next_to_open += 1

    def _read_all(self) -> None:
        opener = ThreadPoolExecutor(self._max_open_ahead, thread_name_prefix="zip-open")
        try:
            self._read_objects(opener)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            # a failure outside an object's reads (closing its stream, say): the consumer
            # waits on the queue, so it must get the error rather than wait forever
            self._offer((_READER, exc))
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
            if isinstance(item, BaseException):
                raise item  # this object's read error, or the reader's own (_READER)
            if source != index:
                raise RuntimeError(f"read-ahead out of order: got {source}, expected {index}")
            if not item:  # _END: the object is over (a read never hands over b"" otherwise)
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
        archive = ZipStreamWriter(pipeline)
        for index, (key, name, info) in enumerate(zip(keys, names, infos, strict=True)):
            current_key = key
            chunks = reader.chunks(index)
            first = next(chunks, b"")
            archive.add_entry(
                name,
                itertools.chain([first], chunks),
                compress=not is_stored(name) and worth_deflating(first),
                size_hint=info.size,
            )
        current_key = ""
        reader.close()  # every byte was read: its threads end before the step returns
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

    unzipped = archive.unzipped_size
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
