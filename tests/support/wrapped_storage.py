"""A real storage adapter with a few methods replaced by a test (a read that breaks, an upload
that fails, a counter): everything the subclass does not define goes to the adapter."""

from __future__ import annotations

from typing import Any

from media_jobs.pipeline.storage import Storage


class WrappedStorage:
    def __init__(self, inner: Storage) -> None:
        self._inner = inner
        self.bucket = inner.bucket

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
