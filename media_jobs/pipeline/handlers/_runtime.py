"""What every Lambda handler shares: configuration, the storage adapter, JSON logs, and the
translation of pipeline errors into Step Functions error names.

A Python Lambda reports an unhandled exception with ``errorType`` = the exception's class
name, and that becomes the ``Error`` a state machine's Retry / Catch match and the failure
callback reports. So a ``PipelineError`` leaves the handler as an exception class named
after its code (``OBJECT_NOT_FOUND``, ``ZIP_FAILED``, ...): the failure body says which
problem it was, exactly as the Celery engine reports it with ``describe_failure``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from media_jobs.pipeline.config import PipelineConfig
from media_jobs.pipeline.errors import PipelineError
from media_jobs.pipeline.logs import configure_json_logging, log_context, step_timer
from media_jobs.pipeline.storage import Storage
from media_jobs.pipeline.storage_factory import storage_from_config

log = logging.getLogger("toq.pipeline.handlers")


class StepFailed(Exception):
    """Base of the per-code exceptions a handler raises for a PipelineError."""

    code = "STEP_FAILED"


@lru_cache(maxsize=64)
def error_class(code: str) -> type[StepFailed]:
    """``StepFailed`` subclass whose ``__name__`` is the error code (one class per code)."""
    name = code if code.isidentifier() else "STEP_FAILED"
    return type(name, (StepFailed,), {"code": code, "__module__": __name__})


def step_error(error: PipelineError) -> StepFailed:
    return error_class(error.code)(error.message)


def pipeline_config() -> PipelineConfig:
    return PipelineConfig.from_env()


@lru_cache(maxsize=8)
def _storage_for(config: PipelineConfig) -> Storage:
    return storage_from_config(config)


def storage_for(config: PipelineConfig) -> Storage:
    """One adapter (and so one boto3 client) per configuration per warm container."""
    return _storage_for(config)


_logging_ready = False


def setup_logging() -> None:
    """JSON logs on the first invocation of a container (level from ``LOG_LEVEL``)."""
    global _logging_ready
    if _logging_ready:
        return
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or not logging.getLogger().handlers:
        configure_json_logging(os.environ.get("LOG_LEVEL") or "INFO")
    _logging_ready = True


def job_fields(event: Any) -> dict[str, Any]:
    """job_id / listing_identity_id / traceparent for the logs, wherever the event keeps
    them (top level, a callback's ``body``, a MediaConvert job's ``UserMetadata``)."""
    source: Any = event
    if isinstance(event, Mapping):
        if isinstance(event.get("body"), Mapping):
            source = event["body"]
        elif isinstance(event.get("UserMetadata"), Mapping):
            source = event["UserMetadata"]
    if not isinstance(source, Mapping):
        return {}
    return {
        "job_id": source.get("jobId"),
        "listing_identity_id": source.get("listingIdentityId"),
        "traceparent": source.get("traceparent") or None,
    }


@contextmanager
def lambda_step(step: str, event: Any, context: Any) -> Iterator[dict[str, Any]]:
    """Logs the step with its job context and duration; re-raises a PipelineError as the
    exception named after its code. Yields the summary dict of ``step_timer``."""
    setup_logging()
    request_id = getattr(context, "aws_request_id", None)
    with log_context(request_id=request_id, **job_fields(event)):
        try:
            with step_timer(log, step) as summary:
                yield summary
        except PipelineError as error:
            raise step_error(error) from error
