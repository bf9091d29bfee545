"""The portal's AWS Step Functions client: start executions, read them back for the admin.

A thin wrapper over boto3 so the rest of the portal never sees botocore exceptions: when AWS
cannot be reached (no network, no credentials, throttled, refused) it raises
:class:`AwsUnavailable` with a message an operator can act on. The endpoint comes from
``settings.AWS_ENDPOINT_URL`` (a local endpoint such as moto server in tests), the region
from ``settings.AWS_S3_REGION_NAME``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from media_jobs.pipeline.aws import ClientOptions, shared_client

# Executions are named by the portal; Step Functions allows 80 characters.
MAX_EXECUTION_NAME = 80
# The admin shows a history; a runaway one is cut here rather than paged forever.
MAX_HISTORY_EVENTS = 2000


class AwsUnavailable(Exception):
    """AWS (or the configured endpoint) could not answer the call; ``str()`` says why."""


class ExecutionNotFound(AwsUnavailable):
    """The execution ARN is unknown to Step Functions (wrong account/region, or expired)."""


def _client() -> Any:
    return shared_client(
        "stepfunctions",
        ClientOptions(
            endpoint_url=getattr(settings, "AWS_ENDPOINT_URL", None) or None,
            region=getattr(settings, "AWS_S3_REGION_NAME", None) or "us-east-1",
            max_retries=3,
            connect_timeout_s=5,
            read_timeout_s=15,
        ),
    )


def _where() -> str:
    endpoint = getattr(settings, "AWS_ENDPOINT_URL", None)
    return f"the Step Functions endpoint {endpoint}" if endpoint else "AWS Step Functions"


def _translate(exc: Exception, what: str) -> AwsUnavailable:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        message = error.get("Message", "") or str(exc)
        if code in {"ExecutionDoesNotExist", "StateMachineDoesNotExist", "InvalidArn"}:
            return ExecutionNotFound(f"{what}: {code}: {message}")
        return AwsUnavailable(f"{what}: {_where()} refused the call ({code}: {message})")
    return AwsUnavailable(f"{what}: cannot reach {_where()} ({type(exc).__name__}: {exc})")


def _plain(value: Any) -> Any:
    """boto3 answers with datetimes; the admin and the events table want JSON."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _parsed(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def start_execution(*, state_machine_arn: str, name: str, input: dict[str, Any]) -> dict[str, Any]:
    """StartExecution; returns ``{"executionArn", "startDate"}`` (startDate as ISO text)."""
    if not state_machine_arn:
        raise AwsUnavailable(
            "no state machine ARN configured: set PROCESSING_STATE_MACHINE_ARN and "
            "FINALIZATION_STATE_MACHINE_ARN, or MEDIA_PIPELINE_ENGINE=celery"
        )
    try:
        answer = _client().start_execution(
            stateMachineArn=state_machine_arn,
            name=name[:MAX_EXECUTION_NAME],
            input=json.dumps(input, sort_keys=True, separators=(",", ":")),
        )
    except (ClientError, BotoCoreError) as exc:
        raise _translate(exc, f"StartExecution on {state_machine_arn}") from exc
    return _plain({"executionArn": answer["executionArn"], "startDate": answer.get("startDate")})


def describe_execution(arn: str) -> dict[str, Any]:
    """DescribeExecution as plain JSON; ``input``/``output`` parsed when they are JSON."""
    try:
        answer = _client().describe_execution(executionArn=arn)
    except (ClientError, BotoCoreError) as exc:
        raise _translate(exc, f"DescribeExecution {arn}") from exc
    result = _plain(answer)
    for key in ("input", "output"):
        if key in result:
            result[key] = _parsed(result[key])
    return result


def execution_history(arn: str) -> list[dict[str, Any]]:
    """GetExecutionHistory, every page, oldest first (at most MAX_HISTORY_EVENTS events)."""
    events: list[dict[str, Any]] = []
    try:
        paginator = _client().get_paginator("get_execution_history")
        for page in paginator.paginate(executionArn=arn, reverseOrder=False):
            events.extend(_plain(page.get("events", [])))
            if len(events) >= MAX_HISTORY_EVENTS:
                break
    except (ClientError, BotoCoreError) as exc:
        raise _translate(exc, f"GetExecutionHistory {arn}") from exc
    return events[:MAX_HISTORY_EVENTS]
