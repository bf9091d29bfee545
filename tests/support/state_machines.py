"""The two state machine definitions and the Python resources the test interpreter runs
them with: each Lambda placeholder is the real handler, MediaConvert's ``createJob.sync``
is the ffmpeg transcode handler answering like MediaConvert."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from media_jobs.pipeline.handlers import (
    callback,
    consolidate,
    thumbnails,
    validate,
    video_thumbnails,
    video_transcode,
)
from media_jobs.pipeline.handlers import zip as zip_step
from tests.fixtures.s3server import REGION

ROOT = Path(__file__).resolve().parents[2]
PROCESSING = json.loads((ROOT / "aws/step_functions/media_processing_pipeline.json").read_text())
FINALIZATION = json.loads(
    (ROOT / "aws/step_functions/media_finalization_pipeline.json").read_text()
)
MEDIACONVERT = "arn:aws:states:::mediaconvert:createJob.sync"
RESOURCES = {
    "${ValidateFunctionArn}": validate.handler,
    "${ThumbnailsFunctionArn}": thumbnails.handler,
    "${VideoThumbnailsFunctionArn}": video_thumbnails.handler,
    MEDIACONVERT: video_transcode.handler,
    "${ConsolidateFunctionArn}": consolidate.handler,
    "${CallbackFunctionArn}": callback.handler,
    "${ZipFunctionArn}": zip_step.handler,
}


def set_lambda_environment(
    monkeypatch: pytest.MonkeyPatch,
    *,
    endpoint_url: str,
    bucket: str,
    callback_url: str,
    callback_secret: str,
    **extra: str,
) -> None:
    """The environment a deployed function would have, pointing at the test servers."""

    for name, value in {
        "MEDIA_BUCKET": bucket,
        "MEDIA_STORAGE_BACKEND": "s3",
        "AWS_S3_ENDPOINT_URL": endpoint_url,
        "AWS_REGION": REGION,
        "CALLBACK_URL": callback_url,
        "CALLBACK_SECRET": callback_secret,
        **extra,
    }.items():
        monkeypatch.setenv(name, value)
