"""The I/O side of one photo in the thumbnails step (``_fetch`` on an I/O thread): which
object is read, which etag its derivatives are stamped with, how the download is spooled,
and when existing derivatives count as current. On the real local storage adapter."""

from __future__ import annotations

import io
import tempfile
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from types import SimpleNamespace
from typing import IO, Any, BinaryIO, cast

import pytest

from media_jobs import sample_media
from media_jobs.pipeline import thumbnails
from media_jobs.pipeline.config import PipelineConfig
from media_jobs.pipeline.keys import IMAGE_SIZES, derivative_key
from media_jobs.pipeline.storage import ObjectInfo, Storage
from media_jobs.pipeline.thumbnails import generate_thumbnails
from media_jobs.pipeline.types import ValidatedAsset, ValidationResult
from tests.support.wrapped_storage import WrappedStorage

RAW = "4242/raw/photo/horizontal/horizontal-01-kitchen.jpg"


def _validation(*assets: ValidatedAsset) -> ValidationResult:
    return ValidationResult(
        jobId=7,
        listingIdentityId=4242,
        assets=list(assets),
        imageAssets=list(assets),
        videoAssets=[],
        hasImages=True,
        hasVideos=False,
    )


def _run(storage: Storage, *assets: ValidatedAsset) -> dict[str, object]:
    result = generate_thumbnails(
        _validation(*assets), storage=storage, config=PipelineConfig(bucket=storage.bucket)
    )
    return cast(dict[str, object], result["body"])


def _stamps(storage: Storage, raw_key: str) -> set[str | None]:
    """The source etag recorded on each of the photo's derivatives."""
    return {
        storage.head(derivative_key(raw_key, size)).metadata.get("source-etag")
        for size in IMAGE_SIZES
    }


def _derivatives_of(raw_key: str) -> list[dict[str, str]]:
    return [
        {"key": derivative_key(raw_key, size), "type": "PHOTO_HORIZONTAL", "sourceKey": raw_key}
        for size in IMAGE_SIZES
    ]


def test_the_photo_read_is_the_assets_source_key(local_storage: Storage) -> None:
    """``sourceKey`` names the raw object; an asset whose ``key`` says something else is
    still read from (and its derivatives named after) its source."""
    local_storage.write(RAW, sample_media.jpeg_bytes(320, 240))
    asset = ValidatedAsset(
        key="4242/raw/photo/horizontal/horizontal-01-elsewhere.jpg",
        type="PHOTO_HORIZONTAL",
        sourceKey=RAW,
    )

    body = _run(local_storage, asset)

    assert body["errors"] == []
    assert body["generatedAssets"] == _derivatives_of(RAW)


def test_an_asset_without_a_source_key_is_read_from_its_key(local_storage: Storage) -> None:
    """A step input written before ``sourceKey`` existed: the asset's key is the raw key."""
    local_storage.write(RAW, sample_media.jpeg_bytes(320, 240))
    asset = cast(ValidatedAsset, {"key": RAW, "type": "PHOTO_HORIZONTAL"})

    body = _run(local_storage, asset)

    assert body["errors"] == []
    assert body["generatedAssets"] == _derivatives_of(RAW)


class _CountedHeads(WrappedStorage):
    def __init__(self, inner: Storage) -> None:
        super().__init__(inner)
        self.heads: list[str] = []

    def head(self, key: str) -> ObjectInfo:
        self.heads.append(key)
        return self._inner.head(key)


def test_the_validated_etag_stamps_the_derivatives_without_another_head(
    local_storage: Storage,
) -> None:
    """Validation recorded the raw object's etag: the derivatives are stamped with it, and
    the raw object is not asked for it again (one round trip less per photo on S3); only
    the derivatives are looked up, for the resume check."""
    local_storage.write(RAW, sample_media.jpeg_bytes(320, 240))
    etag = local_storage.head(RAW).etag
    counted = _CountedHeads(local_storage)

    body = _run(
        cast(Storage, counted),
        ValidatedAsset(key=RAW, type="PHOTO_HORIZONTAL", sourceKey=RAW, etag=etag),
    )

    assert body["errors"] == []
    assert RAW not in counted.heads
    assert _stamps(local_storage, RAW) == {etag}


def test_without_a_validated_etag_the_raw_objects_own_is_used(local_storage: Storage) -> None:
    local_storage.write(RAW, sample_media.jpeg_bytes(320, 240))

    body = _run(local_storage, ValidatedAsset(key=RAW, type="PHOTO_HORIZONTAL", sourceKey=RAW))

    assert body["errors"] == []
    assert _stamps(local_storage, RAW) == {local_storage.head(RAW).etag}


@pytest.mark.parametrize(("size", "on_disk"), [(900, False), (1100, True)])
def test_a_download_over_the_memory_limit_is_spooled_to_disk(
    size: int, on_disk: bool, local_storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Downloads are held in memory up to SPOOL_MAX_MEMORY_BYTES (16 MiB; 1000 bytes here,
    the rule at a small scale), larger ones in a temporary file. Only a file on disk has a
    name (its descriptor); the bytes are the same either way."""
    monkeypatch.setattr(thumbnails, "SPOOL_MAX_MEMORY_BYTES", 1000)
    data = bytes(range(256)) * 5
    local_storage.write(RAW, data[:size])

    fetched = thumbnails._fetch(
        local_storage, ValidatedAsset(key=RAW, type="PHOTO_HORIZONTAL", sourceKey=RAW, etag="e")
    )

    assert fetched.source is not None
    with fetched.source as spool:
        assert (spool.name is not None) == on_disk
        assert spool.read() == data[:size]


class _Reads:
    """A raw object's body that records the size of every read."""

    def __init__(self, data: bytes) -> None:
        self._stream = io.BytesIO(data)
        self.sizes: list[int] = []

    def read(self, size: int = -1) -> bytes:
        self.sizes.append(size)
        return self._stream.read(size)


class _RecordedReads(WrappedStorage):
    def __init__(self, inner: Storage) -> None:
        super().__init__(inner)
        self.bodies: list[_Reads] = []

    def open_read(self, key: str) -> AbstractContextManager[BinaryIO]:
        @contextmanager
        def body() -> Iterator[BinaryIO]:
            with self._inner.open_read(key) as stream:
                self.bodies.append(_Reads(stream.read()))
                yield cast(BinaryIO, self.bodies[-1])

        return body()


def test_the_download_is_copied_in_one_mib_reads(local_storage: Storage) -> None:
    """2.5 MiB arrive in reads of 1 MiB (the last ones shorter), not the 64 KiB default."""
    data = bytes(range(256)) * (10 * 1024)
    local_storage.write(RAW, data)
    recorded = _RecordedReads(local_storage)

    fetched = thumbnails._fetch(
        cast(Storage, recorded),
        ValidatedAsset(key=RAW, type="PHOTO_HORIZONTAL", sourceKey=RAW, etag="e"),
    )

    assert fetched.source is not None
    with fetched.source as spool:
        assert spool.read() == data
    assert [body.sizes for body in recorded.bodies] == [[1024 * 1024] * 4]


def test_derivatives_are_never_current_for_a_source_without_an_etag(
    local_storage: Storage,
) -> None:
    """Without an etag there is nothing to compare: even derivatives stamped with an empty
    etag are made again."""
    keys = {size: derivative_key(RAW, size) for size in IMAGE_SIZES}
    for key in keys.values():
        local_storage.write(key, b"old", metadata={"source-etag": ""})
    assert _stamps(local_storage, RAW) == {""}

    assert thumbnails._derivatives_current(local_storage, keys, "") is False


class _WriteFailsOnceNextIsRead(WrappedStorage):
    """Writing ``failing_key`` fails like a dropped connection, but only once the download
    of ``next_raw`` has begun (so the step stops with that download started, not queued)."""

    def __init__(self, inner: Storage, failing_key: str, next_raw: str) -> None:
        super().__init__(inner)
        self._failing_key, self._next_raw = failing_key, next_raw
        self._next_read = threading.Event()

    def open_read(self, key: str) -> AbstractContextManager[BinaryIO]:
        if key == self._next_raw:
            self._next_read.set()
        return self._inner.open_read(key)

    def write(self, key: str, data: bytes, **options: Any) -> ObjectInfo:
        if key == self._failing_key:
            assert self._next_read.wait(timeout=30)
            raise ConnectionResetError("connection reset by peer")
        return self._inner.write(key, data, **options)


@pytest.fixture
def spools(monkeypatch: pytest.MonkeyPatch) -> list[IO[bytes]]:
    """Every download spool the step makes."""
    made: list[IO[bytes]] = []

    def spooled(**options: Any) -> IO[bytes]:
        spool = cast(IO[bytes], tempfile.SpooledTemporaryFile(**options))
        made.append(spool)
        return spool

    monkeypatch.setattr(thumbnails, "tempfile", SimpleNamespace(SpooledTemporaryFile=spooled))
    return made


def _raws(local_storage: Storage, count: int) -> list[str]:
    raws = [f"4242/raw/photo/horizontal/horizontal-{n:02d}-d.jpg" for n in range(1, count + 1)]
    for n, raw in enumerate(raws):
        local_storage.write(raw, sample_media.jpeg_bytes(320, 240, seed=n))
    return raws


def _assets(raws: list[str]) -> list[ValidatedAsset]:
    return [
        ValidatedAsset(key=raw, type="PHOTO_HORIZONTAL", sourceKey=raw, etag="e") for raw in raws
    ]


def test_a_step_stopped_by_a_storage_error_closes_the_download_it_did_not_reach(
    local_storage: Storage, spools: list[IO[bytes]]
) -> None:
    """Photo 1's write fails while photo 3 is already downloaded (one photo ahead): the
    step fails with the storage error, and photo 3's spool is closed too (a temporary
    file of up to a photo's size is not left to the garbage collector)."""
    first, second, third = _raws(local_storage, 3)
    storage = _WriteFailsOnceNextIsRead(local_storage, derivative_key(first, "small"), third)

    with pytest.raises(ConnectionResetError):
        _run(cast(Storage, storage), *_assets([first, second, third]))

    assert len(spools) == 3
    assert [spool.closed for spool in spools] == [True, True, True]


def test_a_failed_download_ahead_does_not_hide_the_storage_error_that_stopped_the_step(
    local_storage: Storage, spools: list[IO[bytes]]
) -> None:
    """Photo 3 is missing (its download failed, one photo ahead) when photo 1's write
    fails: the step reports the write's error; the failed download has nothing to close."""
    first, second = _raws(local_storage, 2)
    missing = "4242/raw/photo/horizontal/horizontal-03-gone.jpg"
    storage = _WriteFailsOnceNextIsRead(local_storage, derivative_key(first, "small"), missing)

    with pytest.raises(ConnectionResetError):
        _run(cast(Storage, storage), *_assets([first, second, missing]))

    assert [spool.closed for spool in spools] == [True, True, True]


class _ThreadNames(WrappedStorage):
    """A real adapter that notes the name of the thread of every read and write."""

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner)
        self.names: set[str] = set()

    def head(self, key: str) -> ObjectInfo:
        self.names.add(threading.current_thread().name)
        return self._inner.head(key)

    def write(self, key: str, data: bytes, **options: Any) -> object:
        self.names.add(threading.current_thread().name)
        return self._inner.write(key, data, **options)


def test_the_storage_round_trips_run_on_the_steps_named_io_threads(
    local_storage: Storage,
) -> None:
    """Downloads and writes run on the "thumbnails-io" pool (a thread dump or a log line
    names the step), never on the rendering thread; no I/O thread outlives the step."""
    raws = _raws(local_storage, 2)
    named = _ThreadNames(local_storage)

    body = _run(cast(Storage, named), *_assets(raws))

    assert body["errors"] == []
    assert {name.rsplit("_", 1)[0] for name in named.names} == {"thumbnails-io"}
    assert not [t for t in threading.enumerate() if t.name.startswith("thumbnails-io")]


def test_a_key_the_storage_cannot_hold_is_that_photos_invalid_key_error(
    local_storage: Storage,
) -> None:
    """A raw key whose file name is longer than the local adapter can store (250 bytes,
    beside its sidecar's ".json"; the keys' rules allow it): that photo fails with
    INVALID_KEY and the adapter's reason, and the next photo is made."""
    too_long = "4242/raw/photo/horizontal/horizontal-01-" + "n" * 240 + ".jpg"
    (good,) = _raws(local_storage, 1)

    body = _run(local_storage, *_assets([too_long, good]))

    assert body["errors"] == [
        {
            "sourceKey": too_long,
            "errorCode": "INVALID_KEY",
            "errorMessage": "invalid key: the segment 'horizontal-01-nnnnnnnnnnnnnnnnnnnnnnnnnn'"
            "... is 258 bytes; a local file name holds 250",
        }
    ]
    assert body["generatedAssets"] == _derivatives_of(good)
