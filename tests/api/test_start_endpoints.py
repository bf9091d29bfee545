"""POST /api/v2/listings/media/uploads/process and .../complete (docs/contract.md §7)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from django.test import Client

from media_jobs.models import AssetStatus, JobProvider, JobStatus, MediaAsset, MediaProcessingJob
from media_jobs.selectors.dispatch import workflow_input
from tests.factories import AssetFactory
from toqportal.celery import app

PROCESS = "/api/v2/listings/media/uploads/process"
COMPLETE = "/api/v2/listings/media/uploads/complete"
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("api_settings")]


def post(client: Client, url: str, body: Any, **headers: str) -> Any:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post(url, data=data, content_type="application/json", **headers)


def error_of(response: Any) -> dict[str, Any]:
    assert response["Content-Type"] == "application/json"
    return response.json()["error"]


def test_process_starts_a_job_for_pending_and_failed_assets(
    client: Client, auth: dict[str, str], django_capture_on_commit_callbacks: Any
) -> None:
    pending = AssetFactory(listing_identity_id=77, status=AssetStatus.PENDING_UPLOAD)
    failed = AssetFactory(listing_identity_id=77, status=AssetStatus.FAILED)
    done = AssetFactory(listing_identity_id=77, status=AssetStatus.PROCESSED)
    no_raw = AssetFactory(
        listing_identity_id=77, status=AssetStatus.PENDING_UPLOAD, s3_key_raw=None
    )
    with django_capture_on_commit_callbacks() as queued:
        response = post(
            client, PROCESS, {"listingIdentityId": "77"}, HTTP_TRACEPARENT=TRACE, **auth
        )
    assert response.status_code == 202, response.content
    body = response.json()
    job = MediaProcessingJob.objects.get(pk=body["jobId"])
    assert (job.status, job.provider, job.listing_identity_id) == (
        JobStatus.PENDING,
        JobProvider.STEP_FUNCTIONS,
        77,
    )
    assert body["assets"] == 2 and body["traceparent"] == TRACE and body["engine"] == "celery"
    # provider is the docs/contract.md §3 column (the kind of job); kind says it in words, engine what runs it
    assert (body["provider"], body["kind"]) == ("STEP_FUNCTIONS", "processing")
    assert len(queued) == 1  # the Celery task is queued once the transaction commits
    statuses = dict(MediaAsset.objects.filter(listing_identity_id=77).values_list("id", "status"))
    assert statuses == {
        pending.pk: AssetStatus.PROCESSING,
        failed.pk: AssetStatus.PROCESSING,
        done.pk: AssetStatus.PROCESSED,
        no_raw.pk: AssetStatus.PENDING_UPLOAD,
    }
    started_with = workflow_input(job=job)
    assert started_with == {
        "jobId": job.pk,
        "listingIdentityId": 77,
        "assets": [
            {"key": pending.s3_key_raw, "type": pending.asset_type},
            {"key": failed.s3_key_raw, "type": failed.asset_type},
        ],
        "traceparent": TRACE,
    }


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Authorization: Bearer"),
        ({"HTTP_AUTHORIZATION": "Bearer wrong"}, "not one of the portal's API_TOKENS"),
        ({"HTTP_AUTHORIZATION": f"Basic {'x' * 8}"}, "Authorization: Bearer"),
    ],
)
@pytest.mark.parametrize("url", [PROCESS, COMPLETE])
def test_start_endpoints_need_a_bearer_token(
    client: Client, url: str, headers: dict[str, str], message: str
) -> None:
    AssetFactory(listing_identity_id=5, status=AssetStatus.PENDING_UPLOAD)
    response = post(client, url, {"listingIdentityId": 5}, **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert message in error_of(response)["message"]
    assert not MediaProcessingJob.objects.exists()


def test_without_configured_tokens_every_call_is_refused(
    client: Client, settings: Any, auth: dict[str, str]
) -> None:
    settings.API_TOKENS = []
    response = post(client, PROCESS, {"listingIdentityId": 5}, **auth)
    assert response.status_code == 401
    assert "no API_TOKENS are configured" in error_of(response)["message"]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"",
        "[1, 2]",
        {},
        {"listingIdentityId": None},
        {"listingIdentityId": "abc"},
        {"listingIdentityId": "12a"},
        {"listingIdentityId": -4},
        {"listingIdentityId": 0},
        {"listingIdentityId": True},
        {"listingIdentityId": 1.5},
        {"listingIdentityId": 2**40},
        {"listingIdentityId": "٣"},
        {"listingIdentityId": "1" * 5000},  # int() refuses it with an error of its own
    ],
)
@pytest.mark.parametrize("url", [PROCESS, COMPLETE])
def test_bad_bodies_are_400_with_a_message_saying_what_to_send(
    client: Client, auth: dict[str, str], url: str, body: Any
) -> None:
    response = post(client, url, body, **auth)
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["code"] == "BAD_REQUEST" and "listingIdentityId" in error["message"]


def test_oversized_start_body_is_413(client: Client, auth: dict[str, str]) -> None:
    response = post(client, PROCESS, {"listingIdentityId": 1, "pad": "x" * 20_000}, **auth)
    assert response.status_code == 413
    assert "limit" in error_of(response)["message"]


def test_get_is_405(client: Client, auth: dict[str, str]) -> None:
    response = client.get(PROCESS, **auth)
    assert response.status_code == 405 and response["Allow"] == "POST"


def test_process_without_anything_to_process_is_404(client: Client, auth: dict[str, str]) -> None:
    response = post(client, PROCESS, {"listingIdentityId": 404}, **auth)
    assert response.status_code == 404
    assert "has no media assets" in error_of(response)["message"]
    AssetFactory(listing_identity_id=404, status=AssetStatus.PROCESSED)
    response = post(client, PROCESS, {"listingIdentityId": 404}, **auth)
    assert response.status_code == 404
    assert "no assets to process" in error_of(response)["message"]


def test_complete_starts_a_running_finalization_and_logs_it(
    client: Client, auth: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    for sequence in (1, 2):
        AssetFactory(
            listing_identity_id=88,
            sequence=sequence,
            status=AssetStatus.PROCESSED,
            s3_key_processed=f"88/processed/photo/horizontal/large/p{sequence}.jpg",
        )
    with caplog.at_level(logging.INFO, logger="toq.media.dispatch"):
        response = post(client, COMPLETE, {"listingIdentityId": 88}, **auth)
    assert response.status_code == 202, response.content
    job = MediaProcessingJob.objects.get(pk=response.json()["jobId"])
    assert job.provider == JobProvider.STEP_FUNCTIONS_FINALIZATION
    assert job.status == JobStatus.RUNNING and job.started_at is not None
    assert job.external_id and job.external_id.startswith(f"celery-{job.pk}-")
    [line] = [r for r in caplog.records if r.getMessage() == "service.media.complete.started_zip"]
    assert line.job_id == job.pk and line.execution_arn == job.external_id


def test_complete_with_assets_not_ready_is_409_naming_them(
    client: Client, auth: dict[str, str]
) -> None:
    ready = AssetFactory(
        listing_identity_id=99, status=AssetStatus.PROCESSED, s3_key_processed="99/p/x.jpg"
    )
    busy = AssetFactory(listing_identity_id=99, status=AssetStatus.PROCESSING)
    no_key = AssetFactory(
        listing_identity_id=99, status=AssetStatus.PROCESSED, s3_key_processed=None
    )
    response = post(client, COMPLETE, {"listingIdentityId": 99}, **auth)
    assert response.status_code == 409
    error = error_of(response)
    assert "2 of 3 assets" in error["message"]
    assert [a["assetId"] for a in error["notReady"]] == [busy.pk, no_key.pk]
    assert ready.pk not in [a["assetId"] for a in error["notReady"]]
    assert not MediaProcessingJob.objects.exists()


def test_complete_without_assets_is_404(client: Client, auth: dict[str, str]) -> None:
    response = post(client, COMPLETE, {"listingIdentityId": 12345}, **auth)
    assert response.status_code == 404


@pytest.mark.django_db(transaction=True)
def test_a_broker_that_refuses_the_job_gives_503_and_a_failed_job(
    client: Client, auth: dict[str, str]
) -> None:

    asset = AssetFactory(listing_identity_id=31, status=AssetStatus.PENDING_UPLOAD)
    saved = app.conf.broker_url, app.conf.task_always_eager
    app.conf.broker_url, app.conf.task_always_eager = "redis://127.0.0.1:1/0", False
    try:
        response = post(client, PROCESS, {"listingIdentityId": 31}, **auth)
    finally:
        app.conf.broker_url, app.conf.task_always_eager = saved
    assert response.status_code == 503
    job = MediaProcessingJob.objects.get(listing_identity_id=31)
    assert job.status == JobStatus.FAILED and job.last_error.startswith("code=DISPATCH_FAILED | ")
    asset.refresh_from_db()
    assert asset.status == AssetStatus.FAILED and asset.metadata["errorCode"] == "DISPATCH_FAILED"
