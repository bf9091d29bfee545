"""FinalizeAndCallback / failure reports (docs/contract.md §6): POST the signed body to CALLBACK_URL.

Raises on any failure so the state's Retry (3x, 5 s, backoff 2) runs.
"""

from __future__ import annotations

from typing import Any

from media_jobs.pipeline.callback import send_callback
from media_jobs.pipeline.handlers._runtime import lambda_step, pipeline_config


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with lambda_step("callback", event, context) as summary:
        config = pipeline_config()
        attempt = send_callback(
            event,
            url=config.callback_url or "",
            secret=config.callback_secret or "",
            timeout_s=config.callback_timeout_s,
        )
        summary.update(status_code=attempt.status_code, latency_ms=attempt.latency_ms)
        return {
            "delivered": True,
            "statusCode": attempt.status_code,
            "latencyMs": attempt.latency_ms,
        }
