"""The storage port: the only way pipeline steps touch objects.

Two adapters implement it: ``S3Storage`` (boto3; any S3-compatible endpoint) and
``LocalStorage`` (files under a root folder, the embedded default). Steps receive a
``Storage`` and never know which one they got.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, Protocol


class ObjectNotFound(Exception):
    """The key does not exist in the bucket."""


class InvalidKey(ValueError):
    """The adapter cannot store or read this key (a problem of that one asset)."""


# S3's limit on a key, in UTF-8 bytes; the local adapter keeps it too, so that a key one
# adapter accepts the other accepts as well.
MAX_KEY_BYTES = 1024


def check_key_common(key: str) -> None:
    """What S3 itself refuses, checked by every adapter: raise InvalidKey for an empty key,
    one that is not valid UTF-8 (botocore fails deep inside the request), or one longer
    than 1024 bytes (S3 answers KeyTooLongError; the local adapter keeps the same limit)."""
    if not isinstance(key, str) or not key:
        raise InvalidKey(f"invalid key {key!r}: empty")
    try:
        encoded = key.encode()
    except UnicodeEncodeError:
        raise InvalidKey(f"invalid key {_shown(key)}: not valid UTF-8 (lone surrogate)") from None
    if len(encoded) > MAX_KEY_BYTES:
        raise InvalidKey(
            f"invalid key {_shown(key)}: {len(encoded)} bytes, over the {MAX_KEY_BYTES}-byte limit"
        )


def _shown(key: str) -> str:
    """The key for a message: quoted, escaped, and cut if it is long."""
    return repr(key) if len(key) <= 120 else repr(key[:100]) + f"... ({len(key)} characters)"


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str  # without quotes
    last_modified: datetime | None = None
    content_type: str | None = None
    # user metadata (x-amz-meta-*); derivatives record their source's etag here
    metadata: dict[str, str] = field(default_factory=dict)


class MultipartWriter(Protocol):
    """A write that becomes visible only on ``complete()``; ``abort()`` leaves no trace."""

    def write(self, data: bytes) -> int: ...
    def complete(self) -> ObjectInfo: ...
    def abort(self) -> None: ...


class Storage(Protocol):
    bucket: str

    def check_key(self, key: str) -> None:
        """Raise InvalidKey when this adapter cannot store ``key`` (every method checks)."""

    def head(self, key: str) -> ObjectInfo:
        """Raise ObjectNotFound when absent."""

    def open_read(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A streaming, read-only binary file; raise ObjectNotFound when absent."""

    def read_range(self, key: str, start: int, length: int) -> bytes: ...

    def write(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo: ...

    def write_file(
        self,
        key: str,
        path: str,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        """Upload a local file (large outputs such as transcodes) without reading it whole."""

    def open_multipart(self, key: str, *, content_type: str | None = None) -> MultipartWriter: ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]: ...

    def delete(self, key: str) -> None:
        """Deleting a missing key is not an error."""

    def uri(self, key: str) -> str:
        """``s3://bucket/key`` (S3) or ``file:///abs/path`` (local)."""

    def presigned_url(self, key: str, ttl_seconds: int) -> str | None:
        """A time-limited GET URL, or None where the adapter cannot make one (local)."""
