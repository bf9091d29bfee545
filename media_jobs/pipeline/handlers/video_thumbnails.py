"""GenerateVideoThumbnails (docs/contract.md §4 step 2): a JPEG poster frame for every valid video.

Input: the validation result. Output: ``{"body": {...}}`` (type VIDEO_THUMBNAIL). Needs
ffmpeg/ffprobe in the Lambda (a layer; ``FFMPEG_PATH`` / ``FFPROBE_PATH``).
"""

from __future__ import annotations

from typing import Any

from media_jobs.pipeline.handlers._runtime import lambda_step, pipeline_config, storage_for
from media_jobs.pipeline.video import generate_poster_frames


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with lambda_step("video_thumbnails", event, context) as summary:
        config = pipeline_config()
        result = generate_poster_frames(event, storage=storage_for(config), config=config)
        summary.update(
            generated=len(result["body"]["generatedAssets"]),
            errors=len(result["body"]["errors"]),
        )
        return dict(result)
