"""The local adapter of the storage port: objects are files under a root folder.

``<root>/<bucket>/<key>`` holds the bytes; ``<root>/.meta/<bucket>/<key>.json`` holds the
etag (md5 hex of the content, like a single-part S3 upload), content type and user metadata,
outside the bucket folder so listings never see it. Every write goes to a temporary file in
the target folder and is renamed into place, so readers see the old or the new object,
never a partial one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from media_jobs.pipeline.config import PipelineConfig
from media_jobs.pipeline.storage import InvalidKey, ObjectInfo, ObjectNotFound, check_key_common

CHUNK = 1024 * 1024
META_FOLDER = ".meta"
# Temporary files of writes in progress; never listed, and no key may use the prefix.
TEMP_PREFIX = ".toq-tmp-"
# File names are at most 255 bytes (NAME_MAX); an object's sidecar adds ".json".
NAME_MAX_BYTES = 255
SIDECAR_SUFFIX = ".json"


def _md5_of_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json_atomically(path: Path, content: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(content, out, ensure_ascii=False)
        os.replace(temp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temp)
        raise


class LocalMultipartWriter:
    """Writes to a temporary file next to the target; ``complete()`` renames it into place."""

    def __init__(
        self,
        storage: LocalStorage,
        key: str,
        *,
        content_type: str | None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self._storage = storage
        self._key = key
        self._content_type = content_type
        self._metadata = dict(metadata or {})
        self._path = storage.path_for(key)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self._path.parent, prefix=TEMP_PREFIX)
        self._temp = Path(temp)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")
        self._digest = hashlib.md5(usedforsecurity=False)

    def write(self, data: bytes) -> int:
        if self._file is None:
            raise ValueError("write to a completed or aborted upload")
        self._file.write(data)
        self._digest.update(data)
        return len(data)

    def complete(self) -> ObjectInfo:
        if self._file is None:
            raise ValueError("upload already completed or aborted")
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            return self._storage._publish(
                self._key,
                self._temp,
                etag=self._digest.hexdigest(),
                content_type=self._content_type,
                metadata=self._metadata,
            )
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        with suppress(FileNotFoundError):
            self._temp.unlink()

    def __enter__(self) -> LocalMultipartWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.abort()
        elif self._file is not None:
            self.complete()


class LocalStorage:
    """Objects in ``<root>/<bucket>/``; the embedded default and the development store."""

    def __init__(self, root: str | os.PathLike[str], bucket: str) -> None:
        if not bucket or "/" in bucket or "\\" in bucket or bucket.startswith("."):
            raise ValueError(f"invalid bucket name {bucket!r}")
        self.root = Path(root).absolute()
        self.bucket = bucket
        self.bucket_root = self.root / bucket

    @classmethod
    def from_config(cls, config: PipelineConfig) -> LocalStorage:
        return cls(config.local_root, config.bucket)

    # -- paths -------------------------------------------------------------------------

    @staticmethod
    def check_key(key: str) -> None:
        """Raise InvalidKey for keys that could leave the bucket folder, alias another key,
        use the temporary files' reserved prefix, or not be a file name (NUL, too long)."""
        check_key_common(key)
        if key.startswith("/"):
            raise InvalidKey(f"invalid key {key!r}: leading '/'")
        parts = key.split("/")
        for index, part in enumerate(parts):
            if part in ("", ".", ".."):
                raise InvalidKey(f"invalid key {key!r}: empty, '.' or '..' segment")
            if "\x00" in part:
                raise InvalidKey(f"invalid key {key!r}: NUL character")
            if part.startswith(TEMP_PREFIX):
                raise InvalidKey(f"invalid key {key!r}: {TEMP_PREFIX!r} names are reserved")
            limit = NAME_MAX_BYTES - (len(SIDECAR_SUFFIX) if index == len(parts) - 1 else 0)
            size = len(part.encode())
            if size > limit:
                raise InvalidKey(
                    f"invalid key: the segment {part[:40]!r}... is {size} bytes; "
                    f"a local file name holds {limit}"
                )

    def path_for(self, key: str) -> Path:
        self.check_key(key)
        path = self.bucket_root / key
        # belt and braces: the normalised path must stay inside the bucket folder
        bucket_root = os.path.normpath(self.bucket_root)
        if os.path.commonpath([os.path.normpath(path), bucket_root]) != bucket_root:
            raise InvalidKey(f"invalid key {key!r}: outside the bucket")
        return path

    def _meta_path(self, key: str) -> Path:
        return self.root / META_FOLDER / self.bucket / f"{key}.json"

    # -- reads -------------------------------------------------------------------------

    def _stat(self, key: str) -> os.stat_result:
        path = self.path_for(key)
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(key) from None
        if not path.is_file():
            raise ObjectNotFound(key)
        return stat

    def head(self, key: str) -> ObjectInfo:
        stat = self._stat(key)
        meta_path = self._meta_path(key)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError, ValueError):
            meta = {}  # none, or unreadable: a folder where the sidecar goes (key "a.json/x")
        # A file placed or replaced by hand has no (or a stale) sidecar: recompute the etag
        # and cache it, keeping whatever content type and metadata were recorded.
        if meta.get("size") != stat.st_size or meta.get("mtime_ns") != stat.st_mtime_ns:
            meta["etag"] = _md5_of_file(self.path_for(key))
            meta["size"] = stat.st_size
            meta["mtime_ns"] = stat.st_mtime_ns
            with suppress(OSError):
                _write_json_atomically(meta_path, meta)
        return ObjectInfo(
            key=key,
            size=stat.st_size,
            etag=str(meta["etag"]),
            last_modified=datetime.fromtimestamp(stat.st_mtime, tz=UTC),
            content_type=meta.get("content_type"),
            metadata=dict(meta.get("metadata") or {}),
        )

    def open_read(self, key: str) -> AbstractContextManager[BinaryIO]:
        path = self.path_for(key)
        try:
            return path.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(key) from None

    def read_range(self, key: str, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        with self.open_read(key) as source:
            source.seek(start)
            return source.read(length)

    # -- writes ------------------------------------------------------------------------

    def _publish(
        self,
        key: str,
        temp: Path,
        *,
        etag: str,
        content_type: str | None,
        metadata: dict[str, str] | None,
    ) -> ObjectInfo:
        """Rename a finished temporary file into place and record its sidecar."""
        path = self.path_for(key)
        os.replace(temp, path)
        stat = path.stat()
        _write_json_atomically(
            self._meta_path(key),
            {
                "etag": etag,
                "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
                "content_type": content_type,
                "metadata": dict(metadata or {}),
            },
        )
        return ObjectInfo(
            key=key,
            size=stat.st_size,
            etag=etag,
            last_modified=datetime.fromtimestamp(stat.st_mtime, tz=UTC),
            content_type=content_type,
            metadata=dict(metadata or {}),
        )

    def _write_stream(
        self,
        key: str,
        chunks: Iterator[bytes],
        *,
        content_type: str | None,
        metadata: dict[str, str] | None,
    ) -> ObjectInfo:
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX)
        digest = hashlib.md5(usedforsecurity=False)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    digest.update(chunk)
                out.flush()
                os.fsync(out.fileno())
            return self._publish(
                key,
                Path(temp),
                etag=digest.hexdigest(),
                content_type=content_type,
                metadata=metadata,
            )
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(temp)
            raise

    def write(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        return self._write_stream(
            key, iter([bytes(data)]), content_type=content_type, metadata=metadata
        )

    def write_file(
        self,
        key: str,
        path: str,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        def chunks() -> Iterator[bytes]:
            with open(path, "rb") as source:
                while chunk := source.read(CHUNK):
                    yield chunk

        return self._write_stream(key, chunks(), content_type=content_type, metadata=metadata)

    def open_multipart(
        self,
        key: str,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        part_size: int | None = None,
    ) -> LocalMultipartWriter:
        """``part_size`` is accepted for symmetry with S3 and ignored (no parts on disk)."""
        return LocalMultipartWriter(self, key, content_type=content_type, metadata=metadata)

    # -- listing and deletion ------------------------------------------------------------

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Keys starting with ``prefix`` (a string prefix, as in S3), in S3's key order."""
        if ".." in prefix.split("/") or prefix.startswith("/"):
            raise ValueError(f"invalid prefix {prefix!r}")
        folder, _, _ = prefix.rpartition("/")
        start = self.bucket_root / folder  # the bucket folder itself when folder is ""
        if not start.is_dir():
            return
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if not d.startswith(TEMP_PREFIX)]
            relative = Path(dirpath).relative_to(self.bucket_root).as_posix()
            for name in filenames:
                if name.startswith(TEMP_PREFIX):
                    continue
                key = name if relative == "." else f"{relative}/{name}"
                if key.startswith(prefix):
                    found.append(key)
        for key in sorted(found):  # code point order is UTF-8 byte order: S3's key order
            try:
                yield self.head(key)
            except ObjectNotFound:
                continue  # deleted while listing

    def delete(self, key: str) -> None:
        for path in (self.path_for(key), self._meta_path(key)):
            with suppress(FileNotFoundError, NotADirectoryError):
                path.unlink()

    # -- addresses ---------------------------------------------------------------------

    def uri(self, key: str) -> str:
        return self.path_for(key).as_uri()

    def presigned_url(self, key: str, ttl_seconds: int) -> str | None:
        return None
