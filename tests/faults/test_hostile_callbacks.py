"""Hostile signed callbacks over real HTTP (pytest-django's live server): ids no column can
hold, and a large body replayed again and again."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from django.db.models.functions import Length

from media_jobs.models import AssetStatus, JobStatus, MediaJobEvent, MediaProcessingJob
from media_jobs.pipeline.callback import serialise_payload, sign
from tests.factories import AssetFactory, JobFactory

pytestmark = [pytest.mark.fault, pytest.mark.django_db(transaction=True)]

PATH = "/api/v2/listings/media/callback"
SECRET = "hostile-callback-secret"
MIB = 1024 * 1024


@pytest.fixture(autouse=True)
def callback_settings(settings: Any) -> None:
    settings.CALLBACK_SECRET = SECRET
    settings.CALLBACK_MAX_BODY_BYTES = 2 * MIB


def post(live_server: Any, raw: bytes) -> requests.Response:
    return requests.post(
        live_server.url + PATH,
        data=raw,
        headers={"Content-Type": "application/json", "X-Toq-Signature": sign(raw, SECRET)},
        timeout=60,
    )


def running_job(listing: int) -> MediaProcessingJob:
    return JobFactory(listing_identity_id=listing, status=JobStatus.RUNNING)


@pytest.mark.parametrize(
    ("job_id", "listing_id"),
    [
        ("9" * 5000, "REAL"),
        ("REAL", "1" * 5000),
        (int("9" * 30), "REAL"),
        (2**32, "REAL"),
        ("REAL", -1),
        ("REAL", "0" * 4000 + "1x"),
        ("0" * 5000 + "99999999999", "REAL"),
    ],
    ids=[
        "5000-digit-jobId",
        "5000-digit-listingIdentityId",
        "30-digit-number",
        "just-over-INT-UNSIGNED",
        "negative",
        "4000-zeros-then-garbage",
        "5000-zeros-then-too-big",
    ],
)
def test_an_id_no_column_can_hold_is_400_with_a_message(
    live_server: Any, job_id: object, listing_id: object
) -> None:
    job = running_job(9001)
    body = {
        "jobId": str(job.pk) if job_id == "REAL" else job_id,
        "listingIdentityId": 9001 if listing_id == "REAL" else listing_id,
        "status": "SUCCEEDED",
        "outputs": [],
    }
    response = post(live_server, serialise_payload(body))

    assert response.status_code == 400, response.text[:500]
    error = response.json()["error"]
    assert error["code"] == "BAD_REQUEST"
    assert "must be an integer from 0 to 4294967295" in error["message"]
    assert len(response.content) < 2000  # the hostile id is not echoed back whole
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.callback_body is None


def test_leading_zeros_never_reach_ints_digit_limit(live_server: Any) -> None:
    """5000 leading zeros are still the job's id: applied, not a 500."""
    job = running_job(9003)
    body = {
        "jobId": "0" * 5000 + str(job.pk),
        "listingIdentityId": "0" * 5000 + "9003",
        "status": "FAILED",
        "error": {"code": "X", "message": "m"},
        "outputs": [],
    }
    response = post(live_server, serialise_payload(body))

    assert response.status_code == 200, response.text[:500]
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED


def test_replays_of_a_large_body_are_stored_by_reference(live_server: Any) -> None:
    """30 replays of a 1.9 MiB body stored 55.7 MiB in the job's events before; the body is
    now kept once and every replay points at the event that holds it."""
    listing = 9002
    job = running_job(listing)
    asset = AssetFactory(listing_identity_id=listing, status=AssetStatus.PROCESSING)
    outputs = [{"rawKey": asset.s3_key_raw, "processedKey": f"{listing}/processed/p/large/a.jpg"}]
    outputs += [
        {
            "rawKey": f"{listing}/raw/photo/horizontal/unknown-{n:05d}.jpg",
            "processedKey": f"{listing}/processed/photo/horizontal/large/unknown-{n:05d}.jpg",
            "errorCode": "",
            "errorMessage": "",
        }
        for n in range(12_000)
    ]
    raw = serialise_payload(
        {"jobId": job.pk, "listingIdentityId": listing, "status": "SUCCEEDED", "outputs": outputs}
    )
    assert 1.8 * MIB < len(raw) < 2 * MIB

    first = post(live_server, raw)
    assert first.status_code == 200, first.text[:500]
    assert first.json()["applied"] is True
    for _ in range(30):
        again = post(live_server, raw)
        assert again.status_code == 200 and again.json()["replay"] is True

    events = MediaJobEvent.objects.filter(job_id=job.pk, step="callback").order_by("id")
    assert events.count() == 31
    holder, *replays = list(events)
    assert holder.detail["rawBody"].encode() == raw
    assert all(event.detail["rawBodyEventId"] == holder.pk for event in replays)
    assert not any("rawBody" in event.detail for event in replays)
    # the JSON text the column holds: the body once (its quotes escaped), plus 31 small
    # records - not 31 bodies
    stored = sum(events.annotate(size=Length("detail")).values_list("size", flat=True))
    assert stored < 1.25 * len(raw), stored
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
