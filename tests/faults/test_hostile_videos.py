"""Playlists uploaded as videos: an HLS playlist or an ffconcat script names other files
and URLs, and ffmpeg follows them if it ever reads one as such. Each is refused or fails
as that video's error, and neither canary - a TCP listener and a FIFO the playlists point
at - is ever touched."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from media_jobs import sample_media
from media_jobs.pipeline.config import PipelineConfig
from media_jobs.pipeline.errors import ErrorCode
from media_jobs.pipeline.storage import Storage
from media_jobs.pipeline.validate import validate_assets
from media_jobs.pipeline.video import generate_poster_frames, transcode_videos
from tests.fixtures import hostile

pytestmark = [pytest.mark.fault, pytest.mark.slow]

LISTING = 7707
FOLDER = f"{LISTING}/raw/video/horizontal"


@dataclass
class Canaries:
    """A TCP listener and a FIFO; ``touched`` lists every connection or open for reading."""

    url: str
    fifo: Path
    touched: list[str] = field(default_factory=list)


@pytest.fixture
def canaries(tmp_path: Path) -> Iterator[Canaries]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    fifo = tmp_path / "secret.ts"
    os.mkfifo(fifo)
    found = Canaries(url=f"http://127.0.0.1:{listener.getsockname()[1]}/segment.ts", fifo=fifo)
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
                connection.close()
                found.touched.append("network")
            except TimeoutError:
                pass
            try:  # succeeds only while a reader has the FIFO open
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                found.touched.append("file")
            except OSError as error:
                if error.errno != errno.ENXIO:
                    raise

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield found
    finally:
        stop.set()
        watcher.join(timeout=5)
        listener.close()


def _playlists(canaries: Canaries) -> dict[str, bytes]:
    targets = [canaries.url, str(canaries.fifo), f"file:{canaries.fifo}"]
    return {
        "hls": hostile.hls_playlist(targets),
        "ffconcat": hostile.ffconcat([str(canaries.fifo), canaries.url]),
    }


def _event(*keys: str) -> dict:
    return {
        "jobId": 77,
        "listingIdentityId": LISTING,
        "assets": [{"key": key, "type": "VIDEO_HORIZONTAL"} for key in keys],
    }


@pytest.mark.parametrize("extension", [".m3u8", ".mp4", ".txt"])
def test_a_playlist_uploaded_as_a_video_is_refused_before_ffmpeg(
    local_storage: Storage, canaries: Canaries, extension: str
) -> None:
    config = PipelineConfig(bucket=local_storage.bucket)
    keys = []
    for kind, data in _playlists(canaries).items():
        key = f"{FOLDER}/horizontal-01-{kind}{extension}"
        local_storage.write(key, data)
        keys.append(key)

    validation = validate_assets(_event(*keys), storage=local_storage, config=config)

    assert [a.get("errorCode") for a in validation["assets"]] == ["UNSUPPORTED_FORMAT"] * 2
    assert validation["videoAssets"] == [] and not validation["hasVideos"]
    assert canaries.touched == []


@pytest.mark.parametrize("extension", [".m3u8", ".ffconcat", ".mp4"])
def test_a_playlist_behind_an_mp4_header_fails_as_that_video_and_is_never_followed(
    local_storage: Storage, canaries: Canaries, extension: str
) -> None:
    """The ``ftyp`` box passes the magic-number check; ffmpeg must still read the file as
    the MP4 it claims to be (never as a playlist, whatever its extension), fail on it, and
    fail only that video."""
    config = PipelineConfig(bucket=local_storage.bucket)
    good = f"{FOLDER}/horizontal-01-tour.mp4"
    local_storage.write(good, sample_media.mp4_bytes(1.0, 320, 240))
    keys = [good]
    for kind, data in _playlists(canaries).items():
        key = f"{FOLDER}/horizontal-02-{kind}{extension}"
        local_storage.write(key, hostile.mp4_wrapping(data))
        keys.append(key)

    validation = validate_assets(_event(*keys), storage=local_storage, config=config)
    assert [a["key"] for a in validation["videoAssets"]] == keys  # the header passes

    posters = generate_poster_frames(validation, storage=local_storage, config=config)["body"]
    assert [g["sourceKey"] for g in posters["generatedAssets"]] == [good]
    assert sorted((e["sourceKey"], e["errorCode"]) for e in posters["errors"]) == sorted(
        (key, "VIDEO_THUMBNAIL_FAILED") for key in keys[1:]
    )
    transcodes = transcode_videos(validation, storage=local_storage, config=config)["body"]
    assert [g["sourceKey"] for g in transcodes["generatedAssets"]] == [good]
    assert sorted((e["sourceKey"], e["errorCode"]) for e in transcodes["errors"]) == sorted(
        (key, ErrorCode.VIDEO_TRANSCODE_FAILED) for key in keys[1:]
    )
    assert canaries.touched == []


def test_the_canaries_see_ffmpeg_follow_a_playlist(tmp_path: Path, canaries: Canaries) -> None:
    """The detector is real: ffmpeg handed a playlist directly (what the pipeline never
    does) opens the FIFO, and with the network allowed, connects to the listener."""
    playlist = tmp_path / "given.m3u8"
    playlist.write_bytes(hostile.hls_playlist([str(canaries.fifo)]))
    direct = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    subprocess.run([*direct, "-i", str(playlist), "-f", "null", "-"], timeout=60, check=False)
    playlist.write_bytes(hostile.hls_playlist([canaries.url]))
    allow_network = ["-protocol_whitelist", "file,http,tcp"]
    subprocess.run(
        [*direct, *allow_network, "-i", str(playlist), "-f", "null", "-"], timeout=60, check=False
    )

    deadline = time.monotonic() + 10
    while {"file", "network"} - set(canaries.touched) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert {"file", "network"} <= set(canaries.touched), canaries.touched
