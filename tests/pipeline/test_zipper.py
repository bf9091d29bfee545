"""The streamed ZIP writer and the CreateZipBundle step, checked with real extractors.

Archives are read back with Python's zipfile (reading only) and validated with Info-ZIP
``unzip -t``, ``7z t`` and ``bsdtar`` (listing and a full extraction to stdout, which checks
every CRC), against both storage adapters.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import zipstream.ng

from media_jobs import sample_media
from media_jobs.pipeline import zipper
from media_jobs.pipeline.errors import ErrorCode, PipelineError
from media_jobs.pipeline.storage import ObjectNotFound, Storage
from media_jobs.pipeline.storage_local import TEMP_PREFIX, LocalStorage
from media_jobs.pipeline.storage_s3 import MIN_PART_SIZE, S3Storage
from media_jobs.pipeline.zipper import OPEN_AHEAD_OBJECTS, ZipStreamWriter, create_zip_bundle
from tests.support.wrapped_storage import WrappedStorage

LISTING = 5150
ZIP_KEY = f"{LISTING}/processed/zip/listing-media.zip"
MIB = 1024 * 1024
ZIP64_END_RECORD = b"PK\x06\x06"
ZIP64_LOCATOR = b"PK\x06\x07"


def _event(keys: list[str], listing: int | str = LISTING) -> dict[str, Any]:
    return {
        "jobId": 31,
        "listingIdentityId": listing,
        "assets": [{"key": key, "type": "PHOTO_VERTICAL"} for key in keys],
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    }


def _read(storage: Storage, key: str) -> bytes:
    with storage.open_read(key) as stream:
        return stream.read()


def _assert_extractors_accept(path: Path, expected_names: list[str]) -> None:
    """unzip, 7z and bsdtar all open the archive, see every entry and verify the data."""
    unzip = subprocess.run(["unzip", "-t", str(path)], capture_output=True, timeout=120)
    assert unzip.returncode == 0, unzip.stdout.decode(errors="replace")[-2000:]
    assert b"No errors detected" in unzip.stdout
    seven = subprocess.run(["7z", "t", str(path)], capture_output=True, timeout=120)
    assert seven.returncode == 0, seven.stdout.decode(errors="replace")[-2000:]
    assert b"Everything is Ok" in seven.stdout
    listing = subprocess.run(["bsdtar", "-tf", str(path)], capture_output=True, timeout=120)
    assert listing.returncode == 0, listing.stderr.decode(errors="replace")
    assert listing.stdout.decode("utf-8").splitlines() == expected_names
    extracted = subprocess.run(["bsdtar", "-xOf", str(path)], capture_output=True, timeout=120)
    assert extracted.returncode == 0, extracted.stderr.decode(errors="replace")


@pytest.fixture
def zip64_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every size, offset and the directory take the ZIP64 path, as in a multi-GiB archive.

    zipstream-ng compares them with the limit it imports from zipfile: with its copy at 0,
    real extractors check the ZIP64 records without a test writing 2 GiB.
    """
    monkeypatch.setattr(zipstream.ng, "ZIP64_LIMIT", 0)


# -- the writer on its own ---------------------------------------------------------------------


@pytest.mark.parametrize("force_zip64", [False, True], ids=["zip32", "zip64"])
def test_writer_output_opens_in_every_extractor(
    tmp_path: Path, force_zip64: bool, request: pytest.FixtureRequest
) -> None:
    if force_zip64:
        request.getfixturevalue("zip64_everywhere")
    photo = os.urandom(300_000)
    text = "ligne de texte compressible, façade été\n".encode() * 5000
    entries = {
        "photo/vertical/vertical-01-façade été.jpg": (photo, False),
        "project/doc/notes.txt": (text, True),
        "project/doc/empty.txt": (b"", True),
        "project/render/no hint.bin": (b"\x00\x01" * 4096, True),
    }
    path = tmp_path / "archive.zip"
    with path.open("wb") as sink:
        writer = ZipStreamWriter(sink)
        for name, (data, compress) in entries.items():
            # no hint: the local header announces ZIP64 sizes (and must, for ZIP64 everywhere)
            hint = None if force_zip64 or name.endswith(".bin") else len(data)
            pieces = [data[i : i + 65536] for i in range(0, len(data), 65536)]
            writer.add_entry(name, pieces, compress=compress, size_hint=hint)
        size = writer.close()

    raw = path.read_bytes()
    assert size == len(raw)
    assert (ZIP64_END_RECORD in raw and ZIP64_LOCATOR in raw) is force_zip64
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        infos = {info.filename: info for info in archive.infolist()}
        assert list(infos) == list(entries)
        for name, (data, compress) in entries.items():
            assert archive.read(name) == data
            expected_method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            assert infos[name].compress_type == expected_method
            # a UTF-8 name says so; an ASCII one reads the same in every encoding
            assert bool(infos[name].flag_bits & 0x0800) is not name.isascii()
            assert infos[name].flag_bits & 0x0008  # data descriptor
        assert infos["project/doc/notes.txt"].compress_size < len(text) // 10
    _assert_extractors_accept(path, list(entries))


@pytest.mark.slow  # 65,536 entries, ~10 s
def test_more_than_65535_entries_use_zip64_end_records(tmp_path: Path) -> None:
    count = 65_535 + 3
    path = tmp_path / "many.zip"
    with path.open("wb") as sink:
        writer = ZipStreamWriter(sink)
        for number in range(count):
            data = str(number).encode()
            writer.add_entry(f"d/{number}.txt", [data], compress=False, size_hint=len(data))
        writer.close()

    raw = path.read_bytes()
    assert ZIP64_END_RECORD in raw[-200:] and ZIP64_LOCATOR in raw[-200:]
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        assert len(names) == count
        assert archive.read(names[-1]) == str(count - 1).encode()
    unzip = subprocess.run(["unzip", "-l", str(path)], capture_output=True, timeout=120)
    assert unzip.returncode == 0 and f"{count} files".encode() in unzip.stdout
    _assert_extractors_accept(path, [f"d/{n}.txt" for n in range(count)])


@pytest.mark.slow
def test_entry_larger_than_4_gib_uses_zip64_sizes(tmp_path: Path) -> None:
    # 4 GiB + 1 MiB of zeros deflates to ~4 MB: a real ZIP64 size without a 4 GiB file.
    big = 4 * 1024**3 + MIB
    block = bytes(8 * MIB)

    def zeros() -> Iterator[bytes]:
        left = big
        while left:
            step = min(left, len(block))
            left -= step
            yield block if step == len(block) else block[:step]

    path = tmp_path / "big.zip"
    with path.open("wb") as sink:
        writer = ZipStreamWriter(sink)
        writer.add_entry("before.txt", [b"before"], compress=True, size_hint=6)
        writer.add_entry("zeros.bin", zeros(), compress=True, size_hint=big)
        writer.add_entry("after.txt", [b"after"], compress=True, size_hint=5)
        writer.close()

    with zipfile.ZipFile(path) as archive:
        assert [i.file_size for i in archive.infolist()] == [6, big, 5]
        assert archive.read("after.txt") == b"after"
    listing = subprocess.run(["bsdtar", "-tvf", str(path)], capture_output=True, timeout=60)
    assert listing.returncode == 0 and str(big).encode() in listing.stdout
    seven = subprocess.run(["7z", "l", str(path)], capture_output=True, timeout=60)
    assert seven.returncode == 0 and str(big).encode() in seven.stdout


@pytest.mark.parametrize(
    "name",
    ["../escape.jpg", "/abs.jpg", "a/../b.jpg", "a//b.jpg", "", "a\\b.jpg", "a.jpg\x00.exe"],
)
def test_writer_refuses_unsafe_names(name: str) -> None:
    writer = ZipStreamWriter(io.BytesIO())
    with pytest.raises(ValueError) as refused:
        writer.add_entry(name, [b"x"], compress=False, size_hint=1)
    assert str(refused.value) == f"unsafe ZIP entry name {name!r}"


# -- create_zip_bundle -------------------------------------------------------------------------


@pytest.fixture
def listing_media(storage: Storage, mp4: bytes, heic: bytes) -> dict[str, bytes]:
    """A listing's raw and processed objects, with names that collide once prefixes drop."""
    objects = {
        f"{LISTING}/raw/photo/vertical/vertical-03-IMG_2705.jpg": sample_media.jpeg_bytes(
            400, 300, seed=4
        ),
        f"{LISTING}/raw/photo/vertical/2023-11-02/vertical-04-façade été.JPG": (
            sample_media.jpeg_bytes(300, 400, seed=5)
        ),
        f"{LISTING}/raw/photo/horizontal/horizontal-01-living room.heic": heic,
        f"{LISTING}/raw/video/horizontal/horizontal-01-tour.mp4": mp4,
        f"{LISTING}/raw/photo/horizontal/horizontal-02-plan.png": sample_media.png_alpha_bytes(),
        f"{LISTING}/raw/project/doc/doc-01-specs..final.pdf": b"%PDF-1.4\n" + b"stream " * 20000,
        f"{LISTING}/raw/project/doc/doc-02-notes.txt": "notes, façade\n".encode() * 3000,
        # not a listed media type, but incompressible: stored rather than deflated for nothing
        f"{LISTING}/raw/project/render/render-01-scan.tif": os.urandom(300_000),
        # the same entry name as the first one once "raw/" and "processed/" are dropped
        f"{LISTING}/processed/photo/vertical/vertical-03-IMG_2705.jpg": os.urandom(5000),
    }
    for key, data in objects.items():
        storage.write(key, data)
    return objects


EXPECTED_NAMES = [
    "photo/vertical/vertical-03-IMG_2705.jpg",
    "photo/vertical/vertical-04-façade été.JPG",
    "photo/horizontal/horizontal-01-living room.heic",
    "video/horizontal/horizontal-01-tour.mp4",
    "photo/horizontal/horizontal-02-plan.png",
    "project/doc/doc-01-specs.final.pdf",
    "project/doc/doc-02-notes.txt",
    "project/render/render-01-scan.tif",
    "photo/vertical/vertical-03-IMG_2705 (2).jpg",
]


def test_zip_bundle_round_trips_every_asset(
    storage: Storage, listing_media: dict[str, bytes], tmp_path: Path
) -> None:
    keys = list(listing_media)

    result = create_zip_bundle(_event(keys), storage=storage)

    body = result["body"]
    info = storage.head(ZIP_KEY)
    assert body == {
        "zipKey": ZIP_KEY,
        "assetsZipped": len(keys),
        "zipBundles": [ZIP_KEY],
        "zipSizeBytes": info.size,
        "unzippedSizeBytes": sum(len(data) for data in listing_media.values()),
    }
    assert info.content_type == "application/zip"
    path = tmp_path / "listing.zip"
    path.write_bytes(_read(storage, ZIP_KEY))
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == EXPECTED_NAMES
        for name, key in zip(EXPECTED_NAMES, keys, strict=True):
            assert archive.read(name) == listing_media[key]
            assert ".." not in name and not name.startswith("/")
        methods = {
            i.filename.rsplit(".", 1)[-1].lower(): i.compress_type for i in archive.infolist()
        }
    assert methods == {
        "jpg": zipfile.ZIP_STORED,
        "heic": zipfile.ZIP_STORED,
        "mp4": zipfile.ZIP_STORED,
        "png": zipfile.ZIP_STORED,
        "pdf": zipfile.ZIP_DEFLATED,
        "txt": zipfile.ZIP_DEFLATED,
        "tif": zipfile.ZIP_STORED,
    }
    _assert_extractors_accept(path, EXPECTED_NAMES)


def test_zip_bundle_with_forced_zip64_opens_everywhere(
    local_storage: LocalStorage, tmp_path: Path, heic: bytes, zip64_everywhere: None
) -> None:
    keys = [f"{LISTING}/raw/photo/horizontal/horizontal-0{n}-x.heic" for n in range(1, 4)]
    keys.append(f"{LISTING}/raw/project/doc/doc-01-readme.txt")
    for key in keys:
        local_storage.write(key, heic if key.endswith(".heic") else b"read me\n" * 1000)

    create_zip_bundle(_event(keys), storage=local_storage)

    path = tmp_path / "zip64.zip"
    path.write_bytes(_read(local_storage, ZIP_KEY))
    assert ZIP64_END_RECORD in path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
    _assert_extractors_accept(
        path,
        [f"photo/horizontal/horizontal-0{n}-x.heic" for n in range(1, 4)]
        + ["project/doc/doc-01-readme.txt"],
    )


def test_zip_bundle_uploads_several_parts(s3_storage: S3Storage, tmp_path: Path) -> None:
    storage = S3Storage(
        s3_storage.bucket, client=s3_storage.client, part_size=MIN_PART_SIZE
    )  # the smallest part S3 accepts, so ~13 MiB makes three parts
    objects = {
        f"{LISTING}/raw/video/vertical/vertical-01-walk.mp4": os.urandom(7 * MIB),
        f"{LISTING}/raw/video/vertical/vertical-02-roof.mov": os.urandom(6 * MIB),
    }
    for key, data in objects.items():
        storage.write(key, data)

    body = create_zip_bundle(
        _event(list(objects)),
        storage=storage,
        chunk_size=256 * 1024,
    )["body"]

    info = storage.head(ZIP_KEY)
    parts = int(info.etag.rsplit("-", 1)[1])  # a multipart object's ETag ends in -<parts>
    assert parts >= 2
    assert body["zipSizeBytes"] == info.size > sum(len(d) for d in objects.values())
    with zipfile.ZipFile(io.BytesIO(_read(storage, ZIP_KEY))) as archive:
        assert [archive.read(n) for n in archive.namelist()] == list(objects.values())


class _FlakyStream(io.RawIOBase):
    """Reads fine ``reads_before_failure`` times, then fails like a dropped connection."""

    def __init__(self, inner: BinaryIO, reads_before_failure: int) -> None:
        self._inner = inner
        self._left = reads_before_failure

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        if self._left <= 0:
            raise ConnectionResetError("connection reset while reading")
        self._left -= 1
        return self._inner.read(size)


class _FailingReads(WrappedStorage):
    """A real adapter whose stream for one key breaks after a few reads."""

    def __init__(self, inner: Storage, failing_key: str, reads_before_failure: int) -> None:
        super().__init__(inner)
        self._failing_key = failing_key
        self._reads = reads_before_failure

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        with self._inner.open_read(key) as stream:
            if key == self._failing_key:
                yield _FlakyStream(stream, self._reads)  # type: ignore[misc]
            else:
                yield stream


def _unfinished_uploads(storage: Storage) -> list[str]:
    """Incomplete multipart uploads (S3) or leftover temporary files (local)."""
    if isinstance(storage, S3Storage):
        response = storage.client.list_multipart_uploads(Bucket=storage.bucket)
        return [upload["Key"] for upload in response.get("Uploads", [])]
    assert isinstance(storage, LocalStorage)
    return [str(path) for path in storage.root.rglob("*") if path.name.startswith(TEMP_PREFIX)]


@pytest.fixture
def small_parts(storage: Storage) -> Storage:
    """The adapter under test, with S3 parts as small as allowed (uploads start early)."""
    if isinstance(storage, S3Storage):
        return S3Storage(storage.bucket, client=storage.client, part_size=MIN_PART_SIZE)
    return storage


def test_failure_mid_stream_keeps_the_previous_zip(small_parts: Storage) -> None:
    storage = small_parts
    first = f"{LISTING}/raw/video/horizontal/horizontal-01-a.mp4"
    second = f"{LISTING}/raw/video/horizontal/horizontal-02-b.mp4"
    storage.write(first, os.urandom(6 * MIB))  # more than one part: the upload has begun
    storage.write(second, os.urandom(3 * MIB))
    create_zip_bundle(_event([first]), storage=storage)
    previous = storage.head(ZIP_KEY)
    previous_bytes = _read(storage, ZIP_KEY)

    flaky = _FailingReads(storage, second, reads_before_failure=2)
    with pytest.raises(PipelineError) as caught:
        create_zip_bundle(
            _event([first, second]),
            storage=flaky,  # type: ignore[arg-type]
            chunk_size=512 * 1024,
        )

    assert caught.value.code == ErrorCode.ZIP_FAILED
    assert second in caught.value.message and "ConnectionResetError" in caught.value.message
    assert storage.head(ZIP_KEY).etag == previous.etag
    assert _read(storage, ZIP_KEY) == previous_bytes
    assert _unfinished_uploads(storage) == []
    assert _zip_threads() == []


class _FailingUploads(WrappedStorage):
    """A real adapter whose ZIP upload breaks after a few writes (the bucket went away)."""

    def __init__(self, inner: Storage, writes_before_failure: int) -> None:
        super().__init__(inner)
        self._writes = writes_before_failure

    def open_multipart(self, key: str, **options: Any) -> Any:
        real = self._inner.open_multipart(key, **options)
        left = [self._writes]

        class Upload:
            def write(self, data: bytes) -> int:
                if left[0] <= 0:
                    raise ConnectionError("upload connection lost")
                left[0] -= 1
                return real.write(data)

            def complete(self) -> Any:
                return real.complete()

            def abort(self) -> None:
                real.abort()

        return Upload()


def _zip_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("zip-")]


def test_upload_failure_aborts_and_keeps_the_previous_zip(small_parts: Storage) -> None:
    storage = small_parts
    keys = [f"{LISTING}/raw/video/vertical/vertical-0{n}-clip.mp4" for n in (1, 2)]
    for key in keys:
        storage.write(key, os.urandom(4 * MIB))
    create_zip_bundle(_event(keys[:1]), storage=storage)
    previous_bytes = _read(storage, ZIP_KEY)

    with pytest.raises(PipelineError) as caught:
        create_zip_bundle(
            _event(keys),
            storage=_FailingUploads(storage, writes_before_failure=6),  # type: ignore[arg-type]
        )

    assert caught.value.code == ErrorCode.ZIP_FAILED
    assert "upload connection lost" in caught.value.message
    assert _read(storage, ZIP_KEY) == previous_bytes
    assert _unfinished_uploads(storage) == []
    assert _zip_threads() == []


class _CountingReads(WrappedStorage):
    """A real adapter that records how many object streams are open at once."""

    def __init__(self, inner: Storage, vanished_key: str | None = None) -> None:
        super().__init__(inner)
        self._vanished_key = vanished_key
        self._lock = threading.Lock()
        self.open_now = 0
        self.most_open = 0
        self.opened: list[str] = []

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        if key == self._vanished_key:
            self._inner.delete(key)  # deleted after the step checked the assets
        with self._inner.open_read(key) as stream:
            with self._lock:
                self.opened.append(key)
                self.open_now += 1
                self.most_open = max(self.most_open, self.open_now)
            try:
                yield stream
            finally:
                with self._lock:
                    self.open_now -= 1


@pytest.fixture
def many_photos(storage: Storage) -> dict[str, bytes]:
    """More small objects than the step opens ahead, so the window slides."""
    objects = {
        f"{LISTING}/raw/photo/horizontal/horizontal-{n:02d}-IMG_{n}.jpg": os.urandom(40_000 + n)
        for n in range(1, 3 * OPEN_AHEAD_OBJECTS + 2)
    }
    for key, data in objects.items():
        storage.write(key, data)
    return objects


def test_objects_opened_ahead_are_bounded_and_all_closed(
    storage: Storage, many_photos: dict[str, bytes]
) -> None:
    counting = _CountingReads(storage)

    create_zip_bundle(
        _event(list(many_photos)),
        storage=counting,  # type: ignore[arg-type]
        chunk_size=16 * 1024,
    )

    assert sorted(counting.opened) == sorted(many_photos)  # each object opened once
    assert 1 <= counting.most_open <= OPEN_AHEAD_OBJECTS + 1  # the one read + those ahead
    assert counting.open_now == 0
    with zipfile.ZipFile(io.BytesIO(_read(storage, ZIP_KEY))) as archive:
        assert [archive.read(n) for n in archive.namelist()] == list(many_photos.values())
    assert _zip_threads() == []


def test_the_read_ahead_threads_have_ended_when_the_zip_is_written(
    storage: Storage, many_photos: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader winds down after handing over the last bytes; the step waits for it, so no
    thread of a finished ZIP outlives it (a Lambda container freezes them mid-work). A slow
    wind-down makes the wait visible."""

    class SlowToStop(zipper.ThreadPoolExecutor):
        def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
            time.sleep(0.3)
            super().shutdown(wait, cancel_futures=cancel_futures)

    monkeypatch.setattr(zipper, "ThreadPoolExecutor", SlowToStop)

    create_zip_bundle(_event(list(many_photos)), storage=storage)

    assert _zip_threads() == []


def test_asset_vanishing_while_zipping_fails_in_order_and_closes_every_stream(
    storage: Storage, many_photos: dict[str, bytes]
) -> None:
    keys = list(many_photos)
    create_zip_bundle(_event(keys[:2]), storage=storage)
    previous_bytes = _read(storage, ZIP_KEY)
    vanished = keys[OPEN_AHEAD_OBJECTS]  # within the first window: opened ahead of its turn
    counting = _CountingReads(storage, vanished_key=vanished)

    with pytest.raises(PipelineError) as caught:
        create_zip_bundle(
            _event(keys),
            storage=counting,  # type: ignore[arg-type]
        )

    assert caught.value.code == ErrorCode.OBJECT_NOT_FOUND
    assert vanished in caught.value.message
    assert counting.open_now == 0  # streams opened beyond the failure were closed too
    assert _read(storage, ZIP_KEY) == previous_bytes
    assert _unfinished_uploads(storage) == []
    assert _zip_threads() == []


def test_assets_outside_one_folder_are_found_one_by_one(local_storage: LocalStorage) -> None:
    # no common folder to list: every asset is checked with a HEAD
    keys = [f"{LISTING}/raw/photo/vertical/vertical-01-a.jpg", "legacy/uploads/old-photo.jpg"]
    for key in keys:
        local_storage.write(key, sample_media.jpeg_bytes(80, 60))

    body = create_zip_bundle(_event(keys), storage=local_storage)["body"]

    with zipfile.ZipFile(io.BytesIO(_read(local_storage, ZIP_KEY))) as archive:
        assert archive.namelist() == [
            "photo/vertical/vertical-01-a.jpg",
            "legacy/uploads/old-photo.jpg",
        ]
    assert body["assetsZipped"] == 2


def test_missing_asset_fails_naming_the_key(storage: Storage) -> None:
    present = f"{LISTING}/raw/photo/vertical/vertical-01-a.jpg"
    missing = f"{LISTING}/raw/photo/vertical/vertical-02-gone.jpg"
    storage.write(present, sample_media.jpeg_bytes(64, 48))

    with pytest.raises(PipelineError) as caught:
        create_zip_bundle(_event([present, missing]), storage=storage)

    assert caught.value.code == ErrorCode.OBJECT_NOT_FOUND
    assert missing in caught.value.message and present not in caught.value.message
    with pytest.raises(ObjectNotFound):
        storage.head(ZIP_KEY)
    assert _unfinished_uploads(storage) == []


def test_no_assets_writes_nothing(storage: Storage) -> None:
    result = create_zip_bundle(_event([]), storage=storage)

    assert result == {
        "body": {
            "zipKey": "",
            "assetsZipped": 0,
            "zipBundles": [],
            "zipSizeBytes": 0,
            "unzippedSizeBytes": 0,
        }
    }
    assert list(storage.list(f"{LISTING}/")) == []


def test_zip_bundle_logs_its_figures_and_no_warning(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    """One INFO line with the job's context and the figures; STORED photos draw no warning
    from the ZIP library (no compression level is passed for them)."""
    keys = [f"{LISTING}/raw/photo/vertical/vertical-0{n}-IMG.jpg" for n in (1, 2)]
    photos = [sample_media.jpeg_bytes(120, 90, seed=n) for n in (1, 2)]
    for key, data in zip(keys, photos, strict=True):
        storage.write(key, data)
    caplog.set_level(logging.DEBUG)

    body = create_zip_bundle(_event(keys), storage=storage)["body"]

    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    (record,) = [r for r in caplog.records if r.getMessage() == "ZIP written"]
    assert record.name == "toq.pipeline.zipper"
    assert (record.job_id, record.listing_identity_id, record.step) == (31, LISTING, "zip")
    assert record.traceparent == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert (record.zip_key, record.assets_zipped) == (ZIP_KEY, 2)
    assert record.zip_size_bytes == body["zipSizeBytes"] == storage.head(ZIP_KEY).size
    assert record.unzipped_size_bytes == len(photos[0]) + len(photos[1])
    assert isinstance(record.duration_ms, float)  # milliseconds, to a tenth
    assert record.duration_ms == round(record.duration_ms, 1)


def test_a_key_the_storage_refuses_is_invalid_key_naming_it(storage: Storage) -> None:
    present = f"{LISTING}/raw/photo/vertical/vertical-01-a.jpg"
    refused = f"{LISTING}/raw/photo/vertical/vertical-02-b\ud800.jpg"  # a lone surrogate
    storage.write(present, sample_media.jpeg_bytes(64, 48))

    with pytest.raises(PipelineError) as caught:
        create_zip_bundle(_event([present, refused]), storage=storage)

    assert caught.value.code == ErrorCode.INVALID_KEY
    assert caught.value.message == (
        "cannot zip '5150/raw/photo/vertical/vertical-02-b\\ud800.jpg': invalid key "
        "'5150/raw/photo/vertical/vertical-02-b\\ud800.jpg': not valid UTF-8 (lone surrogate)"
    )
    with pytest.raises(ObjectNotFound):
        storage.head(ZIP_KEY)


class _CompleteFails(WrappedStorage):
    """A real adapter whose ZIP upload fails when it is completed (every byte was sent)."""

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner)

    def open_multipart(self, key: str, **options: Any) -> Any:
        real = self._inner.open_multipart(key, **options)

        class Upload:
            def write(self, data: bytes) -> int:
                return real.write(data)

            def complete(self) -> Any:
                raise ConnectionError("completion refused")

            def abort(self) -> None:
                real.abort()

        return Upload()


def test_a_failure_after_the_last_asset_names_no_asset(storage: Storage) -> None:
    key = f"{LISTING}/raw/photo/vertical/vertical-01-a.jpg"
    storage.write(key, sample_media.jpeg_bytes(64, 48))

    with pytest.raises(PipelineError) as caught:
        create_zip_bundle(_event([key]), storage=_CompleteFails(storage))  # type: ignore[arg-type]

    assert caught.value.code == ErrorCode.ZIP_FAILED
    assert caught.value.message == (
        "cannot write 5150/processed/zip/listing-media.zip: ConnectionError: completion refused"
    )
    assert _unfinished_uploads(storage) == []


class _ReadsWhere(WrappedStorage):
    """A real adapter that records, for every read, the reading thread; the first object's
    first read waits (at most 10 s, once) until the second object is open."""

    def __init__(self, inner: Storage, first: str, second: str) -> None:
        super().__init__(inner)
        self._first, self._second = first, second
        self.second_open = threading.Event()
        self.second_open_during_first = False
        self.waited = False
        self.readers: set[tuple[str, bool]] = set()

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        with self._inner.open_read(key) as stream:
            if key == self._second:
                self.second_open.set()
            yield self._Recorded(self, stream, key == self._first)  # type: ignore[misc]

    class _Recorded(io.RawIOBase):
        def __init__(self, owner: _ReadsWhere, inner: BinaryIO, first: bool) -> None:
            self._owner, self._inner, self._first = owner, inner, first

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:  # type: ignore[override]
            thread = threading.current_thread()
            self._owner.readers.add((thread.name, thread.daemon))
            if self._first and not self._owner.waited:
                self._owner.waited = True
                self._owner.second_open_during_first = self._owner.second_open.wait(10)
            return self._inner.read(size)


def test_the_next_object_opens_while_one_is_read_on_a_daemon_thread(
    storage: Storage,
) -> None:
    """The next asset's GET is sent while the current one is still being read; reads run on
    a daemon thread, so a read stuck on a dead connection never keeps the process alive."""
    keys = [f"{LISTING}/raw/photo/vertical/vertical-0{n}-IMG.jpg" for n in (1, 2)]
    for n, key in enumerate(keys):
        storage.write(key, sample_media.jpeg_bytes(160, 120, seed=n))
    reads = _ReadsWhere(storage, *keys)

    create_zip_bundle(_event(keys), storage=reads)  # type: ignore[arg-type]

    assert reads.second_open_during_first is True
    assert reads.readers == {("zip-read", True)}
