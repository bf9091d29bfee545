"""The callback receiver service (docs/contract.md §6), called directly: what each callback changes."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from media_jobs.exceptions import ApplicationError, ConflictError, NotFoundError
from media_jobs.models import (
    STEP_DISPATCH,
    TEXT_MAX_BYTES,
    AssetStatus,
    JobProvider,
    JobStatus,
    MediaAsset,
    MediaJobError,
    MediaJobEvent,
    MediaProcessingJob,
)
from media_jobs.pipeline.callback import serialise_payload, sign
from media_jobs.pipeline.logs import current_log_context
from media_jobs.services import callbacks
from media_jobs.services.callbacks import (
    MSG_BAD_SIGNATURE,
    MSG_NO_SECRET,
    CallbackTooLarge,
    CallbackUnauthorized,
    callback_apply,
)
from media_jobs.services.events import event_record
from tests.factories import AssetFactory, JobFactory

pytestmark = pytest.mark.django_db

SECRET = "unit-secret"
ARN = "arn:aws:states:us-east-1:123456789012:execution:sm:run-1"


@pytest.fixture(autouse=True)
def secret(settings: Any) -> None:
    settings.CALLBACK_SECRET = SECRET
    settings.CALLBACK_MAX_BODY_BYTES = 2 * 1024 * 1024


def output(asset: MediaAsset, **overrides: Any) -> dict[str, Any]:
    base = f"{asset.listing_identity_id}/processed/photo/horizontal"
    entry = {
        "rawKey": asset.s3_key_raw,
        "processedKey": f"{base}/large/p{asset.sequence}.jpg",
        "thumbnailKey": f"{base}/thumbnail/p{asset.sequence}.jpg",
        "outputs": {
            "large_photo_horizontal": f"{base}/large/p{asset.sequence}.jpg",
            "thumbnail_photo_horizontal": f"{base}/thumbnail/p{asset.sequence}.jpg",
        },
        "errorCode": "",
        "errorMessage": "",
    }
    entry.update(overrides)
    return entry


def body_for(
    job: MediaProcessingJob, status: str, outputs: list[Any] | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "jobId": job.pk,
        "listingIdentityId": job.listing_identity_id,
        "executionArn": ARN,
        "startedAt": "2025-03-04T05:06:07.890Z",
        "provider": "STEP_FUNCTIONS",
        "status": status,
        "failureReason": "",
        "error": None,
        "outputs": outputs or [],
        "traceparent": "",
    }
    body.update(extra)
    return body


def deliver(body: Any) -> callbacks.CallbackOutcome:
    raw = body if isinstance(body, bytes) else serialise_payload(body)
    return callback_apply(raw_body=raw, signature=sign(raw, SECRET))


def processing_job(
    listing: int = 500, assets: int = 2, **job_fields: Any
) -> tuple[MediaProcessingJob, list[MediaAsset]]:
    job = JobFactory(listing_identity_id=listing, status=JobStatus.RUNNING, **job_fields)
    rows = [
        AssetFactory(listing_identity_id=listing, status=AssetStatus.PROCESSING)
        for _ in range(assets)
    ]
    return job, rows


def test_success_updates_every_asset_and_the_job() -> None:
    job, (first, second) = processing_job()
    first.metadata = {"filename": "a.jpg", "errorCode": "OLD", "error": "old failure"}
    first.save()
    body = body_for(job, "SUCCEEDED", [output(first), output(second)])
    outcome = deliver(body)
    assert (outcome.status_code, outcome.applied, outcome.assets_updated) == (200, True, 2)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.completed_at is not None
    assert job.callback_body == serialise_payload(body).decode()
    assert job.external_id == ARN
    assert job.started_at == datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert job.payload == {"assetsTotal": 2, "assetsProcessed": 2, "assetsFailed": 0}
    assert job.last_error is None
    first.refresh_from_db()
    assert first.status == AssetStatus.PROCESSED
    assert first.s3_key_processed == output(first)["processedKey"]
    assert first.metadata == {
        "filename": "a.jpg",
        **output(first)["outputs"],
        "thumbnailKey": output(first)["thumbnailKey"],
    }


def test_existing_external_id_and_started_at_are_kept() -> None:
    started = datetime(2024, 1, 1, tzinfo=UTC)
    job, (asset,) = processing_job(assets=1, external_id="celery-1-abc", started_at=started)
    deliver(body_for(job, "SUCCEEDED", [output(asset)]))
    job.refresh_from_db()
    assert (job.external_id, job.started_at) == ("celery-1-abc", started)


def test_outputs_with_errors_or_without_processed_key_fail_their_asset() -> None:
    job, (broken, keyless, fine) = processing_job(assets=3)
    body = body_for(
        job,
        "PARTIAL_SUCCESS",
        [
            output(broken, processedKey="", errorCode="CORRUPT_IMAGE", errorMessage="truncated"),
            output(keyless, processedKey=""),
            output(fine),
            output(fine, rawKey="500/raw/photo/horizontal/unknown.jpg"),
            "not an object",
        ],
        failureReason="2 of 3 assets failed",
        error={
            "code": "DERIVATIVE_ERRORS_DETECTED",
            "message": "derivative errors detected",
            "details": {"failedAssets": 2},
        },
    )
    outcome = deliver(body)
    assert outcome.unknown_raw_keys == ["500/raw/photo/horizontal/unknown.jpg"]
    for asset in (broken, keyless, fine):
        asset.refresh_from_db()
    assert (broken.status, broken.metadata["errorCode"], broken.metadata["error"]) == (
        AssetStatus.FAILED,
        "CORRUPT_IMAGE",
        "truncated",
    )
    assert (keyless.status, keyless.metadata["errorCode"]) == (
        AssetStatus.FAILED,
        "MISSING_PROCESSED_KEY",
    )
    assert fine.status == AssetStatus.PROCESSED
    job.refresh_from_db()
    assert job.status == JobStatus.PARTIAL_SUCCESS
    assert job.last_error == (
        'code=DERIVATIVE_ERRORS_DETECTED | derivative errors detected | 2 of 3 assets failed | meta={"failedAssets": 2}'
    )
    assert job.payload == {"assetsTotal": 5, "assetsProcessed": 4, "assetsFailed": 1}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("SUCCEEDED", JobStatus.SUCCEEDED),
        ("PARTIAL_SUCCESS", JobStatus.PARTIAL_SUCCESS),
        ("FAILED", JobStatus.FAILED),
        ("PROCESSING_FAILED", JobStatus.FAILED),
        ("VALIDATION_FAILED", JobStatus.FAILED),
        ("FINALIZATION_FAILED", JobStatus.FAILED),
        ("TIMED_OUT", JobStatus.FAILED),
        ("IN_PROGRESS", JobStatus.RUNNING),
        ("", JobStatus.RUNNING),
        (7, JobStatus.RUNNING),
    ],
)
def test_status_map(status: Any, expected: str) -> None:
    job = JobFactory(listing_identity_id=501, status=JobStatus.PENDING)
    deliver(body_for(job, status))
    job.refresh_from_db()
    assert job.status == expected
    if expected == JobStatus.RUNNING:
        assert job.external_id == ARN and job.started_at is not None and job.completed_at is None


def test_failed_without_outputs_fails_the_jobs_processing_assets_only() -> None:
    job, (mine, also_mine) = processing_job(listing=502)
    other = AssetFactory(listing_identity_id=502, status=AssetStatus.PROCESSING)
    event_record(
        job=job, step=STEP_DISPATCH, kind="started", detail={"assetIds": [mine.pk, also_mine.pk]}
    )
    deliver(
        body_for(
            job,
            "PROCESSING_FAILED",
            error={"code": "VIDEO_TRANSCODE_FAILED", "message": "ffmpeg exited 1"},
        )
    )
    statuses = dict(MediaAsset.objects.filter(listing_identity_id=502).values_list("id", "status"))
    assert statuses == {mine.pk: "FAILED", also_mine.pk: "FAILED", other.pk: "PROCESSING"}
    mine.refresh_from_db()
    assert (
        mine.metadata["errorCode"] == "VIDEO_TRANSCODE_FAILED"
        and mine.metadata["error"] == "ffmpeg exited 1"
    )


def test_failed_without_outputs_for_a_job_started_elsewhere_fails_the_listings_processing_assets() -> (
    None
):
    job, assets = processing_job(listing=503)
    done = AssetFactory(listing_identity_id=503, status=AssetStatus.PROCESSED)
    elsewhere = AssetFactory(listing_identity_id=599, status=AssetStatus.PROCESSING)
    deliver(body_for(job, "FAILED"))
    assert {a.status for a in MediaAsset.objects.filter(pk__in=[a.pk for a in assets])} == {
        "FAILED"
    }
    done.refresh_from_db()
    assert done.status == AssetStatus.PROCESSED
    elsewhere.refresh_from_db()  # another listing's asset: not this job's
    assert (elsewhere.status, elsewhere.metadata.get("errorCode")) == (AssetStatus.PROCESSING, None)


def test_finalization_failure_fails_the_job_not_the_assets() -> None:
    job = JobFactory(
        listing_identity_id=504,
        status=JobStatus.RUNNING,
        provider=JobProvider.STEP_FUNCTIONS_FINALIZATION,
    )
    asset = AssetFactory(listing_identity_id=504, status=AssetStatus.PROCESSING)
    deliver(
        {
            "jobId": str(job.pk),
            "listingIdentityId": "504",
            "status": "FINALIZATION_FAILED",
            "traceparent": "",
            "error": {"Error": "ZIP_FAILED", "Cause": "disk full"},
        }
    )
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED  # not left RUNNING (the Go backend's bug)
    assert job.last_error == "code=ZIP_FAILED | disk full"
    asset.refresh_from_db()
    assert asset.status == AssetStatus.PROCESSING


def test_finalization_success_keeps_the_zip_figures() -> None:
    job = JobFactory(
        listing_identity_id=505,
        status=JobStatus.RUNNING,
        provider=JobProvider.STEP_FUNCTIONS_FINALIZATION,
    )
    figures = {
        "assetsZipped": 3,
        "zipBundles": ["505/processed/zip/listing-media.zip"],
        "zipSizeBytes": 10,
        "unzippedSizeBytes": 12,
    }
    deliver(
        {
            "jobId": job.pk,
            "status": "SUCCEEDED",
            "provider": "STEP_FUNCTIONS_FINALIZATION",
            "listingIdentityId": "505",
            "traceparent": "",
            **figures,
        }
    )
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.payload == figures


def test_a_replay_changes_nothing_and_answers_200() -> None:
    job, (asset,) = processing_job(assets=1)
    body = body_for(job, "SUCCEEDED", [output(asset)])
    deliver(body)
    job.refresh_from_db()
    MediaAsset.objects.filter(pk=asset.pk).update(metadata={"touched": "by an operator"})
    before = (job.status, job.completed_at, job.callback_body, job.payload)
    outcome = deliver(body)
    assert (outcome.status_code, outcome.applied, outcome.replay) == (200, False, True)
    job.refresh_from_db()
    assert (job.status, job.completed_at, job.callback_body, job.payload) == before
    assert MediaAsset.objects.get(pk=asset.pk).metadata == {"touched": "by an operator"}


def test_a_late_success_after_the_reconciler_is_applied_and_noted() -> None:
    job, (asset,) = processing_job(assets=1, started_at=datetime(2024, 1, 1, tzinfo=UTC))
    MediaProcessingJob.objects.filter(pk=job.pk).update(
        status=JobStatus.FAILED,
        last_error="code=RECONCILER_TIMEOUT | reconciler marked failed after 1h0m0s without callback",
    )
    MediaAsset.objects.filter(pk=asset.pk).update(status=AssetStatus.FAILED)
    outcome = deliver(body_for(job, "SUCCEEDED", [output(asset)]))
    assert (outcome.status_code, outcome.applied) == (200, True)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    asset.refresh_from_db()
    assert asset.status == AssetStatus.PROCESSED
    event = MediaJobEvent.objects.get(pk=outcome.event_id)
    assert event.detail["lateSuccess"] is True and "late SUCCEEDED" in event.detail["message"]


def test_a_failure_never_overwrites_a_success() -> None:
    job, (asset,) = processing_job(assets=1)
    deliver(body_for(job, "SUCCEEDED", [output(asset)]))
    job.refresh_from_db()
    before = (job.status, job.completed_at, job.callback_body, job.last_error)
    failure = body_for(job, "PROCESSING_FAILED", error={"code": "X", "message": "late failure"})
    outcome = deliver(failure)
    assert (outcome.status_code, outcome.applied) == (409, False)
    job.refresh_from_db()
    assert (job.status, job.completed_at, job.callback_body, job.last_error) == before
    recorded = MediaJobEvent.objects.get(pk=outcome.event_id)
    assert recorded.kind == "failed" and recorded.detail["callbackStatus"] == "PROCESSING_FAILED"
    assert deliver(body_for(job, "PARTIAL_SUCCESS")).status_code == 409


def test_the_pipelines_failure_after_the_reconcilers_adds_its_details() -> None:
    job, (asset,) = processing_job(assets=1)
    MediaProcessingJob.objects.filter(pk=job.pk).update(
        status=JobStatus.FAILED, last_error="code=RECONCILER_TIMEOUT | gave up"
    )
    outcome = deliver(
        body_for(
            job,
            "FAILED",
            [output(asset, processedKey="", errorCode="TOO_MANY_PIXELS", errorMessage="huge")],
        )
    )
    assert outcome.applied
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.last_error.startswith(
        "code=RECONCILER_TIMEOUT | gave up"
    )
    asset.refresh_from_db()
    assert asset.metadata["errorCode"] == "TOO_MANY_PIXELS"


def test_a_body_over_64_kib_is_kept_whole_in_the_event_and_cut_in_callback_body() -> None:
    job, assets = processing_job(listing=506, assets=1)
    many = [output(assets[0])] + [
        output(assets[0], rawKey=f"506/raw/photo/horizontal/ünknown-{n:04d}.jpg")
        for n in range(600)
    ]
    body = body_for(job, "SUCCEEDED", many)
    raw = serialise_payload(body)
    assert len(raw) > TEXT_MAX_BYTES
    outcome = deliver(raw)
    job.refresh_from_db()
    stored = job.callback_body.encode()
    assert len(stored) <= TEXT_MAX_BYTES
    assert raw.startswith(stored.split(b"\n...[truncated by the portal")[0])
    assert f"the body is {len(raw)} bytes" in job.callback_body
    assert MediaJobEvent.objects.get(pk=outcome.event_id).detail["rawBody"] == raw.decode()
    assert outcome.unknown_raw_keys[:1] == ["506/raw/photo/horizontal/ünknown-0000.jpg"]
    assert deliver(raw).replay  # still recognised as a replay


def test_the_listing_must_match_the_job() -> None:
    job, _ = processing_job(listing=507, assets=1)
    with pytest.raises(ConflictError, match="belongs to listing 507"):
        deliver(body_for(job, "SUCCEEDED", listingIdentityId=999))
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING


@pytest.mark.parametrize(
    ("started_at", "kept"),
    [
        ("2039-01-01T00:00:00Z", None),
        ("1969-12-31T23:00:00Z", None),
        ("not a date", None),
        ("2025-01-02T03:04:05", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2025-01-02T03:04:05+02:00", datetime(2025, 1, 2, 1, 4, 5, tzinfo=UTC)),
        (1735787045, None),  # a number is not an ISO 8601 string
    ],
)
def test_started_at_outside_a_timestamp_is_ignored(started_at: Any, kept: datetime | None) -> None:
    job = JobFactory(listing_identity_id=508, status=JobStatus.PENDING)
    deliver(body_for(job, "RUNNING", startedAt=started_at))
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    if kept is not None:
        assert job.started_at == kept
    else:
        assert job.started_at is not None and job.started_at.year >= 2025


def test_one_transaction_per_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The asset rows are written, then the job's event fails: nothing stays."""
    job, (first, second) = processing_job(listing=509)

    def failing_event(**kwargs: Any) -> MediaJobEvent:
        assert MediaAsset.objects.get(pk=first.pk).status == AssetStatus.PROCESSED
        raise RuntimeError("database went away")

    monkeypatch.setattr(callbacks, "event_record", failing_event)
    with pytest.raises(RuntimeError):
        deliver(body_for(job, "SUCCEEDED", [output(first), output(second)]))
    first.refresh_from_db()
    job.refresh_from_db()
    assert first.status == AssetStatus.PROCESSING and job.status == JobStatus.RUNNING
    assert not MediaJobEvent.objects.filter(job_id=job.pk).exists()


def test_progress_for_a_finished_job_is_ignored() -> None:
    job = JobFactory(listing_identity_id=510, status=JobStatus.SUCCEEDED, callback_body="{}")
    outcome = deliver(body_for(job, "RUNNING"))
    assert (outcome.status_code, outcome.applied) == (200, False)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.callback_body == "{}"


def test_signature_secret_and_size_are_checked_first(settings: Any) -> None:
    job = JobFactory(listing_identity_id=511, status=JobStatus.RUNNING)
    raw = serialise_payload(body_for(job, "SUCCEEDED"))
    with pytest.raises(CallbackUnauthorized, match=MSG_BAD_SIGNATURE[:20]):
        callback_apply(raw_body=raw, signature="0" * 64)
    with pytest.raises(CallbackUnauthorized):
        callback_apply(raw_body=raw, signature=None)
    settings.CALLBACK_MAX_BODY_BYTES = 10
    with pytest.raises(CallbackTooLarge):
        callback_apply(raw_body=raw, signature=sign(raw, SECRET))
    settings.CALLBACK_MAX_BODY_BYTES = 1024 * 1024
    settings.CALLBACK_SECRET = ""
    with pytest.raises(CallbackUnauthorized, match=MSG_NO_SECRET[:20]):
        callback_apply(raw_body=raw, signature=sign(raw, ""))
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    # The Celery engine's own results skip the signature (they never left the process).
    assert callback_apply(raw_body=raw, verify=False, source="celery").applied


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"{", ApplicationError),
        (b"[]", ApplicationError),
        (b'{"jobId": "x", "listingIdentityId": 1}', ApplicationError),
        (b'{"jobId": 1.5, "listingIdentityId": 1}', ApplicationError),
        (b'{"jobId": 1, "listingIdentityId": null}', ApplicationError),
        (b'{"jobId": NaN, "listingIdentityId": 1}', ApplicationError),
        # outside INT UNSIGNED: not an id at all (400), not an unknown one (404)
        (b'{"jobId": 99999999999, "listingIdentityId": 1}', ApplicationError),
        (b'{"jobId": "' + b"9" * 5000 + b'", "listingIdentityId": 1}', ApplicationError),
        (b'{"jobId": 1, "listingIdentityId": "' + b"1" * 5000 + b'"}', ApplicationError),
        (b'{"jobId": -1, "listingIdentityId": 1}', ApplicationError),
        (b'{"jobId": 987654, "listingIdentityId": 1}', NotFoundError),
        (b"\xff", ApplicationError),
        (b"[" * 100_000, ApplicationError),
    ],
)
def test_malformed_bodies_are_refused(raw: bytes, error: type[Exception]) -> None:
    with pytest.raises(error) as raised:
        deliver(raw)
    assert type(raised.value) is error
    assert raised.value.status_code in (400, 404)
    json.dumps(raised.value.message)


def test_outputs_are_written_in_batches_with_their_own_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Several statements (batch of 2 here), failures (no processed key) and non-ASCII
    metadata among them: every row gets exactly its own output."""
    monkeypatch.setattr(callbacks, "OUTPUT_BATCH", 2)
    job, assets = processing_job(listing=540, assets=5)
    assets[0].metadata = {"filename": "fachada-água.jpg"}
    assets[0].save()
    outputs = [output(a) for a in assets]
    outputs[3] = output(assets[3], processedKey=None, errorCode="CORRUPT_IMAGE", errorMessage="ã")
    outcome = deliver(body_for(job, "PARTIAL_SUCCESS", outputs))
    assert (outcome.status_code, outcome.assets_updated) == (200, 5)
    for index, asset in enumerate(assets):
        asset.refresh_from_db()
        if index == 3:
            assert asset.status == AssetStatus.FAILED and asset.s3_key_processed is None
            assert asset.metadata["errorCode"] == "CORRUPT_IMAGE"
            assert asset.metadata["error"] == "ã"
            continue
        assert asset.status == AssetStatus.PROCESSED
        assert asset.s3_key_processed == outputs[index]["processedKey"]
        assert asset.metadata["thumbnailKey"] == outputs[index]["thumbnailKey"]
    assert assets[0].metadata["filename"] == "fachada-água.jpg"


@pytest.mark.skipif(connection.vendor != "mysql", reason="the joined UPDATE is MySQL syntax")
def test_on_mariadb_a_batch_of_outputs_is_one_joined_update(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One statement per batch (5 outputs in batches of 2: 3 statements), not Django's
    bulk_update, which measured slower than one UPDATE per asset on MariaDB."""
    monkeypatch.setattr(callbacks, "OUTPUT_BATCH", 2)
    job, assets = processing_job(listing=542, assets=5)
    with CaptureQueriesContext(connection) as queries:
        deliver(body_for(job, "SUCCEEDED", [output(a) for a in assets]))
    updates = [q["sql"] for q in queries if q["sql"].startswith("UPDATE `media_assets`")]
    assert len(updates) == 3
    assert all(sql.startswith("UPDATE `media_assets` AS a JOIN (SELECT ") for sql in updates)


def test_the_first_success_stands() -> None:
    """A different body with the job's own success status is recorded and ignored: 200,
    nothing applied, the first body, figures and assets stay."""
    job, (asset,) = processing_job(listing=541, assets=1)
    first = body_for(job, "SUCCEEDED", [output(asset)])
    deliver(first)
    job.refresh_from_db()
    before = (job.status, job.completed_at, job.callback_body, job.payload, job.external_id)
    second = body_for(
        job,
        "SUCCEEDED",
        [output(asset, processedKey="541/processed/photo/horizontal/large/other.jpg")],
        executionArn=ARN + "-second",
    )
    outcome = deliver(second)
    assert (outcome.status_code, outcome.applied, outcome.replay) == (200, False, False)
    assert outcome.message == "job already SUCCEEDED; the first success stands"
    assert (outcome.job_status, outcome.assets_updated) == ("SUCCEEDED", 0)
    job.refresh_from_db()
    assert (
        job.status,
        job.completed_at,
        job.callback_body,
        job.payload,
        job.external_id,
    ) == before
    assert job.callback_body == serialise_payload(first).decode()
    asset.refresh_from_db()
    assert asset.s3_key_processed == output(asset)["processedKey"]
    event = MediaJobEvent.objects.get(pk=outcome.event_id)
    assert (event.kind, event.detail["applied"], event.detail["previousStatus"]) == (
        "note",
        False,
        "SUCCEEDED",
    )


def test_a_progress_callback_runs_the_job_and_answers_200_applied() -> None:
    job = JobFactory(listing_identity_id=542, status=JobStatus.PENDING)
    body = body_for(job, "RUNNING")
    outcome = deliver(body)
    assert (outcome.status_code, outcome.applied, outcome.replay) == (200, True, False)
    assert (outcome.job_status, outcome.message) == ("RUNNING", "job is RUNNING")
    assert outcome.as_json()["applied"] is True
    job.refresh_from_db()
    assert (job.status, job.external_id, job.completed_at) == ("RUNNING", ARN, None)
    assert job.started_at == datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert job.callback_body == serialise_payload(body).decode()
    assert MediaJobEvent.objects.get(pk=outcome.event_id).kind == "note"


def test_a_progress_callback_for_a_finished_job_answers_200_not_applied() -> None:
    job = JobFactory(listing_identity_id=543, status=JobStatus.FAILED, callback_body="{}")
    outcome = deliver(body_for(job, "IN_PROGRESS"))
    assert (outcome.status_code, outcome.applied, outcome.job_status) == (200, False, "FAILED")
    assert outcome.message == "job already FAILED; progress ignored"
    job.refresh_from_db()
    assert (job.status, job.callback_body, job.external_id) == ("FAILED", "{}", None)


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_refused(constant: bytes) -> None:
    """JSON has no NaN or Infinity (Python's parser accepts them): a body with one is a 400
    before anything changes, wherever it is."""
    job, (asset,) = processing_job(listing=544, assets=1)
    raw = serialise_payload(body_for(job, "SUCCEEDED", [output(asset)]))
    raw = raw.replace(b'"failureReason":""', b'"failureReason":' + constant)
    assert constant in raw
    with pytest.raises(ApplicationError) as refused:
        deliver(raw)
    assert refused.value.status_code == 400
    assert f"{constant.decode()} is not valid JSON" in refused.value.message
    job.refresh_from_db()
    assert (job.status, job.callback_body) == (JobStatus.RUNNING, None)


def test_failed_without_outputs_counts_the_assets_it_failed() -> None:
    """The job took three assets; one was already PROCESSED, so the failure fails two."""
    job, (mine, also_mine, done) = processing_job(listing=545, assets=3)
    MediaAsset.objects.filter(pk=done.pk).update(status=AssetStatus.PROCESSED)
    event_record(
        job=job,
        step=STEP_DISPATCH,
        kind="started",
        detail={"assetIds": [mine.pk, also_mine.pk, done.pk]},
    )
    outcome = deliver(body_for(job, "VALIDATION_FAILED", error={"code": "E", "message": "m"}))
    assert (outcome.status_code, outcome.applied, outcome.assets_updated) == (200, True, 2)
    job.refresh_from_db()
    assert job.payload == {"assetsTotal": 3, "assetsProcessed": 0, "assetsFailed": 2}
    assert callbacks.job_fail_processing_assets(job=job, code="X", message="y") == 0


def test_failed_without_outputs_for_a_job_started_elsewhere_counts_the_failed_assets() -> None:
    job, _ = processing_job(listing=546, assets=3)
    outcome = deliver(body_for(job, "FAILED"))
    assert outcome.assets_updated == 3
    job.refresh_from_db()
    assert job.payload == {"assetsTotal": 3, "assetsProcessed": 0, "assetsFailed": 3}


def test_a_failure_details_update_keeps_its_callback_body() -> None:
    """The pipeline's own failure after the reconciler's: the job stays FAILED, its details
    are appended, and callback_body is the pipeline's body (what the job page shows)."""
    job, (asset,) = processing_job(listing=547, assets=1)
    MediaProcessingJob.objects.filter(pk=job.pk).update(
        status=JobStatus.FAILED, last_error="code=RECONCILER_TIMEOUT | gave up"
    )
    body = body_for(
        job, "PROCESSING_FAILED", error={"code": "VIDEO_TRANSCODE_FAILED", "message": "exit 1"}
    )
    outcome = deliver(body)
    assert (outcome.status_code, outcome.applied) == (200, True)
    assert outcome.message == "failure details applied to the FAILED job"
    job.refresh_from_db()
    assert job.callback_body == serialise_payload(body).decode()
    assert job.last_error == (
        "code=RECONCILER_TIMEOUT | gave up\ncode=VIDEO_TRANSCODE_FAILED | exit 1"
    )
    assert deliver(body).replay


@pytest.mark.parametrize(("length", "processed"), [(255, True), (256, False)])
def test_a_processed_key_longer_than_the_column_fails_its_asset(
    length: int, processed: bool
) -> None:
    job, (asset,) = processing_job(listing=548, assets=1)
    prefix = "548/processed/photo/horizontal/large/"
    key = prefix + "k" * (length - len(prefix) - 4) + ".jpg"
    assert len(key) == length
    outcome = deliver(body_for(job, "SUCCEEDED", [output(asset, processedKey=key)]))
    assert outcome.status_code == 200
    asset.refresh_from_db()
    if processed:
        assert (asset.status, asset.s3_key_processed) == (AssetStatus.PROCESSED, key)
        assert "errorCode" not in asset.metadata
    else:
        assert (asset.status, asset.s3_key_processed) == (AssetStatus.FAILED, None)
        assert asset.metadata["errorCode"] == "INVALID_KEY"
        assert asset.metadata["error"] == "processedKey is longer than 255 characters"


def test_a_completing_callback_fills_started_at_only_when_empty() -> None:
    never = JobFactory(listing_identity_id=549, status=JobStatus.PENDING)
    deliver(body_for(never, "FAILED", startedAt=""))
    never.refresh_from_db()
    assert never.status == JobStatus.FAILED and never.started_at is None
    job = JobFactory(listing_identity_id=549, status=JobStatus.PENDING)
    deliver(body_for(job, "FAILED"))
    job.refresh_from_db()
    assert job.started_at == datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)


def test_status_is_read_trimmed_and_in_any_case() -> None:
    job, (asset,) = processing_job(listing=550, assets=1)
    outcome = deliver(body_for(job, " succeeded ", [output(asset)]))
    assert (outcome.status_code, outcome.job_status, outcome.message) == (
        200,
        "SUCCEEDED",
        "job SUCCEEDED",
    )
    event = MediaJobEvent.objects.get(pk=outcome.event_id)
    assert event.detail["callbackStatus"] == "SUCCEEDED"
    assert (event.kind, event.detail["previousStatus"], event.detail["source"]) == (
        "succeeded",
        "RUNNING",
        "http",
    )
    assert event.detail["bodyBytes"] == len(
        serialise_payload(body_for(job, " succeeded ", [output(asset)]))
    )


def test_a_different_success_after_a_success_is_a_409() -> None:
    job, (asset,) = processing_job(listing=551, assets=1)
    deliver(body_for(job, "SUCCEEDED", [output(asset)]))
    outcome = deliver(body_for(job, "PARTIAL_SUCCESS", [output(asset)]))
    assert (outcome.status_code, outcome.applied) == (409, False)
    assert outcome.message == "job already SUCCEEDED; PARTIAL_SUCCESS does not replace it"
    failure = deliver(body_for(job, "TIMED_OUT"))
    assert failure.message == (
        "job already SUCCEEDED; a TIMED_OUT callback does not replace a success"
    )
    assert MediaJobEvent.objects.get(pk=failure.event_id).kind == "failed"


def test_job_zero_is_unknown_and_an_unknown_job_is_a_404_with_its_id() -> None:
    with pytest.raises(NotFoundError) as zero:
        deliver({"jobId": 0, "listingIdentityId": 1, "status": "SUCCEEDED"})
    assert zero.value.message == "no media processing job with id 0"
    with pytest.raises(NotFoundError) as missing:
        deliver({"jobId": 4294967295, "listingIdentityId": 1, "status": "SUCCEEDED"})
    assert missing.value.message == "no media processing job with id 4294967295"


def test_error_text_from_every_shape_of_error() -> None:
    """A string error, a finalization's Error/Cause, a code without a message: last_error
    and the failed assets' codes say what the body said, with the status as fallback."""
    job, (asset,) = processing_job(listing=552, assets=1)
    deliver(body_for(job, "VALIDATION_FAILED", error="plain words", failureReason="bad input"))
    job.refresh_from_db()
    asset.refresh_from_db()
    assert job.last_error == "plain words | bad input"
    assert (asset.metadata["errorCode"], asset.metadata["error"]) == (
        "VALIDATION_FAILED",
        "plain words",
    )
    other, (bare,) = processing_job(listing=553, assets=1)
    deliver(body_for(other, "FAILED", error={"code": "", "message": ""}, failureReason=""))
    other.refresh_from_db()
    bare.refresh_from_db()
    assert (bare.metadata["errorCode"], bare.metadata["error"]) == ("FAILED", "FAILED")
    assert other.last_error is None
    third, (reasoned,) = processing_job(listing=554, assets=1)
    deliver(body_for(third, "PROCESSING_FAILED", error={"Error": "E1"}, failureReason="why"))
    reasoned.refresh_from_db()
    third.refresh_from_db()
    assert (reasoned.metadata["errorCode"], reasoned.metadata["error"]) == ("E1", "why")
    assert third.last_error == "code=E1 | why"


def test_asset_output_merges_outputs_and_skips_an_empty_thumbnail() -> None:
    asset = AssetFactory.build(metadata={"filename": "a.jpg", "errorCode": "X", "error": "old"})
    callbacks.asset_set_output(
        asset=asset,
        output={
            "processedKey": "1/processed/photo/horizontal/large/a.jpg",
            "thumbnailKey": "",
            "outputs": {"large_photo_horizontal": "k", "n": 5},
        },
    )
    assert asset.status == AssetStatus.PROCESSED
    assert asset.metadata == {"filename": "a.jpg", "large_photo_horizontal": "k", "n": "5"}
    failed = AssetFactory.build(metadata={})
    callbacks.asset_set_output(asset=failed, output={"errorMessage": "only words"})
    assert (failed.status, failed.metadata) == (
        AssetStatus.FAILED,
        {"errorCode": "VALIDATION_ERROR", "error": "only words"},
    )
    coded = AssetFactory.build(metadata={})
    callbacks.asset_set_output(asset=coded, output={"errorCode": "E", "outputs": "not a map"})
    assert coded.metadata == {"errorCode": "E", "error": "E"}


def test_stored_text_keeps_a_body_of_exactly_64_kib() -> None:
    body = b'"' + b"a" * (TEXT_MAX_BYTES - 2) + b'"'
    assert callbacks.stored_callback_text(body) == (body.decode(), False)
    longer = body + b" "
    text, truncated = callbacks.stored_callback_text(longer)
    assert truncated and len(text.encode()) == TEXT_MAX_BYTES
    assert text.endswith(
        f"\n...[truncated by the portal: the body is {len(longer)} bytes, sha256 "
        f"{hashlib.sha256(longer).hexdigest()}; the full body is in the job's "
        "callback event]"
    )


def test_malformed_and_unknown_outputs_are_counted_in_the_event() -> None:
    job, (asset,) = processing_job(listing=555, assets=1)
    unknown = [output(asset, rawKey=f"555/raw/photo/horizontal/u-{n:02d}.jpg") for n in range(25)]
    outcome = deliver(body_for(job, "SUCCEEDED", [output(asset), *unknown, 7, {"rawKey": ""}]))
    assert outcome.assets_updated == 1
    assert outcome.unknown_raw_keys == [u["rawKey"] for u in unknown[:20]]
    detail = MediaJobEvent.objects.get(pk=outcome.event_id).detail
    assert detail["unknownRawKeyCount"] == 25
    assert detail["malformedOutputs"] == ["7", '{"rawKey": ""}']
    assert (detail["truncated"], detail["lateSuccess"], detail["applied"]) == (False, False, True)
    assert outcome.as_json() == {
        "jobId": job.pk,
        "status": "SUCCEEDED",
        "applied": True,
        "replay": False,
        "message": "job SUCCEEDED",
        "assetsUpdated": 1,
        "unknownRawKeys": [u["rawKey"] for u in unknown[:20]],
    }


def test_asset_apply_output_saves_the_asset() -> None:
    asset = AssetFactory(listing_identity_id=556, status=AssetStatus.PROCESSING)
    key = "556/processed/photo/horizontal/large/p.jpg"
    callbacks.asset_apply_output(asset=asset, output={"processedKey": key, "thumbnailKey": "t"})
    stored = MediaAsset.objects.get(pk=asset.pk)
    assert (stored.status, stored.s3_key_processed, stored.metadata["thumbnailKey"]) == (
        AssetStatus.PROCESSED,
        key,
        "t",
    )


def test_asset_apply_output_writes_only_the_output_columns() -> None:
    """A backfill holds the asset for a while: a title the owner edits meanwhile stays; only
    the output's columns are written."""
    asset = AssetFactory(listing_identity_id=556, status=AssetStatus.PROCESSING, title="old")
    MediaAsset.objects.filter(pk=asset.pk).update(title="Sala de estar")
    key = "556/processed/photo/horizontal/large/q.jpg"
    callbacks.asset_apply_output(asset=asset, output={"processedKey": key})
    stored = MediaAsset.objects.get(pk=asset.pk)
    assert (stored.title, stored.s3_key_processed) == ("Sala de estar", key)


def test_a_large_body_is_kept_once_per_job() -> None:
    """The first callback of a body over 64 KiB keeps it whole in its event; a replay points
    at that event; another job's callback with its own large body keeps its own."""
    job, (asset,) = processing_job(listing=557, assets=1)
    many = [output(asset)] + [
        output(asset, rawKey=f"557/raw/photo/horizontal/x-{n:04d}.jpg") for n in range(700)
    ]
    raw = serialise_payload(body_for(job, "SUCCEEDED", many))
    first = deliver(raw)
    again = deliver(raw)
    holder = MediaJobEvent.objects.get(pk=first.event_id)
    replay = MediaJobEvent.objects.get(pk=again.event_id)
    assert holder.detail["rawBody"] == raw.decode()
    assert replay.detail["rawBodyEventId"] == holder.pk and "rawBody" not in replay.detail
    other, _ = processing_job(listing=557, assets=1)
    theirs = serialise_payload(body_for(other, "SUCCEEDED", many))
    own = MediaJobEvent.objects.get(pk=deliver(theirs).event_id)
    assert own.detail["rawBody"] == theirs.decode()


def test_a_step_functions_error_and_cause_fail_the_assets_with_both() -> None:
    job, (asset,) = processing_job(listing=558, assets=1)
    deliver(body_for(job, "PROCESSING_FAILED", error={"Error": "States.Timeout", "Cause": "c"}))
    asset.refresh_from_db()
    job.refresh_from_db()
    assert (asset.metadata["errorCode"], asset.metadata["error"]) == ("States.Timeout", "c")
    assert job.last_error == "code=States.Timeout | c"


def test_a_raw_key_differing_only_in_case_is_another_object(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """S3 keys are case-sensitive and the key column's collation is not: an output for
    ``.../A.JPG`` must neither change nor count the asset ``.../a.jpg``."""
    job = JobFactory(listing_identity_id=559, status=JobStatus.RUNNING)
    asset = AssetFactory(
        listing_identity_id=559, s3_key_raw="559/raw/photo/horizontal/a.jpg", metadata={}
    )
    other = "559/raw/photo/horizontal/A.JPG"
    with caplog.at_level("WARNING", logger="toq.media.callbacks"):
        outcome = deliver(body_for(job, "SUCCEEDED", [output(asset, rawKey=other)]))
    assert (outcome.assets_updated, outcome.unknown_raw_keys) == (0, [other])
    asset.refresh_from_db()
    assert (asset.status, asset.s3_key_processed, asset.metadata) == (
        AssetStatus.PROCESSING,
        None,
        {},
    )
    [record] = [
        r for r in caplog.records if r.name == "toq.media.callbacks" and r.levelname == "WARNING"
    ]
    assert record.getMessage() == "callback output for an unknown raw key skipped"
    assert record.raw_key == other


def test_an_output_with_only_an_error_message_counts_as_failed() -> None:
    job, (words, fine) = processing_job(listing=560, assets=2)
    outputs = [output(words, processedKey="", errorMessage="unreadable"), output(fine), 3]
    deliver(body_for(job, "PARTIAL_SUCCESS", outputs))
    job.refresh_from_db()
    assert job.payload == {"assetsTotal": 3, "assetsProcessed": 2, "assetsFailed": 1}
    words.refresh_from_db()
    assert (words.status, words.metadata["errorCode"]) == (AssetStatus.FAILED, "VALIDATION_ERROR")


def test_an_output_with_only_an_error_code_counts_as_failed() -> None:
    job, (bad, fine) = processing_job(listing=562, assets=2)
    outputs = [output(bad, errorCode="CORRUPT_IMAGE", errorMessage=""), output(fine)]
    deliver(body_for(job, "PARTIAL_SUCCESS", outputs))
    job.refresh_from_db()
    assert job.payload == {"assetsTotal": 2, "assetsProcessed": 1, "assetsFailed": 1}
    bad.refresh_from_db()
    assert (bad.status, bad.metadata["errorCode"]) == (AssetStatus.FAILED, "CORRUPT_IMAGE")


def test_an_asset_without_a_raw_key_takes_no_output() -> None:
    """The key column's collation pads with spaces, so MariaDB matches an asset whose raw
    key is "" to an output for " ": that asset must still take no output, neither that
    one nor the one for any other key ("XXXX" here)."""
    job = JobFactory(listing_identity_id=563, status=JobStatus.RUNNING)
    blank = AssetFactory(
        listing_identity_id=563, s3_key_raw="", status=AssetStatus.PROCESSING, metadata={}
    )
    outcome = deliver(
        body_for(
            job,
            "SUCCEEDED",
            [output(blank, rawKey=" "), output(blank, rawKey="XXXX", processedKey="563/p/x.jpg")],
        )
    )
    assert (outcome.assets_updated, outcome.unknown_raw_keys) == (0, [" ", "XXXX"])
    blank.refresh_from_db()
    assert (blank.status, blank.s3_key_processed, blank.metadata) == (
        AssetStatus.PROCESSING,
        None,
        {},
    )


def test_a_job_id_padded_past_ints_digit_limit_is_still_its_job() -> None:
    job, (one,) = processing_job(listing=564, assets=1)
    body = body_for(job, "SUCCEEDED", [output(one)], jobId="0" * 5000 + str(job.pk))
    outcome = deliver(body)
    assert outcome.assets_updated == 1
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED


def _error_rows(job: MediaProcessingJob) -> list[tuple[str, str, str, int]]:
    return sorted(
        MediaJobError.objects.filter(job_id=job.pk).values_list("scope", "code", "sample", "assets")
    )


def test_the_error_codes_kept_for_a_partial_success_and_a_failure() -> None:
    """A partial success keeps its own code (no assets: they are the outputs') and one row
    per failed output; a failure without outputs counts the assets it failed on its code."""
    job, (broken, fine) = processing_job(listing=561, assets=2)
    outputs = [
        output(broken, processedKey="", errorCode="CORRUPT_IMAGE", errorMessage="bad"),
        output(fine),
    ]
    deliver(
        body_for(
            job,
            "PARTIAL_SUCCESS",
            outputs,
            error={"code": "DERIVATIVE_ERRORS_DETECTED", "message": "derivative errors detected"},
        )
    )
    assert _error_rows(job) == [
        ("asset", "CORRUPT_IMAGE", "bad", 1),
        ("job", "DERIVATIVE_ERRORS_DETECTED", "derivative errors detected", 0),
    ]
    failed, _ = processing_job(listing=562, assets=2)
    deliver(body_for(failed, "PROCESSING_FAILED", error={"code": "E", "message": "m"}))
    assert _error_rows(failed) == [("job", "E", "m", 2)]


def test_a_failure_without_any_error_still_keeps_a_job_row() -> None:
    job, _ = processing_job(listing=563, assets=2)
    deliver(body_for(job, "FAILED"))
    assert _error_rows(job) == [("job", "", "", 2)]
    with_outputs, (asset,) = processing_job(listing=564, assets=1)
    deliver(body_for(with_outputs, "FAILED", [output(asset, processedKey="", errorCode="X")]))
    assert _error_rows(with_outputs) == [("asset", "X", "X", 1), ("job", "", "", 0)]


@pytest.mark.parametrize(
    ("started_at", "kept"),
    [
        ("1970-01-02T00:00:00Z", datetime(1970, 1, 2, tzinfo=UTC)),
        ("2038-01-19T00:00:00Z", datetime(2038, 1, 19, tzinfo=UTC)),
        ("2038-01-19T00:00:01Z", None),
        ("1970-01-01T23:59:59Z", None),
        ("9999-12-31T23:59:59-23:59", None),  # past datetime's own range in UTC
    ],
)
def test_started_at_at_the_edges_of_a_timestamp(started_at: str, kept: datetime | None) -> None:
    job = JobFactory(listing_identity_id=565, status=JobStatus.PENDING)
    deliver(body_for(job, "RUNNING", startedAt=started_at))
    job.refresh_from_db()
    if kept is None:
        assert job.started_at is not None and job.started_at.year >= 2025
    else:
        assert job.started_at == kept


@pytest.mark.parametrize("pad", [0, 1])
def test_a_large_body_is_cut_at_a_character_boundary(pad: int) -> None:
    """One of the two paddings puts the cut inside a two-byte character: it is dropped."""
    raw = ('"' + "x" * pad + "é" * 40_000 + '"').encode()
    text, truncated = callbacks.stored_callback_text(raw)
    head = text.split("\n...[truncated by the portal")[0]
    assert truncated and len(text.encode()) <= TEXT_MAX_BYTES
    assert raw.decode().startswith(head) and len(head) > 30_000


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff{}", "not UTF-8 (invalid start byte)"),
        (b"[" * 100_000, "nested too deeply"),
        (b"[1]", "got a JSON list"),
        (b'"text"', "got a JSON str"),
        (b"{", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    ],
)
def test_a_body_that_is_not_a_json_object_says_why(raw: bytes, reason: str) -> None:
    with pytest.raises(ApplicationError) as refused:
        callbacks.parse_callback_body(raw)
    assert refused.value.message == f"callback body must be a UTF-8 JSON object: {reason}"


class _ContextCapture(logging.Handler):
    """Keeps the log context (pipeline.logs) each record was logged in."""

    def __init__(self) -> None:
        super().__init__()
        self.contexts: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.contexts.append(current_log_context())


def test_the_callbacks_log_lines_carry_its_job_and_traceparent() -> None:
    trace = "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01"
    capture = _ContextCapture()
    log = logging.getLogger("toq.media.callbacks")
    log.addHandler(capture)
    old_level = log.level
    log.setLevel(logging.INFO)
    try:
        job, (asset,) = processing_job(listing=566, assets=1)
        deliver(body_for(job, "SUCCEEDED", [output(asset)], traceparent=trace))
        other = JobFactory(listing_identity_id=566, status=JobStatus.PENDING)
        deliver(body_for(other, "RUNNING", traceparent=""))
    finally:
        log.removeHandler(capture)
        log.setLevel(old_level)
    first, second = capture.contexts[-2:]
    assert (first["job_id"], first["listing_identity_id"], first["traceparent"]) == (
        job.pk,
        566,
        trace,
    )
    assert first["step"] == "callback"
    assert second["job_id"] == other.pk and "traceparent" not in second


def test_a_body_over_the_limit_names_its_size(settings: Any) -> None:
    settings.CALLBACK_MAX_BODY_BYTES = 10
    with pytest.raises(CallbackTooLarge) as refused:
        callback_apply(raw_body=b"x" * 11, signature=None)
    assert refused.value.message == (
        "callback body is 11 bytes; the limit is 10 (CALLBACK_MAX_BODY_BYTES)"
    )
    assert refused.value.status_code == 413


def test_the_callbacks_log_line_says_what_it_did(caplog: pytest.LogCaptureFixture) -> None:
    job, (asset,) = processing_job(listing=567, assets=1)
    body = body_for(job, "SUCCEEDED", [output(asset)])
    with caplog.at_level(logging.INFO, logger="toq.media.callbacks"):
        callback_apply(raw_body=serialise_payload(body), verify=False, source="celery")
        deliver(body)
    applied, replay = [r for r in caplog.records if r.getMessage().startswith("callback ")]
    assert applied.getMessage() == "callback applied"
    assert (applied.source, applied.callback_status, applied.job_status) == (
        "celery",
        "SUCCEEDED",
        "SUCCEEDED",
    )
    assert (applied.http_status, applied.replay, applied.assets_updated) == (200, False, 1)
    assert applied.reason == "job SUCCEEDED"
    assert replay.getMessage() == "callback not applied"
    assert (replay.source, replay.replay, replay.reason) == (
        "http",
        True,
        "replay of the stored callback",
    )


def test_another_large_body_for_the_same_job_is_kept_whole_too() -> None:
    """The pointer is only for the same body: a different large body for a job that keeps
    one already (here a second success, recorded and ignored) is stored in its own event."""
    job, (asset,) = processing_job(listing=568, assets=1)
    many = [output(asset)] + [
        output(asset, rawKey=f"568/raw/photo/horizontal/x-{n:04d}.jpg") for n in range(700)
    ]
    first = serialise_payload(body_for(job, "SUCCEEDED", many))
    second = serialise_payload(body_for(job, "SUCCEEDED", many, executionArn=ARN + "-2"))
    assert len(first) > TEXT_MAX_BYTES and len(second) > TEXT_MAX_BYTES
    holder = MediaJobEvent.objects.get(pk=deliver(first).event_id)
    other = MediaJobEvent.objects.get(pk=deliver(second).event_id)
    assert holder.detail["rawBody"] == first.decode()
    assert other.detail["rawBody"] == second.decode() and "rawBodyEventId" not in other.detail


def test_a_malformed_output_is_listed_cut_and_does_not_stop_the_others() -> None:
    """A malformed entry (its rawKey is not a string) is noted as its JSON text with sorted
    keys, cut to 200 characters; the outputs after it are still applied."""
    job, (asset,) = processing_job(listing=569, assets=1)
    raw = serialise_payload(body_for(job, "SUCCEEDED", ["MALFORMED", output(asset)]))
    malformed = b'{"rawKey":7,"errorCode":"' + b"E" * 300 + b'"}'  # keys not in order
    outcome = deliver(raw.replace(b'"MALFORMED"', malformed))
    assert outcome.assets_updated == 1
    asset.refresh_from_db()
    assert asset.status == AssetStatus.PROCESSED
    detail = MediaJobEvent.objects.get(pk=outcome.event_id).detail
    assert detail["malformedOutputs"] == ['{"errorCode": "' + "E" * 185]


def test_an_asset_matched_only_by_collation_does_not_stop_the_others() -> None:
    """The case-insensitive match (``.../a.jpg`` for an output of ``.../A.JPG``) is skipped,
    and the next asset still takes its own output."""
    job = JobFactory(listing_identity_id=570, status=JobStatus.RUNNING)
    lower = AssetFactory(listing_identity_id=570, s3_key_raw="570/raw/photo/horizontal/a.jpg")
    other = AssetFactory(listing_identity_id=570, s3_key_raw="570/raw/photo/horizontal/b.jpg")
    assert lower.pk < other.pk
    outputs = [output(lower, rawKey="570/raw/photo/horizontal/A.JPG"), output(other)]
    outcome = deliver(body_for(job, "SUCCEEDED", outputs))
    assert (outcome.assets_updated, outcome.unknown_raw_keys) == (
        1,
        ["570/raw/photo/horizontal/A.JPG"],
    )
    other.refresh_from_db()
    assert (other.status, other.s3_key_processed) == (
        AssetStatus.PROCESSED,
        output(other)["processedKey"],
    )


def test_an_output_with_an_error_code_keeps_it_whatever_its_processed_key() -> None:
    """The key length check is for outputs without an error: a failed output keeps its own
    code even when it also names an over-long key."""
    asset = AssetFactory.build(metadata={})
    callbacks.asset_set_output(
        asset=asset, output={"errorCode": "CORRUPT_IMAGE", "processedKey": "k" * 300}
    )
    assert (asset.status, asset.metadata) == (
        AssetStatus.FAILED,
        {"errorCode": "CORRUPT_IMAGE", "error": "CORRUPT_IMAGE"},
    )


def test_a_lone_surrogate_in_the_callbacks_texts_is_stored_as_a_question_mark() -> None:
    """JSON may escape a lone surrogate, UTF-8 columns cannot hold one: the error texts of
    the job and its asset keep "?" in its place."""
    job, (asset,) = processing_job(listing=571, assets=1)
    body = body_for(job, "PROCESSING_FAILED", error={"code": "E", "message": "bad SURROGATE"})
    raw = serialise_payload(body).replace(b"SURROGATE", b"\\ud800")
    outcome = deliver(raw)
    assert outcome.applied
    job.refresh_from_db()
    asset.refresh_from_db()
    assert job.last_error == "code=E | bad ?"
    assert (asset.metadata["errorCode"], asset.metadata["error"]) == ("E", "bad ?")


def test_an_execution_arn_that_is_not_a_string_is_not_the_external_id() -> None:
    job, (asset,) = processing_job(listing=572, assets=1)
    deliver(body_for(job, "SUCCEEDED", [output(asset)], executionArn=12345))
    job.refresh_from_db()
    assert (job.status, job.external_id) == (JobStatus.SUCCEEDED, None)


def test_a_partial_success_without_an_error_keeps_only_its_assets_codes() -> None:
    """Only a failure gets a job row without a code; a partial success that names no error
    of its own keeps the rows of its failed outputs."""
    job, (broken, fine) = processing_job(listing=573, assets=2)
    outputs = [output(broken, processedKey="", errorCode="CORRUPT_IMAGE"), output(fine)]
    deliver(body_for(job, "PARTIAL_SUCCESS", outputs))
    assert _error_rows(job) == [("asset", "CORRUPT_IMAGE", "CORRUPT_IMAGE", 1)]


def test_a_body_of_exactly_the_size_limit_is_accepted(settings: Any) -> None:
    job, (asset,) = processing_job(listing=574, assets=1)
    raw = serialise_payload(body_for(job, "SUCCEEDED", [output(asset)]))
    settings.CALLBACK_MAX_BODY_BYTES = len(raw)
    outcome = deliver(raw)
    assert (outcome.status_code, outcome.applied) == (200, True)


def test_a_traceparent_that_is_not_a_string_stays_out_of_the_log_context() -> None:
    capture = _ContextCapture()
    log = logging.getLogger("toq.media.callbacks")
    log.addHandler(capture)
    old_level = log.level
    log.setLevel(logging.INFO)
    try:
        job, (asset,) = processing_job(listing=575, assets=1)
        deliver(body_for(job, "SUCCEEDED", [output(asset)], traceparent=5))
    finally:
        log.removeHandler(capture)
        log.setLevel(old_level)
    context = capture.contexts[-1]
    assert context["job_id"] == job.pk and "traceparent" not in context


class _OtherDatabase:
    """What ``_save_outputs`` sees of a connection that is not MySQL/MariaDB."""

    vendor = "postgresql"


def test_on_another_database_the_outputs_are_written_by_bulk_update(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The MariaDB statement (UPDATE ... JOIN) is MySQL syntax: on any other database the
    assets are written by Django's bulk_update, in batches, with the same values."""
    monkeypatch.setattr(callbacks, "connection", _OtherDatabase())
    monkeypatch.setattr(callbacks, "OUTPUT_BATCH", 2)
    job, assets = processing_job(listing=576, assets=3)
    outputs = [output(a) for a in assets]
    outputs[1] = output(assets[1], processedKey="", errorCode="CORRUPT_IMAGE", errorMessage="ã")
    outcome = deliver(body_for(job, "PARTIAL_SUCCESS", outputs))
    assert outcome.assets_updated == 3
    stored = {a.pk: a for a in MediaAsset.objects.filter(listing_identity_id=576)}
    first, failed, last = (stored[a.pk] for a in assets)
    assert (first.status, first.s3_key_processed) == ("PROCESSED", outputs[0]["processedKey"])
    assert (last.status, last.s3_key_processed) == ("PROCESSED", outputs[2]["processedKey"])
    assert last.metadata["thumbnailKey"] == outputs[2]["thumbnailKey"]
    assert (failed.status, failed.s3_key_processed) == ("FAILED", None)
    assert (failed.metadata["errorCode"], failed.metadata["error"]) == ("CORRUPT_IMAGE", "ã")


def test_a_bad_id_is_refused_with_the_rule_it_breaks() -> None:
    with pytest.raises(ApplicationError) as refused:
        deliver({"jobId": 1, "listingIdentityId": "12a", "status": "SUCCEEDED"})
    assert refused.value.status_code == 400
    assert refused.value.message == (
        "listingIdentityId must be an integer from 0 to 4294967295, as a number or a string "
        "of digits; got '12a'"
    )


def test_a_finalization_jobs_payload_never_counts_assets() -> None:
    """A finalization (ZIP) job's figures are the ZIP's: a failure body that lists outputs
    anyway leaves its payload empty, not turned into asset counts."""
    job = JobFactory(
        listing_identity_id=577,
        status=JobStatus.RUNNING,
        provider=JobProvider.STEP_FUNCTIONS_FINALIZATION,
    )
    asset = AssetFactory(listing_identity_id=577, status=AssetStatus.PROCESSED)
    body = body_for(
        job, "FINALIZATION_FAILED", [output(asset)], error={"Error": "ZIP_FAILED", "Cause": "c"}
    )
    deliver(body)
    job.refresh_from_db()
    assert (job.status, job.payload) == (JobStatus.FAILED, None)


def test_an_output_applies_to_the_jobs_listing_only() -> None:
    """Only the job's listing is looked in: an asset of another listing that holds the same
    raw key (a copied row, say) keeps its state, and the output counts as unknown."""
    job = JobFactory(listing_identity_id=578, status=JobStatus.RUNNING)
    key = "578/raw/photo/horizontal/copied.jpg"
    stranger = AssetFactory(
        listing_identity_id=579, s3_key_raw=key, status=AssetStatus.PROCESSING, metadata={}
    )
    outcome = deliver(body_for(job, "SUCCEEDED", [output(stranger)]))
    assert (outcome.assets_updated, outcome.unknown_raw_keys) == (0, [key])
    stranger.refresh_from_db()
    assert (stranger.status, stranger.s3_key_processed) == (AssetStatus.PROCESSING, None)
