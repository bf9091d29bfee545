"""The streamed ZIP writer and the CreateZipBundle step, checked with real extractors.

Archives are read back with Python's zipfile (reading only) and validated with Info-ZIP
``unzip -t``, ``7z t`` and ``bsdtar`` (listing and a full extraction to stdout, which checks
every CRC), against both storage adapters.
"""

from __future__ import annotations

import io
import logging
import os
import random
import subprocess
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, BinaryIO

import pytest
import zipstream.ng

from media_jobs import sample_media
from media_jobs.pipeline import zipper
from media_jobs.pipeline.errors import ErrorCode, PipelineError
from media_jobs.pipeline.storage import ObjectInfo, ObjectNotFound, Storage
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


# -- the choice of method ------------------------------------------------------------------------


def test_a_sample_under_4_kib_is_deflated_unjudged_and_one_of_4_kib_is_judged() -> None:
    noise = random.Random(11).randbytes(4096)
    assert zipper.worth_deflating(noise[:4095]) is True  # too small to judge
    assert zipper.worth_deflating(noise) is False  # 4 KiB of noise: judged, and stored


def _raw_level_1_size(data: bytes) -> int:
    """The judge's measure: the raw deflate stream (what a ZIP entry holds, no zlib header
    or checksum) at the fastest level."""
    return len(zlib.compress(data, 1, wbits=-15))


def _sample_deflating_to(size: int) -> bytes:
    """100,000 bytes (a few words, then noise ending in zeros) whose raw level-1 deflate
    stream is exactly ``size`` bytes: found by moving the noise/zeros border."""
    rng = random.Random(3)
    vocabulary = [b"alpha", b"beta", b"gamma", b"kitchen", b"room", b"floor"]
    words = b" ".join(rng.choice(vocabulary) for _ in range(1000))[:4000]
    noise = rng.randbytes(100_000)

    def sample(zeros: int) -> bytes:
        return words + noise[: 96_000 - zeros] + bytes(zeros)

    low, high = 0, 96_000  # more zeros, smaller stream
    while low < high:
        middle = (low + high) // 2
        if _raw_level_1_size(sample(middle)) > size:
            low = middle + 1
        else:
            high = middle
    for zeros in range(max(0, low - 40), low + 40):
        if _raw_level_1_size(sample(zeros)) == size:
            return sample(zeros)
    raise AssertionError(f"no sample deflates to exactly {size} bytes")


def test_a_file_is_deflated_when_its_raw_stream_at_level_1_saves_at_least_3_percent() -> None:
    """The judge measures what the ZIP would hold (a raw stream: a zlib header and checksum
    would cost 6 more bytes) at level 1, the fastest; a saving of exactly 3% is enough.
    One byte more is not, even though the slower levels would squeeze it under 3%."""
    exactly = _sample_deflating_to(97_000)  # 3.000% saved
    assert zipper.worth_deflating(exactly) is True
    assert len(zlib.compress(exactly, 1)) == 97_006  # zlib-wrapped: over the line
    short = _sample_deflating_to(97_001)  # 2.999% saved
    assert zipper.worth_deflating(short) is False
    for slower in (2, 6):
        assert len(zlib.compress(short, slower, wbits=-15)) <= 97_000


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


def test_failure_mid_stream_keeps_the_previous_zip(
    small_parts: Storage, caplog: pytest.LogCaptureFixture
) -> None:
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
    assert caught.value.message == (
        f"cannot write {ZIP_KEY} while reading {second}: "
        "ConnectionResetError: connection reset while reading"
    )
    (record,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.getMessage() == "ZIP failed; upload aborted, the previous ZIP is unchanged"
    assert (record.levelno, record.name) == (logging.ERROR, "toq.pipeline.zipper")
    assert (record.zip_key, record.source_key) == (ZIP_KEY, second)
    assert (record.job_id, record.listing_identity_id, record.step) == (31, LISTING, "zip")
    assert record.exc_info is not None and isinstance(record.exc_info[1], ConnectionResetError)
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
    assert caught.value.message == f"asset vanished while zipping: {vanished}"
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
    elsewhere = "legacy/uploads/gone.jpg"  # outside the listed folder: looked up by HEAD
    storage.write(present, sample_media.jpeg_bytes(64, 48))

    with pytest.raises(PipelineError) as caught:
        create_zip_bundle(_event([missing, present, elsewhere]), storage=storage)

    assert caught.value.code == ErrorCode.OBJECT_NOT_FOUND
    assert caught.value.message == (
        f"cannot zip listing {LISTING}: missing asset(s): {missing}, {elsewhere}"
    )
    with pytest.raises(ObjectNotFound):
        storage.head(ZIP_KEY)
    assert _unfinished_uploads(storage) == []


def test_no_assets_writes_nothing(storage: Storage, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    result = create_zip_bundle(_event([]), storage=storage)

    (record,) = [r for r in caplog.records if r.name == "toq.pipeline.zipper"]
    assert (record.getMessage(), record.levelno) == ("no assets: no ZIP written", logging.INFO)
    assert (record.job_id, record.listing_identity_id, record.step) == (31, LISTING, "zip")
    assert record.traceparent == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

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
    storage: Storage, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One INFO line with the job's context and the figures; STORED photos draw no warning
    from the ZIP library (no compression level is passed for them). The duration is the
    step's, in milliseconds to a tenth (a clock that moves 1.23456 s from start to end)."""
    keys = [f"{LISTING}/raw/photo/vertical/vertical-0{n}-IMG.jpg" for n in (1, 2)]
    photos = [sample_media.jpeg_bytes(120, 90, seed=n) for n in (1, 2)]
    for key, data in zip(keys, photos, strict=True):
        storage.write(key, data)
    caplog.set_level(logging.DEBUG)
    readings = iter([1000.0])
    monkeypatch.setattr(
        zipper, "time", SimpleNamespace(perf_counter=lambda: next(readings, 1001.23456))
    )

    body = create_zip_bundle(_event(keys), storage=storage)["body"]

    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    (record,) = [r for r in caplog.records if r.getMessage() == "ZIP written"]
    assert record.name == "toq.pipeline.zipper"
    assert (record.job_id, record.listing_identity_id, record.step) == (31, LISTING, "zip")
    assert record.traceparent == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert (record.zip_key, record.assets_zipped) == (ZIP_KEY, 2)
    assert record.zip_size_bytes == body["zipSizeBytes"] == storage.head(ZIP_KEY).size
    assert record.unzipped_size_bytes == len(photos[0]) + len(photos[1])
    assert record.duration_ms == 1234.6


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


def test_a_failure_after_the_last_asset_names_no_asset(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    key = f"{LISTING}/raw/photo/vertical/vertical-01-a.jpg"
    storage.write(key, sample_media.jpeg_bytes(64, 48))

    with pytest.raises(PipelineError) as caught:
        create_zip_bundle(_event([key]), storage=_CompleteFails(storage))  # type: ignore[arg-type]

    assert caught.value.code == ErrorCode.ZIP_FAILED
    assert caught.value.message == (
        "cannot write 5150/processed/zip/listing-media.zip: ConnectionError: completion refused"
    )
    (record,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert (record.zip_key, record.source_key) == (ZIP_KEY, "")
    assert _unfinished_uploads(storage) == []


class _AbortFails(WrappedStorage):
    """A real adapter whose ZIP upload breaks on its first write, and whose abort fails too."""

    def open_multipart(self, key: str, **options: Any) -> Any:
        real = self._inner.open_multipart(key, **options)

        class Upload:
            def write(self, data: bytes) -> int:
                raise ConnectionError("upload connection lost")

            def complete(self) -> Any:
                raise AssertionError("never completed")

            def abort(self) -> None:
                real.abort()
                raise ConnectionError("abort refused")

        return Upload()


def test_a_failing_abort_never_hides_the_steps_error(local_storage: LocalStorage) -> None:
    key = f"{LISTING}/raw/photo/vertical/vertical-01-a.jpg"
    local_storage.write(key, sample_media.jpeg_bytes(64, 48))

    with pytest.raises(PipelineError) as caught:
        create_zip_bundle(_event([key]), storage=_AbortFails(local_storage))  # type: ignore[arg-type]

    assert caught.value.code == ErrorCode.ZIP_FAILED
    assert caught.value.message.endswith(": ConnectionError: upload connection lost")


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


# -- the rules and parts of the step, one by one -----------------------------------------------


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("photo/vertical/a.jpg", True),
        ("photo/vertical/A.JPG", True),  # whatever the case
        ("video/horizontal/clip.Mov", True),
        ("video/horizontal/clip.m4v", True),
        ("project/doc/plan.pdf", False),
        ("project/doc/a.jpg.txt", False),  # the last extension counts
        ("jpg", False),  # a name, not an extension
    ],
)
def test_already_compressed_types_are_stored(name: str, stored: bool) -> None:
    assert zipper.is_stored(name) is stored


def test_the_writer_refuses_a_name_twice_and_entries_after_close() -> None:
    sink = io.BytesIO()
    writer = ZipStreamWriter(sink)
    writer.add_entry("a.txt", [b"a"], compress=False, size_hint=1)
    with pytest.raises(ValueError) as duplicate:
        writer.add_entry("a.txt", [b"b"], compress=False, size_hint=1)
    assert str(duplicate.value) == "duplicate entry name 'a.txt'"
    size = writer.close()
    assert writer.close() == size == len(sink.getvalue())  # closing again writes nothing
    with pytest.raises(ValueError) as closed:
        writer.add_entry("b.txt", [b"b"], compress=False, size_hint=1)
    assert str(closed.value) == "the archive is closed"
    with zipfile.ZipFile(sink) as archive:
        assert archive.namelist() == ["a.txt"]


def test_an_entry_name_holds_at_most_65535_bytes() -> None:
    """The local header stores the name's length in 16 bits."""
    writer = ZipStreamWriter(io.BytesIO())
    longest = "d/" + "\u00e9" * 32766 + "x"  # 2 + 65,532 + 1 bytes
    writer.add_entry(longest, [b"x"], compress=False, size_hint=1)
    with pytest.raises(ValueError) as refused:
        writer.add_entry(longest + "y", [b"x"], compress=False, size_hint=1)
    assert str(refused.value) == "ZIP entry name too long"


def test_a_size_hint_keeps_zip64_out_of_the_local_header() -> None:
    """With a small size announced, the local header is a plain one (sizes follow in the
    data descriptor); without a hint it announces ZIP64 sizes, the safe default."""
    headers = {}
    for hint in (5, None):
        sink = io.BytesIO()
        writer = ZipStreamWriter(sink)
        writer.add_entry("a.txt", [b"hello"], compress=False, size_hint=hint)
        writer.close()
        headers[hint] = sink.getvalue()
    plain, zip64 = headers[5], headers[None]
    assert plain[:4] == zip64[:4] == b"PK\x03\x04"
    # sizes (offset 18), name length 5, extra field length (offset 28), extra field
    assert plain[18:26] == bytes(8) and plain[28:30] == b"\x00\x00"
    assert zip64[18:26] == b"\xff" * 8 and zip64[28:30] == b"\x14\x00"
    assert zip64[35:37] == b"\x01\x00"  # the ZIP64 extended information field


class _RecordingUpload:
    """A MultipartWriter that keeps the blocks it receives and the threads that sent them."""

    def __init__(self) -> None:
        self.blocks: list[bytes] = []
        self.threads: set[tuple[str, bool]] = set()

    def write(self, data: bytes) -> int:
        thread = threading.current_thread()
        self.threads.add((thread.name, thread.daemon))
        self.blocks.append(bytes(data))
        return len(data)

    def complete(self) -> Any:
        raise AssertionError("not part of these tests")

    def abort(self) -> None:
        pass


def test_small_writes_are_gathered_into_blocks_and_big_chunks_go_alone() -> None:
    """Headers and deflate output are gathered until a block is full; a chunk of a block or
    more goes to the upload on its own, after what was gathered before it."""
    upload = _RecordingUpload()
    pipeline = zipper._UploadPipeline(upload, block_size=4, max_pending=2)
    for data in (b"ab", b"cd", b"e", b"fghi", b"jklmn", b"o"):
        assert pipeline.write(data) == len(data)
    pipeline.finish()
    assert upload.blocks == [b"abcd", b"e", b"fghi", b"jklmn", b"o"]
    assert upload.threads == {("zip-upload", True)}  # a daemon, named like the step's threads


def test_a_stopped_upload_refuses_further_writes() -> None:
    upload = _RecordingUpload()
    pipeline = zipper._UploadPipeline(upload, block_size=4)
    pipeline.write(b"ab")  # gathered, never sent
    pipeline.stop()
    pipeline.stop()  # idempotent
    with pytest.raises(RuntimeError) as stopped:
        pipeline.write(b"more")
    assert str(stopped.value) == "upload stopped"
    assert upload.blocks == []


def test_at_most_max_pending_blocks_wait_for_a_slow_upload() -> None:
    """Memory stays bounded: with the upload busy and two blocks waiting, the next write
    waits too, until the upload takes one."""
    release, busy = threading.Event(), threading.Event()

    class SlowUpload(_RecordingUpload):
        def write(self, data: bytes) -> int:
            busy.set()
            release.wait(10)
            return super().write(data)

    upload = SlowUpload()
    pipeline = zipper._UploadPipeline(upload, block_size=1, max_pending=2)
    pipeline.write(b"1")
    assert busy.wait(10)  # the upload thread holds block 1
    pipeline.write(b"2")
    pipeline.write(b"3")
    writer = threading.Thread(target=pipeline.write, args=(b"4",))
    writer.start()
    writer.join(0.2)
    assert writer.is_alive()
    release.set()
    writer.join(10)
    pipeline.finish()
    assert upload.blocks == [b"1", b"2", b"3", b"4"]


@pytest.mark.parametrize(
    ("keys", "folder"),
    [
        (["5/raw/photo/a.jpg", "5/raw/video/b.mp4", "5/raw/c.jpg"], "5/raw/"),
        (["5/raw/photo/a.jpg", "5/raw/photo/b.jpg"], "5/raw/photo/"),
        (["5/raw/photo/a.jpg"], "5/raw/photo/"),
        (["5/raw/a.jpg", "6/raw/a.jpg"], ""),
        (["a.jpg", "5/raw/a.jpg"], ""),
        (["x/y/z/a", "x/y/b", "x/q/c"], "x/"),
    ],
)
def test_the_assets_are_listed_from_their_deepest_common_folder(
    keys: list[str], folder: str
) -> None:
    assert zipper._common_folder(keys) == folder


def test_asset_keys_come_from_keys_or_objects_once_each_in_order() -> None:
    assets = ["5/raw/b.jpg", {"key": "5/raw/a.jpg", "type": "PHOTO"}, {"key": "5/raw/b.jpg"}]
    assert zipper._asset_keys(assets) == ["5/raw/b.jpg", "5/raw/a.jpg"]
    for bad in ({"type": "PHOTO"}, {"key": ""}, {"key": 5}, ""):
        with pytest.raises(PipelineError) as refused:
            zipper._asset_keys(["5/raw/a.jpg", bad])
        assert refused.value.code == ErrorCode.ZIP_FAILED
        assert refused.value.message == f"asset without a key: {bad!r}"


class _HeadCount(WrappedStorage):
    """A real adapter that records the keys it is asked to HEAD."""

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner)
        self.heads: list[str] = []

    def head(self, key: str) -> Any:
        self.heads.append(key)
        return self._inner.head(key)


def test_listed_assets_are_not_looked_up_again(local_storage: LocalStorage) -> None:
    """The LIST of the common folder answers for the assets it returns; only the one it
    cannot (outside the folder) costs a HEAD."""
    keys = [f"{LISTING}/raw/photo/vertical/vertical-0{n}-a.jpg" for n in (1, 2, 3)]
    for key in [*keys, f"{LISTING}/raw/photo/vertical/not-zipped.jpg"]:
        local_storage.write(key, b"x" * 10)
    counting = _HeadCount(local_storage)
    infos = zipper._stat_all(counting, keys, LISTING)  # type: ignore[arg-type]
    assert [(info.key, info.size) for info in infos] == [(key, 10) for key in keys]
    assert counting.heads == []


def test_chunks_asked_out_of_order_are_refused(local_storage: LocalStorage) -> None:
    keys = [f"{LISTING}/raw/a.bin", f"{LISTING}/raw/b.bin"]
    for key in keys:
        local_storage.write(key, b"abc")
    reader = zipper._ReadAhead(local_storage, keys, [3, 3], chunk_size=10, max_pending=4)
    try:
        with pytest.raises(RuntimeError) as refused:
            next(reader.chunks(1))
    finally:
        reader.close()
    assert str(refused.value) == "read-ahead out of order: got 0, expected 1"


class _BrokenLookups(WrappedStorage):
    """A real adapter whose LIST, or whose HEAD of one key, fails like a dropped connection."""

    def __init__(self, inner: Storage, *, list_fails: bool, head_fails: str = "") -> None:
        super().__init__(inner)
        self._list_fails, self._head_fails = list_fails, head_fails

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        if self._list_fails:
            raise ConnectionError("listing refused")
        return self._inner.list(prefix)

    def head(self, key: str) -> ObjectInfo:
        if key == self._head_fails:
            raise ConnectionError("head refused")
        return self._inner.head(key)


def test_a_failed_lookup_of_the_assets_is_zip_failed_naming_it(local_storage: LocalStorage) -> None:
    keys = [f"{LISTING}/raw/photo/vertical/vertical-01-a.jpg", "legacy/uploads/old.jpg"]
    for key in keys:
        local_storage.write(key, b"photo")
    one_folder = _event(keys[:1])

    with pytest.raises(PipelineError) as listing:
        create_zip_bundle(one_folder, storage=_BrokenLookups(local_storage, list_fails=True))
    assert listing.value.code == ErrorCode.ZIP_FAILED
    assert listing.value.message == (
        f"cannot list {LISTING}/raw/photo/vertical/: ConnectionError: listing refused"
    )

    broken = _BrokenLookups(local_storage, list_fails=False, head_fails=keys[1])
    with pytest.raises(PipelineError) as head:
        create_zip_bundle(_event(keys), storage=broken)  # no common folder: HEAD each
    assert head.value.code == ErrorCode.ZIP_FAILED
    assert head.value.message == "cannot read legacy/uploads/old.jpg: ConnectionError: head refused"
    with pytest.raises(ObjectNotFound):
        local_storage.head(ZIP_KEY)


class _OpenAheadLog(WrappedStorage):
    """A real adapter that records the keys opened; at chosen reads ((object, read number)
    -> keys expected open by then) it waits, at most 2 s, for those opens (they run on the
    opener pool) and notes what was open."""

    def __init__(self, inner: Storage, checkpoints: dict[tuple[str, int], set[str]]) -> None:
        super().__init__(inner)
        self._checkpoints = checkpoints
        self._changed = threading.Condition()
        self.opened: set[str] = set()
        self.openers: set[str] = set()
        self.seen: dict[tuple[str, int], set[str]] = {}

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        with self._inner.open_read(key) as stream:
            with self._changed:
                self.opened.add(key)
                self.openers.add(threading.current_thread().name.rsplit("_", 1)[0])
                self._changed.notify_all()
            yield _OpenAheadLog._Reads(self, key, stream)  # type: ignore[misc]

    def checkpoint(self, key: str, number: int) -> None:
        expected = self._checkpoints.get((key, number))
        if expected is not None:
            with self._changed:
                self._changed.wait_for(lambda: expected <= self.opened, timeout=2)
                # an open too many would come as fast: give it a moment to show
                self._changed.wait_for(lambda: len(self.opened) > len(expected), timeout=0.05)
                self.seen[(key, number)] = set(self.opened)

    class _Reads(io.RawIOBase):
        def __init__(self, log: _OpenAheadLog, key: str, inner: BinaryIO) -> None:
            self._log, self._key, self._inner, self._reads = log, key, inner, 0

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:  # type: ignore[override]
            self._log.checkpoint(self._key, self._reads)
            self._reads += 1
            return self._inner.read(size)


def test_objects_are_opened_ahead_within_a_count_and_a_byte_window(
    local_storage: LocalStorage,
) -> None:
    """With room for 2 objects ahead and 100 bytes ahead of the read position, read 20 bytes
    at a time: when object 0 is first read, object 2 (101 bytes ahead) is not open yet; the
    big object 3 holds object 4 back until the read is exactly 100 bytes before it; when
    object 4 is read, object 6 (2 ahead, exactly 100 bytes ahead) is open too."""
    sizes = [50, 51, 50, 300, 50, 50, 50, 50]  # starts 0 50 101 151 451 501 551 601
    keys = [f"{LISTING}/raw/o{n}.bin" for n in range(len(sizes))]
    for key, size in zip(keys, sizes, strict=True):
        local_storage.write(key, bytes([65 + keys.index(key)]) * size)

    def first(count: int) -> set[str]:
        return set(keys[:count])

    checkpoints = {
        (keys[0], 0): first(2),
        (keys[0], 1): first(3),  # read position 20: object 2 is within 100 bytes
        (keys[1], 0): first(3),  # object 3 (at 151) is 101 bytes ahead
        (keys[2], 0): first(4),
        (keys[3], 0): first(4),
        (keys[3], 9): first(4),  # position 331
        (keys[3], 10): first(5),  # position 351: object 4 is exactly 100 bytes ahead
        (keys[3], 14): first(6),  # position 431: object 5 (at 501) is within 100 bytes
        (keys[4], 0): first(7),
        (keys[5], 0): first(8),
    }
    log = _OpenAheadLog(local_storage, checkpoints)
    reader = zipper._ReadAhead(
        log,  # type: ignore[arg-type]
        keys,
        sizes,
        chunk_size=20,
        max_pending=4,
        open_ahead_bytes=100,
        max_open_ahead=2,
    )
    try:
        chunks = [[len(chunk) for chunk in reader.chunks(index)] for index in range(len(keys))]
    finally:
        reader.close()
    assert log.seen == checkpoints
    assert log.openers == {"zip-open"}  # the opener pool, named like the step's threads
    assert chunks[0] == [20, 20, 10]  # read in chunks of the size asked for
    assert chunks[3] == [20] * 15
    assert _zip_threads() == []


class _ObservedReads(WrappedStorage):
    """A real adapter whose read streams call ``before_read`` and ``after_read`` around
    every read of the inner stream."""

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        with self._inner.open_read(key) as stream:
            yield _ObservedReads._Stream(self, stream)  # type: ignore[misc]

    def before_read(self) -> None:
        pass

    def after_read(self, data: bytes) -> None:
        pass

    class _Stream(io.RawIOBase):
        def __init__(self, owner: _ObservedReads, inner: BinaryIO) -> None:
            self._owner, self._inner = owner, inner

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:  # type: ignore[override]
            self._owner.before_read()
            data = self._inner.read(size)
            self._owner.after_read(data)
            return data


class _BytesRead(_ObservedReads):
    """A real adapter that counts the bytes read from it."""

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner)
        self.count = 0

    def after_read(self, data: bytes) -> None:
        self.count += len(data)


def test_a_closed_read_ahead_stops_reading(local_storage: LocalStorage) -> None:
    """When the step fails, the reader stops at its next hand-over instead of reading
    the rest of the listing for nothing: here 2 chunks wait, so at most a few of the 100
    chunks are read."""
    keys = [f"{LISTING}/raw/o{n}.bin" for n in range(10)]
    for key in keys:
        local_storage.write(key, bytes(1000))
    counted = _BytesRead(local_storage)
    reader = zipper._ReadAhead(
        counted,  # type: ignore[arg-type]
        keys,
        [1000] * len(keys),
        chunk_size=100,
        max_pending=2,
    )
    assert len(next(reader.chunks(0))) == 100
    reader.close()
    assert _zip_threads() == []
    assert counted.count <= 1000  # the first object at most, of 10,000 bytes


def test_an_object_exactly_the_window_ahead_is_opened_before_the_first_read(
    local_storage: LocalStorage,
) -> None:
    """Object 2 starts exactly 100 bytes (the window) after the first byte: it is opened with
    objects 0 and 1, before anything is read."""
    sizes = [40, 60, 10]  # starts 0 40 100
    keys = [f"{LISTING}/raw/w{n}.bin" for n in range(len(sizes))]
    for number, (key, size) in enumerate(zip(keys, sizes, strict=True)):
        local_storage.write(key, bytes([65 + number]) * size)
    checkpoints = {(keys[0], 0): set(keys)}
    log = _OpenAheadLog(local_storage, checkpoints)
    reader = zipper._ReadAhead(
        log,  # type: ignore[arg-type]
        keys,
        sizes,
        chunk_size=20,
        max_pending=4,
        open_ahead_bytes=100,
        max_open_ahead=2,
    )
    try:
        contents = [b"".join(reader.chunks(index)) for index in range(len(keys))]
    finally:
        reader.close()
    assert log.seen == checkpoints
    assert contents == [b"A" * 40, b"B" * 60, b"C" * 10]


def test_a_read_ahead_closed_while_waiting_on_a_full_queue_stops(
    local_storage: LocalStorage,
) -> None:
    """The usual way a step fails: the upload stalls, the reader fills the queue (2 chunks)
    and waits to hand over a third; close() must end that wait, not leave it blocked."""
    keys = [f"{LISTING}/raw/o{n}.bin" for n in range(10)]
    for key in keys:
        local_storage.write(key, bytes(1000))
    counted = _BytesRead(local_storage)
    reader = zipper._ReadAhead(
        counted,  # type: ignore[arg-type]
        keys,
        [1000] * len(keys),
        chunk_size=100,
        max_pending=2,
    )
    assert len(next(reader.chunks(0))) == 100
    deadline = time.monotonic() + 10
    while counted.count < 400:  # the chunk taken, two waiting, the fourth being offered
        assert time.monotonic() < deadline, "the reader never filled its queue"
        time.sleep(0.01)
    time.sleep(0.2)  # two offer waits: the reader is blocked on the full queue
    reader.close()
    assert _zip_threads() == []
    assert counted.count == 400


def test_a_slow_consumer_gets_every_chunk(local_storage: LocalStorage) -> None:
    """The queue (1 chunk) stays full longer than one hand-over wait (0.1 s) while the
    upload takes its time: the reader keeps offering until the chunk is taken."""
    key = f"{LISTING}/raw/slow.bin"
    data = os.urandom(500)
    local_storage.write(key, data)
    reader = zipper._ReadAhead(local_storage, [key], [500], chunk_size=100, max_pending=1)
    received: list[bytes] = []

    def consume() -> None:
        for chunk in reader.chunks(0):
            received.append(chunk)
            time.sleep(0.15)

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    consumer.join(20)
    reader.close()
    assert not consumer.is_alive(), "the reader gave up: the consumer waits forever"
    assert b"".join(received) == data


class _HungRead(_ObservedReads):
    """A real adapter whose streams stop answering (a store gone silent mid-read) until
    ``released`` is set."""

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner)
        self.released = threading.Event()
        self.reading = threading.Event()

    def before_read(self) -> None:
        self.reading.set()
        self.released.wait(60)


def test_closing_a_read_ahead_stuck_in_a_read_returns(local_storage: LocalStorage) -> None:
    """A read that never returns holds the reading thread; close() waits for it a bounded
    time (5 s) and returns, so the step can still report its failure."""
    key = f"{LISTING}/raw/hung.bin"
    local_storage.write(key, bytes(100))
    hung = _HungRead(local_storage)
    reader = zipper._ReadAhead(hung, [key], [100], chunk_size=100, max_pending=1)  # type: ignore[arg-type]
    try:
        assert hung.reading.wait(10)
        closing = threading.Thread(target=reader.close, daemon=True)
        closing.start()
        closing.join(20)
        assert not closing.is_alive(), "close() waits for a read that never returns"
    finally:
        hung.released.set()
    reader.close()
    assert _zip_threads() == []


class _CloseFails(WrappedStorage):
    """A real adapter whose read streams all fail when they are closed (every byte read)."""

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        with self._inner.open_read(key) as stream:
            yield stream
        raise ConnectionResetError("connection reset while closing the stream")


def test_a_stream_that_fails_to_close_fails_the_step_instead_of_hanging(
    local_storage: LocalStorage,
) -> None:
    """The error comes outside the object's reads, in the reading thread: the step must
    still get it (it waits on that thread's queue) and fail with it, not wait forever."""
    key = f"{LISTING}/raw/photo/vertical/vertical-01-a.jpg"
    local_storage.write(key, sample_media.jpeg_bytes(64, 48))
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            create_zip_bundle(_event([key]), storage=_CloseFails(local_storage))  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - the outcome checked below
            outcome.append(exc)

    step = threading.Thread(target=run, daemon=True)
    step.start()
    step.join(30)
    assert not step.is_alive(), "the step waits forever for the reading thread"
    (error,) = outcome
    assert isinstance(error, PipelineError) and error.code == ErrorCode.ZIP_FAILED
    assert error.message == (
        "cannot write 5150/processed/zip/listing-media.zip while reading "
        "5150/raw/photo/vertical/vertical-01-a.jpg: "
        "ConnectionResetError: connection reset while closing the stream"
    )
    with pytest.raises(ObjectNotFound):
        local_storage.head(ZIP_KEY)
    assert _zip_threads() == []


class _FirstReadFailsNextOpenFails(WrappedStorage):
    """A real adapter: opening the second object (which the read-ahead does while the first
    is read) is refused, and the first object's stream breaks at its first read, once that
    refusal has happened (at most 2 s later)."""

    def __init__(self, inner: Storage, first: str) -> None:
        super().__init__(inner)
        self._first = first
        self.refused: list[str] = []
        self._refusal = threading.Event()

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        if key != self._first:
            self.refused.append(key)
            self._refusal.set()
            raise ConnectionRefusedError(f"cannot open {key}")
        with self._inner.open_read(key) as stream:
            self._refusal.wait(2)
            yield _FlakyStream(stream, 0)  # type: ignore[misc]


def test_an_open_ahead_that_failed_for_an_object_never_read_is_not_raised(
    local_storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step fails with the first object's error; the second's failed open (made ahead,
    never needed) is dropped quietly, not raised again in the reading thread, where it
    would end as an unhandled thread exception in the worker's log."""
    first = f"{LISTING}/raw/photo/vertical/vertical-01-a.jpg"
    second = f"{LISTING}/raw/photo/vertical/vertical-02-b.jpg"
    for key in (first, second):
        local_storage.write(key, sample_media.jpeg_bytes(64, 48))
    storage = _FirstReadFailsNextOpenFails(local_storage, first)
    unhandled: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: unhandled.append(args.exc_value))

    with pytest.raises(PipelineError) as caught:
        create_zip_bundle(_event([first, second]), storage=storage)  # type: ignore[arg-type]

    assert caught.value.message.endswith(
        f"while reading {first}: ConnectionResetError: connection reset while reading"
    )
    assert storage.refused == [second]  # the open ahead was made, and failed
    assert _zip_threads() == []
    assert unhandled == []


def test_the_method_follows_the_type_then_the_content(local_storage: LocalStorage) -> None:
    """A listed media type is STORED even when it would shrink; any other file is DEFLATED
    when its start shrinks, STORED when it does not; an empty file is an empty entry."""
    objects = {
        f"{LISTING}/raw/photo/vertical/v-01-zeros.jpg": bytes(100_000),
        f"{LISTING}/raw/project/doc/d-01-noise.txt": random.Random(5).randbytes(100_000),
        f"{LISTING}/raw/project/doc/d-02-text.txt": b"plain words " * 10_000,
        f"{LISTING}/raw/project/doc/d-03-empty.txt": b"",
    }
    for key, data in objects.items():
        local_storage.write(key, data)

    create_zip_bundle(_event(list(objects)), storage=local_storage)

    raw = _read(local_storage, ZIP_KEY)
    # each asset's size is announced, so a small entry's local header is a plain one
    assert raw[:4] == b"PK\x03\x04" and raw[28:30] == b"\x00\x00"
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        infos = archive.infolist()
        assert [archive.read(info) for info in infos] == list(objects.values())
    assert [info.compress_type for info in infos] == [
        zipfile.ZIP_STORED,
        zipfile.ZIP_STORED,
        zipfile.ZIP_DEFLATED,
        zipfile.ZIP_DEFLATED,  # nothing to judge: deflated, and as small either way
    ]
