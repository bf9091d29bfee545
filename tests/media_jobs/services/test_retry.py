"""Operator actions: retry plan, retry and dispatch, mark failed, reprocess."""

from __future__ import annotations

from typing import Any

import pytest

from media_jobs.exceptions import ApplicationError, ConflictError, JobStateError, NotFoundError
from media_jobs.models import AssetStatus, JobProvider, JobStatus, MediaAsset, MediaJobEvent
from media_jobs.selectors.dispatch import job_asset_ids, workflow_input
from media_jobs.services import queueing
from media_jobs.services.dispatch import listing_start_processing
from media_jobs.services.failures import job_mark_failed
from media_jobs.services.retry import (
    assets_reprocess,
    job_retry_and_dispatch,
    retry_plan,
)
from tests.factories import AssetFactory, JobFactory

pytestmark = pytest.mark.django_db

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(autouse=True)
def no_broker(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    settings.MEDIA_PIPELINE_ENGINE = "celery"
    monkeypatch.setattr(queueing, "enqueue", lambda name, *args, **kw: None)


def test_retry_of_a_processing_job_takes_the_assets_not_processed() -> None:
    done = AssetFactory(listing_identity_id=901, status=AssetStatus.PENDING_UPLOAD)
    failed = AssetFactory(listing_identity_id=901, status=AssetStatus.PENDING_UPLOAD)
    old = listing_start_processing(listing_identity_id=901, traceparent=TRACE)
    MediaAsset.objects.filter(pk=done.pk).update(status=AssetStatus.PROCESSED)
    MediaAsset.objects.filter(pk=failed.pk).update(status=AssetStatus.FAILED)
    old.__class__.objects.filter(pk=old.pk).update(status=JobStatus.PARTIAL_SUCCESS, retry_count=1)
    old.refresh_from_db()

    plan = retry_plan(job=old)
    assert (plan.allowed, plan.kind, plan.new_retry_count, plan.asset_ids) == (
        True,
        "processing",
        2,
        [failed.pk],
    )
    assert "1 assets of listing 901" in plan.summary

    new = job_retry_and_dispatch(job=old, actor="alice")
    assert new.pk != old.pk and new.retry_count == 2 and new.provider == JobProvider.STEP_FUNCTIONS
    assert job_asset_ids(job=new) == [failed.pk]
    retried = MediaJobEvent.objects.get(job_id=old.pk, step="retry")
    assert retried.kind == "retried" and retried.detail["message"] == f"retried as #{new.pk}"
    assert retried.detail["actor"] == "alice"
    assert MediaJobEvent.objects.get(job_id=new.pk, step="retry").detail["retryOf"] == old.pk
    # Same trace, a new span.
    trace = workflow_input(job=new)["traceparent"]
    assert trace.split("-")[1] == TRACE.split("-")[1] and trace != TRACE
    old.refresh_from_db()
    assert old.status == JobStatus.PARTIAL_SUCCESS  # the old job stays as history


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (
            "running",
            "it is RUNNING; only a finished job can be retried (mark it failed first if it "
            "is stuck)",
        ),
        (
            "all_processed",
            "every asset of the listing is already PROCESSED; reprocess chosen assets instead "
            "to redo them",
        ),
        (
            "other_active",
            "job #{other} is still running for this listing; wait for it or mark it failed",
        ),
    ],
)
def test_retry_plan_says_why_it_cannot_run(setup: str, reason: str) -> None:
    job = JobFactory(
        listing_identity_id=902,
        status=JobStatus.RUNNING if setup == "running" else JobStatus.FAILED,
    )
    AssetFactory(
        listing_identity_id=902,
        status=AssetStatus.PROCESSED if setup == "all_processed" else AssetStatus.FAILED,
    )
    other = JobFactory(listing_identity_id=902, status=JobStatus.PENDING)
    if setup != "other_active":
        other.delete()
    reason = reason.format(other=other.pk)
    plan = retry_plan(job=job)
    assert (plan.allowed, plan.blocked_reason) == (False, reason)
    with pytest.raises(JobStateError) as refused:
        job_retry_and_dispatch(job=job)
    assert str(refused.value) == f"job #{job.pk} cannot be retried: {reason}"


@pytest.mark.parametrize(
    "other",
    [
        {"listing_identity_id": 912, "status": JobStatus.RUNNING},  # another listing's
        {"provider": JobProvider.STEP_FUNCTIONS_FINALIZATION, "status": JobStatus.RUNNING},
        {"status": JobStatus.SUCCEEDED},  # finished
    ],
    ids=["other-listing", "finalization", "finished"],
)
def test_only_an_active_processing_job_of_the_listing_blocks_a_retry(
    other: dict[str, Any],
) -> None:
    failed = AssetFactory(listing_identity_id=911, status=AssetStatus.FAILED)
    job = JobFactory(listing_identity_id=911, status=JobStatus.FAILED)
    JobFactory(**{"listing_identity_id": 911, **other})
    plan = retry_plan(job=job)
    assert (plan.allowed, plan.blocked_reason, plan.asset_ids) == (True, "", [failed.pk])


def test_retry_of_a_finalization_job_zips_again() -> None:
    job = JobFactory(
        listing_identity_id=903,
        status=JobStatus.FAILED,
        provider=JobProvider.STEP_FUNCTIONS_FINALIZATION,
    )
    asset = AssetFactory(listing_identity_id=903, status=AssetStatus.PROCESSING)
    plan = retry_plan(job=job)
    assert not plan.allowed and "not PROCESSED" in plan.blocked_reason
    MediaAsset.objects.filter(pk=asset.pk).update(
        status=AssetStatus.PROCESSED, s3_key_processed="903/p/a.jpg"
    )
    plan = retry_plan(job=job)
    assert (plan.allowed, plan.kind, plan.asset_ids) == (True, "finalization", [asset.pk])
    new = job_retry_and_dispatch(job=job, actor="bob")
    assert (
        new.provider == JobProvider.STEP_FUNCTIONS_FINALIZATION and new.status == JobStatus.RUNNING
    )
    assert new.retry_count == 1


def test_mark_failed_fails_the_job_and_its_processing_assets() -> None:
    asset = AssetFactory(listing_identity_id=904, status=AssetStatus.PENDING_UPLOAD)
    job = listing_start_processing(listing_identity_id=904)
    other_job_asset = AssetFactory(listing_identity_id=904, status=AssetStatus.PROCESSING)
    failed = job_mark_failed(job=job, reason="worker lost, nothing is coming", actor="carol")
    assert failed.status == JobStatus.FAILED and failed.completed_at is not None
    assert failed.last_error == "code=MARKED_FAILED | worker lost, nothing is coming"
    asset.refresh_from_db()
    other_job_asset.refresh_from_db()
    assert asset.status == AssetStatus.FAILED and asset.metadata["errorCode"] == "MARKED_FAILED"
    assert other_job_asset.status == AssetStatus.PROCESSING
    # its own figures: it processed none of the one asset it took
    assert failed.payload == {"assetsTotal": 1, "assetsProcessed": 0, "assetsFailed": 1}
    event = MediaJobEvent.objects.get(job_id=job.pk, step="mark_failed")
    assert event.detail == {
        "code": "MARKED_FAILED",
        "reason": "worker lost, nothing is coming",
        "actor": "carol",
        "assetsFailed": 1,
    }
    with pytest.raises(JobStateError, match="already FAILED"):
        job_mark_failed(job=failed, reason="again")
    with pytest.raises(ApplicationError, match="reason is empty"):
        job_mark_failed(job=JobFactory(status=JobStatus.RUNNING), reason="  ")


def test_reprocess_exact_assets_as_a_new_job() -> None:
    first = AssetFactory(listing_identity_id=905, status=AssetStatus.PROCESSED)
    second = AssetFactory(listing_identity_id=905, status=AssetStatus.FAILED)
    AssetFactory(listing_identity_id=905, status=AssetStatus.FAILED)
    job = assets_reprocess(asset_ids=[second.pk, first.pk], actor="dave")
    assert job_asset_ids(job=job) == [first.pk, second.pk]
    assert MediaJobEvent.objects.get(job_id=job.pk, step="reprocess").detail["actor"] == "dave"
    with pytest.raises(ConflictError, match=f"job #{job.pk} is still running"):
        assets_reprocess(asset_ids=[first.pk])


def test_reprocess_refuses_mixed_or_unknown_assets() -> None:
    a = AssetFactory(listing_identity_id=906)
    b = AssetFactory(listing_identity_id=907)
    with pytest.raises(ApplicationError, match="one listing at a time"):
        assets_reprocess(asset_ids=[a.pk, b.pk])
    with pytest.raises(NotFoundError):
        assets_reprocess(asset_ids=[a.pk, 99_999_999])
    with pytest.raises(ApplicationError):
        assets_reprocess(asset_ids=[])


def test_a_finalization_retry_of_a_listing_without_assets_says_so() -> None:
    job = JobFactory(
        listing_identity_id=904,
        status=JobStatus.FAILED,
        provider=JobProvider.STEP_FUNCTIONS_FINALIZATION,
    )
    plan = retry_plan(job=job)
    assert (plan.allowed, plan.blocked_reason, plan.assets) == (
        False,
        "the listing has no assets",
        [],
    )
    assert plan.summary == f"job #{job.pk} cannot be retried: the listing has no assets"


def test_a_blocked_finalization_retry_still_lists_the_listing_assets() -> None:
    """The admin shows which assets keep the ZIP from being made again."""
    job = JobFactory(
        listing_identity_id=905,
        status=JobStatus.FAILED,
        provider=JobProvider.STEP_FUNCTIONS_FINALIZATION,
    )
    stuck = AssetFactory(
        listing_identity_id=905, status=AssetStatus.FAILED, sequence=1, s3_key_raw=None
    )
    plan = retry_plan(job=job)
    assert (plan.allowed, plan.blocked_reason) == (
        False,
        "1 assets of the listing are not PROCESSED with raw and processed keys; retry or "
        "reprocess them first",
    )
    assert plan.asset_ids == [stuck.pk]
    assert plan.assets[0].raw_key == ""  # never uploaded


def test_a_processing_retry_leaves_out_assets_never_uploaded() -> None:
    """An asset with an empty raw key has nothing to process: retrying it cannot work."""
    uploaded = AssetFactory(listing_identity_id=906, status=AssetStatus.FAILED, sequence=1)
    AssetFactory(listing_identity_id=906, status=AssetStatus.FAILED, sequence=2, s3_key_raw="")
    job = JobFactory(listing_identity_id=906, status=JobStatus.FAILED)
    plan = retry_plan(job=job)
    assert plan.allowed and plan.asset_ids == [uploaded.pk]


def test_a_retry_blocked_by_a_running_job_still_lists_the_assets_it_would_take() -> None:
    failed = AssetFactory(listing_identity_id=907, status=AssetStatus.FAILED)
    job = JobFactory(listing_identity_id=907, status=JobStatus.FAILED)
    running = JobFactory(listing_identity_id=907, status=JobStatus.RUNNING)
    plan = retry_plan(job=job)
    assert plan.allowed is False and plan.asset_ids == [failed.pk]
    assert plan.summary == (
        f"job #{job.pk} cannot be retried: job #{running.pk} is still running for this "
        "listing; wait for it or mark it failed"
    )
    assert plan.blocked_reason == (
        f"job #{running.pk} is still running for this listing; wait for it or mark it failed"
    )


def test_a_retry_plan_lists_its_assets_by_type_then_sequence() -> None:
    """The admin's confirm page lists what the retry takes as the listing shows it: by
    type, then by the asset's position in its gallery (not by when the row was made)."""
    video = AssetFactory(
        listing_identity_id=908,
        status=AssetStatus.FAILED,
        asset_type="VIDEO_HORIZONTAL",
        sequence=1,
        s3_key_raw="908/raw/video/horizontal/tour.mp4",
    )
    third = AssetFactory(listing_identity_id=908, status=AssetStatus.FAILED, sequence=3)
    first = AssetFactory(listing_identity_id=908, status=AssetStatus.FAILED, sequence=1)
    second = AssetFactory(listing_identity_id=908, status=AssetStatus.PENDING_UPLOAD, sequence=2)
    job = JobFactory(listing_identity_id=908, status=JobStatus.FAILED)
    plan = retry_plan(job=job)
    assert plan.allowed is True
    assert [(a.id, a.asset_type, a.sequence, a.status) for a in plan.assets] == [
        (first.pk, "PHOTO_HORIZONTAL", 1, "FAILED"),
        (second.pk, "PHOTO_HORIZONTAL", 2, "PENDING_UPLOAD"),
        (third.pk, "PHOTO_HORIZONTAL", 3, "FAILED"),
        (video.pk, "VIDEO_HORIZONTAL", 1, "FAILED"),
    ]
    assert plan.assets[3].raw_key == "908/raw/video/horizontal/tour.mp4"


def test_a_finalization_plan_lists_the_listing_assets_by_type_then_sequence() -> None:
    job = JobFactory(
        listing_identity_id=913,
        status=JobStatus.FAILED,
        provider=JobProvider.STEP_FUNCTIONS_FINALIZATION,
    )
    video = AssetFactory(
        listing_identity_id=913,
        status=AssetStatus.FAILED,
        asset_type="VIDEO_HORIZONTAL",
        sequence=1,
    )
    second = AssetFactory(listing_identity_id=913, status=AssetStatus.FAILED, sequence=2)
    first = AssetFactory(listing_identity_id=913, status=AssetStatus.FAILED, sequence=1)
    plan = retry_plan(job=job)
    assert [(a.asset_type, a.sequence) for a in plan.assets] == [
        ("PHOTO_HORIZONTAL", 1),
        ("PHOTO_HORIZONTAL", 2),
        ("VIDEO_HORIZONTAL", 1),
    ]
    assert plan.asset_ids == [first.pk, second.pk, video.pk]
