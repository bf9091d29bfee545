"""Video steps of docs/contract.md §4 step 2: poster frames and the H.264 transcode, with ffmpeg.

The raw video is streamed to a temporary file first (memory stays bounded whatever its
size; ffmpeg needs to seek, which an HTTP body cannot). Outputs record the raw object's etag
in their ``source-etag`` metadata: a retry of the same job skips outputs that already exist
for the same source, and a re-upload (new etag) is processed again.

On AWS the transcode is MediaConvert's job; ``transcode_videos`` is the Celery engine's (and
the tests') equivalent, to the same spec: H.264, at most 1920x1080, AAC, MP4 with faststart.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from media_jobs.pipeline.config import PipelineConfig
from media_jobs.pipeline.errors import ErrorCode, PipelineError
from media_jobs.pipeline.keys import is_video_type, poster_key, transcode_key
from media_jobs.pipeline.storage import ObjectNotFound, Storage
from media_jobs.pipeline.types import AssetError, BranchResult, GeneratedAsset, ValidatedAsset
from media_jobs.pipeline.validate import step_log_fields

logger = logging.getLogger("toq.pipeline.video")

SOURCE_ETAG = "source-etag"
# ``type`` of the generated entries (informational: consolidation names outputs after the
# raw asset's type, keys.output_name).
POSTER_TYPE = "VIDEO_THUMBNAIL"
TRANSCODE_TYPE = "VIDEO_TRANSCODE"
POSTER_MAX_WIDTH = 1200
# The poster is taken at 10% of the duration, at most 1 s in: past fade-ins and black
# first frames, yet early enough to exist in short clips.
POSTER_AT_SECONDS = 1.0
POSTER_FRACTION = 0.1
POSTER_JPEG_QSCALE = 3  # ffmpeg's mjpeg scale (2 best .. 31 worst); 3 is about quality 85-90
TRANSCODE_MAX_WIDTH = 1920
TRANSCODE_MAX_HEIGHT = 1080
X264_PRESET = "veryfast"
X264_CRF = 23
# A ceiling like MediaConvert's QVBR max bitrate, so a noisy clip cannot balloon.
X264_MAXRATE = "8M"
X264_BUFSIZE = "16M"
AAC_BITRATE = "128k"
STDERR_TAIL = 600
COPY_CHUNK = 1024 * 1024
# A duration probe reads the container's header only: it never needs the long budget of
# a transcode (FFMPEG_TIMEOUT_SECONDS), only up to this.
PROBE_TIMEOUT_S = 120


def resolve_binary(name: str) -> str:
    """An absolute path for ``name`` (a path or a command on PATH)."""
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name!r} not found on PATH (set FFMPEG_PATH / FFPROBE_PATH)")
    return found


def _run(command: list[str], *, timeout_s: int, code: ErrorCode, what: str) -> None:
    try:
        completed = subprocess.run(command, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise PipelineError(code, f"{what}: ffmpeg timed out after {timeout_s} s") from None
    if completed.returncode != 0:
        stderr = completed.stderr.decode(errors="replace").strip()[-STDERR_TAIL:]
        raise PipelineError(
            code, f"{what}: ffmpeg exited with {completed.returncode}: {stderr or 'no output'}"
        )


_DURATION = re.compile(rb"Duration: (\d+):(\d{2}):(\d{2}(?:\.\d+)?)")


def _duration_from_ffmpeg(path: Path, config: PipelineConfig) -> float | None:
    """The duration ffmpeg prints for its input (``Duration: 00:00:03.00``). The ffmpeg
    layer of the TOQ account ships ffmpeg without ffprobe, so this is the fallback."""
    try:
        command = [resolve_binary(config.ffmpeg_path), "-hide_banner", "-nostdin", "-i", str(path)]
        completed = subprocess.run(
            command, capture_output=True, timeout=min(PROBE_TIMEOUT_S, config.ffmpeg_timeout_s)
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
    match = _DURATION.search(completed.stderr)
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def probe_duration(path: Path, config: PipelineConfig) -> float | None:
    """The container duration in seconds, or None when neither ffprobe nor ffmpeg can tell."""
    try:
        ffprobe = resolve_binary(config.ffprobe_path)
    except FileNotFoundError:
        return _duration_from_ffmpeg(path, config)
    command = [
        ffprobe,
        "-v",
        "error",
        "-show_entries",
        "format=duration",
        "-of",
        "default=noprint_wrappers=1:nokey=1",
        str(path),
    ]
    try:
        completed = subprocess.run(
            command, capture_output=True, timeout=min(PROBE_TIMEOUT_S, config.ffmpeg_timeout_s)
        )
        return float(completed.stdout.decode().strip())
    except (subprocess.TimeoutExpired, ValueError):
        return None


def poster_time(duration: float | None) -> float:
    if duration is None or duration <= 0:
        return 0.0
    return min(POSTER_AT_SECONDS, duration * POSTER_FRACTION)


def _download(storage: Storage, key: str, target: Path, code: ErrorCode) -> None:
    try:
        with storage.open_read(key) as source, target.open("wb") as out:
            shutil.copyfileobj(source, out, COPY_CHUNK)
    except ObjectNotFound:
        raise PipelineError(code, f"raw object {key!r} does not exist") from None


def _already_done(storage: Storage, output_key: str, source_etag: str | None) -> bool:
    """The output exists and was made from this very source (same etag)."""
    if not source_etag:
        return False
    try:
        info = storage.head(output_key)
    except ObjectNotFound:
        return False
    return info.metadata.get(SOURCE_ETAG) == source_etag


def _source_metadata(asset: Mapping[str, Any]) -> dict[str, str]:
    etag = asset.get("etag")
    return {SOURCE_ETAG: str(etag)} if etag else {}


def valid_videos(validation: Mapping[str, Any]) -> list[ValidatedAsset]:
    """The video assets that passed validation."""
    candidates = validation.get("videoAssets")
    if candidates is None:
        candidates = validation.get("assets", [])
    return [a for a in candidates if "error" not in a and is_video_type(str(a.get("type", "")))]


# -- poster frames ----------------------------------------------------------------------


def _extract_frame(source: Path, target: Path, at_s: float, config: PipelineConfig) -> bool:
    """One JPEG frame at ``at_s``; False when the clip has no frame there (too short)."""
    target.unlink(missing_ok=True)
    command = [resolve_binary(config.ffmpeg_path), "-hide_banner", "-nostdin", "-loglevel"]
    command += ["error", "-y"]
    if at_s > 0:
        command += ["-ss", f"{at_s:.3f}"]
    command += ["-i", str(source), "-map", "0:v:0", "-frames:v", "1", "-an", "-sn", "-dn"]
    # never upscale; the height follows the (rotation-corrected) aspect ratio
    command += ["-vf", f"scale=w='min({POSTER_MAX_WIDTH},iw)':h=-1"]
    command += ["-q:v", str(POSTER_JPEG_QSCALE), "-map_metadata", "-1"]
    command += ["-f", "image2", "-update", "1", str(target)]
    _run(
        command,
        timeout_s=config.ffmpeg_timeout_s,
        code=ErrorCode.VIDEO_THUMBNAIL_FAILED,
        what="poster frame",
    )
    return target.exists() and target.stat().st_size > 0


def poster_one(
    asset: Mapping[str, Any], *, storage: Storage, config: PipelineConfig
) -> GeneratedAsset:
    """The poster frame of one video, written to ``poster_key(raw)``.

    Raises PipelineError(VIDEO_THUMBNAIL_FAILED) for a problem with this video (missing,
    corrupt, no video stream); storage outages and a missing ffmpeg propagate.
    """
    key = str(asset["key"])
    try:
        output_key = poster_key(key)
    except PipelineError as error:
        raise PipelineError(ErrorCode.VIDEO_THUMBNAIL_FAILED, error.message) from error
    generated: GeneratedAsset = {"key": output_key, "type": POSTER_TYPE, "sourceKey": key}
    if _already_done(storage, output_key, asset.get("etag")):
        logger.info("poster frame already present for this source, skipped: %s", output_key)
        return generated
    with tempfile.TemporaryDirectory(prefix="toq-poster-") as tmp:
        source = Path(tmp) / ("source" + Path(key).suffix.lower())
        target = Path(tmp) / "poster.jpg"
        _download(storage, key, source, ErrorCode.VIDEO_THUMBNAIL_FAILED)
        at_s = poster_time(probe_duration(source, config))
        found = _extract_frame(source, target, at_s, config)
        if not found and at_s > 0:
            found = _extract_frame(source, target, 0.0, config)  # shorter than it claims
        if not found:
            raise PipelineError(
                ErrorCode.VIDEO_THUMBNAIL_FAILED, f"{key!r}: no video frame could be decoded"
            )
        data = target.read_bytes()
    storage.write(output_key, data, content_type="image/jpeg", metadata=_source_metadata(asset))
    return generated


def _each_video(
    validation: Mapping[str, Any],
    *,
    step: str,
    code: ErrorCode,
    what: str,
    make: Callable[[Mapping[str, Any]], GeneratedAsset],
) -> BranchResult:
    """Run ``make`` on every valid video: a PipelineError is an ``errors`` entry of that
    video (``code``), the others still run; anything else propagates (the step fails and
    the engine retries it)."""
    generated: list[GeneratedAsset] = []
    errors: list[AssetError] = []
    for asset in valid_videos(validation):
        started = time.monotonic()
        try:
            generated.append(make(asset))
        except PipelineError as error:
            errors.append(
                {
                    "sourceKey": str(asset["key"]),
                    "errorCode": str(code),
                    "errorMessage": error.message,
                }
            )
            logger.warning(
                "%s failed for %s: %s",
                what,
                asset["key"],
                error.message,
                extra=step_log_fields(
                    validation,
                    step,
                    error_code=str(code),
                    duration_ms=round((time.monotonic() - started) * 1000),
                ),
            )
            continue
        logger.info(
            "%s ready for %s",
            what,
            asset["key"],
            extra=step_log_fields(
                validation, step, duration_ms=round((time.monotonic() - started) * 1000)
            ),
        )
    return {"body": {"status": "SUCCESS", "generatedAssets": generated, "errors": errors}}


def generate_poster_frames(
    validation: Mapping[str, Any], *, storage: Storage, config: PipelineConfig
) -> BranchResult:
    """docs/contract.md §4 step 2, video poster frames: one bad video never fails the others."""
    return _each_video(
        validation,
        step="video_thumbnails",
        code=ErrorCode.VIDEO_THUMBNAIL_FAILED,
        what="poster frame",
        make=lambda asset: poster_one(asset, storage=storage, config=config),
    )


# -- transcode --------------------------------------------------------------------------


def transcode_command(source: Path, target: Path, *, ffmpeg: str) -> list[str]:
    """ffmpeg arguments for the MediaConvert-equivalent rendition."""
    fit = (
        f"scale=w='min({TRANSCODE_MAX_WIDTH},iw)':h='min({TRANSCODE_MAX_HEIGHT},ih)'"
        ":force_original_aspect_ratio=decrease:force_divisible_by=2"
    )
    return [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-i",
        str(source),
        "-map",
        # V, not v: the first moving picture, never a cover (attached picture), which
        # would make a one-frame "video" that the MP4 muxer refuses
        "0:V:0",
        "-map",
        "0:a:0?",
        "-sn",
        "-dn",
        # no GPS or device tags in a published file (as for photo derivatives)
        "-map_metadata",
        "-1",
        "-vf",
        f"{fit},format=yuv420p",
        "-c:v",
        "libx264",
        "-preset",
        X264_PRESET,
        "-crf",
        str(X264_CRF),
        "-maxrate",
        X264_MAXRATE,
        "-bufsize",
        X264_BUFSIZE,
        "-profile:v",
        "high",
        "-c:a",
        "aac",
        "-b:a",
        AAC_BITRATE,
        "-ac",
        "2",
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
        str(target),
    ]


def transcode_one(
    asset: Mapping[str, Any], *, storage: Storage, config: PipelineConfig
) -> GeneratedAsset:
    """One video to ``transcode_key(raw)``.

    A problem of this video (gone, corrupt, unsupported, ffmpeg failing or timing out on
    it) raises PipelineError(VIDEO_TRANSCODE_FAILED): an error of this asset only. Storage
    outages and a missing ffmpeg (FileNotFoundError) propagate unchanged, so the engine
    retries them and, if they last, fails the run.
    """
    key = str(asset["key"])
    code = ErrorCode.VIDEO_TRANSCODE_FAILED
    try:
        output_key = transcode_key(key)
    except PipelineError as error:
        raise PipelineError(code, error.message) from error
    result: GeneratedAsset = {"key": output_key, "type": TRANSCODE_TYPE, "sourceKey": key}
    if _already_done(storage, output_key, asset.get("etag")):
        logger.info("transcode already present for this source, skipped: %s", output_key)
        return result
    ffmpeg = resolve_binary(config.ffmpeg_path)
    with tempfile.TemporaryDirectory(prefix="toq-transcode-") as tmp:
        source = Path(tmp) / ("source" + Path(key).suffix.lower())
        target = Path(tmp) / "transcoded.mp4"
        _download(storage, key, source, code)
        command = transcode_command(source, target, ffmpeg=ffmpeg)
        _run(command, timeout_s=config.ffmpeg_timeout_s, code=code, what=f"transcode of {key!r}")
        if not target.exists() or target.stat().st_size == 0:
            raise PipelineError(code, f"transcode of {key!r} produced no output")
        storage.write_file(
            output_key, str(target), content_type="video/mp4", metadata=_source_metadata(asset)
        )
    return result


def transcode_videos(
    validation: Mapping[str, Any], *, storage: Storage, config: PipelineConfig
) -> BranchResult:
    """Every valid video, not only the first (the Go system's limitation), in the branch
    shape of the other steps: a video that cannot be transcoded is an entry of ``errors``
    and the others are still done (on AWS: the Catch inside the per-video Map iteration).
    """
    return _each_video(
        validation,
        step="video_transcode",
        code=ErrorCode.VIDEO_TRANSCODE_FAILED,
        what="transcode",
        make=lambda asset: transcode_one(asset, storage=storage, config=config),
    )
