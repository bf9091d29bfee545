"""The Step Functions engine: dispatch with StartExecution, and the admin's reads of an
execution, against the moto server's Step Functions over HTTP."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from django.test import Client

from media_jobs import stepfunctions
from media_jobs.models import AssetStatus, JobStatus, MediaAsset, MediaProcessingJob
from media_jobs.selectors.dispatch import dispatch_detail
from media_jobs.services.dispatch import (
    DispatchUnavailable,
    listing_start_finalization,
    listing_start_processing,
)
from tests.factories import AssetFactory
from tests.fixtures.s3server import MotoServer

pytestmark = pytest.mark.django_db

PASS_MACHINE = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})
ROLE = "arn:aws:iam::123456789012:role/test-states-role"


@pytest.fixture
def state_machines(moto_server: MotoServer, settings: Any) -> dict[str, str]:
    sfn = moto_server.client("stepfunctions")
    arns = {}
    for kind in ("processing", "finalization"):
        answer = sfn.create_state_machine(
            name=f"media-{kind}-{uuid.uuid4().hex[:8]}", definition=PASS_MACHINE, roleArn=ROLE
        )
        arns[kind] = answer["stateMachineArn"]
    settings.MEDIA_PIPELINE_ENGINE = "stepfunctions"
    settings.AWS_ENDPOINT_URL = moto_server.endpoint_url
    settings.PROCESSING_STATE_MACHINE_ARN = arns["processing"]
    settings.FINALIZATION_STATE_MACHINE_ARN = arns["finalization"]
    return arns


def test_processing_starts_an_execution_with_the_spec_input(
    state_machines: dict[str, str], moto_server: MotoServer
) -> None:
    asset = AssetFactory(listing_identity_id=61, status=AssetStatus.PENDING_UPLOAD)
    job = listing_start_processing(
        listing_identity_id=61, traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    )
    assert job.status == JobStatus.RUNNING and job.started_at is not None
    assert job.external_id.startswith(
        state_machines["processing"].replace(":stateMachine:", ":execution:")
    )
    described = stepfunctions.describe_execution(job.external_id)
    assert described["stateMachineArn"] == state_machines["processing"]
    assert described["input"] == {
        "jobId": job.pk,
        "listingIdentityId": 61,
        "assets": [{"key": asset.s3_key_raw, "type": asset.asset_type}],
        "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01",
    }
    # The dispatch record names the execution: the admin and the reconciler read it there.
    detail = dispatch_detail(job=job)
    assert detail["executionArn"] == job.external_id
    assert (detail["engine"], detail["input"]) == ("stepfunctions", described["input"])
    # the execution's name: the job, its retry count and 8 random hex digits (unique per try)
    assert re.fullmatch(rf"job-{job.pk}-r0-[0-9a-f]{{8}}", job.external_id.rsplit(":", 1)[1])
    history = stepfunctions.execution_history(job.external_id)
    assert history and history[0]["type"] == "ExecutionStarted"
    assert all(isinstance(event["timestamp"], str) for event in history)
    asset.refresh_from_db()
    assert asset.status == AssetStatus.PROCESSING


def test_a_retried_job_s_execution_is_named_with_its_retry_count(
    state_machines: dict[str, str],
) -> None:
    AssetFactory(listing_identity_id=63, status=AssetStatus.FAILED)
    job = listing_start_processing(listing_identity_id=63, retry_count=2)
    assert re.fullmatch(rf"job-{job.pk}-r2-[0-9a-f]{{8}}", job.external_id.rsplit(":", 1)[1])


def test_finalization_starts_on_its_own_state_machine(state_machines: dict[str, str]) -> None:
    AssetFactory(listing_identity_id=62, status=AssetStatus.PROCESSED, s3_key_processed="62/p.jpg")
    job = listing_start_finalization(listing_identity_id=62)
    assert job.status == JobStatus.RUNNING
    assert (
        stepfunctions.describe_execution(job.external_id)["stateMachineArn"]
        == state_machines["finalization"]
    )


def test_unreachable_aws_changes_nothing_and_says_so(
    settings: Any, state_machines: dict[str, str]
) -> None:
    settings.AWS_ENDPOINT_URL = "http://127.0.0.1:9"
    asset = AssetFactory(listing_identity_id=63, status=AssetStatus.PENDING_UPLOAD)
    with pytest.raises(DispatchUnavailable) as raised:
        listing_start_processing(listing_identity_id=63)
    assert raised.value.status_code == 503 and "cannot reach" in raised.value.message
    assert not MediaProcessingJob.objects.exists()
    asset.refresh_from_db()
    assert asset.status == AssetStatus.PENDING_UPLOAD


def test_the_api_answers_503_when_aws_is_unreachable(
    client: Client, settings: Any, state_machines: dict[str, str]
) -> None:
    settings.AWS_ENDPOINT_URL = "http://127.0.0.1:9"
    settings.API_TOKENS = ["t"]
    AssetFactory(listing_identity_id=64, status=AssetStatus.PENDING_UPLOAD)
    response = client.post(
        "/api/v2/listings/media/uploads/process",
        data=json.dumps({"listingIdentityId": 64}),
        content_type="application/json",
        HTTP_AUTHORIZATION="Bearer t",
    )
    assert response.status_code == 503
    assert "nothing was changed" in response.json()["error"]["message"]
    assert MediaAsset.objects.get(listing_identity_id=64).status == AssetStatus.PENDING_UPLOAD


def test_missing_state_machine_arn_is_a_clear_error(
    settings: Any, state_machines: dict[str, str]
) -> None:
    settings.PROCESSING_STATE_MACHINE_ARN = ""
    AssetFactory(listing_identity_id=65, status=AssetStatus.PENDING_UPLOAD)
    with pytest.raises(DispatchUnavailable, match="PROCESSING_STATE_MACHINE_ARN"):
        listing_start_processing(listing_identity_id=65)


def test_reads_raise_aws_unavailable(settings: Any, moto_server: MotoServer) -> None:
    settings.AWS_ENDPOINT_URL = moto_server.endpoint_url
    unknown = "arn:aws:states:us-east-1:123456789012:execution:nope:nope"
    with pytest.raises(stepfunctions.ExecutionNotFound):
        stepfunctions.describe_execution(unknown)
    settings.AWS_ENDPOINT_URL = "http://127.0.0.1:9"
    with pytest.raises(stepfunctions.AwsUnavailable, match="cannot reach"):
        stepfunctions.execution_history(unknown)


def test_one_client_serves_every_call_to_the_same_endpoint(
    moto_server: MotoServer, settings: Any
) -> None:
    settings.AWS_ENDPOINT_URL = moto_server.endpoint_url
    client = stepfunctions._client()
    assert stepfunctions._client() is client
    settings.AWS_ENDPOINT_URL = "http://127.0.0.1:9"
    moved = stepfunctions._client()
    assert moved is not client and moved.meta.endpoint_url == "http://127.0.0.1:9"
