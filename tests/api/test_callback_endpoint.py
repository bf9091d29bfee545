"""POST /api/v2/listings/media/callback over HTTP (Django's test client): every status
code of docs/contract.md §6, and a fuzz test of malformed bodies and signatures."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from media_jobs.models import AssetStatus, JobStatus, MediaAsset, MediaJobEvent, MediaProcessingJob
from media_jobs.pipeline.callback import serialise_payload, sign
from tests.factories import AssetFactory, JobFactory

URL = "/api/v2/listings/media/callback"
SECRET = "endpoint-secret"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def callback_settings(settings: Any) -> None:
    settings.CALLBACK_SECRET = SECRET
    settings.CALLBACK_MAX_BODY_BYTES = 64 * 1024


def post(client: Client, raw: bytes, signature: str | None = "sign") -> Any:
    headers = {}
    if signature == "sign":
        signature = sign(raw, SECRET)
    if signature is not None:
        headers["HTTP_X_TOQ_SIGNATURE"] = signature
    return client.post(URL, data=raw, content_type="application/json", **headers)


def job_with_asset(listing: int = 700) -> tuple[MediaProcessingJob, MediaAsset]:
    job = JobFactory(listing_identity_id=listing, status=JobStatus.RUNNING)
    asset = AssetFactory(listing_identity_id=listing, status=AssetStatus.PROCESSING)
    return job, asset


def success(job: MediaProcessingJob, asset: MediaAsset) -> bytes:
    return serialise_payload(
        {
            "jobId": str(job.pk),
            "listingIdentityId": job.listing_identity_id,
            "status": "SUCCEEDED",
            "outputs": [
                {"rawKey": asset.s3_key_raw, "processedKey": "700/processed/x/large/a.jpg"}
            ],
        }
    )


def test_a_signed_callback_is_applied_and_its_replay_is_200(client: Client) -> None:
    job, asset = job_with_asset()
    raw = success(job, asset)
    response = post(client, raw)
    assert response.status_code == 200, response.content
    assert response.json() | {"jobId": job.pk} == {
        "jobId": job.pk,
        "status": "SUCCEEDED",
        "applied": True,
        "replay": False,
        "message": "job SUCCEEDED",
        "assetsUpdated": 1,
        "unknownRawKeys": [],
    }
    job.refresh_from_db()
    assert job.callback_body.encode() == raw
    again = post(client, raw)
    assert again.status_code == 200 and again.json()["replay"] is True


@pytest.mark.parametrize(
    ("signature", "message"),
    [(None, "X-Toq-Signature"), ("deadbeef", "X-Toq-Signature"), ("", "X-Toq-Signature")],
)
def test_missing_or_wrong_signature_is_401_and_changes_nothing(
    client: Client, signature: str | None, message: str
) -> None:
    job, asset = job_with_asset()
    response = post(client, success(job, asset), signature)
    assert response.status_code == 401
    assert message in response.json()["error"]["message"]
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.callback_body is None


def test_without_a_secret_every_callback_is_refused(client: Client, settings: Any) -> None:
    job, asset = job_with_asset()
    settings.CALLBACK_SECRET = ""
    response = post(client, success(job, asset), sign(success(job, asset), ""))
    assert response.status_code == 401
    assert "CALLBACK_SECRET is not configured" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "raw",
    [
        b"nope",
        b'"a string"',
        b'{"jobId": "1x", "listingIdentityId": 1}',
        b'{"listingIdentityId": 1}',
    ],
)
def test_unparseable_bodies_and_ids_are_400(client: Client, raw: bytes) -> None:
    response = post(client, raw)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BAD_REQUEST"


def test_unknown_job_is_404(client: Client) -> None:
    response = post(client, b'{"jobId": 123456789, "listingIdentityId": 1, "status": "SUCCEEDED"}')
    assert response.status_code == 404
    assert "no media processing job with id 123456789" in response.json()["error"]["message"]


def test_a_failure_after_a_success_is_409_and_recorded(client: Client) -> None:
    job, asset = job_with_asset()
    post(client, success(job, asset))
    failure = serialise_payload(
        {
            "jobId": job.pk,
            "listingIdentityId": 700,
            "status": "FAILED",
            "error": {"code": "X", "message": "no"},
        }
    )
    response = post(client, failure)
    assert response.status_code == 409
    assert "does not replace a success" in response.json()["error"]["message"]
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert MediaJobEvent.objects.filter(job_id=job.pk, step="callback", kind="failed").count() == 1


def test_a_body_over_the_limit_is_413_before_anything_else(client: Client, settings: Any) -> None:
    settings.CALLBACK_MAX_BODY_BYTES = 100
    response = post(client, b"{" + b" " * 200 + b"}", signature=None)
    assert response.status_code == 413
    assert (
        "CALLBACK" not in response.json()["error"]["message"]
        or "limit" in response.json()["error"]["message"]
    )


def test_get_is_405(client: Client) -> None:
    assert client.get(URL).status_code == 405


# --- fuzz --------------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    # Lone surrogates: valid as JSON escapes, not storable as UTF-8.
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),
    st.just("\u0000 nul"),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
statuses = st.one_of(
    st.sampled_from(
        [
            "SUCCEEDED",
            "PARTIAL_SUCCESS",
            "FAILED",
            "PROCESSING_FAILED",
            "VALIDATION_FAILED",
            "FINALIZATION_FAILED",
            "TIMED_OUT",
            "RUNNING",
        ]
    ),
    json_values,
)


def callback_bodies(job_id: int, listing: int, raw_key: str) -> st.SearchStrategy[bytes]:
    ids = st.one_of(st.just(job_id), st.just(str(job_id)), json_values)
    listings = st.one_of(st.just(listing), st.just(str(listing)), json_values)
    outputs = st.lists(
        st.one_of(
            json_values,
            st.fixed_dictionaries(
                {"rawKey": st.one_of(st.just(raw_key), json_values)},
                optional={
                    "processedKey": st.one_of(st.text(max_size=300), json_values),
                    "thumbnailKey": json_values,
                    "outputs": json_values,
                    "errorCode": json_values,
                    "errorMessage": json_values,
                },
            ),
        ),
        max_size=4,
    )
    structured = st.fixed_dictionaries(
        {"jobId": ids, "listingIdentityId": listings},
        optional={
            "status": statuses,
            "outputs": outputs,
            "error": json_values,
            "failureReason": json_values,
            "executionArn": json_values,
            "startedAt": st.one_of(st.text(max_size=40), json_values),
            "traceparent": json_values,
            "zipBundles": json_values,
            "assetsZipped": json_values,
        },
    ).map(lambda body: json.dumps(body).encode())
    return st.one_of(
        structured, st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode())
    )


def snapshot(job: MediaProcessingJob) -> tuple[Any, ...]:
    job.refresh_from_db()
    assets = tuple(
        MediaAsset.objects.order_by("id").values_list("status", "s3_key_processed", "metadata")
    )
    return (
        job.status,
        job.callback_body,
        job.last_error,
        job.external_id,
        job.payload,
        assets,
        MediaJobEvent.objects.count(),
    )


FUZZ = hypothesis_settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.slow  # hypothesis, ~15 s
@FUZZ
@given(data=st.data())
def test_fuzz_unsigned_or_badly_signed_callbacks_never_500_and_never_change_state(
    client: Client, data: Any
) -> None:
    job = MediaProcessingJob.objects.filter(listing_identity_id=701).first()
    if job is None:
        job, _ = job_with_asset(701)
    asset = MediaAsset.objects.get(listing_identity_id=701)
    raw = data.draw(callback_bodies(job.pk, 701, asset.s3_key_raw))
    right = sign(raw, SECRET)
    signature = data.draw(
        st.one_of(
            st.none(),
            st.text(max_size=80),
            st.just(right[:-1] + ("0" if right[-1] != "0" else "1")),
            st.just(sign(raw, "another-secret")),
            st.just(right.upper()[:10]),
        )
    )
    before = snapshot(job)
    response = post(client, raw, signature)
    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] == "UNAUTHORIZED"
    assert snapshot(job) == before


@pytest.mark.slow  # hypothesis, ~10 s
@FUZZ
@given(data=st.data())
def test_fuzz_signed_malformed_callbacks_never_500(client: Client, data: Any) -> None:
    job = MediaProcessingJob.objects.filter(listing_identity_id=702).first()
    if job is None:
        job, _ = job_with_asset(702)
    asset = MediaAsset.objects.get(listing_identity_id=702)
    raw = data.draw(callback_bodies(job.pk, 702, asset.s3_key_raw))
    response = post(client, raw)
    assert response.status_code in (200, 400, 404, 409, 413), response.content
    assert response["Content-Type"] == "application/json"
    if response.status_code >= 400:
        assert response.json()["error"]["message"]
