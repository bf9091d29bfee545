"""Step 1 (ValidateRawAssets) and the magic-number sniffer, on real generated media."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import io
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from media_jobs import sample_media
from media_jobs.pipeline.config import PipelineConfig
from media_jobs.pipeline.errors import ErrorCode, PipelineError
from media_jobs.pipeline.sniff import IMAGE_FORMATS, VIDEO_FORMATS, sniff
from media_jobs.pipeline.storage import ObjectInfo, Storage
from media_jobs.pipeline.storage_s3 import S3Storage
from media_jobs.pipeline.validate import (
    normalize_processing_input,
    step_log_fields,
    validate_assets,
)
from tests.support.clips import made_by_ffmpeg

LISTING = 4101
PHOTO_KEY = f"{LISTING}/raw/photo/vertical/vertical-01-IMG_0001.jpg"
HEIC_KEY = f"{LISTING}/raw/2024-02-03/photo/horizontal/horizontal-01-Sala de estar ç.heic"
VIDEO_KEY = f"{LISTING}/raw/video/horizontal/horizontal-01-tour.mp4"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def pillow_bytes(fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    sample_media.photographic(64, 48).save(out, fmt, **options)
    return out.getvalue()


def ffmpeg_clip(tmp: Path, name: str, *codec: str) -> bytes:
    return made_by_ffmpeg(
        tmp / name, "-f", "lavfi", "-i", "testsrc=size=64x48:rate=5:duration=0.4", *codec
    )


@pytest.fixture(scope="module")
def containers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("containers")
    return {
        "mov": ffmpeg_clip(tmp, "c.mov", "-c:v", "mjpeg"),
        "mkv": ffmpeg_clip(tmp, "c.mkv", "-c:v", "mjpeg"),
        "webm": ffmpeg_clip(tmp, "c.webm", "-c:v", "libvpx", "-b:v", "100k"),
        "avi": ffmpeg_clip(tmp, "c.avi", "-c:v", "mjpeg"),
        "3gp": ffmpeg_clip(tmp, "c.3gp", "-c:v", "mpeg4", "-s", "176x144"),
        "m4v": ffmpeg_clip(tmp, "c.m4v", "-c:v", "mpeg4", "-f", "ipod"),
    }


# -- sniff --------------------------------------------------------------------------------


def test_sniff_recognizes_generated_images(
    jpeg_by_orientation: dict[int, bytes], png_alpha: bytes, png16: bytes, heic: bytes
) -> None:
    samples = {
        "jpeg": [jpeg_by_orientation[6], sample_media.cmyk_jpeg_bytes(64, 48)],
        "png": [png_alpha, png16],
        "heic": [heic],
        "gif": [pillow_bytes("GIF")],
        "webp": [pillow_bytes("WEBP")],
        "tiff": [pillow_bytes("TIFF")],
        "avif": [pillow_bytes("AVIF")],
    }
    for expected, blobs in samples.items():
        for blob in blobs:
            assert sniff(blob[:64]) == expected
        assert expected in IMAGE_FORMATS


def test_sniff_recognizes_generated_videos(mp4: bytes, containers: dict[str, bytes]) -> None:
    assert sniff(mp4[:64]) == "mp4"
    for expected, blob in containers.items():
        assert sniff(blob[:64]) == expected, expected
        assert expected in VIDEO_FORMATS


def test_sniff_recognizes_gif89a_and_big_endian_tiffs() -> None:
    """An animated GIF is written as GIF89a; a 16-bit big-endian scan as an "MM" TIFF or,
    with big_tiff, an "MM" BigTIFF: all are images."""
    frame = sample_media.photographic(64, 48)
    animated = io.BytesIO()
    frame.save(
        animated, "GIF", save_all=True, append_images=[frame.rotate(90)], duration=100, loop=0
    )
    assert animated.getvalue()[:6] == b"GIF89a"
    assert sniff(animated.getvalue()[:64]) == "gif"
    scan = frame.convert("L").convert("I;16B")
    for big_tiff, magic in ((False, b"MM\x00*"), (True, b"MM\x00+")):
        out = io.BytesIO()
        scan.save(out, "TIFF", big_tiff=big_tiff)
        assert out.getvalue()[:4] == magic
        assert sniff(out.getvalue()[:64]) == "tiff"
    assert pillow_bytes("TIFF", big_tiff=True)[:4] == b"II+\x00"
    assert sniff(pillow_bytes("TIFF", big_tiff=True)[:64]) == "tiff"


def test_sniff_tells_an_old_quicktime_file_by_its_first_atom_header(
    containers: dict[str, bytes],
) -> None:
    """Old cameras' .mov files start with an atom other than ftyp ("wide", "mdat"...):
    the 8 bytes of that atom's header are enough."""
    mov = containers["mov"]
    ftyp_size = int.from_bytes(mov[:4], "big")
    old_style = mov[ftyp_size:]  # the same file without its ftyp atom
    assert old_style[:8] == b"\x00\x00\x00\x08wide"
    assert sniff(old_style[:64]) == "mov"
    assert sniff(old_style[:8]) == "mov"
    assert sniff(old_style[:7]) is None


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"\xff\xd8",  # too short to be sure
        b"hello, I am a text file named photo.jpg\n",
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3",
        b"RIFF\x24\x00\x00\x00WAVEfmt ",
        b"\x00\x00\x00\x18ftypM4A \x00\x00\x02\x00M4A isom",  # audio only
        b"PK\x03\x04\x14\x00\x00\x00",
    ],
)
def test_sniff_refuses_what_is_not_supported_media(head: bytes) -> None:
    assert sniff(head) not in IMAGE_FORMATS | VIDEO_FORMATS


def test_sniff_names_audio_and_unknown_data_precisely() -> None:
    assert sniff(b"hello, I am a text file named photo.jpg\n") is None
    assert sniff(b"\x00\x00\x00\x18ftypM4A \x00\x00\x02\x00M4A isom") == "m4a"


def _box(kind: bytes, payload: bytes, *, size: int | None = None) -> bytes:
    return (8 + len(payload) if size is None else size).to_bytes(4, "big") + kind + payload


def _ftyp(major: bytes, *compatible: bytes, size: int | None = None) -> bytes:
    return _box(b"ftyp", major + b"\x00\x00\x00\x00" + b"".join(compatible), size=size)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        # Sony XAVC S: an unknown major brand, told by its compatible brands
        (_ftyp(b"XAVC", b"XAVC", b"mp42", b"iso2") + _box(b"free", b""), "mp4"),
        # a HEIF major brand is refined by a compatible one
        (_ftyp(b"mif1", b"mif1", b"heic"), "heic"),
        # the box ends before the next box, whose bytes are not brands
        (_ftyp(b"mif1", b"mif1", b"miaf") + _box(b"free", b"avif" * 4), "heif"),
        (_ftyp(b"mif1") + _box(b"free", b"avif" * 4), "heif"),  # no compatible brand
        # size 0: the box runs to the end of the file, so to the end of the head
        (_ftyp(b"mif1", b"mif1", b"heic", size=0), "heic"),
        # a box longer than the head (its size uses all four bytes): read to the end
        (_ftyp(b"mif1", b"mif1", b"miaf", b"MiHB", b"avif", size=0x0100_0018), "avif"),
    ],
    ids=["xavc", "heif-refined", "box-end", "box-of-16", "size-0", "longer-than-head"],
)
def test_sniff_reads_the_brands_of_the_ftyp_box_only(head: bytes, expected: str) -> None:
    assert sniff(head[:64]) == expected


# -- normalize ----------------------------------------------------------------------------


def test_normalize_plain_key_list_guesses_the_coarse_type() -> None:
    message = {"jobId": 7, "listingIdentityId": "4101", "assets": [PHOTO_KEY, VIDEO_KEY]}
    normalized = normalize_processing_input(message | {"retry": True})
    assert normalized == {
        "jobId": 7,
        "listingIdentityId": "4101",
        "retry": True,
        "assets": [{"key": PHOTO_KEY, "type": "PHOTO"}, {"key": VIDEO_KEY, "type": "VIDEO"}],
    }


def test_normalize_keeps_typed_assets_and_fills_missing_types() -> None:
    normalized = normalize_processing_input(
        {
            "jobId": "12",
            "listingIdentityId": LISTING,
            "traceparent": TRACEPARENT,
            "assets": [{"key": PHOTO_KEY, "type": "PHOTO_VERTICAL"}, {"key": VIDEO_KEY}],
        }
    )
    assert normalized["assets"] == [
        {"key": PHOTO_KEY, "type": "PHOTO_VERTICAL"},
        {"key": VIDEO_KEY, "type": "VIDEO"},
    ]
    assert normalized["traceparent"] == TRACEPARENT
    assert normalized["jobId"] == "12"


@pytest.mark.parametrize(
    "message",
    [
        {"listingIdentityId": 1, "assets": []},
        {"jobId": "abc", "listingIdentityId": 1, "assets": []},
        {"jobId": 1, "listingIdentityId": True, "assets": []},
        {"jobId": 1, "listingIdentityId": -3, "assets": []},
        {"jobId": 1, "listingIdentityId": 1, "assets": "1/raw/a.jpg"},
        {"jobId": 1, "listingIdentityId": 1, "assets": [{"type": "PHOTO"}]},
        {"jobId": 1, "listingIdentityId": 1, "assets": [42]},
    ],
)
def test_normalize_rejects_malformed_messages(message: dict) -> None:
    with pytest.raises(PipelineError) as err:
        normalize_processing_input(message)
    assert err.value.code == ErrorCode.VALIDATION_ERROR


def test_normalize_fills_an_empty_or_non_text_type_from_the_key() -> None:
    """A type that says nothing (empty, null, not a string) is guessed like a plain key's."""
    normalized = normalize_processing_input(
        {
            "jobId": 1,
            "listingIdentityId": LISTING,
            "assets": [
                {"key": PHOTO_KEY, "type": ""},
                {"key": VIDEO_KEY, "type": None},
                {"key": VIDEO_KEY, "type": 7},
            ],
        }
    )
    assert normalized["assets"] == [
        {"key": PHOTO_KEY, "type": "PHOTO"},
        {"key": VIDEO_KEY, "type": "VIDEO"},
        {"key": VIDEO_KEY, "type": "VIDEO"},
    ]


@pytest.mark.parametrize(
    ("assets", "message"),
    [
        ("1/raw/a.jpg", "assets must be a list"),
        ([42], "an asset must be a key or {key, type}, got 42"),
        ([""], "an asset must be a key or {key, type}, got ''"),
        ([{"type": "PHOTO"}], "an asset must be a key or {key, type}, got {'type': 'PHOTO'}"),
        ([{"key": ""}], "an asset must be a key or {key, type}, got {'key': ''}"),
    ],
)
def test_a_malformed_asset_list_is_refused_with_what_was_found(
    assets: object, message: str
) -> None:
    with pytest.raises(PipelineError) as err:
        normalize_processing_input({"jobId": 1, "listingIdentityId": 1, "assets": assets})
    assert (err.value.code, err.value.message) == ("VALIDATION_ERROR", message)


@pytest.mark.parametrize("message", [["1/raw/a.jpg"], "1/raw/a.jpg", None, 7])
def test_a_message_that_is_not_an_object_is_a_validation_error(message: object) -> None:
    with pytest.raises(PipelineError) as err:
        normalize_processing_input(message)  # type: ignore[arg-type]
    assert (err.value.code, err.value.message) == (
        "VALIDATION_ERROR",
        "the message must be a JSON object",
    )
    assert str(err.value) == "VALIDATION_ERROR: the message must be a JSON object"


# -- validate -----------------------------------------------------------------------------


def event(*assets: dict[str, str] | str) -> dict:
    return {
        "jobId": 31,
        "listingIdentityId": LISTING,
        "traceparent": TRACEPARENT,
        "executionArn": "arn:aws:states:us-east-1:000000000000:execution:media:31",
        "assets": list(assets),
    }


def by_key(result: dict) -> dict[str, dict]:
    return {asset["key"]: asset for asset in result["assets"]}


def test_mixed_photos_and_video(
    storage: Storage,
    pipeline_config: PipelineConfig,
    jpeg_by_orientation: dict[int, bytes],
    heic: bytes,
    mp4: bytes,
) -> None:
    storage.write(PHOTO_KEY, jpeg_by_orientation[1])
    storage.write(HEIC_KEY, heic)
    storage.write(VIDEO_KEY, mp4)
    result = validate_assets(
        event(
            {"key": PHOTO_KEY, "type": "PHOTO_VERTICAL"},
            {"key": HEIC_KEY, "type": "PHOTO_HORIZONTAL"},
            {"key": VIDEO_KEY, "type": "VIDEO_HORIZONTAL"},
        ),
        storage=storage,
        config=pipeline_config,
    )
    assets = by_key(result)
    for key, blob in ((PHOTO_KEY, jpeg_by_orientation[1]), (HEIC_KEY, heic), (VIDEO_KEY, mp4)):
        assert assets[key]["sourceKey"] == key
        assert assets[key]["size"] == len(blob)
        assert assets[key]["etag"] == hashlib.md5(blob, usedforsecurity=False).hexdigest()
        assert "error" not in assets[key]
    assert [a["key"] for a in result["imageAssets"]] == [PHOTO_KEY, HEIC_KEY]
    assert [a["key"] for a in result["videoAssets"]] == [VIDEO_KEY]
    assert result["hasImages"] is True
    assert result["hasVideos"] is True
    assert result["videoInput"] == f"s3://{storage.bucket}/{VIDEO_KEY}"
    assert (
        result["videoOutputPath"]
        == f"s3://{storage.bucket}/{LISTING}/processed/video/horizontal/original/"
    )
    # everything else of the input passes through
    assert result["jobId"] == 31
    assert result["listingIdentityId"] == LISTING
    assert result["traceparent"] == TRACEPARENT
    assert result["executionArn"].endswith(":31")


def test_asset_problems_are_kept_with_precise_codes(
    storage: Storage,
    pipeline_config: PipelineConfig,
    jpeg_by_orientation: dict[int, bytes],
    truncated_jpeg: bytes,
    mp4: bytes,
) -> None:
    keys = {
        "missing": f"{LISTING}/raw/photo/vertical/vertical-02-missing.jpg",
        "empty": f"{LISTING}/raw/photo/vertical/vertical-03-empty.jpg",
        "text": f"{LISTING}/raw/photo/vertical/vertical-04-notes.jpg",
        "truncated": f"{LISTING}/raw/photo/vertical/vertical-05-cut.jpg",
        "no_raw": f"{LISTING}/photo/vertical/vertical-06-misplaced.jpg",
        "dotdot": f"{LISTING}/raw/../vertical-07.jpg",
        "video_as_photo": f"{LISTING}/raw/photo/vertical/vertical-08-clip.jpg",
        "photo_as_video": f"{LISTING}/raw/video/vertical/vertical-01-still.mp4",
        "good": PHOTO_KEY,
    }
    storage.write(keys["empty"], b"")
    storage.write(keys["text"], b"this is a text file, not a photo\n" * 10)
    storage.write(keys["truncated"], truncated_jpeg)
    storage.write(keys["no_raw"], jpeg_by_orientation[1])
    storage.write(keys["video_as_photo"], mp4)
    storage.write(keys["photo_as_video"], jpeg_by_orientation[2])
    storage.write(keys["good"], jpeg_by_orientation[3])
    result = validate_assets(
        event(
            *(
                {"key": key, "type": "VIDEO_VERTICAL" if name == "photo_as_video" else "PHOTO"}
                for name, key in keys.items()
            )
        ),
        storage=storage,
        config=pipeline_config,
    )
    assets = by_key(result)
    assert len(result["assets"]) == len(keys)  # nothing dropped
    expected_codes = {
        "missing": ErrorCode.OBJECT_NOT_FOUND,
        "empty": ErrorCode.EMPTY_OBJECT,
        "text": ErrorCode.UNSUPPORTED_FORMAT,
        "no_raw": ErrorCode.INVALID_KEY,
        "dotdot": ErrorCode.INVALID_KEY,
        "video_as_photo": ErrorCode.UNSUPPORTED_FORMAT,
        "photo_as_video": ErrorCode.UNSUPPORTED_FORMAT,
    }
    for name, code in expected_codes.items():
        asset = assets[keys[name]]
        assert asset["errorCode"] == code, name
        assert keys[name] in asset["error"] or name in ("no_raw", "dotdot")
        assert asset["error"]
    # The operator reads what was found instead of what the key says.
    shown = ("text", "video_as_photo", "photo_as_video", "no_raw")
    assert {n: assets[keys[n]]["error"] for n in shown} == {
        "text": "'4101/raw/photo/vertical/vertical-04-notes.jpg' should be an image: "
        "not a known media format",
        "video_as_photo": "'4101/raw/photo/vertical/vertical-08-clip.jpg' should be an image: "
        "a mp4 file",
        "photo_as_video": "'4101/raw/video/vertical/vertical-01-still.mp4' should be a video: "
        "a jpeg file",
        "no_raw": "invalid raw key '4101/photo/vertical/vertical-06-misplaced.jpg': "
        "no 'raw/' folder",
    }
    # a truncated JPEG has good magic: validation passes it (thumbnails will fail it)
    assert "error" not in assets[keys["truncated"]]
    assert assets[keys["empty"]]["size"] == 0
    assert [a["key"] for a in result["imageAssets"]] == [keys["truncated"], keys["good"]]
    assert result["videoAssets"] == []
    assert result["hasVideos"] is False
    assert "videoInput" not in result and "videoOutputPath" not in result


def test_file_over_the_size_limit(
    storage: Storage, pipeline_config: PipelineConfig, jpeg_by_orientation: dict[int, bytes]
) -> None:
    photo = jpeg_by_orientation[1]
    storage.write(PHOTO_KEY, photo)
    config = dataclasses.replace(pipeline_config, max_file_bytes=len(photo) - 1)
    result = validate_assets(event(PHOTO_KEY), storage=storage, config=config)
    (asset,) = result["assets"]
    assert asset["errorCode"] == ErrorCode.FILE_TOO_LARGE
    assert str(len(photo)) in asset["error"]
    assert result["hasImages"] is False
    at_limit = dataclasses.replace(pipeline_config, max_file_bytes=len(photo))
    assert (
        "error"
        not in validate_assets(event(PHOTO_KEY), storage=storage, config=at_limit)["assets"][0]
    )


def test_a_derived_key_the_storage_refuses_is_that_assets_invalid_key(
    storage: Storage, pipeline_config: PipelineConfig
) -> None:
    """A 1020-byte raw key is a key S3 holds; its thumbnail's key (1036 bytes) is not. The
    operator reads which derived key and why."""
    folders = "/".join(["d" * 100] * 9)
    raw = f"{LISTING}/raw/photo/vertical/{folders}/{'p' * 83}.jpg"
    thumbnail = f"{LISTING}/processed/photo/vertical/{folders}/thumbnail/{'p' * 83}.jpg"
    assert (len(raw), len(thumbnail)) == (1020, 1036)
    result = validate_assets(event(raw), storage=storage, config=pipeline_config)
    (asset,) = result["assets"]
    assert asset["errorCode"] == ErrorCode.INVALID_KEY
    assert asset["error"] == (
        f"invalid key {thumbnail[:100]!r}... (1036 characters): 1036 bytes, "
        "over the 1024-byte limit"
    )
    assert result["imageAssets"] == []


class _DeletedAfterHead:
    """The storage, with the raw object ``key`` deleted right after its HEAD answered:
    the uploader replaced or removed it while the step ran."""

    def __init__(self, storage: Storage, key: str) -> None:
        self._storage = storage
        self._key = key

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    def head(self, key: str) -> ObjectInfo:
        info = self._storage.head(key)
        if key == self._key:
            self._storage.delete(key)
        return info


def test_a_raw_object_gone_before_its_first_bytes_are_read(
    storage: Storage, pipeline_config: PipelineConfig, jpeg_by_orientation: dict[int, bytes]
) -> None:
    photo = jpeg_by_orientation[1]
    storage.write(PHOTO_KEY, photo)
    racing = _DeletedAfterHead(storage, PHOTO_KEY)
    result = validate_assets(event(PHOTO_KEY), storage=racing, config=pipeline_config)
    (asset,) = result["assets"]
    assert asset["errorCode"] == ErrorCode.OBJECT_NOT_FOUND
    assert asset["error"] == f"raw object {PHOTO_KEY!r} disappeared"
    assert asset["size"] == len(photo)  # what the HEAD said
    assert result["imageAssets"] == [] and result["hasImages"] is False


def test_plain_key_list_message(
    storage: Storage,
    pipeline_config: PipelineConfig,
    jpeg_by_orientation: dict[int, bytes],
    mp4: bytes,
) -> None:
    storage.write(PHOTO_KEY, jpeg_by_orientation[1])
    storage.write(VIDEO_KEY, mp4)
    message = {"jobId": "9", "listingIdentityId": str(LISTING), "assets": [VIDEO_KEY, PHOTO_KEY]}
    result = validate_assets(
        normalize_processing_input(message), storage=storage, config=pipeline_config
    )
    assert [(a["key"], a["type"]) for a in result["assets"]] == [
        (VIDEO_KEY, "VIDEO"),
        (PHOTO_KEY, "PHOTO"),
    ]
    assert result["hasImages"] and result["hasVideos"]
    assert result["listingIdentityId"] == str(LISTING)


def test_no_assets(storage: Storage, pipeline_config: PipelineConfig) -> None:
    result = validate_assets(event(), storage=storage, config=pipeline_config)
    assert (result["assets"], result["hasImages"], result["hasVideos"]) == ([], False, False)


def test_an_unreachable_bucket_raises(moto_server, pipeline_config: PipelineConfig) -> None:
    wrong = S3Storage("bucket-that-does-not-exist", endpoint_url=moto_server.endpoint_url)
    with pytest.raises(ClientError):
        validate_assets(event(PHOTO_KEY), storage=wrong, config=pipeline_config)


def _validate_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("validate")]


def test_a_listing_is_validated_in_order(
    storage: Storage, pipeline_config: PipelineConfig, jpeg_by_orientation: dict[int, bytes]
) -> None:
    """The assets are checked a few at a time; the result keeps the message's order and
    each asset's own outcome."""
    keys = [f"{LISTING}/raw/photo/vertical/vertical-{n:02d}-p.jpg" for n in range(1, 21)]
    for n, key in enumerate(keys):
        if n % 5 != 3:  # every fifth photo is missing
            storage.write(key, jpeg_by_orientation[1 + n % 8])
    result = validate_assets(event(*keys), storage=storage, config=pipeline_config)

    assert [a["key"] for a in result["assets"]] == keys
    for n, asset in enumerate(result["assets"]):
        if n % 5 == 3:
            assert asset["errorCode"] == ErrorCode.OBJECT_NOT_FOUND
        else:
            assert asset["size"] == len(jpeg_by_orientation[1 + n % 8])
    assert [a["key"] for a in result["imageAssets"]] == [
        key for n, key in enumerate(keys) if n % 5 != 3
    ]
    assert _validate_threads() == []


def test_an_unreachable_bucket_stops_a_large_listing(
    moto_server,
    pipeline_config: PipelineConfig,
) -> None:
    wrong = S3Storage("bucket-that-does-not-exist", endpoint_url=moto_server.endpoint_url)
    keys = [f"{LISTING}/raw/photo/vertical/vertical-{n:02d}-p.jpg" for n in range(1, 31)]
    with pytest.raises(ClientError):
        validate_assets(event(*keys), storage=wrong, config=pipeline_config)
    assert _validate_threads() == []


class _HeldHeads:
    """The storage, whose HEADs record the thread and key and then wait on ``hold``."""

    def __init__(self, storage: Storage, hold: Any) -> None:
        self._storage = storage
        self._hold = hold
        self.threads: set[str] = set()
        self.headed: list[str] = []
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    def head(self, key: str) -> ObjectInfo:
        with self._lock:
            self.threads.add(threading.current_thread().name)
            self.headed.append(key)
        self._hold(key)
        return self._storage.head(key)


def test_a_listing_is_validated_by_eight_threads(
    s3_storage: Storage, pipeline_config: PipelineConfig, jpeg_by_orientation: dict[int, bytes]
) -> None:
    """Eight round trips at a time, whatever the machine: each HEAD waits until eight are
    in flight, so a smaller pool never gets there and a larger one uses more threads."""
    keys = [f"{LISTING}/raw/photo/vertical/vertical-{n:02d}-p.jpg" for n in range(1, 17)]
    for key in keys:
        s3_storage.write(key, jpeg_by_orientation[1])
    eight_in_flight = threading.Barrier(8, timeout=10)
    held = _HeldHeads(s3_storage, lambda key: eight_in_flight.wait())
    result = validate_assets(event(*keys), storage=held, config=pipeline_config)
    assert [a["key"] for a in result["imageAssets"]] == keys
    assert len(held.threads) == 8
    assert all(name.startswith("validate") for name in held.threads)


def test_after_a_storage_error_the_queued_assets_are_not_read(
    s3_storage: Storage,
    moto_server,
    pipeline_config: PipelineConfig,
    jpeg_by_orientation: dict[int, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first asset's HEAD fails (its bucket is gone): the step fails, and the assets
    still queued are dropped, not read one by one for nothing. The other HEADs in flight
    are held until the queue is dropped (the executor cancels its queued futures)."""
    keys = [f"{LISTING}/raw/photo/vertical/vertical-{n:02d}-p.jpg" for n in range(1, 21)]
    for key in keys:
        s3_storage.write(key, jpeg_by_orientation[1])
    gone = S3Storage("bucket-that-does-not-exist", endpoint_url=moto_server.endpoint_url)
    dropped = threading.Event()
    real_cancel = concurrent.futures.Future.cancel

    def cancel(future: concurrent.futures.Future[Any]) -> bool:
        cancelled = real_cancel(future)
        dropped.set()
        return cancelled

    monkeypatch.setattr(concurrent.futures.Future, "cancel", cancel)

    def hold(key: str) -> None:
        if key == keys[0]:
            gone.head(key)  # raises: the bucket does not exist
        dropped.wait(timeout=5)

    held = _HeldHeads(s3_storage, hold)
    with pytest.raises(ClientError):
        validate_assets(event(*keys), storage=held, config=pipeline_config)
    # the eight first HEADs, and the one the failed thread may have taken before the drop
    assert set(held.headed) <= set(keys[:9])
    assert _validate_threads() == []


def test_pixels_are_not_decoded_by_validation(
    storage: Storage, pipeline_config: PipelineConfig, bomb_png: bytes
) -> None:
    """A decompression bomb is a valid PNG header: the thumbnail step refuses it."""
    storage.write(PHOTO_KEY, bomb_png)
    result = validate_assets(event(PHOTO_KEY), storage=storage, config=pipeline_config)
    assert "error" not in result["assets"][0]
    width, height = (int.from_bytes(bomb_png[i : i + 4], "big") for i in (16, 20))  # IHDR
    assert width * height > pipeline_config.max_image_pixels


def test_step_logs_carry_the_job_and_its_trace_and_leave_out_what_is_absent() -> None:
    event = {"jobId": 17, "listingIdentityId": LISTING, "traceparent": TRACEPARENT}
    assert step_log_fields(event, "validate", assets=3, skipped=None) == {
        "job_id": 17,
        "listing_identity_id": 4101,
        "step": "validate",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "assets": 3,
    }
    assert step_log_fields({"jobId": 18}, "zip") == {"job_id": 18, "step": "zip"}


def test_a_video_of_no_known_format_says_so(
    storage: Storage, pipeline_config: PipelineConfig, mp4: bytes
) -> None:
    """The video twin of the photo case above: the operator reads that the object is no
    media at all, not merely the wrong kind."""
    text_key = f"{LISTING}/raw/video/horizontal/horizontal-02-notes.mp4"
    storage.write(text_key, b"this is a text file, not a video\n" * 10)
    storage.write(VIDEO_KEY, mp4)
    result = validate_assets(
        event({"key": text_key, "type": "VIDEO_HORIZONTAL"}, {"key": VIDEO_KEY, "type": "VIDEO"}),
        storage=storage,
        config=pipeline_config,
    )
    assets = by_key(result)
    assert (assets[text_key]["errorCode"], assets[text_key]["error"]) == (
        "UNSUPPORTED_FORMAT",
        "'4101/raw/video/horizontal/horizontal-02-notes.mp4' should be a video: "
        "not a known media format",
    )
    assert "error" not in assets[VIDEO_KEY]


def test_validation_is_logged_with_its_counts_and_the_failed_keys(
    local_storage: Storage,
    pipeline_config: PipelineConfig,
    jpeg_by_orientation: dict[int, bytes],
    mp4: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    missing = f"{LISTING}/raw/photo/vertical/vertical-02-missing.jpg"
    local_storage.write(PHOTO_KEY, jpeg_by_orientation[1])
    local_storage.write(VIDEO_KEY, mp4)
    with caplog.at_level(logging.INFO, logger="toq.pipeline.validate"):
        validate_assets(
            event(PHOTO_KEY, missing, VIDEO_KEY), storage=local_storage, config=pipeline_config
        )
    (record,) = [r for r in caplog.records if r.name == "toq.pipeline.validate"]
    assert record.getMessage() == "validated 3 assets (1 images, 1 videos, 1 failed)"
    fields = ("job_id", "listing_identity_id", "step", "traceparent", "failed_keys")
    assert {name: getattr(record, name, None) for name in fields} == {
        "job_id": 31,
        "listing_identity_id": 4101,
        "step": "validate",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "failed_keys": ["4101/raw/photo/vertical/vertical-02-missing.jpg"],
    }


def test_a_single_asset_is_validated_on_the_callers_thread(
    local_storage: Storage, pipeline_config: PipelineConfig, jpeg_by_orientation: dict[int, bytes]
) -> None:
    """One HEAD and one read: nothing to overlap, so no thread pool is started for it."""
    local_storage.write(PHOTO_KEY, jpeg_by_orientation[1])
    held = _HeldHeads(local_storage, lambda key: None)
    result = validate_assets(event(PHOTO_KEY), storage=held, config=pipeline_config)
    assert [a["key"] for a in result["imageAssets"]] == [PHOTO_KEY]
    assert held.threads == {threading.current_thread().name}
