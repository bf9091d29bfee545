"""Poster frames and transcodes with the real ffmpeg, on generated clips, through both adapters."""

from __future__ import annotations

import dataclasses
import errno
import io
import json
import logging
import os
import re
import subprocess
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageStat

from media_jobs import sample_media
from media_jobs.pipeline import video
from media_jobs.pipeline.config import PipelineConfig
from media_jobs.pipeline.errors import ErrorCode, PipelineError
from media_jobs.pipeline.keys import poster_key, transcode_key
from media_jobs.pipeline.storage import Storage
from media_jobs.pipeline.validate import validate_assets
from media_jobs.pipeline.video import (
    POSTER_AT_SECONDS,
    generate_poster_frames,
    poster_one,
    poster_time,
    probe_duration,
    transcode_one,
    transcode_videos,
)
from tests.support.clips import ffmpeg, made_by_ffmpeg

LISTING = 5150
SMALL_KEY = f"{LISTING}/raw/video/horizontal/horizontal-01-small tour ç.mp4"
WIDE_KEY = f"{LISTING}/raw/2024-06-01/video/horizontal/horizontal-02-wide.mp4"
BIG_KEY = f"{LISTING}/raw/video/horizontal/horizontal-03-big.mp4"
ROTATED_KEY = f"{LISTING}/raw/video/vertical/vertical-01-phone.mov"
SILENT_KEY = f"{LISTING}/raw/video/vertical/vertical-02-silent.mp4"
CORRUPT_KEY = f"{LISTING}/raw/video/vertical/vertical-03-broken.mp4"


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, mp4: bytes) -> dict[str, bytes]:
    """Real clips: sizes to scale down, a phone-style rotation, no audio, a corrupt file."""
    tmp = tmp_path_factory.mktemp("clips")
    (tmp / "small.mp4").write_bytes(mp4)
    # a display matrix of 90 degrees, as phones record portrait video (stored 320x240)
    rotated = made_by_ffmpeg(tmp / "rotated.mov", "-i", str(tmp / "small.mp4"), "-c", "copy",
                             "-metadata:s:v:0", "rotate=90")  # fmt: skip
    silent = made_by_ffmpeg(tmp / "silent.mp4", "-f", "lavfi", "-i",
                            "testsrc=size=426x240:rate=25:duration=0.6", "-c:v", "libx264",
                            "-preset", "ultrafast", "-pix_fmt", "yuv420p")  # fmt: skip
    # moov is written at the end by default: cutting the file loses it (a failed upload)
    corrupt = mp4[: len(mp4) // 3]
    return {
        "small": mp4,
        "wide": sample_media.mp4_bytes(0.6, 1600, 900),
        "rotated": rotated,
        "silent": silent,
        "corrupt": corrupt,
    }


def validated(storage: Storage, config: PipelineConfig, *keys: str) -> dict[str, Any]:
    assets = [{"key": key, "type": "VIDEO_HORIZONTAL"} for key in keys]
    event = {"jobId": 77, "listingIdentityId": LISTING, "assets": assets}
    return dict(validate_assets(event, storage=storage, config=config))


def jpeg_size(storage: Storage, key: str) -> tuple[int, int]:
    with storage.open_read(key) as stream:
        image = Image.open(io.BytesIO(stream.read()))
        assert image.format == "JPEG"
        return image.size


def ffprobe(path: Path) -> dict[str, Any]:
    completed = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return json.loads(completed.stdout)


def top_level_boxes(data: bytes) -> list[str]:
    """The ISO-BMFF top-level box types, in file order."""
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[offset + 8 : offset + 16], "big")
        elif size == 0:
            size = len(data) - offset
        boxes.append(kind)
        offset += size
    return boxes


# -- poster frames ------------------------------------------------------------------------


def test_poster_time() -> None:
    assert poster_time(None) == 0.0
    assert poster_time(0.0) == 0.0
    assert poster_time(-1.0) == 0.0
    assert poster_time(0.5) == pytest.approx(0.05)  # a clip under a second still seeks
    assert poster_time(3.0) == pytest.approx(0.3)
    assert poster_time(600.0) == POSTER_AT_SECONDS


def test_poster_frames_are_jpegs_no_wider_than_1200(
    storage: Storage, pipeline_config: PipelineConfig, clips: dict[str, bytes]
) -> None:
    storage.write(SMALL_KEY, clips["small"])
    storage.write(WIDE_KEY, clips["wide"])
    validation = validated(storage, pipeline_config, SMALL_KEY, WIDE_KEY)
    result = generate_poster_frames(validation, storage=storage, config=pipeline_config)
    assert result == {
        "body": {
            "status": "SUCCESS",
            "generatedAssets": [
                {"key": poster_key(SMALL_KEY), "type": "VIDEO_THUMBNAIL", "sourceKey": SMALL_KEY},
                {"key": poster_key(WIDE_KEY), "type": "VIDEO_THUMBNAIL", "sourceKey": WIDE_KEY},
            ],
            "errors": [],
        }
    }
    # named like the transcode (the backend's URL rule), a JPEG all the same
    assert (
        poster_key(WIDE_KEY)
        == f"{LISTING}/processed/video/horizontal/thumbnail/horizontal-02-wide.mp4"
    )
    assert jpeg_size(storage, poster_key(SMALL_KEY)) == (320, 240)  # never upscaled
    assert jpeg_size(storage, poster_key(WIDE_KEY)) == (1200, 675)  # 1600x900 scaled down
    etags = {a["key"]: a["etag"] for a in validation["videoAssets"]}
    for key in (SMALL_KEY, WIDE_KEY):
        info = storage.head(poster_key(key))
        assert info.content_type == "image/jpeg"
        assert info.metadata == {"source-etag": etags[key]}


def test_a_clip_shorter_than_its_container_gets_its_first_frame(
    local_storage: Storage, pipeline_config: PipelineConfig, tmp_path: Path
) -> None:
    """Audio that outlasts the picture (0.2 s of video, 5 s of sound) makes the container
    claim 5 s: there is no frame at 0.5 s, so the poster is the first frame."""
    path = tmp_path / "short.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=0.2", "-f", "lavfi",
           "-i", "sine=frequency=440:duration=5", "-c:v", "libx264", "-preset", "ultrafast",
           "-pix_fmt", "yuv420p", "-c:a", "aac", str(path))  # fmt: skip
    assert probe_duration(path, pipeline_config) == pytest.approx(5.0, abs=0.05)
    local_storage.write(SMALL_KEY, path.read_bytes())
    validation = validated(local_storage, pipeline_config, SMALL_KEY)
    body = generate_poster_frames(validation, storage=local_storage, config=pipeline_config)
    assert body["body"]["errors"] == []
    assert jpeg_size(local_storage, poster_key(SMALL_KEY)) == (320, 240)


def test_poster_frames_are_logged_as_the_video_thumbnails_step(
    local_storage: Storage,
    pipeline_config: PipelineConfig,
    clips: dict[str, bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    local_storage.write(SMALL_KEY, clips["small"])
    local_storage.write(CORRUPT_KEY, clips["corrupt"])
    validation = validated(local_storage, pipeline_config, SMALL_KEY, CORRUPT_KEY)
    with caplog.at_level(logging.INFO, logger="toq.pipeline.video"):
        generate_poster_frames(validation, storage=local_storage, config=pipeline_config)
    steps = [
        (r.getMessage().split(" for ")[0], getattr(r, "step", None), getattr(r, "job_id", None))
        for r in caplog.records
        if r.name == "toq.pipeline.video" and " for " in r.getMessage()
    ]
    assert steps == [
        ("poster frame ready", "video_thumbnails", 77),
        ("poster frame failed", "video_thumbnails", 77),
    ]


def test_a_corrupt_video_is_an_error_entry_and_the_others_succeed(
    storage: Storage, pipeline_config: PipelineConfig, clips: dict[str, bytes]
) -> None:
    storage.write(CORRUPT_KEY, clips["corrupt"])
    storage.write(SMALL_KEY, clips["small"])
    validation = validated(storage, pipeline_config, CORRUPT_KEY, SMALL_KEY)
    assert all("error" not in a for a in validation["assets"])  # magic number is fine
    body = generate_poster_frames(validation, storage=storage, config=pipeline_config)["body"]
    assert body["generatedAssets"] == [
        {"key": poster_key(SMALL_KEY), "type": "VIDEO_THUMBNAIL", "sourceKey": SMALL_KEY}
    ]
    (error,) = body["errors"]
    assert error["sourceKey"] == CORRUPT_KEY
    assert error["errorCode"] == "VIDEO_THUMBNAIL_FAILED"
    assert "ffmpeg" in error["errorMessage"]
    assert [o.key for o in storage.list(f"{LISTING}/processed/")] == [poster_key(SMALL_KEY)]


def test_rotated_phone_video_gives_an_upright_poster(
    s3_storage: Storage, pipeline_config: PipelineConfig, clips: dict[str, bytes]
) -> None:
    s3_storage.write(ROTATED_KEY, clips["rotated"])
    validation = validated(s3_storage, pipeline_config, ROTATED_KEY)
    body = generate_poster_frames(validation, storage=s3_storage, config=pipeline_config)["body"]
    assert body["errors"] == []
    assert jpeg_size(s3_storage, poster_key(ROTATED_KEY)) == (240, 320)


def test_a_retry_skips_posters_made_from_the_same_source(
    local_storage: Storage, pipeline_config: PipelineConfig, clips: dict[str, bytes]
) -> None:
    local_storage.write(SMALL_KEY, clips["small"])
    validation = validated(local_storage, pipeline_config, SMALL_KEY)
    generate_poster_frames(validation, storage=local_storage, config=pipeline_config)
    poster = poster_key(SMALL_KEY)
    source_etag = local_storage.head(poster).metadata["source-etag"]
    # mark the existing output: a skipped run leaves it alone
    local_storage.write(poster, b"\xff\xd8\xff marker", metadata={"source-etag": source_etag})
    again = generate_poster_frames(validation, storage=local_storage, config=pipeline_config)
    assert again["body"]["generatedAssets"][0]["key"] == poster
    with local_storage.open_read(poster) as stream:
        assert stream.read() == b"\xff\xd8\xff marker"
    # a new upload under the same key has a new etag: the poster is made again
    local_storage.write(SMALL_KEY, clips["wide"])
    revalidated = validated(local_storage, pipeline_config, SMALL_KEY)
    generate_poster_frames(revalidated, storage=local_storage, config=pipeline_config)
    assert jpeg_size(local_storage, poster) == (1200, 675)


def test_no_valid_videos(local_storage: Storage, pipeline_config: PipelineConfig) -> None:
    validation = validated(local_storage, pipeline_config, SMALL_KEY)  # missing object
    assert validation["assets"][0]["errorCode"] == ErrorCode.OBJECT_NOT_FOUND
    assert generate_poster_frames(validation, storage=local_storage, config=pipeline_config) == {
        "body": {"status": "SUCCESS", "generatedAssets": [], "errors": []}
    }
    assert transcode_videos(validation, storage=local_storage, config=pipeline_config) == {
        "body": {"status": "SUCCESS", "generatedAssets": [], "errors": []}
    }


# -- transcode ----------------------------------------------------------------------------


@pytest.mark.slow  # ffmpeg transcodes
def test_transcode_every_video_to_faststart_h264_within_1080p(
    s3_storage: Storage,
    pipeline_config: PipelineConfig,
    clips: dict[str, bytes],
    tmp_path: Path,
) -> None:
    big = sample_media.mp4_bytes(1.0, 2560, 1440)  # here only: 1.3 s of x264 (a slow test)
    sources = {BIG_KEY: big, ROTATED_KEY: clips["rotated"], SILENT_KEY: clips["silent"]}
    for key, blob in sources.items():
        s3_storage.write(key, blob)
    validation = validated(s3_storage, pipeline_config, *sources)
    result = transcode_videos(validation, storage=s3_storage, config=pipeline_config)
    assert result == {
        "body": {
            "status": "SUCCESS",
            "generatedAssets": [
                {"key": transcode_key(key), "type": "VIDEO_TRANSCODE", "sourceKey": key}
                for key in sources
            ],
            "errors": [],
        }
    }
    expected = {BIG_KEY: (1920, 1080), ROTATED_KEY: (240, 320), SILENT_KEY: (426, 240)}
    for key in sources:
        info = s3_storage.head(transcode_key(key))
        assert info.content_type == "video/mp4"
        assert info.metadata["source-etag"] == s3_storage.head(key).etag
        local = tmp_path / Path(transcode_key(key)).name
        with s3_storage.open_read(transcode_key(key)) as stream:
            local.write_bytes(stream.read())
        probe = ffprobe(local)
        video = [s for s in probe["streams"] if s["codec_type"] == "video"]
        audio = [s for s in probe["streams"] if s["codec_type"] == "audio"]
        assert len(video) == 1
        assert video[0]["codec_name"] == "h264"
        assert video[0]["pix_fmt"] == "yuv420p"
        width, height = video[0]["width"], video[0]["height"]
        assert (width, height) == expected[key]
        assert width <= 1920 and height <= 1080 and width % 2 == 0 and height % 2 == 0
        assert [s["codec_name"] for s in audio] == ([] if key == SILENT_KEY else ["aac"])
        boxes = top_level_boxes(local.read_bytes())
        assert boxes.index("moov") < boxes.index("mdat"), boxes  # faststart
        assert "mp4" in probe["format"]["format_name"]


def test_transcode_skips_an_output_made_from_the_same_source(
    local_storage: Storage, pipeline_config: PipelineConfig, clips: dict[str, bytes]
) -> None:
    local_storage.write(SILENT_KEY, clips["silent"])
    validation = validated(local_storage, pipeline_config, SILENT_KEY)
    transcode_videos(validation, storage=local_storage, config=pipeline_config)
    output = transcode_key(SILENT_KEY)
    etag = local_storage.head(SILENT_KEY).etag
    assert local_storage.head(output).metadata == {"source-etag": etag}
    local_storage.write(output, b"marker: not re-encoded", metadata={"source-etag": etag})
    result = transcode_videos(validation, storage=local_storage, config=pipeline_config)
    assert result["body"]["generatedAssets"] == [
        {"key": output, "type": "VIDEO_TRANSCODE", "sourceKey": SILENT_KEY}
    ]
    with local_storage.open_read(output) as stream:
        assert stream.read() == b"marker: not re-encoded"
    # a different source etag (re-upload) is transcoded again
    local_storage.write(output, b"stale", metadata={"source-etag": "some-older-upload"})
    transcode_videos(validation, storage=local_storage, config=pipeline_config)
    with local_storage.open_read(output) as stream:
        assert top_level_boxes(stream.read())[:1] == ["ftyp"]


def test_a_video_that_cannot_be_transcoded_is_an_error_of_that_video_only(
    storage: Storage, pipeline_config: PipelineConfig, clips: dict[str, bytes]
) -> None:
    storage.write(CORRUPT_KEY, clips["corrupt"])
    storage.write(SILENT_KEY, clips["silent"])
    validation = validated(storage, pipeline_config, CORRUPT_KEY, SILENT_KEY)
    body = transcode_videos(validation, storage=storage, config=pipeline_config)["body"]
    assert body["generatedAssets"] == [
        {"key": transcode_key(SILENT_KEY), "type": "VIDEO_TRANSCODE", "sourceKey": SILENT_KEY}
    ]
    (error,) = body["errors"]
    assert error["sourceKey"] == CORRUPT_KEY
    assert error["errorCode"] == ErrorCode.VIDEO_TRANSCODE_FAILED
    assert CORRUPT_KEY in error["errorMessage"] and "ffmpeg exited" in error["errorMessage"]
    assert [o.key for o in storage.list(f"{LISTING}/processed/")] == [transcode_key(SILENT_KEY)]


def test_an_empty_transcode_is_an_error_not_an_empty_video(
    local_storage: Storage, pipeline_config: PipelineConfig, clips: dict[str, bytes], tmp_path: Path
) -> None:
    """An ffmpeg that exits 0 yet leaves a 0-byte output (a broken build or layer) fails
    that video; no empty MP4 is published."""
    broken = tmp_path / "ffmpeg"
    broken.write_text('#!/bin/sh\nfor last; do :; done\n: > "$last"\nexit 0\n')
    broken.chmod(0o755)
    local_storage.write(SMALL_KEY, clips["small"])
    validation = validated(local_storage, pipeline_config, SMALL_KEY)
    config = dataclasses.replace(pipeline_config, ffmpeg_path=str(broken))
    body = transcode_videos(validation, storage=local_storage, config=config)["body"]
    assert body["generatedAssets"] == []
    assert body["errors"] == [
        {
            "sourceKey": SMALL_KEY,
            "errorCode": "VIDEO_TRANSCODE_FAILED",
            "errorMessage": f"transcode of {SMALL_KEY!r} produced no output",
        }
    ]
    assert list(local_storage.list(f"{LISTING}/processed/")) == []
    # the MediaConvert-shaped Lambda calls transcode_one itself: the error carries its code
    with pytest.raises(PipelineError) as failed:
        transcode_one({"key": SMALL_KEY}, storage=local_storage, config=config)
    assert (failed.value.code, failed.value.message) == (
        "VIDEO_TRANSCODE_FAILED",
        f"transcode of {SMALL_KEY!r} produced no output",
    )


def test_a_missing_ffmpeg_fails_the_step_not_the_video(
    local_storage: Storage, pipeline_config: PipelineConfig, clips: dict[str, bytes]
) -> None:
    """A deployment problem, not a property of the video: the step raises, so the engine
    retries it and then fails the run instead of blaming every video."""
    local_storage.write(SILENT_KEY, clips["silent"])
    validation = validated(local_storage, pipeline_config, SILENT_KEY)
    config = dataclasses.replace(pipeline_config, ffmpeg_path="/nonexistent/ffmpeg")
    with pytest.raises(FileNotFoundError, match="/nonexistent/ffmpeg"):
        transcode_videos(validation, storage=local_storage, config=config)


@pytest.mark.parametrize(
    "ffprobe_path", ["/nonexistent/ffprobe", "ffprobe"], ids=["ffmpeg-fallback", "ffprobe"]
)
def test_the_duration_probe_gives_up_at_its_timeout(
    pipeline_config: PipelineConfig, tmp_path: Path, ffprobe_path: str
) -> None:
    """ffprobe, or ffmpeg without it, reading an input that never arrives (a FIFO nobody
    writes) is stopped at the timeout (FFMPEG_TIMEOUT_SECONDS, at most 120 s) and the
    duration is unknown. If it is still waiting after 10 s, the test lets it go (a writer
    opens and closes the FIFO) and fails."""
    fifo = tmp_path / "stalled.mp4"
    os.mkfifo(fifo)
    config = dataclasses.replace(pipeline_config, ffprobe_path=ffprobe_path, ffmpeg_timeout_s=1)
    returned = threading.Event()
    released: list[bool] = []

    def release_a_stuck_ffmpeg() -> None:
        if not returned.wait(10):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # EOF: ffmpeg exits
            released.append(True)

    releaser = threading.Thread(target=release_a_stuck_ffmpeg)
    releaser.start()
    try:
        duration = probe_duration(fifo, config)
    finally:
        returned.set()
        releaser.join()
    assert duration is None
    assert released == []  # stopped by the timeout, not by the test
    with pytest.raises(OSError) as no_reader:  # and not left behind, still reading
        os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    assert no_reader.value.errno == errno.ENXIO


def test_posters_without_ffprobe_take_the_duration_from_ffmpeg(
    local_storage: Storage,
    pipeline_config: PipelineConfig,
    clips: dict[str, bytes],
    tmp_path: Path,
) -> None:
    """The TOQ account's ffmpeg layer has no ffprobe: the duration comes from ffmpeg's own
    banner, so the poster is still taken past the first frame."""
    local_storage.write(WIDE_KEY, clips["wide"])
    source = tmp_path / "wide.mp4"
    source.write_bytes(clips["wide"])
    config = dataclasses.replace(pipeline_config, ffprobe_path="/nonexistent/ffprobe")
    with_ffprobe = probe_duration(source, pipeline_config)
    without = probe_duration(source, config)
    assert with_ffprobe is not None and without is not None
    assert without == pytest.approx(with_ffprobe, abs=0.05)
    validation = validated(local_storage, config, WIDE_KEY)
    body = generate_poster_frames(validation, storage=local_storage, config=config)["body"]
    assert body["errors"] == []
    assert jpeg_size(local_storage, poster_key(WIDE_KEY)) == (1200, 675)


def brightness(jpeg: bytes) -> float:
    """The mean luma of a picture, 0 (black) .. 255 (white)."""
    return ImageStat.Stat(Image.open(io.BytesIO(jpeg)).convert("L")).mean[0]


def test_the_poster_is_taken_a_tenth_into_the_clip_past_a_black_first_frame(
    local_storage: Storage, pipeline_config: PipelineConfig, tmp_path: Path
) -> None:
    """A 2 s clip that fades in from black over its first 0.12 s: its first frame is black,
    the frame at 10% (0.2 s) is white, and the poster is that one."""
    clip = made_by_ffmpeg(tmp_path / "fade-in.mp4", "-f", "lavfi", "-i",
                          "color=c=white:s=64x48:r=25:d=2,fade=t=in:st=0:d=0.12",
                          "-c:v", "libx264", "-preset", "ultrafast",
                          "-pix_fmt", "yuv420p")  # fmt: skip
    (tmp_path / "fade-in.mp4").write_bytes(clip)  # made earlier: only its bytes are kept
    first = tmp_path / "first.jpg"
    ffmpeg("-i", str(tmp_path / "fade-in.mp4"), "-frames:v", "1", str(first))
    assert brightness(first.read_bytes()) < 16
    local_storage.write(SMALL_KEY, clip)
    validation = validated(local_storage, pipeline_config, SMALL_KEY)
    body = generate_poster_frames(validation, storage=local_storage, config=pipeline_config)
    assert body["body"]["errors"] == []
    with local_storage.open_read(poster_key(SMALL_KEY)) as stream:
        assert brightness(stream.read()) > 240


def _cover_art_clip(tmp_path: Path) -> bytes:
    """An MP4 of one second of sound whose only picture is a 32 x 24 cover."""
    return made_by_ffmpeg(tmp_path / "cover.mp4", "-f", "lavfi", "-i",
                          "sine=frequency=440:duration=1", "-f", "lavfi", "-i",
                          "color=c=red:s=32x24:d=0.04", "-map", "0", "-map", "1",
                          "-c:a", "aac", "-c:v", "png",
                          "-disposition:v:0", "attached_pic")  # fmt: skip


def test_a_clip_whose_only_picture_is_its_cover_art_gets_the_cover_as_poster(
    local_storage: Storage, pipeline_config: PipelineConfig, tmp_path: Path
) -> None:
    """An MP4 of sound with a cover picture (an "attached picture" stream, as music apps
    write): the poster is taken from the first video stream of any kind, so it is the
    cover, rather than the video failing for having no moving picture."""
    clip = _cover_art_clip(tmp_path)
    local_storage.write(SMALL_KEY, clip)
    validation = validated(local_storage, pipeline_config, SMALL_KEY)
    body = generate_poster_frames(validation, storage=local_storage, config=pipeline_config)
    assert body["body"]["errors"] == []
    assert jpeg_size(local_storage, poster_key(SMALL_KEY)) == (32, 24)


def test_a_clip_whose_only_picture_is_its_cover_art_has_no_video_to_transcode(
    local_storage: Storage, pipeline_config: PipelineConfig, tmp_path: Path
) -> None:
    """The same sound with a cover: the poster is the cover, but there is no moving picture
    to transcode, and the video's error says so in ffmpeg's words, instead of the MP4
    muxer's complaint about a one-frame H.264 stream flagged as a cover."""
    clip = _cover_art_clip(tmp_path)
    local_storage.write(SMALL_KEY, clip)
    validation = validated(local_storage, pipeline_config, SMALL_KEY)
    body = transcode_videos(validation, storage=local_storage, config=pipeline_config)["body"]
    assert body["generatedAssets"] == []
    (error,) = body["errors"]
    assert error["errorCode"] == ErrorCode.VIDEO_TRANSCODE_FAILED
    assert "Stream map '0:V:0' matches no streams" in error["errorMessage"]
    assert list(local_storage.list(f"{LISTING}/processed/")) == []


def test_a_duration_over_an_hour_is_read_from_ffprobe_or_from_ffmpeg(
    pipeline_config: PipelineConfig, tmp_path: Path
) -> None:
    """ffmpeg prints ``Duration: 01:02:04.00``: hours, minutes and seconds all count. A
    picture every 3.5 s keeps the hour-long clip a few kilobytes."""
    path = tmp_path / "long.mp4"
    clip = made_by_ffmpeg(path, "-f", "lavfi", "-i", "color=c=gray:s=16x16:r=2/7", "-t", "3723.9",
                   "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")  # fmt: skip
    path.write_bytes(clip)  # made earlier: only its bytes are kept
    without_ffprobe = dataclasses.replace(pipeline_config, ffprobe_path="/nonexistent/ffprobe")
    assert probe_duration(path, pipeline_config) == pytest.approx(3724.0, abs=0.01)
    assert probe_duration(path, without_ffprobe) == pytest.approx(3724.0, abs=0.01)


def _raised(make: Any, *args: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(PipelineError) as caught:
        make(*args, **kwargs)
    return caught.value.code, caught.value.message


def test_an_ffmpeg_failure_quotes_ffmpeg_under_the_steps_own_code(
    local_storage: Storage, pipeline_config: PipelineConfig, clips: dict[str, bytes]
) -> None:
    """poster_one and transcode_one (the MediaConvert job form calls it directly) raise the
    code of their step, and the message says which step and what ffmpeg said, with the path
    of the step's temporary copy of the raw video."""
    local_storage.write(CORRUPT_KEY, clips["corrupt"])
    (asset,) = validated(local_storage, pipeline_config, CORRUPT_KEY)["videoAssets"]
    said = (
        r"ffmpeg exited with \d+: \[mov,mp4,m4a,3gp,3g2,mj2 @ 0x[0-9a-f]+\] moov atom not found"
        r"\n/\S+/toq-{step}-\w+/source\.mp4: Invalid data found when processing input"
    )
    code, message = _raised(poster_one, asset, storage=local_storage, config=pipeline_config)
    assert code == "VIDEO_THUMBNAIL_FAILED"
    assert re.fullmatch("poster frame: " + said.format(step="poster"), message), message
    code, message = _raised(transcode_one, asset, storage=local_storage, config=pipeline_config)
    assert code == "VIDEO_TRANSCODE_FAILED"
    expected = re.escape(f"transcode of {CORRUPT_KEY!r}: ") + said.format(step="transcode")
    assert re.fullmatch(expected, message), message
    assert list(local_storage.list(f"{LISTING}/processed/")) == []


def fake_ffmpeg(folder: Path, script: str) -> str:
    """An executable standing in for ffmpeg (a broken build or layer): ``script`` is sh."""
    path = folder / "ffmpeg"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return str(path)


STEPS = {
    "poster": (poster_one, "VIDEO_THUMBNAIL_FAILED", "poster frame"),
    "transcode": (transcode_one, "VIDEO_TRANSCODE_FAILED", f"transcode of {SMALL_KEY!r}"),
}


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize(
    ("script", "timeout_s", "said"),
    [
        ("exit 3", 60, "ffmpeg exited with 3: no output"),
        # the last 600 characters, undecodable bytes replaced, surrounding blanks dropped
        ('cat "$(dirname "$0")/stderr" >&2; exit 1', 60,
         "ffmpeg exited with 1: " + "x" * 590 + " \ufffd the end"),
        ("exec sleep 30", 1, "ffmpeg timed out after 1 s"),
    ],
    ids=["silent", "noisy", "stuck"],
)  # fmt: skip
def test_what_a_failing_ffmpeg_said_is_the_videos_error(
    local_storage: Storage,
    pipeline_config: PipelineConfig,
    clips: dict[str, bytes],
    tmp_path: Path,
    step: str,
    script: str,
    timeout_s: int,
    said: str,
) -> None:
    (tmp_path / "stderr").write_bytes(b"\xff\xfe head " + b"x" * 1000 + b" \xfe the end\n \n")
    config = dataclasses.replace(
        pipeline_config, ffmpeg_path=fake_ffmpeg(tmp_path, script), ffmpeg_timeout_s=timeout_s
    )
    make, code, what = STEPS[step]
    local_storage.write(SMALL_KEY, clips["small"])
    (asset,) = validated(local_storage, config, SMALL_KEY)["videoAssets"]
    assert _raised(make, asset, storage=local_storage, config=config) == (code, f"{what}: {said}")
    assert list(local_storage.list(f"{LISTING}/processed/")) == []


def test_an_ffmpeg_that_writes_an_empty_poster_fails_that_video(
    local_storage: Storage, pipeline_config: PipelineConfig, clips: dict[str, bytes], tmp_path: Path
) -> None:
    """Exit 0 and a 0-byte JPEG, at 10% and again at the first frame: no empty poster is
    published."""
    broken = fake_ffmpeg(tmp_path, 'for last; do :; done\n: > "$last"\nexit 0')
    config = dataclasses.replace(pipeline_config, ffmpeg_path=broken)
    local_storage.write(SMALL_KEY, clips["small"])
    (asset,) = validated(local_storage, config, SMALL_KEY)["videoAssets"]
    assert _raised(poster_one, asset, storage=local_storage, config=config) == (
        "VIDEO_THUMBNAIL_FAILED",
        f"{SMALL_KEY!r}: no video frame could be decoded",
    )
    assert list(local_storage.list(f"{LISTING}/processed/")) == []


@pytest.mark.parametrize("step", STEPS)
def test_a_video_key_without_a_raw_folder_is_that_videos_error(
    local_storage: Storage, pipeline_config: PipelineConfig, step: str
) -> None:
    """A hand-made input (not from validation) with a key outside docs/contract.md §2."""
    key = f"{LISTING}/video/horizontal/horizontal-01-tour.mp4"
    make, code, _ = STEPS[step]
    asset = {"key": key, "type": "VIDEO_HORIZONTAL", "etag": "0" * 32}
    assert _raised(make, asset, storage=local_storage, config=pipeline_config) == (
        code,
        f"invalid raw key {key!r}: no 'raw/' folder",
    )


@pytest.mark.parametrize("step", STEPS)
def test_a_video_deleted_after_validation_is_that_videos_error(
    local_storage: Storage, pipeline_config: PipelineConfig, clips: dict[str, bytes], step: str
) -> None:
    local_storage.write(SMALL_KEY, clips["small"])
    (asset,) = validated(local_storage, pipeline_config, SMALL_KEY)["videoAssets"]
    local_storage.delete(SMALL_KEY)
    make, code, _ = STEPS[step]
    assert _raised(make, asset, storage=local_storage, config=pipeline_config) == (
        code,
        f"raw object {SMALL_KEY!r} does not exist",
    )


def test_a_video_without_an_etag_is_processed_again_and_its_poster_names_no_source(
    local_storage: Storage, pipeline_config: PipelineConfig, clips: dict[str, bytes]
) -> None:
    """Without the raw object's etag nothing can prove an existing output was made from
    it: the poster is made again, and written without a ``source-etag``."""
    local_storage.write(SMALL_KEY, clips["small"])
    poster = poster_key(SMALL_KEY)
    local_storage.write(poster, b"\xff\xd8\xff marker", metadata={"source-etag": "None"})
    validation = {"videoAssets": [{"key": SMALL_KEY, "type": "VIDEO_HORIZONTAL"}]}
    body = generate_poster_frames(validation, storage=local_storage, config=pipeline_config)
    assert body["body"]["errors"] == []
    assert jpeg_size(local_storage, poster) == (320, 240)
    assert local_storage.head(poster).metadata == {}


def _missing_video(name: str, **fields: Any) -> dict[str, Any]:
    key = f"{LISTING}/raw/video/horizontal/horizontal-0{name}.mp4"
    return {"key": key, "type": "VIDEO_HORIZONTAL", "etag": "0" * 32, **fields}


@pytest.mark.parametrize("branch", [generate_poster_frames, transcode_videos])
def test_the_video_branches_take_the_valid_videos_of_the_validation(
    local_storage: Storage, pipeline_config: PipelineConfig, branch: Any
) -> None:
    """``videoAssets`` when the input has it (even empty); otherwise the ``assets`` that
    are videos and did not fail. The videos here are missing objects: each one taken is
    one error entry, with no ffmpeg run."""
    photo = {"key": f"{LISTING}/raw/photo/vertical/vertical-01-p.jpg", "type": "PHOTO"}
    failed = _missing_video("1-failed", error="raw object is empty", errorCode="EMPTY_OBJECT")
    untyped = {k: v for k, v in _missing_video("2-untyped").items() if k != "type"}
    taken = _missing_video("3-taken")
    assets = [photo, failed, untyped, taken]

    def sources(validation: dict[str, Any]) -> list[str]:
        body = branch(validation, storage=local_storage, config=pipeline_config)["body"]
        assert body["generatedAssets"] == []
        return [error["sourceKey"] for error in body["errors"]]

    assert sources({"assets": assets}) == [taken["key"]]
    assert sources({"assets": assets, "videoAssets": []}) == []
    assert sources({"assets": [], "videoAssets": [taken]}) == [taken["key"]]
    assert sources({}) == []


class _Clock:
    """``time`` for the video module: monotonic() answers the given readings in turn."""

    def __init__(self, *readings: float) -> None:
        self._readings: Iterator[float] = iter(readings)

    def monotonic(self) -> float:
        return next(self._readings)


@pytest.mark.parametrize(
    ("branch", "what", "step", "code", "make_key"),
    [
        (generate_poster_frames, "poster frame", "video_thumbnails", "VIDEO_THUMBNAIL_FAILED",
         poster_key),
        (transcode_videos, "transcode", "video_transcode", "VIDEO_TRANSCODE_FAILED",
         transcode_key),
    ],
    ids=["posters", "transcodes"],
)  # fmt: skip
def test_each_video_is_logged_with_its_outcome_and_duration(
    local_storage: Storage,
    pipeline_config: PipelineConfig,
    clips: dict[str, bytes],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    branch: Any,
    what: str,
    step: str,
    code: str,
    make_key: Any,
) -> None:
    """One line per video (ready, or failed with the reason), with the job's ids, the step,
    the error code and the milliseconds it took; a skipped output says so first."""
    local_storage.write(SMALL_KEY, clips["small"])
    etag = local_storage.head(SMALL_KEY).etag
    output = make_key(SMALL_KEY)
    local_storage.write(output, b"made before", metadata={"source-etag": etag})
    gone = _missing_video("9-gone")
    validation = {
        "jobId": 77,
        "listingIdentityId": LISTING,
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "videoAssets": [{"key": SMALL_KEY, "type": "VIDEO_HORIZONTAL", "etag": etag}, gone],
    }
    monkeypatch.setattr(video, "time", types.SimpleNamespace(
        monotonic=_Clock(10.0, 12.5, 20.0, 21.5).monotonic))  # fmt: skip
    with caplog.at_level(logging.INFO, logger="toq.pipeline.video"):
        branch(validation, storage=local_storage, config=pipeline_config)
    fields = ("job_id", "listing_identity_id", "step", "traceparent", "error_code", "duration_ms")
    logged = [
        (r.levelname, r.getMessage(), {f: getattr(r, f) for f in fields if hasattr(r, f)})
        for r in caplog.records
        if r.name == "toq.pipeline.video"
    ]
    ids = {
        "job_id": 77,
        "listing_identity_id": LISTING,
        "step": step,
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    assert logged == [
        ("INFO", f"{what} already present for this source, skipped: {output}", {}),
        ("INFO", f"{what} ready for {SMALL_KEY}", {**ids, "duration_ms": 2500}),
        (
            "WARNING",
            f"{what} failed for {gone['key']}: raw object {gone['key']!r} does not exist",
            {**ids, "error_code": code, "duration_ms": 1500},
        ),
    ]


def test_a_clip_with_sound_becomes_a_faststart_h264_mp4_with_stereo_aac(
    local_storage: Storage, pipeline_config: PipelineConfig, clips: dict[str, bytes], tmp_path: Path
) -> None:
    """The fast suite's transcode with an audio track (the small clip's mono tone)."""
    local_storage.write(SMALL_KEY, clips["small"])
    validation = validated(local_storage, pipeline_config, SMALL_KEY)
    transcode_videos(validation, storage=local_storage, config=pipeline_config)
    output = transcode_key(SMALL_KEY)
    info = local_storage.head(output)
    assert info.content_type == "video/mp4"
    assert info.metadata == {"source-etag": local_storage.head(SMALL_KEY).etag}
    local = tmp_path / "transcoded.mp4"
    with local_storage.open_read(output) as stream:
        local.write_bytes(stream.read())
    streams = {s["codec_type"]: s for s in ffprobe(local)["streams"]}
    assert set(streams) == {"video", "audio"}
    assert (streams["video"]["codec_name"], streams["video"]["profile"]) == ("h264", "High")
    assert (streams["video"]["width"], streams["video"]["height"]) == (320, 240)
    assert (streams["audio"]["codec_name"], streams["audio"]["channels"]) == ("aac", 2)
    boxes = top_level_boxes(local.read_bytes())
    assert boxes.index("moov") < boxes.index("mdat"), boxes
