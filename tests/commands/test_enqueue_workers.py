"""``--enqueue`` and the commands that dispatch jobs, with a real Celery worker process on
Redis, MariaDB and the moto S3 server (tests/fixtures/worker.py)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from media_jobs.models import AssetStatus, JobProvider, JobStatus, MediaAsset, MediaProcessingJob
from media_jobs.pipeline import keys
from media_jobs.pipeline.thumbnails import SOURCE_ETAG_METADATA
from media_jobs.storage import pipeline_storage
from tests.factories import JobFactory
from tests.fixtures.worker import wait_until
from tests.workers.listing import seed_listing
from toqportal.celery import app

from .conftest import processed_photo, run_command
from .test_verify_storage import wait_for_next_second

pytestmark = [pytest.mark.worker, pytest.mark.slow]


@pytest.fixture(autouse=True)
def fresh_broker_pool(request: pytest.FixtureRequest) -> Iterator[None]:
    """The worker fixture points this process's Celery app at a new queue and Redis key
    prefix per test, but the app keeps the broker connection pool of the first test (with the
    first prefix): drop it so this test's messages reach this test's worker."""

    request.getfixturevalue("celery_worker")
    app._pool = None
    app.amqp._producer_pool = None
    yield
    app._pool = None
    app.amqp._producer_pool = None


LISTING = 7801


def derivatives_current(asset: MediaAsset) -> bool:
    storage = pipeline_storage()
    raw_etag = storage.head(asset.s3_key_raw).etag
    try:
        return all(
            storage.head(keys.derivative_key(asset.s3_key_raw, size)).metadata.get(
                SOURCE_ETAG_METADATA
            )
            == raw_etag
            for size in keys.IMAGE_SIZES
        )
    except Exception:  # noqa: BLE001 - not written yet
        return False


def test_backfill_enqueue_runs_the_batches_on_a_worker(celery_worker) -> None:
    storage = pipeline_storage()
    assets = [processed_photo(storage, LISTING, n) for n in range(1, 5)]
    celery_worker.start()

    run = run_command(
        "backfill_derivatives",
        "--listing",
        str(LISTING),
        "--enqueue",
        "--batch-size",
        "3",
        "--json",
    )

    assert run.code == 0, run.stderr
    assert (run.json["selected"], run.json["counters"], len(run.json["tasks"])) == (
        4,
        {"enqueued": 4},
        2,
    )
    assert run.json["done"] == 0  # the worker does the work

    def all_recorded() -> bool:
        rows = MediaAsset.objects.filter(pk__in=[a.pk for a in assets])
        return all(a.s3_key_processed for a in rows)

    wait_until(all_recorded, timeout=120, what="backfilled rows")
    for asset in MediaAsset.objects.filter(pk__in=[a.pk for a in assets]):
        assert derivatives_current(asset)
        assert asset.s3_key_processed == keys.derivative_key(asset.s3_key_raw, "large")
    assert "media_jobs.ops.run_batch" in celery_worker.log()


def test_requeue_enqueue_retries_and_the_new_job_runs(celery_worker) -> None:
    storage = pipeline_storage()
    listing = seed_listing(storage, LISTING, photos=2, status=AssetStatus.FAILED)
    old = JobFactory(
        listing_identity_id=LISTING,
        status=JobStatus.FAILED,
        completed_at=timezone.now(),
        last_error="code=RECONCILER_TIMEOUT | reconciler marked failed after 1h0m0s without callback",
    )
    celery_worker.start()

    run = run_command("requeue_jobs", "--error-code", "RECONCILER_TIMEOUT", "--enqueue", "--json")

    assert run.code == 0, run.stderr
    assert [i["ref"] for i in run.json["items"]] == [old.pk]

    def new_job_finished() -> MediaProcessingJob | None:
        job = MediaProcessingJob.objects.filter(listing_identity_id=LISTING, pk__gt=old.pk).first()
        return job if job is not None and job.is_terminal else None

    new = wait_until(new_job_finished, timeout=180, what="the retried job finished")
    assert (new.status, new.retry_count) == (JobStatus.SUCCEEDED, 1), new.last_error
    for asset in listing.photos:
        asset.refresh_from_db()
        assert asset.status == AssetStatus.PROCESSED
    # the old job stays as history; a second requeue finds it superseded
    again = run_command("requeue_jobs", "--error-code", "RECONCILER_TIMEOUT", "--json")
    assert again.json["selected"] == 0


def test_rebuild_zips_refreshes_a_stale_zip_through_a_worker(celery_worker) -> None:
    storage = pipeline_storage()
    listing = seed_listing(storage, LISTING, photos=2, status=AssetStatus.PROCESSED)
    for asset in listing.photos:
        asset.s3_key_processed = keys.derivative_key(asset.s3_key_raw, "large")
        asset.save()
        storage.write(asset.s3_key_processed, b"old large", content_type="image/jpeg")
    storage.write(keys.zip_key(LISTING), b"an old zip")
    JobFactory(
        listing_identity_id=LISTING,
        provider=JobProvider.STEP_FUNCTIONS_FINALIZATION,
        status=JobStatus.SUCCEEDED,
        completed_at=timezone.now() - timedelta(days=1),
    )
    wait_for_next_second()
    storage.write(listing.photos[0].s3_key_processed, b"new large", content_type="image/jpeg")
    stale_since = storage.head(keys.zip_key(LISTING)).last_modified
    celery_worker.start()

    run = run_command("rebuild_zips", "--json")

    assert run.code == 0, run.stderr
    assert run.json["done"] == 1
    job_id = run.json["items"][0]["data"]["job_id"]
    job = wait_until(
        lambda: MediaProcessingJob.objects.filter(
            pk=job_id, status__in=["SUCCEEDED", "FAILED"]
        ).first(),
        timeout=120,
        what="finalization finished",
    )
    assert job.status == JobStatus.SUCCEEDED, job.last_error
    assert storage.head(keys.zip_key(LISTING)).last_modified >= stale_since
    with storage.open_read(keys.zip_key(LISTING)) as stream:
        archive = zipfile.ZipFile(io.BytesIO(stream.read()))
    assert len(archive.namelist()) == 2
    assert run_command("rebuild_zips", "--json").json["skipped"] == 1  # current now


def test_reconcile_enqueue_runs_on_a_worker(celery_worker) -> None:
    stuck = JobFactory(
        listing_identity_id=LISTING,
        status=JobStatus.RUNNING,
        started_at=timezone.now() - timedelta(hours=3),
    )
    celery_worker.start()

    run = run_command("reconcile_stuck_jobs", "--timeout", "2h", "--enqueue", "--json")

    assert run.code == 0 and len(run.json["tasks"]) == 1
    failed = wait_until(
        lambda: MediaProcessingJob.objects.filter(pk=stuck.pk, status=JobStatus.FAILED).first(),
        timeout=60,
        what="the reconciler task",
    )
    assert "reconciler marked failed after 2h0m0s without callback" in failed.last_error
