"""The Celery engine's failure paths, retries, resume and callback delivery, run eagerly
in-process against MariaDB and the S3 test server with real media and real ffmpeg."""

from __future__ import annotations

import json

import pytest

from media_jobs.models import (
    AssetStatus,
    CallbackDelivery,
    JobStatus,
    MediaAsset,
    MediaJobEvent,
    MediaProcessingJob,
)
from media_jobs.pipeline import keys
from media_jobs.pipeline.callback import SIGNATURE_HEADER, verify_signature
from media_jobs.services.dispatch import listing_start_finalization, listing_start_processing
from media_jobs.services.retry import assets_reprocess
from media_jobs.storage import pipeline_storage
from media_jobs.tasks import consolidate_processing, merge_parallel_results, plan_parts
from tests.support.callback_receiver import CallbackReceiver, PlannedResponse
from tests.workers.listing import seed_listing, short_mp4

pytestmark = pytest.mark.usefixtures("eager_engine")


def events(job_id: int, step: str) -> list[str]:
    return list(
        MediaJobEvent.objects.filter(job_id=job_id, step=step)
        .order_by("id")
        .values_list("kind", flat=True)
    )


def test_a_clean_listing_succeeds_with_a_full_timeline() -> None:
    listing = seed_listing(pipeline_storage(), 5001, photos=2)
    job = listing_start_processing(listing_identity_id=5001)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.last_error
    assert job.payload == {"assetsTotal": 2, "assetsProcessed": 2, "assetsFailed": 0}
    assert events(job.pk, "validate") == ["started", "succeeded"]
    assert events(job.pk, "thumbnails") == ["started", "succeeded"]
    assert events(job.pk, "consolidate") == ["started", "succeeded"]
    assert events(job.pk, "callback") == ["succeeded"]
    assert all(
        e.duration_ms is not None for e in job.events.filter(kind="succeeded", step="validate")
    )
    for asset in listing.photos:
        asset.refresh_from_db()
        assert asset.status == AssetStatus.PROCESSED


def test_validation_that_raises_is_retried_then_reported_as_validation_failed(settings) -> None:
    seed_listing(pipeline_storage(), 5002, photos=2)
    settings.MEDIA_BUCKET = "bucket-that-does-not-exist"
    job = listing_start_processing(listing_identity_id=5002)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    # docs/contract.md §4: validate retried 2x, then ValidationFailed.
    assert events(job.pk, "validate") == [
        "started",
        "retried",
        "started",
        "retried",
        "started",
        "failed",
    ]
    body = json.loads(job.callback_body)
    assert body["status"] == "VALIDATION_FAILED"
    assert body["failureReason"] == "raw asset validation failed"
    assert body["outputs"] == [] and body["executionArn"] == job.external_id
    assert job.last_error.startswith(f"code={body['error']['code']} | ")
    assert "raw asset validation failed" in job.last_error
    # FAILED without outputs: the job's PROCESSING assets fail with the error.
    assert set(
        MediaAsset.objects.filter(listing_identity_id=5002).values_list("status", flat=True)
    ) == {AssetStatus.FAILED}


def test_a_corrupt_video_is_that_videos_error_and_the_photo_is_processed() -> None:
    storage = pipeline_storage()
    listing = seed_listing(storage, 5003, photos=1, videos=1)
    # A video that passes validation (MP4 magic) but that ffmpeg cannot decode.
    storage.write(listing.videos[0].s3_key_raw, short_mp4()[:2048], content_type="video/mp4")
    job = listing_start_processing(listing_identity_id=5003)
    job.refresh_from_db()
    assert job.status == JobStatus.PARTIAL_SUCCESS, job.last_error
    # The parts reported the video's errors; nothing was retried.
    assert events(job.pk, "video_transcode") == ["started", "succeeded"]
    assert events(job.pk, "video_thumbnails") == ["started", "succeeded"]
    body = json.loads(job.callback_body)
    assert body["error"]["code"] == "DERIVATIVE_ERRORS_DETECTED"
    video = MediaAsset.objects.get(pk=listing.videos[0].pk)
    photo = MediaAsset.objects.get(pk=listing.photos[0].pk)
    assert video.status == AssetStatus.FAILED
    assert video.metadata["errorCode"] == "VIDEO_TRANSCODE_FAILED"
    assert photo.status == AssetStatus.PROCESSED, photo.metadata
    assert photo.s3_key_processed == keys.derivative_key(photo.s3_key_raw, "large")


def test_a_missing_ffmpeg_is_retried_then_reports_processing_failed(settings) -> None:
    """A deployment problem fails the run (after the retries); it is not blamed on the
    video."""
    seed_listing(pipeline_storage(), 5009, photos=1, videos=1)
    settings.FFMPEG_PATH = "/nonexistent/ffmpeg"
    job = listing_start_processing(listing_identity_id=5009)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    body = json.loads(job.callback_body)
    assert body["status"] == "PROCESSING_FAILED"
    assert body["error"]["code"] == "FileNotFoundError"
    assert "/nonexistent/ffmpeg" in body["error"]["message"]
    failed_parts = events(job.pk, "video_thumbnails") + events(job.pk, "video_transcode")
    assert failed_parts.count("retried") >= 2 and "failed" in failed_parts


def test_resume_skips_derivatives_that_exist_for_the_same_source() -> None:
    storage = pipeline_storage()
    listing = seed_listing(storage, 5004, photos=2)
    first = listing_start_processing(listing_identity_id=5004)
    derivatives = listing.derivative_keys()
    written = {key: storage.head(key).last_modified for key in derivatives}
    # One derivative lost: the retry redoes that photo only.
    lost = derivatives[0]
    storage.delete(lost)
    second = assets_reprocess(asset_ids=[a.pk for a in listing.photos], actor="test")
    second.refresh_from_db()
    assert (first.pk != second.pk) and second.status == JobStatus.SUCCEEDED
    assert storage.head(lost).size > 0
    untouched = [k for k in derivatives[4:] if storage.head(k).last_modified == written[k]]
    assert untouched == derivatives[4:]


def test_finalization_failure_is_reported_and_leaves_assets_alone() -> None:
    storage = pipeline_storage()
    listing = seed_listing(storage, 5005, photos=2)
    listing_start_processing(listing_identity_id=5005)
    storage.delete(listing.photos[1].s3_key_raw)
    job = listing_start_finalization(listing_identity_id=5005)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    body = json.loads(job.callback_body)
    assert body["status"] == "FINALIZATION_FAILED"
    assert body["error"]["Error"] == "OBJECT_NOT_FOUND"
    assert job.last_error.startswith("code=OBJECT_NOT_FOUND | ")
    assert events(job.pk, "zip") == [
        "started",
        "retried",
        "started",
        "retried",
        "started",
        "failed",
    ]
    assert set(
        MediaAsset.objects.filter(listing_identity_id=5005).values_list("status", flat=True)
    ) == {AssetStatus.PROCESSED}


def test_finalization_success_keeps_the_zip_figures() -> None:
    seed_listing(pipeline_storage(), 5006, photos=2)
    listing_start_processing(listing_identity_id=5006)
    job = listing_start_finalization(listing_identity_id=5006)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.payload["zipBundles"] == [keys.zip_key(5006)] and job.payload["assetsZipped"] == 2
    assert job.payload["zipSizeBytes"] > 0 and job.payload["unzippedSizeBytes"] > 0
    body = json.loads(job.callback_body)
    assert body["provider"] == "STEP_FUNCTIONS_FINALIZATION" and body["listingIdentityId"] == "5006"


def test_a_second_consolidation_changes_nothing() -> None:
    seed_listing(pipeline_storage(), 5007, photos=1)
    job = listing_start_processing(listing_identity_id=5007)
    job.refresh_from_db()
    before = (job.status, job.completed_at, job.callback_body, job.events.count())
    consolidate_processing.apply(args=[job.pk])
    job.refresh_from_db()
    assert (job.status, job.completed_at, job.callback_body, job.events.count()) == before


def test_callbacks_are_delivered_signed_with_retries_and_logged(settings) -> None:
    receiver = CallbackReceiver().start()
    try:
        receiver.plan(PlannedResponse(status=503), PlannedResponse(status=500))
        settings.CALLBACK_URL = receiver.url
        settings.CALLBACK_RETRY_INTERVAL_SECONDS = 0
        seed_listing(pipeline_storage(), 5008, photos=1)
        job = listing_start_processing(listing_identity_id=5008)
        job.refresh_from_db()
        deliveries = list(CallbackDelivery.objects.filter(job_id=job.pk).order_by("attempt"))
        assert [(d.attempt, d.response_status, d.succeeded) for d in deliveries] == [
            (1, 503, False),
            (2, 500, False),
            (3, 200, True),
        ]
        assert len(receiver.received) == 3
        last = receiver.received[-1]
        assert verify_signature(last.body, settings.CALLBACK_SECRET, last.headers[SIGNATURE_HEADER])
        assert last.body.decode() == job.callback_body == deliveries[-1].request_body
        assert events(job.pk, "callback_delivery") == ["succeeded"]
    finally:
        receiver.stop()


def test_parts_and_parallel_results_mirror_the_state_machine() -> None:
    validation = {
        "imageAssets": [{"key": f"k{i}"} for i in range(5)],
        "videoAssets": [{"key": "v1"}, {"key": "v2"}],
        "hasVideos": True,
    }
    assert plan_parts(validation, 2) == [
        "thumbnails:0",
        "thumbnails:1",
        "thumbnails:2",
        "video_thumbnails:0",
        "video_thumbnails:1",
        "video_transcode:0",
        "video_transcode:1",
    ]

    def chunk(*keys):
        return {
            "body": {
                "status": "SUCCESS",
                "generatedAssets": [{"key": k} for k in keys],
                "errors": [],
            }
        }

    merged = merge_parallel_results(
        validation,
        {
            "thumbnails:1": chunk("b"),
            "thumbnails:0": chunk("a"),
            "video_thumbnails:0": chunk("p1"),
            "video_thumbnails:1": chunk("p2"),
            "video_transcode:1": chunk("t2"),
            "video_transcode:0": chunk("t1"),
        },
    )
    assert [g["key"] for g in merged[0]["body"]["generatedAssets"]] == ["a", "b"]
    assert [g["key"] for g in merged[1]["body"]["generatedAssets"]] == ["p1", "p2"]
    # the transcodes as the Map gives them: one result per video, in the videos' order
    assert merged[2] == [chunk("t1"), chunk("t2")]
    no_videos = merge_parallel_results({"hasVideos": False}, {})
    assert no_videos[1:] == [
        {"status": "no_videos_to_thumbnail"},
        {"status": "no_videos_to_process"},
    ]
    assert MediaProcessingJob.objects.count() == 0
