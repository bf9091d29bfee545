"""Both storage adapters against the port's contract: S3 over HTTP (moto server) and local."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import locale
import os
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from botocore.exceptions import ClientError, ReadTimeoutError

from media_jobs.pipeline import storage_s3
from media_jobs.pipeline.config import DEFAULT_BUCKET, PipelineConfig
from media_jobs.pipeline.storage import InvalidKey, ObjectNotFound, Storage
from media_jobs.pipeline.storage_factory import storage_from_config
from media_jobs.pipeline.storage_local import TEMP_PREFIX, LocalStorage
from media_jobs.pipeline.storage_s3 import (
    DEFAULT_PART_SIZE,
    GIB,
    MAX_PART_SIZE,
    MAX_PARTS,
    MIB,
    MIN_PART_SIZE,
    S3Storage,
    part_size_for,
)
from tests.fixtures.s3server import MotoServer

KEY = "123/raw/photo/vertical/vertical-01-Salão de festas 写真.jpg"


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic, incompressible-enough bytes of any size."""
    block = hashlib.sha256(str(seed).encode()).digest() * 4096  # 128 KiB
    return (block * (size // len(block) + 1))[:size]


def pending_uploads(storage: Storage) -> list[str]:
    """Unfinished multipart uploads (S3) or temporary files (local) left behind."""
    if isinstance(storage, S3Storage):
        uploads = storage.client.list_multipart_uploads(Bucket=storage.bucket)
        return [u["Key"] for u in uploads.get("Uploads", [])]
    assert isinstance(storage, LocalStorage)
    return [str(p) for p in storage.root.rglob(f"{TEMP_PREFIX}*")]


# -- the port, on both adapters ---------------------------------------------------------


def test_write_then_head_returns_size_etag_type_and_metadata(storage: Storage) -> None:
    data = payload(1000)
    written = storage.write(
        KEY, data, content_type="image/jpeg", metadata={"source-etag": "abc123"}
    )
    info = storage.head(KEY)
    assert info.key == KEY
    assert info.size == len(data)
    assert info.etag == md5(data) == written.etag  # single-part etag, without quotes
    assert (written.key, written.size, written.content_type, written.metadata) == (
        KEY,
        len(data),
        "image/jpeg",
        {"source-etag": "abc123"},
    )
    assert info.content_type == "image/jpeg"
    assert info.metadata == {"source-etag": "abc123"}
    assert info.last_modified is not None


def test_missing_objects_raise_object_not_found(storage: Storage) -> None:
    with pytest.raises(ObjectNotFound) as missing:
        storage.open_read("1/raw/photo/vertical/never-written.jpg")
    assert str(missing.value) == "1/raw/photo/vertical/never-written.jpg"  # which one
    storage.write("123/raw/folder/inside.jpg", b"x")
    # a key never written, and one that is only a folder of others: each error names its key
    for key in ("123/raw/nothing.jpg", "123/raw/folder"):
        with pytest.raises(ObjectNotFound) as head:
            storage.head(key)
        assert str(head.value) == key
        with pytest.raises(ObjectNotFound) as opened:
            with storage.open_read(key):
                pass
        assert str(opened.value) == key
        with pytest.raises(ObjectNotFound) as ranged:
            storage.read_range(key, 0, 64)
        assert str(ranged.value) == key


def test_open_read_streams_in_chunks(storage: Storage) -> None:
    data = payload(3 * MIB + 17, seed=1)
    storage.write(KEY, data)
    received = bytearray()
    reads = 0
    with storage.open_read(KEY) as stream:
        while chunk := stream.read(256 * 1024):
            assert len(chunk) <= 256 * 1024
            received += chunk
            reads += 1
    assert bytes(received) == data
    assert reads >= 12


def test_read_range(storage: Storage) -> None:
    data = payload(5000, seed=2)
    storage.write(KEY, data)
    assert storage.read_range(KEY, 0, 64) == data[:64]
    assert storage.read_range(KEY, 4990, 64) == data[4990:]
    assert storage.read_range(KEY, 100, 0) == b""
    assert storage.read_range(KEY, 100, 1) == data[100:101]  # one byte is a range too
    assert storage.read_range("9/raw/missing.jpg", 0, 0) == b""  # nothing asked: no request
    assert storage.read_range(KEY, 6000, 10) == b""


def test_read_range_of_an_empty_object(storage: Storage) -> None:
    storage.write(KEY, b"")
    assert storage.head(KEY).size == 0
    assert storage.read_range(KEY, 0, 64) == b""


def test_write_replaces_content_and_metadata(storage: Storage) -> None:
    storage.write(KEY, b"first", metadata={"source-etag": "one"})
    storage.write(KEY, b"second version")
    info = storage.head(KEY)
    assert info.size == len(b"second version")
    assert info.metadata == {}
    with storage.open_read(KEY) as stream:
        assert stream.read() == b"second version"


def test_write_file_uploads_a_large_local_file(storage: Storage, tmp_path: Path) -> None:
    data = payload(11 * MIB + 5, seed=3)
    source = tmp_path / "transcode.mp4"
    source.write_bytes(data)
    info = storage.write_file(
        "1/processed/video/vertical/original/v.mp4",
        str(source),
        content_type="video/mp4",
        metadata={"source-etag": "e1"},
    )
    assert info.size == len(data)
    head = storage.head(info.key)
    assert head.content_type == "video/mp4"
    assert head.metadata == {"source-etag": "e1"}
    assert head.etag == info.etag
    if isinstance(storage, S3Storage):
        # sent in the storage's 5 MiB parts (boto3 on its own would send two 8 MiB parts)
        assert head.etag.endswith("-3")
    with storage.open_read(info.key) as stream:
        assert md5(stream.read()) == md5(data)


def test_s3_write_file_goes_multipart_from_the_storage_s_part_size(
    s3_storage: S3Storage, tmp_path: Path
) -> None:
    """With 5 MiB parts, a 6 MiB file is sent in two parts (boto3's own threshold, 8 MiB,
    would send it in one PUT) and a file of 5 MiB less a byte in one."""
    storage = S3Storage(s3_storage.bucket, client=s3_storage.client, part_size=MIN_PART_SIZE)
    etags = []
    for name, size in (("over", 6 * MIB), ("under", MIN_PART_SIZE - 1)):
        source = tmp_path / f"{name}.mp4"
        source.write_bytes(payload(size, seed=13))
        etags.append(storage.write_file(f"1/original/{name}.mp4", str(source)).etag)
    assert etags[0].endswith("-2")
    assert "-" not in etags[1]


def test_s3_write_file_sends_at_most_four_parts_at_once(
    s3_storage: S3Storage, tmp_path: Path
) -> None:
    """A transcode goes up four parts at a time: faster than one by one, without a thread
    and a part buffer per part of a multi-GB file."""
    source = tmp_path / "transcode.mp4"
    source.write_bytes(payload(6 * MIN_PART_SIZE, seed=12))
    state = threading.Condition()
    inside = [0]
    release = threading.Event()

    def before(**kwargs: object) -> None:
        with state:
            inside[0] += 1
            state.notify_all()
        release.wait(10)

    def after(**kwargs: object) -> None:
        with state:
            inside[0] -= 1

    events = s3_storage.client.meta.events
    events.register("before-call.s3.UploadPart", before)
    events.register("after-call.s3.UploadPart", after)
    try:
        upload = threading.Thread(
            target=s3_storage.write_file, args=("1/original/t.mp4", str(source))
        )
        upload.start()
        with state:
            assert state.wait_for(lambda: inside[0] == 4, timeout=10)
            assert not state.wait_for(lambda: inside[0] > 4, timeout=0.3)
        release.set()
        upload.join(30)
    finally:
        release.set()
        events.unregister("before-call.s3.UploadPart", before)
        events.unregister("after-call.s3.UploadPart", after)
    assert s3_storage.head("1/original/t.mp4").etag.endswith("-6")


def test_multipart_with_several_parts(storage: Storage) -> None:
    data = payload(12 * MIB + 123, seed=4)
    writer = storage.open_multipart(  # type: ignore[call-arg] - both adapters take part_size
        "9/processed/zip/listing-media.zip", content_type="application/zip", part_size=5 * MIB
    )
    step = 700 * 1024  # chunks that do not line up with part boundaries
    for start in range(0, len(data), step):
        writer.write(data[start : start + step])
    # nothing is visible before complete()
    with pytest.raises(ObjectNotFound):
        storage.head("9/processed/zip/listing-media.zip")
    if isinstance(storage, S3Storage):
        assert writer.parts_uploaded == 2  # two full 5 MiB parts sent, the rest buffered
    info = writer.complete()
    assert (info.size, info.content_type) == (len(data), "application/zip")
    head = storage.head(info.key)
    assert head.size == len(data)
    assert head.content_type == "application/zip"
    if isinstance(storage, S3Storage):
        assert head.etag.endswith("-3")  # S3's etag of a 3-part upload
    else:
        assert head.etag == md5(data)
    with storage.open_read(info.key) as stream:
        assert md5(stream.read()) == md5(data)
    assert pending_uploads(storage) == []


def test_multipart_below_one_part_is_a_single_object(storage: Storage) -> None:
    writer = storage.open_multipart("9/processed/zip/small.zip")
    writer.write(b"PK")
    writer.write(b"\x05\x06" + b"\x00" * 18)
    info = writer.complete()
    assert storage.head(info.key).etag == md5(b"PK\x05\x06" + b"\x00" * 18)
    empty = storage.open_multipart("9/processed/zip/empty.zip").complete()
    assert storage.head(empty.key).size == 0
    assert pending_uploads(storage) == []
    with pytest.raises(ValueError) as twice:
        writer.complete()
    assert str(twice.value) == "upload already completed or aborted"


def test_abort_leaves_nothing_and_the_previous_object_intact(storage: Storage) -> None:
    key = "9/processed/zip/listing-media.zip"
    storage.write(key, b"the previous good zip", content_type="application/zip")
    before = storage.head(key)
    writer = storage.open_multipart(key)
    writer.write(payload(11 * MIB, seed=5))  # at least two parts already uploaded on S3
    writer.abort()
    writer.abort()  # idempotent
    after = storage.head(key)
    assert (after.size, after.etag) == (before.size, before.etag)
    with storage.open_read(key) as stream:
        assert stream.read() == b"the previous good zip"
    assert pending_uploads(storage) == []
    with pytest.raises(ValueError) as aborted:
        writer.write(b"more")
    assert str(aborted.value) == "write to a completed or aborted upload"


def test_abort_of_a_new_key_leaves_no_object(storage: Storage) -> None:
    writer = storage.open_multipart("9/processed/zip/new.zip")
    writer.write(payload(6 * MIB, seed=6))
    writer.abort()
    with pytest.raises(ObjectNotFound):
        storage.head("9/processed/zip/new.zip")
    assert [o.key for o in storage.list("9/")] == []
    assert pending_uploads(storage) == []


def test_a_multipart_writer_in_a_with_block_completes_or_aborts(storage: Storage) -> None:
    """Leaving the block normally publishes the object (once, even after an explicit
    complete()); leaving it by an exception aborts: no object, no upload left behind."""
    with storage.open_multipart("9/processed/zip/with.zip") as writer:
        writer.write(b"written in a with block")
    with storage.open_read("9/processed/zip/with.zip") as stream:
        assert stream.read() == b"written in a with block"

    with storage.open_multipart(  # type: ignore[call-arg] - both adapters take metadata
        "9/processed/zip/explicit.zip", content_type="application/zip", metadata={"n": "1"}
    ) as writer:
        writer.write(b"completed by hand")
        info = writer.complete()
    head = storage.head("9/processed/zip/explicit.zip")
    assert (info.key, info.size, info.etag, info.content_type, info.metadata) == (
        head.key,
        len(b"completed by hand"),
        head.etag,
        "application/zip",
        {"n": "1"},
    )
    assert head.metadata == {"n": "1"}

    with pytest.raises(RuntimeError, match="the step failed"):
        with storage.open_multipart("9/processed/zip/failed.zip") as writer:
            writer.write(payload(6 * MIB, seed=7))  # a part is already sent on S3
            raise RuntimeError("the step failed")
    with pytest.raises(ObjectNotFound):
        storage.head("9/processed/zip/failed.zip")
    assert pending_uploads(storage) == []


def test_list_is_a_key_prefix_in_key_order(storage: Storage) -> None:
    keys = [
        "5/raw/photo/vertical/b.jpg",
        "5/raw/photo/vertical/a.jpg",
        "5/raw/photo/vertical-extra/c.jpg",
        "5/raw/photo/vertical/sub/d.jpg",
        "5/raw/video/vertical/e.mp4",
        "55/raw/photo/vertical/other-listing.jpg",
    ]
    for index, key in enumerate(keys):
        storage.write(key, payload(10 + index, seed=index), metadata={"n": str(index)})
    listed = list(storage.list("5/raw/photo/vertical"))
    assert [o.key for o in listed] == [
        "5/raw/photo/vertical-extra/c.jpg",
        "5/raw/photo/vertical/a.jpg",
        "5/raw/photo/vertical/b.jpg",
        "5/raw/photo/vertical/sub/d.jpg",
    ]
    assert all(o.size == storage.head(o.key).size and o.etag for o in listed)
    assert all(o.last_modified is not None for o in listed)
    assert [o.key for o in storage.list("5/")] == sorted(k for k in keys if k.startswith("5/"))
    assert list(storage.list("nothing/")) == []


def test_delete_is_idempotent(storage: Storage) -> None:
    storage.write(KEY, b"x")
    storage.delete(KEY)
    storage.delete(KEY)
    with pytest.raises(ObjectNotFound):
        storage.head(KEY)


def test_deleting_a_key_below_a_file_is_deleting_a_missing_key(storage: Storage) -> None:
    """ "4/a.jpg/x" cannot exist beside the object "4/a.jpg" on a file system; deleting it is
    deleting a missing key: no error, and "4/a.jpg" stays."""
    storage.write("4/a.jpg", b"kept")
    storage.delete("4/a.jpg/x")
    with storage.open_read("4/a.jpg") as stream:
        assert stream.read() == b"kept"


def test_unicode_and_spaces_in_keys_round_trip(storage: Storage) -> None:
    storage.write(KEY, "conteúdo".encode())
    assert [o.key for o in storage.list("123/raw/")] == [KEY]
    with storage.open_read(KEY) as stream:
        assert stream.read().decode() == "conteúdo"


# -- how a refused key is shown ---------------------------------------------------------


def test_a_short_invalid_key_is_shown_whole_and_escaped(storage: Storage) -> None:
    """Up to 120 characters the key is quoted and escaped as it is (a lone surrogate as
    ``\\ud800``), so the operator can find it."""
    with pytest.raises(InvalidKey) as short:
        storage.head("9/raw/a\ud800b.jpg")
    assert str(short.value) == (
        "invalid key '9/raw/a\\ud800b.jpg': not valid UTF-8 (lone surrogate)"
    )
    at_limit = "x" * 119 + "\ud800"  # 120 characters: still whole
    with pytest.raises(InvalidKey) as whole:
        storage.head(at_limit)
    assert str(whole.value) == (
        "invalid key '" + "x" * 119 + "\\ud800': not valid UTF-8 (lone surrogate)"
    )


def test_a_long_invalid_key_is_cut_after_100_characters_with_its_length(
    storage: Storage,
) -> None:
    """Beyond 120 characters the message shows the first 100, then the key's length."""
    over = "y" * 120 + "\ud800"  # 121 characters
    with pytest.raises(InvalidKey) as cut:
        storage.head(over)
    assert str(cut.value) == (
        "invalid key '" + "y" * 100 + "'... (121 characters): not valid UTF-8 (lone surrogate)"
    )
    too_long = "k" * 1025
    with pytest.raises(InvalidKey) as long:
        storage.write(too_long, b"x")
    assert str(long.value) == (
        "invalid key '" + "k" * 100 + "'... (1025 characters): 1025 bytes, over the 1024-byte limit"
    )


def test_a_key_of_exactly_1024_bytes_is_stored(storage: Storage) -> None:
    """S3's limit is inclusive: 1024 bytes is a key (in segments a file system can hold)."""
    longest = "/".join(["a" * 250, "b" * 250, "c" * 250, "d" * 250, "e" * 20])
    assert len(longest.encode()) == 1024
    storage.write(longest, b"x")
    assert storage.head(longest).size == 1


def test_an_empty_or_non_text_key_is_refused_as_empty(storage: Storage) -> None:
    with pytest.raises(InvalidKey) as empty:
        storage.head("")
    assert str(empty.value) == "invalid key '': empty"
    with pytest.raises(InvalidKey) as not_text:
        storage.write(b"9/raw/a.jpg", b"x")  # type: ignore[arg-type]
    assert str(not_text.value) == "invalid key b'9/raw/a.jpg': empty"


# -- adapter specifics ------------------------------------------------------------------


def test_s3_uri_and_presigned_url(s3_storage: S3Storage) -> None:
    s3_storage.write(KEY, b"signed bytes")
    assert s3_storage.uri(KEY) == f"s3://{s3_storage.bucket}/{KEY}"
    url = s3_storage.presigned_url(KEY, 60)
    assert url is not None
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert response.content == b"signed bytes"


def test_s3_list_follows_pages(s3_storage: S3Storage, count_calls: CountCalls) -> None:
    keys = [f"7/raw/photo/vertical/{n:03d}.jpg" for n in range(7)]
    for key in keys:
        s3_storage.write(key, b"x")
    s3_storage.list_page_size = 2
    requests_sent = count_calls(s3_storage, "ListObjectsV2")
    assert [o.key for o in s3_storage.list("7/")] == keys
    assert len(requests_sent) == 4  # pages of 2, 2, 2 and 1 keys


def test_s3_lists_a_thousand_keys_a_page_by_default(s3_storage: S3Storage) -> None:
    """S3's largest page: a listing of a big listing takes as few requests as it can."""
    s3_storage.write("7/a.jpg", b"x")
    asked: list[object] = []

    def record(params: dict[str, object], **kwargs: object) -> None:
        asked.append(params.get("MaxKeys"))

    event = "provide-client-params.s3.ListObjectsV2"
    s3_storage.client.meta.events.register(event, record)
    try:
        assert [o.key for o in s3_storage.list("7/")] == ["7/a.jpg"]
    finally:
        s3_storage.client.meta.events.unregister(event, record)
    assert asked == [1000]


def test_s3_default_retries_and_timeouts(moto_server: MotoServer) -> None:
    """A step fails in bounded time when S3 is down: 4 retries, 5 s to connect, 60 s to
    read, unless the caller says otherwise."""
    config = S3Storage("bucket", endpoint_url=moto_server.endpoint_url).client.meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": 5}  # 1 + 4 retries
    assert (config.connect_timeout, config.read_timeout) == (5, 60)


def test_s3_parts_are_sent_by_named_daemon_threads(s3_storage: S3Storage) -> None:
    """The part uploads run on the "s3-part" pool (so a leaked thread is recognisable)."""
    senders: set[str] = set()

    class Recording(_PartFails):
        def upload_part(self, **kwargs: object) -> dict[str, object]:
            senders.add(threading.current_thread().name.rsplit("_", 1)[0])
            return super().upload_part(**kwargs)

    storage = S3Storage(
        s3_storage.bucket, client=Recording(s3_storage.client, 0), part_size=MIN_PART_SIZE
    )
    writer = storage.open_multipart("named.bin")
    writer.write(payload(2 * MIN_PART_SIZE + 1))
    writer.complete()
    assert senders == {"s3-part"}


def test_an_s3_etag_loses_its_quotes_and_a_missing_one_is_empty() -> None:
    assert storage_s3._etag('"9e107d9d372bb6826bd81d3542a419d6"') == (
        "9e107d9d372bb6826bd81d3542a419d6"
    )
    assert storage_s3._etag(None) == ""


def test_closing_an_s3_stream_closes_its_http_body_once() -> None:
    """The response body (its connection) is released when the stream is closed, and
    closing twice is harmless."""

    class Body:
        closes = 0

        def read(self, size: int) -> bytes:
            return b"abc"[:size]

        def close(self) -> None:
            self.closes += 1

    body = Body()
    reader = storage_s3._StreamingBodyReader(body)  # type: ignore[arg-type]
    assert reader.read(3) == b"abc"
    reader.close()
    assert body.closes == 1
    reader.close()
    assert body.closes == 1


def test_s3_refuses_parts_below_the_s3_minimum(pipeline_config: PipelineConfig) -> None:
    with pytest.raises(ValueError, match="5 MiB"):
        S3Storage.from_config(pipeline_config, part_size=MIB)
    storage = S3Storage.from_config(pipeline_config)
    with pytest.raises(ValueError) as refused:
        storage.open_multipart("k", part_size=MIN_PART_SIZE - 1)
    assert str(refused.value) == "S3 parts must be at least 5242880 bytes (5 MiB)"


def test_a_missing_bucket_is_an_error_not_a_missing_object(moto_server: MotoServer) -> None:
    missing_bucket = S3Storage("no-such-bucket-here", endpoint_url=moto_server.endpoint_url)
    for call in (
        lambda: missing_bucket.head("k"),
        lambda: missing_bucket.read_range("k", 0, 10),
        lambda: missing_bucket.open_read("k"),
    ):
        with pytest.raises(ClientError) as err:
            call()
        assert not isinstance(err.value, ObjectNotFound)
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


CountCalls = Callable[[S3Storage, str], list[str]]


@pytest.fixture
def count_calls() -> Iterator[CountCalls]:
    """Records every request of one operation the client sends (botocore's event hook);
    the hooks go when the test ends, since storages share their client."""
    hooks: list[tuple[S3Storage, str, Callable[..., None]]] = []

    def count(storage: S3Storage, operation: str) -> list[str]:
        calls: list[str] = []

        def hook(**kwargs: object) -> None:
            calls.append(operation)

        storage.client.meta.events.register(f"before-call.s3.{operation}", hook)
        hooks.append((storage, f"before-call.s3.{operation}", hook))
        return calls

    yield count
    for storage, event, hook in hooks:
        storage.client.meta.events.unregister(event, hook)


def test_the_bucket_is_checked_once_per_storage(
    s3_storage: S3Storage, count_calls: CountCalls
) -> None:
    """A missing key costs one HEAD once the bucket is known to exist (the thumbnails
    step's resume check misses on every photo of a first run)."""
    head_bucket = count_calls(s3_storage, "HeadBucket")
    for number in range(3):
        with pytest.raises(ObjectNotFound):
            s3_storage.head(f"123/processed/photo/large/missing-{number}.jpg")
    assert head_bucket == ["HeadBucket"]


def test_a_missing_bucket_is_never_taken_for_an_existing_one(
    moto_server: MotoServer, count_calls: CountCalls
) -> None:
    missing_bucket = S3Storage("no-such-bucket-either", endpoint_url=moto_server.endpoint_url)
    head_bucket = count_calls(missing_bucket, "HeadBucket")
    for _ in range(2):
        with pytest.raises(ClientError) as err:
            missing_bucket.head("k")
        assert not isinstance(err.value, ObjectNotFound)
    assert head_bucket == ["HeadBucket", "HeadBucket"]


def test_local_layout_and_sidecar(local_storage: LocalStorage) -> None:
    local_storage.write(KEY, b"abc", content_type="image/jpeg", metadata={"a": "b"})
    object_path = local_storage.root / local_storage.bucket / KEY
    sidecar = local_storage.root / ".meta" / local_storage.bucket / f"{KEY}.json"
    assert object_path.read_bytes() == b"abc"
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    assert meta["etag"] == md5(b"abc")
    assert meta["metadata"] == {"a": "b"}
    assert local_storage.uri(KEY) == object_path.as_uri()
    assert local_storage.uri(KEY).startswith("file:///")
    assert local_storage.presigned_url(KEY, 60) is None
    local_storage.delete(KEY)
    assert not object_path.exists()
    assert not sidecar.exists()


def test_local_etag_of_files_placed_by_hand(local_storage: LocalStorage) -> None:
    path = local_storage.root / local_storage.bucket / "1/raw/photo/vertical/by-hand.jpg"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"copied by an operator")
    info = local_storage.head("1/raw/photo/vertical/by-hand.jpg")
    assert info.etag == md5(b"copied by an operator")
    assert info.metadata == {}
    # replaced by hand later: the recorded etag is stale and gets recomputed
    local_storage.write("1/raw/photo/vertical/by-hand.jpg", b"v1", metadata={"k": "v"})
    path.write_bytes(b"v2 replaced by hand, longer")
    info = local_storage.head("1/raw/photo/vertical/by-hand.jpg")
    assert info.etag == md5(b"v2 replaced by hand, longer")
    assert info.metadata == {"k": "v"}


def test_local_etag_is_recomputed_only_when_the_file_changed(
    local_storage: LocalStorage,
) -> None:
    """The sidecar caches the etag for the file's size and mtime: a HEAD of an unchanged
    file neither hashes it nor rewrites the sidecar; a same-size edit by hand (another
    mtime) is hashed again."""
    key = "1/raw/photo/vertical/cached.jpg"
    local_storage.write(key, b"first bytes")
    sidecar = local_storage.root / ".meta" / local_storage.bucket / f"{key}.json"
    written = sidecar.stat()
    for _ in range(2):
        assert local_storage.head(key).etag == md5(b"first bytes")
    after = sidecar.stat()
    assert (after.st_ino, after.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    path = local_storage.root / local_storage.bucket / key
    mtime_ns = path.stat().st_mtime_ns
    path.write_bytes(b"other bytes")  # same size
    os.utime(path, ns=(mtime_ns + 1_000_000_000, mtime_ns + 1_000_000_000))
    assert local_storage.head(key).etag == md5(b"other bytes")
    rewritten = sidecar.stat()
    assert local_storage.head(key).etag == md5(b"other bytes")
    assert sidecar.stat().st_ino == rewritten.st_ino


def test_local_etag_of_a_file_placed_by_hand_is_hashed_once(local_storage: LocalStorage) -> None:
    """The first HEAD hashes the file and records the sidecar; the next one reads it."""
    key = "1/raw/photo/vertical/copied.jpg"
    path = local_storage.bucket_root / key
    path.parent.mkdir(parents=True)
    path.write_bytes(b"copied by an operator")
    assert local_storage.head(key).etag == md5(b"copied by an operator")
    sidecar = local_storage.root / ".meta" / local_storage.bucket / f"{key}.json"
    recorded = sidecar.stat()
    assert local_storage.head(key).etag == md5(b"copied by an operator")
    assert (sidecar.stat().st_ino, sidecar.stat().st_mtime_ns) == (
        recorded.st_ino,
        recorded.st_mtime_ns,
    )


def test_local_open_multipart_uses_a_temp_file_in_the_target_folder(
    local_storage: LocalStorage,
) -> None:
    writer = local_storage.open_multipart("3/processed/zip/listing-media.zip")
    writer.write(b"partial")
    folder = local_storage.root / local_storage.bucket / "3/processed/zip"
    temp_files = [p.name for p in folder.iterdir()]
    assert len(temp_files) == 1 and temp_files[0].startswith(TEMP_PREFIX)
    assert list(local_storage.list("3/")) == []  # in-progress writes are never listed
    writer.complete()
    assert [p.name for p in folder.iterdir()] == ["listing-media.zip"]


@pytest.mark.parametrize(
    "bad_key",
    [
        "../outside.txt",
        "1/../../outside.txt",
        "/etc/passwd",
        "1//double.txt",
        "1/./x",
        "",
        f"1/{TEMP_PREFIX}x",
    ],
)
def test_local_refuses_keys_that_escape_or_alias(
    local_storage: LocalStorage, tmp_path: Path, bad_key: str
) -> None:
    with pytest.raises(ValueError):
        local_storage.write(bad_key, b"x")
    with pytest.raises(ValueError):
        local_storage.head(bad_key)
    with pytest.raises(ValueError):
        local_storage.open_multipart(bad_key)
    assert not (tmp_path / "outside.txt").exists()


def test_local_list_never_shows_sidecars(local_storage: LocalStorage) -> None:
    local_storage.write("4/a.jpg", b"a", metadata={"x": "y"})
    assert [o.key for o in local_storage.list("")] == ["4/a.jpg"]
    assert all(
        not p.name.endswith(".json") for p in (local_storage.root / "toq-listing-medias").rglob("*")
    )


def test_local_list_skips_uploads_in_progress_and_sees_every_file_beside_them(
    local_storage: LocalStorage,
) -> None:
    """Ten uploads under way (temporary files) among ten finished files in one folder: the
    listing shows the ten files, whatever order the folder lists its entries in (on ext4 a
    hash order: with ten of each, every file sorts after every temporary one in 1 of
    184,756 orders)."""
    writers = [local_storage.open_multipart(f"4/up-{n}.jpg") for n in range(10)]
    for n in range(10):
        local_storage.write(f"4/done-{n}.jpg", b"x")
    try:
        assert len(list((local_storage.bucket_root / "4").glob(f"{TEMP_PREFIX}*"))) == 10
        assert [o.key for o in local_storage.list("4/")] == [f"4/done-{n}.jpg" for n in range(10)]
    finally:
        for writer in writers:
            writer.abort()


def test_storage_from_config(tmp_path: Path, pipeline_config: PipelineConfig) -> None:
    local = storage_from_config(PipelineConfig(storage_backend="local", local_root=str(tmp_path)))
    assert isinstance(local, LocalStorage)
    assert local.bucket_root == tmp_path / "toq-listing-medias"
    s3 = storage_from_config(pipeline_config)
    assert isinstance(s3, S3Storage)
    s3.write("x", b"1")
    assert s3.head("x").size == 1
    with pytest.raises(ValueError) as unknown:
        storage_from_config(PipelineConfig(storage_backend="ftp"))
    assert str(unknown.value) == "unknown storage backend 'ftp'; expected s3 or local"


def test_s3_storage_signs_for_the_configured_region(pipeline_config: PipelineConfig) -> None:
    storage = S3Storage.from_config(dataclasses.replace(pipeline_config, region="eu-west-3"))
    storage.write("region.txt", b"paris")
    url = storage.presigned_url("region.txt", 60)
    assert url is not None
    assert "%2Feu-west-3%2Fs3%2Faws4_request" in url
    assert requests.get(url, timeout=10).content == b"paris"


def test_local_refuses_a_hidden_or_path_like_bucket(tmp_path: Path) -> None:
    for bucket in (".meta", "", "a/b", "a\\b"):
        with pytest.raises(ValueError) as refused:
            LocalStorage(tmp_path, bucket)
        assert str(refused.value) == f"invalid bucket name {bucket!r}"


def test_local_segments_hold_255_bytes_and_a_file_name_250(local_storage: LocalStorage) -> None:
    """NAME_MAX is 255 bytes; an object's sidecar adds ".json" to its file name, so the
    last segment holds 250."""
    fits = "f" * 255 + "/" + "n" * 250
    local_storage.write(fits, b"x")
    assert local_storage.head(fits).size == 1
    with pytest.raises(InvalidKey) as folder:
        local_storage.write("g" * 256 + "/a.jpg", b"x")
    assert str(folder.value) == (
        "invalid key: the segment '" + "g" * 40 + "'... is 256 bytes; a local file name holds 255"
    )
    with pytest.raises(InvalidKey) as name:
        local_storage.write("4/" + "n" * 251, b"x")
    assert str(name.value) == (
        "invalid key: the segment '" + "n" * 40 + "'... is 251 bytes; a local file name holds 250"
    )
    with pytest.raises(InvalidKey) as reserved:
        local_storage.write(f"4/{TEMP_PREFIX}a", b"x")
    assert (
        str(reserved.value) == f"invalid key '4/{TEMP_PREFIX}a': '{TEMP_PREFIX}' names are reserved"
    )
    with pytest.raises(InvalidKey) as dots:
        local_storage.write("4/./a", b"x")
    assert str(dots.value) == "invalid key '4/./a': empty, '.' or '..' segment"
    with pytest.raises(InvalidKey) as parent:
        local_storage.write("4/../5/a", b"x")  # inside the bucket, but another key's alias
    assert str(parent.value) == "invalid key '4/../5/a': empty, '.' or '..' segment"
    with pytest.raises(InvalidKey) as leading:
        local_storage.write("/4/a", b"x")
    assert str(leading.value) == "invalid key '/4/a': leading '/'"


def test_local_refuses_a_nul_character_and_says_so(local_storage: LocalStorage) -> None:
    with pytest.raises(InvalidKey) as nul:
        local_storage.write("9/raw/a\x00b.jpg", b"x")
    assert str(nul.value) == "invalid key '9/raw/a\\x00b.jpg': NUL character"


def test_local_sidecars_are_utf8_whatever_the_locale(tmp_path: Path) -> None:
    """A worker started under the bare C locale (ASCII) still records non-ASCII metadata."""
    script = (
        "import sys; from media_jobs.pipeline.storage_local import LocalStorage; "
        "LocalStorage(sys.argv[1], 'toq-listing-medias').write("
        "'9/a.jpg', b'abc', metadata={'title': 'Sal\\u00e3o \\u5199\\u771f'})"
    )
    env = {**os.environ, "LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
    env.pop("PYTHONIOENCODING", None)
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, check=True, timeout=60)
    storage = LocalStorage(tmp_path, "toq-listing-medias")
    assert storage.head("9/a.jpg").metadata == {"title": "Salão 写真"}


def test_local_sidecars_are_utf8_under_an_ascii_locale_in_process(
    local_storage: LocalStorage,
) -> None:
    """The same rule inside this process: with LC_CTYPE switched to "C" (ASCII), a write
    still records non-ASCII metadata, because the sidecar names its encoding."""
    previous = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        local_storage.write("9/a.jpg", b"abc", metadata={"title": "Salão 写真"})
        assert local_storage.head("9/a.jpg").metadata == {"title": "Salão 写真"}
    finally:
        locale.setlocale(locale.LC_CTYPE, previous)
    sidecar = local_storage.root / ".meta" / local_storage.bucket / "9/a.jpg.json"
    assert "Salão 写真" in sidecar.read_bytes().decode("utf-8")


def test_local_etag_of_a_large_file_placed_by_hand_is_hashed_in_chunks(
    local_storage: LocalStorage,
) -> None:
    """A video copied in by hand can be gigabytes: hashing it reads 1 MiB at a time, so
    the memory a HEAD needs does not grow with the file (32 MiB here, under 8 MiB peak)."""
    data = payload(32 * MIB, seed=9)
    path = local_storage.bucket_root / "1/raw/video/vertical/by-hand.mp4"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    expected = md5(data)
    del data
    tracemalloc.start()
    try:
        info = local_storage.head("1/raw/video/vertical/by-hand.mp4")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.etag == expected
    assert peak < 8 * MIB


def test_local_write_file_copies_a_large_file_in_chunks(
    local_storage: LocalStorage, tmp_path: Path
) -> None:
    """A transcode is uploaded with write_file: the copy reads 1 MiB at a time, so its
    memory does not grow with the file (32 MiB here, under 8 MiB peak)."""
    data = payload(32 * MIB, seed=10)
    source = tmp_path / "transcode.mp4"
    source.write_bytes(data)
    expected = md5(data)
    del data
    tracemalloc.start()
    try:
        info = local_storage.write_file("1/processed/video/vertical/original/t.mp4", str(source))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (info.size, info.etag) == (32 * MIB, expected)
    assert peak < 8 * MIB


def test_local_list_of_the_whole_bucket_and_of_a_folder_with_odd_entries(
    local_storage: LocalStorage,
) -> None:
    """Keys at the top of the bucket are listed without a folder; a write in progress (its
    temporary file) and a file gone between the walk and its HEAD (a dangling link) are
    left out, and the files after them are still listed."""
    in_folder = [f"4/{n:02d}.jpg" for n in range(20)]  # whatever order the folder lists in
    for key in ["top.jpg", *in_folder]:
        local_storage.write(key, b"x")
    folder = local_storage.bucket_root / "4"
    (folder / "05-gone.jpg").symlink_to(folder / "deleted.jpg")
    upload = local_storage.open_multipart("4/in-progress.jpg")
    upload.write(b"in progress")
    assert [o.key for o in local_storage.list("")] == [*in_folder, "top.jpg"]
    assert [o.key for o in local_storage.list("4/")] == in_folder
    upload.abort()


@pytest.mark.parametrize("prefix", ["4/../5/", "..", "/etc/", "/"])
def test_local_list_refuses_a_prefix_that_leaves_the_bucket(
    local_storage: LocalStorage, prefix: str
) -> None:
    """A parent step or an absolute path would walk the disk outside the bucket folder."""
    with pytest.raises(ValueError) as refused:
        list(local_storage.list(prefix))
    assert str(refused.value) == f"invalid prefix {prefix!r}"


def test_local_list_takes_dots_inside_a_name_as_a_name(local_storage: LocalStorage) -> None:
    local_storage.write("4/a..b/c.jpg", b"x")
    assert [o.key for o in local_storage.list("4/a..b/")] == ["4/a..b/c.jpg"]


def test_local_writes_answer_what_head_answers(local_storage: LocalStorage) -> None:
    """The ObjectInfo a write returns is the object's HEAD: size, etag, modification time,
    content type and metadata."""
    written = local_storage.write(
        "4/a.jpg", b"abc", content_type="image/jpeg", metadata={"source-etag": "e1"}
    )
    assert written == local_storage.head("4/a.jpg")
    assert written.last_modified is not None
    upload = local_storage.open_multipart("4/b.zip", content_type="application/zip")
    upload.write(b"PK")
    assert upload.complete() == local_storage.head("4/b.zip")


def test_local_writes_go_through_a_temporary_file_beside_the_target(
    local_storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Objects and sidecars alike: renamed into place from a reserved temporary name in the
    same folder (one file system, so the rename is atomic)."""
    renames: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def replace(source: str, target: str) -> None:
        renames.append((Path(source), Path(target)))
        real_replace(source, target)

    monkeypatch.setattr("media_jobs.pipeline.storage_local.os.replace", replace)
    local_storage.write("4/a.jpg", b"abc")
    upload = local_storage.open_multipart("4/b.zip")
    upload.write(b"PK")
    upload.complete()
    object_path = local_storage.bucket_root / "4" / "a.jpg"
    object_path.write_bytes(b"replaced by hand")
    local_storage.head("4/a.jpg")  # rewrites the stale sidecar
    assert [target for _, target in renames] == [
        object_path,
        local_storage.root / ".meta" / local_storage.bucket / "4" / "a.jpg.json",
        local_storage.bucket_root / "4" / "b.zip",
        local_storage.root / ".meta" / local_storage.bucket / "4" / "b.zip.json",
        local_storage.root / ".meta" / local_storage.bucket / "4" / "a.jpg.json",
    ]
    for source, target in renames:
        assert source.parent == target.parent
        assert source.name.startswith(TEMP_PREFIX)


def test_local_write_whose_sidecar_cannot_be_recorded_fails_with_the_os_error(
    local_storage: LocalStorage,
) -> None:
    """The sidecar of "4/a" would be a folder (the key "4/a.json/x" exists): the write
    fails with the file system's own error, not one raised while cleaning up."""
    local_storage.write("4/a.json/x", b"x")
    with pytest.raises(IsADirectoryError):
        local_storage.write("4/a", b"abc")
    assert pending_uploads(local_storage) == []


def test_local_head_survives_a_sidecar_it_cannot_write(local_storage: LocalStorage) -> None:
    """The sidecar of "4/a" is ".meta/<bucket>/4/a.json": the key "4/a.json/x" makes that
    a folder. head of a file placed by hand then still answers (the etag is simply not
    cached) and leaves no temporary file behind."""
    local_storage.write("4/a.json/x", b"x")
    placed = local_storage.bucket_root / "4" / "a"
    placed.write_bytes(b"abc")
    info = local_storage.head("4/a")
    assert (info.size, info.etag) == (3, "900150983cd24fb0d6963f7d28e17f72")
    assert pending_uploads(local_storage) == []


# -- part sizes -------------------------------------------------------------------------


def parts_needed(total: int, base: int) -> int:
    number, written = 0, 0
    while written < total:
        number += 1
        written += part_size_for(number, base)
    return number


def test_part_size_grows_with_the_part_number() -> None:
    base = 8 * MIB
    assert part_size_for(1, base) == base
    assert part_size_for(1000, base) == base
    assert part_size_for(1001, base) == 2 * base
    assert part_size_for(2001, base) == 4 * base
    sizes = [part_size_for(n, base) for n in range(1, MAX_PARTS + 1)]
    assert sizes == sorted(sizes)
    assert max(sizes) <= MAX_PART_SIZE
    with pytest.raises(ValueError) as zero:
        part_size_for(0, base)
    assert str(zero.value) == "part numbers start at 1"
    with pytest.raises(ValueError) as over:
        part_size_for(MAX_PARTS + 1, base)
    assert str(over.value) == "S3 allows at most 10000 parts"


@pytest.mark.parametrize("base", [MIN_PART_SIZE, 8 * MIB, 16 * MIB])
def test_large_uploads_stay_under_ten_thousand_parts(base: int) -> None:
    assert parts_needed(50 * GIB, base) < MAX_PARTS
    assert parts_needed(1024 * GIB, base) < MAX_PARTS


def test_the_default_part_size_reaches_the_s3_object_limit() -> None:
    assert parts_needed(5 * 1024 * GIB, DEFAULT_PART_SIZE) <= MAX_PARTS


def test_streamed_multipart_follows_the_growing_part_sizes(s3_storage: S3Storage) -> None:
    writer = s3_storage.open_multipart("growth.bin", part_size=MIN_PART_SIZE)
    writer.write(payload(MIN_PART_SIZE * 2))
    assert writer.parts_uploaded == 2
    writer.abort()
    assert pending_uploads(s3_storage) == []


def test_each_part_has_the_size_of_its_own_number(
    s3_storage: S3Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The growth rule at a small scale (the size doubles after every part instead of
    every 1000): part 1 has the base size, part 2 twice that, so 3 base sizes are 2 parts."""
    monkeypatch.setattr(storage_s3, "PARTS_PER_STEP", 1)
    data = payload(3 * MIN_PART_SIZE, seed=13)
    writer = s3_storage.open_multipart("doubling.bin", part_size=MIN_PART_SIZE)
    writer.write(data)
    assert writer.parts_uploaded == 2
    info = writer.complete()
    assert info.etag.endswith("-2") and info.size == 3 * MIN_PART_SIZE
    with s3_storage.open_read("doubling.bin") as stream:
        assert stream.read() == data


# -- retries and timeouts against a misbehaving S3 endpoint -------------------------------


class FakeS3Handler(BaseHTTPRequestHandler):
    """An endpoint of ``fake_s3``: each request's path is recorded; nothing is logged."""

    def record(self) -> None:
        self.server.seen.append(self.path)  # type: ignore[attr-defined]

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def fake_s3(handler: type[FakeS3Handler]) -> Iterator[tuple[str, list[str]]]:
    """A local HTTP endpoint answering with ``handler``; yields its URL and the paths seen."""
    seen: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.seen = seen  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


class SlowDown(FakeS3Handler):
    """Always throttles, like S3 under pressure."""

    def do_HEAD(self) -> None:
        self.record()
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()


class Silent(FakeS3Handler):
    """Accepts the request and never answers in time."""

    def do_HEAD(self) -> None:
        self.record()
        threading.Event().wait(3)


def test_s3_retries_throttling_a_bounded_number_of_times() -> None:
    with fake_s3(SlowDown) as (endpoint, seen):
        storage = S3Storage("bucket", endpoint_url=endpoint, region="us-east-1", max_retries=2)
        with pytest.raises(ClientError) as err:
            storage.head("k")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert len(seen) == 3  # the first try and two retries, then the error surfaces


def test_s3_read_timeout_is_bounded() -> None:
    with fake_s3(Silent) as (endpoint, seen):
        storage = S3Storage(
            "bucket", endpoint_url=endpoint, region="us-east-1", max_retries=0, read_timeout_s=0.3
        )
        with pytest.raises(ReadTimeoutError):
            storage.head("k")
    assert len(seen) == 1


class _PartFails:
    """The real client, except that one UploadPart fails like a dropped connection."""

    def __init__(self, inner: object, failing_part: int) -> None:
        self._inner = inner
        self._failing_part = failing_part

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def upload_part(self, **kwargs: object) -> dict[str, object]:
        if kwargs["PartNumber"] == self._failing_part:
            raise ConnectionError("connection lost while sending a part")
        return self._inner.upload_part(**kwargs)  # type: ignore[attr-defined]


def test_parts_in_flight_complete_in_order(s3_storage: S3Storage) -> None:
    data = payload(MIN_PART_SIZE * 4 + 1234)
    writer = s3_storage.open_multipart("inflight.bin", part_size=MIN_PART_SIZE)
    for start in range(0, len(data), 700_000):
        writer.write(data[start : start + 700_000])
    info = writer.complete()

    assert info.etag.endswith("-5")  # four full parts and the rest, sent two at a time
    with s3_storage.open_read("inflight.bin") as stream:
        assert stream.read() == data
    assert [t.name for t in threading.enumerate() if t.name.startswith("s3-part")] == []


def test_two_parts_are_sent_at_once_never_three(s3_storage: S3Storage) -> None:
    """While two parts are being sent, the writer waits before starting a third: sending
    overlaps, and memory stays bounded by the buffer plus two parts."""
    state = threading.Condition()
    inside = [0]
    most = [0]
    release = threading.Event()

    class Gate(_PartFails):
        def upload_part(self, **kwargs: object) -> dict[str, object]:
            with state:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
                state.notify_all()
            release.wait(10)
            try:
                return super().upload_part(**kwargs)
            finally:
                with state:
                    inside[0] -= 1

    storage = S3Storage(
        s3_storage.bucket, client=Gate(s3_storage.client, 0), part_size=MIN_PART_SIZE
    )
    writer = storage.open_multipart("gated.bin")
    data = payload(4 * MIN_PART_SIZE, seed=11)
    writing = threading.Thread(target=writer.write, args=(data,))
    writing.start()
    with state:
        assert state.wait_for(lambda: inside[0] == 2, timeout=10)
        assert not state.wait_for(lambda: inside[0] > 2, timeout=0.2)
    assert writer.parts_uploaded == 2  # the third part waits in the writer, not in a queue
    release.set()
    writing.join(10)
    writer.complete()
    assert most[0] == 2
    with s3_storage.open_read("gated.bin") as stream:
        assert stream.read() == data


def test_a_part_sent_frees_its_place_while_an_earlier_one_is_still_going(
    s3_storage: S3Storage,
) -> None:
    """A slow part does not hold the upload back: as soon as any part in flight is done, the
    next one starts (the writer waits for the first answer, not for all of them)."""
    release = threading.Event()

    class SlowFirstPart(_PartFails):
        def upload_part(self, **kwargs: object) -> dict[str, object]:
            if kwargs["PartNumber"] == 1:
                release.wait(10)
            return super().upload_part(**kwargs)

    storage = S3Storage(
        s3_storage.bucket, client=SlowFirstPart(s3_storage.client, 0), part_size=MIN_PART_SIZE
    )
    writer = storage.open_multipart("slow-first.bin")
    data = payload(3 * MIN_PART_SIZE, seed=12)
    writing = threading.Thread(target=writer.write, args=(data,))
    writing.start()
    try:
        writing.join(10)
        # part 2 came back, so part 3 went out while part 1 is still being sent
        assert not writing.is_alive()
        assert writer.parts_uploaded == 3
    finally:
        release.set()
        writing.join(10)
    writer.complete()
    with s3_storage.open_read("slow-first.bin") as stream:
        assert stream.read() == data


def test_a_failed_part_in_flight_fails_the_upload_and_aborts_it(s3_storage: S3Storage) -> None:
    storage = S3Storage(
        s3_storage.bucket, client=_PartFails(s3_storage.client, 2), part_size=MIN_PART_SIZE
    )
    writer = storage.open_multipart("broken.bin")

    with pytest.raises(ConnectionError):
        for _ in range(5):
            writer.write(payload(MIN_PART_SIZE))
        writer.complete()

    writer.abort()
    assert pending_uploads(s3_storage) == []
    with pytest.raises(ObjectNotFound):
        s3_storage.head("broken.bin")
    assert [t.name for t in threading.enumerate() if t.name.startswith("s3-part")] == []


def test_a_failed_completion_keeps_its_error_when_the_abort_fails_too(
    s3_storage: S3Storage,
) -> None:
    """S3 unreachable at the end: the caller sees why the completion failed, not the
    abort's error (the upload is left to the bucket's lifecycle rule)."""

    class Unreachable(_PartFails):
        def complete_multipart_upload(self, **kwargs: object) -> None:
            raise ConnectionError("completion lost")

        def abort_multipart_upload(self, **kwargs: object) -> None:
            raise ConnectionError("abort lost")

    storage = S3Storage(
        s3_storage.bucket, client=Unreachable(s3_storage.client, 0), part_size=MIN_PART_SIZE
    )
    writer = storage.open_multipart("unreachable.bin")
    writer.write(payload(MIN_PART_SIZE + 1))
    with pytest.raises(ConnectionError) as failed:
        writer.complete()
    assert str(failed.value) == "completion lost"
    for upload in s3_storage.client.list_multipart_uploads(Bucket=s3_storage.bucket)["Uploads"]:
        s3_storage.client.abort_multipart_upload(
            Bucket=s3_storage.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
        )


def test_a_lambda_without_media_bucket_uses_the_default_bucket_on_s3() -> None:
    """The Go functions defaulted the bucket (the account's video_thumbnails function has
    no MEDIA_BUCKET): on Lambda the storage is S3, never the function's disk."""

    on_lambda = PipelineConfig.from_env({"AWS_LAMBDA_FUNCTION_NAME": "listing-media-x"})
    assert (on_lambda.storage_backend, on_lambda.bucket) == ("s3", DEFAULT_BUCKET)
    assert PipelineConfig.from_env({}).storage_backend == "local"
    forced = PipelineConfig.from_env(
        {"AWS_LAMBDA_FUNCTION_NAME": "x", "MEDIA_STORAGE_BACKEND": "local"}
    )
    assert forced.storage_backend == "local"


class HtmlNotFound(FakeS3Handler):
    """An S3-compatible endpoint behind a proxy that answers a missing key with an HTML
    404 page: no S3 error code, only the status."""

    def do_GET(self) -> None:
        self.record()
        body = b"<html><body>Not Found</body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_a_404_without_an_s3_error_code_is_a_missing_object() -> None:
    with fake_s3(HtmlNotFound) as (endpoint, seen):
        storage = S3Storage("bucket", endpoint_url=endpoint, region="us-east-1", max_retries=0)
        with pytest.raises(ObjectNotFound):
            storage.read_range("9/raw/gone.jpg", 0, 10)
    assert seen == ["/bucket/9/raw/gone.jpg"]


class NoListBucket(FakeS3Handler):
    """A role allowed to read objects but not to HeadBucket (403) and a missing key."""

    def do_HEAD(self) -> None:
        self.record()
        self.send_response(403 if self.path.rstrip("/") == "/bucket" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_a_bucket_hidden_by_403_gets_the_benefit_of_the_doubt() -> None:
    with fake_s3(NoListBucket) as (endpoint, seen):
        storage = S3Storage("bucket", endpoint_url=endpoint, region="us-east-1", max_retries=0)
        with pytest.raises(ObjectNotFound):
            storage.head("9/raw/gone.jpg")
    assert seen == ["/bucket/9/raw/gone.jpg", "/bucket"]


def test_storages_with_the_same_settings_share_one_client(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task or a warm Lambda container builds a storage per run: the client (its parsed
    model and its open connections) is built once per settings and credentials."""
    first = S3Storage("bucket-a", endpoint_url=moto_server.endpoint_url)
    assert S3Storage("bucket-b", endpoint_url=moto_server.endpoint_url).client is first.client
    assert (
        S3Storage("bucket-a", endpoint_url=moto_server.endpoint_url, read_timeout_s=5).client
        is not first.client
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "rotated")
    rotated = S3Storage("bucket-a", endpoint_url=moto_server.endpoint_url).client
    assert rotated is not first.client
    assert rotated._request_signer._credentials.access_key == "rotated"
