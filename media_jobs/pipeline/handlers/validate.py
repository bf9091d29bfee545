"""ValidateRawAssets (docs/contract.md §4 step 1), and the SQS entry point that starts executions.

Invoked by the state machine, it validates the raw objects. Invoked by an SQS event source
(``Records[].eventSource == "aws:sqs"``), it turns each queue message into a state machine
input and starts an execution of ``STATE_MACHINE_ARN``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any

from media_jobs.pipeline.errors import PipelineError
from media_jobs.pipeline.handlers._runtime import (
    lambda_step,
    pipeline_config,
    setup_logging,
    storage_for,
)
from media_jobs.pipeline.keys import transcode_folder, transcode_key
from media_jobs.pipeline.logs import log_context
from media_jobs.pipeline.types import ProcessingInput, ValidationResult
from media_jobs.pipeline.validate import normalize_processing_input, validate_assets

log = logging.getLogger("toq.pipeline.handlers.validate")

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
MAX_EXECUTION_NAME = 80


class StartExecutionFailed(Exception):
    """At least one queue message could not start its execution; SQS will redeliver."""


def is_sqs_event(event: Any) -> bool:
    records = event.get("Records") if isinstance(event, dict) else None
    if not records:
        return False
    return all(r.get("eventSource") == "aws:sqs" for r in records)


def with_video_paths(result: ValidationResult, bucket: str) -> ValidationResult:
    """Give every valid video its own MediaConvert input and destination, so the state
    machine's Map transcodes each video (the top-level pair names only the first), and the
    key MediaConvert writes (``transcodeKey``), which the Map reports as the video's
    ``original`` output."""
    for asset in result["videoAssets"]:
        key = asset["key"]
        asset["videoInput"] = f"s3://{bucket}/{key}"
        asset["videoOutputPath"] = f"s3://{bucket}/{transcode_folder(key)}"
        asset["transcodeKey"] = transcode_key(key)
    return result


def execution_name(job_id: int | str, message_id: str) -> str:
    """Deterministic per queue message: a redelivered message maps to the same execution
    (StartExecution with the same name and input is idempotent), a new message to a new one."""
    name = _NAME_UNSAFE.sub("-", f"job-{job_id}-{message_id}")
    return name[:MAX_EXECUTION_NAME]


def traceparent_for(message_id: str) -> str:
    """A W3C traceparent derived from the message id, for messages that carry none: stable
    across redeliveries, so the execution input (and its idempotency) does not change."""
    digest = hashlib.sha256(message_id.encode()).hexdigest()
    return f"00-{digest[:32]}-{digest[32:48]}-01"


def start_executions(event: dict[str, Any]) -> dict[str, Any]:
    config = pipeline_config()
    if not config.state_machine_arn:
        raise ValueError("STATE_MACHINE_ARN is not configured")
    # The Lambda runtime's boto3; validation alone does not need it.
    from media_jobs.pipeline.aws import ClientOptions, shared_client  # noqa: PLC0415

    client = shared_client("stepfunctions", ClientOptions(region=config.region))
    started: list[dict[str, Any]] = []
    rejected: list[dict[str, str]] = []
    failures: list[str] = []
    for record in event["Records"]:
        message_id = record.get("messageId") or ""
        try:
            execution_input: ProcessingInput = normalize_processing_input(
                json.loads(record["body"])
            )
        except (ValueError, PipelineError) as exc:
            # Redelivering a malformed message cannot help: report it and let it go.
            rejected.append({"messageId": message_id, "error": str(exc)})
            log.error("invalid queue message %s: %s", message_id, exc)
            continue
        execution_input.setdefault("traceparent", traceparent_for(message_id))
        name = execution_name(execution_input["jobId"], message_id)
        with log_context(
            job_id=execution_input["jobId"],
            listing_identity_id=execution_input["listingIdentityId"],
            traceparent=execution_input.get("traceparent"),
            step="start_execution",
        ):
            try:
                response = client.start_execution(
                    stateMachineArn=config.state_machine_arn,
                    name=name,
                    input=json.dumps(execution_input, separators=(",", ":")),
                )
            except client.exceptions.ExecutionAlreadyExists:
                log.info("execution %s already started for message %s", name, message_id)
                started.append({"jobId": execution_input["jobId"], "name": name})
                continue
            except Exception as exc:
                failures.append(f"{message_id}: {type(exc).__name__}: {exc}")
                log.exception("could not start execution %s", name)
                continue
            log.info("execution started", extra={"execution_arn": response["executionArn"]})
            started.append(
                {
                    "jobId": execution_input["jobId"],
                    "name": name,
                    "executionArn": response["executionArn"],
                }
            )
    if failures:
        raise StartExecutionFailed("; ".join(failures))
    return {"started": started, "rejected": rejected, "count": len(started)}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    setup_logging()
    if is_sqs_event(event):
        return start_executions(event)
    with lambda_step("validate", event, context) as summary:
        config = pipeline_config()
        storage = storage_for(config)
        result = with_video_paths(
            validate_assets(event, storage=storage, config=config), storage.bucket
        )
        summary.update(
            assets=len(result["assets"]),
            images=len(result["imageAssets"]),
            videos=len(result["videoAssets"]),
            failed=sum(1 for asset in result["assets"] if "error" in asset),
        )
        return dict(result)
