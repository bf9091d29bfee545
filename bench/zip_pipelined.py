"""A prototype of the change that benchmark 2 recommends for the ZIP step: overlap the I/O.

``create_zip_bundle`` (media_jobs/pipeline/zipper.py) does one thing at a time: HEAD each
object, then GET a chunk, CRC it, append it, and, every 8 MiB, block on an UploadPart. The
downloads, the CRC/deflate and the uploads never run together, so the step is the sum of
them. This prototype keeps the project's own ``ZipStreamWriter`` (same bytes out) and only
changes how the bytes move:

- HEADs run 8 at a time (on S3, 200 sequential HEADs cost 200 round trips);
- a reader thread streams the objects ahead into a bounded queue of 1 MiB chunks;
- an uploader thread sends a part while the next one fills (one queued).

Memory stays bounded: the chunk queue (4 x 1 MiB) plus about three parts. It lives in bench/ to
measure the proposal; the owner of zipper.py / storage_s3.py decides how to adopt it.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from media_jobs.pipeline.config import PipelineConfig
from media_jobs.pipeline.keys import unique_entry_names, zip_entry_name, zip_key
from media_jobs.pipeline.storage import Storage
from media_jobs.pipeline.zipper import (
    CHUNK_SIZE,
    ZIP_CONTENT_TYPE,
    ZipStreamWriter,
    _asset_keys,
    is_stored,
)

PREFETCH_CHUNKS = 4
PARTS_IN_FLIGHT = 1
_END = object()


class BackgroundPartWriter:
    """Wraps a MultipartWriter: ``write`` hands full parts to an uploader thread."""

    def __init__(self, inner: Any, part_size: int) -> None:
        self._inner = inner
        self._part_size = part_size
        self._buffer = bytearray()
        self._parts: queue.Queue[Any] = queue.Queue(maxsize=PARTS_IN_FLIGHT)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._upload, daemon=True)
        self._thread.start()

    def _upload(self) -> None:
        while (part := self._parts.get()) is not _END:
            if self._error is None:
                try:
                    self._inner.write(part)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                    self._error = exc

    def write(self, data: bytes) -> int:
        if self._error is not None:
            raise self._error
        self._buffer += data
        if len(self._buffer) >= self._part_size:
            self._parts.put(bytes(self._buffer))
            self._buffer = bytearray()
        return len(data)

    def complete(self) -> Any:
        if self._buffer:
            self._parts.put(bytes(self._buffer))
            self._buffer = bytearray()
        self._parts.put(_END)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._inner.complete()

    def abort(self) -> None:
        self._error = self._error or RuntimeError("aborted")
        self._parts.put(_END)
        self._thread.join()
        self._inner.abort()


def _prefetch(
    storage: Storage, keys: list[str], out: queue.Queue[Any], stop: threading.Event
) -> None:
    try:
        for key in keys:
            with storage.open_read(key) as stream:
                while chunk := stream.read(CHUNK_SIZE):
                    if stop.is_set():
                        return
                    out.put(chunk)
            out.put(None)  # end of this object
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer
        out.put(exc)


def _chunks_of_one(chunks: queue.Queue[Any]) -> Any:
    while (chunk := chunks.get()) is not None:
        if isinstance(chunk, BaseException):
            raise chunk
        yield chunk


def create_zip_bundle_pipelined(
    event: dict[str, Any], *, storage: Storage, config: PipelineConfig
) -> dict[str, Any]:
    listing_identity_id = event["listingIdentityId"]
    keys = _asset_keys(event.get("assets") or [])
    with ThreadPoolExecutor(max_workers=8) as pool:
        infos = list(pool.map(storage.head, keys))
    names = unique_entry_names(zip_entry_name(key, listing_identity_id) for key in keys)
    target = zip_key(listing_identity_id)
    inner = storage.open_multipart(target, content_type=ZIP_CONTENT_TYPE)
    upload = BackgroundPartWriter(inner, getattr(storage, "part_size", 8 * 1024 * 1024))
    chunks: queue.Queue[Any] = queue.Queue(maxsize=PREFETCH_CHUNKS)
    stop = threading.Event()
    reader = threading.Thread(target=_prefetch, args=(storage, keys, chunks, stop), daemon=True)
    reader.start()
    try:
        archive = ZipStreamWriter(upload)
        for name, info in zip(names, infos, strict=True):
            archive.add_entry(
                name,
                _chunks_of_one(chunks),
                compress=not is_stored(name),
                size_hint=info.size,
                modified=info.last_modified,
            )
        archive.close()
        completed = upload.complete()
    except BaseException:
        stop.set()
        while reader.is_alive():
            try:
                chunks.get(timeout=0.1)
            except queue.Empty:
                pass
        upload.abort()
        raise
    unzipped = sum(entry.size for entry in archive.entries)
    return {
        "body": {
            "zipKey": target,
            "assetsZipped": len(keys),
            "zipBundles": [target],
            "zipSizeBytes": completed.size or archive.bytes_written,
            "unzippedSizeBytes": unzipped,
        }
    }
