"""GenerateThumbnails (docs/contract.md §4 step 2): the four JPEG derivatives of every valid photo.

Input: the validation result (``InputPath: $.validation``). Output: ``{"body": {...}}``.
"""

from __future__ import annotations

from typing import Any

from media_jobs.pipeline.handlers._runtime import lambda_step, pipeline_config, storage_for
from media_jobs.pipeline.thumbnails import generate_thumbnails
from media_jobs.pipeline.types import ValidationResult


def handler(event: ValidationResult, context: Any) -> dict[str, Any]:
    with lambda_step("thumbnails", event, context) as summary:
        config = pipeline_config()
        result = generate_thumbnails(event, storage=storage_for(config), config=config)
        summary.update(
            generated=len(result["body"]["generatedAssets"]),
            errors=len(result["body"]["errors"]),
        )
        return dict(result)
