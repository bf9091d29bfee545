"""The transcode with ffmpeg, in place of MediaConvert.

On AWS the state machine calls MediaConvert (``mediaconvert:createJob.sync``) directly; this
handler is the same work done the Celery engine's way, used by the tests' interpreter for
that resource (and usable as a Lambda with an ffmpeg layer for short clips). It accepts:

- the MediaConvert ``createJob`` parameters the state machine sends (``Settings.Inputs[].
  FileInput`` = ``s3://bucket/key``) and answers like ``.sync`` does: ``{"Job": {...}}``;
- a validation result, transcoding every valid video (``transcode_videos``), answered in
  the branch shape ``{"body": {"generatedAssets", "errors"}}`` of the other steps.

A MediaConvert job that fails fails the task (the state machine's Catch inside the per-video
iteration turns that into an error of that video); so does this handler's job form.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from media_jobs.pipeline.config import PipelineConfig
from media_jobs.pipeline.errors import ErrorCode, PipelineError
from media_jobs.pipeline.handlers._runtime import lambda_step, pipeline_config, storage_for
from media_jobs.pipeline.storage import ObjectNotFound, Storage
from media_jobs.pipeline.video import transcode_one, transcode_videos


def _input_keys(job: Mapping[str, Any], bucket: str) -> list[str]:
    """The keys of the job's inputs; like MediaConvert, a job without one, or naming
    anything but an object of ``bucket``, fails."""
    keys = []
    for job_input in job.get("Settings", {}).get("Inputs", []):
        file_input = job_input.get("FileInput")
        uri = urlparse(str(file_input))
        key = uri.path.lstrip("/")
        if uri.scheme != "s3" or uri.netloc != bucket or not key:
            raise PipelineError(
                ErrorCode.VIDEO_TRANSCODE_FAILED,
                f"input {file_input!r} is not an object of bucket {bucket!r}",
            )
        keys.append(key)
    if not keys:
        raise PipelineError(ErrorCode.VIDEO_TRANSCODE_FAILED, "the job has no input")
    return keys


def _etag(storage: Storage, key: str) -> str | None:
    try:
        return storage.head(key).etag
    except ObjectNotFound:
        return None  # transcode_one reports the missing object


def run_media_convert_job(
    job: Mapping[str, Any], *, storage: Storage, config: PipelineConfig
) -> dict[str, Any]:
    transcoded = []
    for key in _input_keys(job, storage.bucket):
        asset = {"key": key, "etag": _etag(storage, key)}
        transcoded.append(transcode_one(asset, storage=storage, config=config))
    return {
        "Job": {
            # shaped like a MediaConvert job id (13 digits, a suffix), marked as ffmpeg's
            "Id": "".join(secrets.choice(string.digits) for _ in range(13)) + "-ffmpeg",
            "Status": "COMPLETE",
            "Role": job.get("Role"),
            "UserMetadata": dict(job.get("UserMetadata") or {}),
            "Settings": job.get("Settings"),
        },
        "transcoded": transcoded,
    }


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with lambda_step("video_transcode", event, context) as summary:
        config = pipeline_config()
        storage = storage_for(config)
        if "Settings" in event:
            result = run_media_convert_job(event, storage=storage, config=config)
            summary["transcoded"] = len(result["transcoded"])
            return result
        branch = transcode_videos(event, storage=storage, config=config)
        summary.update(
            transcoded=len(branch["body"]["generatedAssets"]),
            errors=len(branch["body"]["errors"]),
        )
        return dict(branch)
