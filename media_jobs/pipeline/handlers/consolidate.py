"""ConsolidateResults (docs/contract.md §4 step 3): one output per raw asset, the callback body."""

from __future__ import annotations

from typing import Any

from media_jobs.pipeline.consolidate import consolidate
from media_jobs.pipeline.handlers._runtime import lambda_step


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with lambda_step("consolidate", event, context) as summary:
        result = consolidate(event)
        summary.update(status=result["body"]["status"], outputs=len(result["body"]["outputs"]))
        return result
