"""CreateZipBundle (docs/contract.md §5 step 1): stream the listing's media into one ZIP object."""

from __future__ import annotations

from typing import Any

from media_jobs.pipeline.handlers._runtime import lambda_step, pipeline_config, storage_for
from media_jobs.pipeline.zipper import create_zip_bundle


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with lambda_step("zip", event, context) as summary:
        config = pipeline_config()
        result = create_zip_bundle(event, storage=storage_for(config))
        summary.update(
            assets_zipped=result["body"]["assetsZipped"],
            zip_size_bytes=result["body"]["zipSizeBytes"],
        )
        return result
