"""Object storage misbehaving under a real worker: the S3 test server behind a proxy that
drops connections, answers 503 SlowDown, delays requests, or is down for a while."""

from __future__ import annotations

import time

import pytest

from media_jobs.models import JobStatus
from media_jobs.pipeline import keys
from media_jobs.services.dispatch import listing_start_finalization, listing_start_processing
from media_jobs.storage import pipeline_storage
from tests.faults.infra import (
    Stopwatch,
    assert_outputs_exact,
    report,
    wait_parts,
    wait_terminal,
)
from tests.fixtures.faults import FAULT_ENV
from tests.workers.listing import seed_listing

pytestmark = [pytest.mark.fault, pytest.mark.worker, pytest.mark.slow]


def test_flaky_storage_drops_errors_and_delays_are_absorbed(
    celery_worker, celery_beat, s3_proxy, moto_server, s3_bucket
) -> None:
    listing = seed_listing(pipeline_storage(), 6101, photos=6, videos=1)
    # 40 % of the pipeline's requests misbehave: 15 % dropped, 15 % 503, 10 % delayed.
    s3_proxy.set_faults(drop=0.15, error=0.15, delay=0.10, delay_s=0.5)
    env = {**FAULT_ENV, "AWS_S3_ENDPOINT_URL": s3_proxy.url, "PIPELINE_THUMBNAIL_CHUNK_SIZE": "2"}
    celery_worker.start(extra_env=env)
    celery_beat.start(extra_env=FAULT_ENV)
    clock = Stopwatch()

    job = listing_start_processing(listing_identity_id=6101)
    done = wait_terminal(job.pk)
    assert done.status == JobStatus.SUCCEEDED, done.last_error
    assert_outputs_exact(moto_server, s3_bucket, listing)
    processing_s = clock()

    final = listing_start_finalization(listing_identity_id=6101)
    zipped = wait_terminal(final.pk)
    assert zipped.status == JobStatus.SUCCEEDED, zipped.last_error
    assert_outputs_exact(moto_server, s3_bucket, listing, keys.zip_key(6101))
    assert s3_proxy.counts["drop"] and s3_proxy.counts["error"] and s3_proxy.counts["delay"]
    report(
        "S3 40% drop/503/delay",
        processing=processing_s,
        processing_and_zip=clock(),
        requests=sum(s3_proxy.counts.values()),
        dropped=s3_proxy.counts["drop"],
        errors_503=s3_proxy.counts["error"],
        delayed=s3_proxy.counts["delay"],
    )


def test_storage_outage_mid_job_is_ridden_out_by_the_step_retries(
    celery_worker, celery_beat, s3_proxy, moto_server, s3_bucket
) -> None:
    listing = seed_listing(pipeline_storage(), 6102, photos=8, photo_size=(1600, 1200))
    # Production retry intervals (docs/contract.md §4: 5 s, then 10 s) against an 8-second outage.
    env = {
        **FAULT_ENV,
        "AWS_S3_ENDPOINT_URL": s3_proxy.url,
        "PIPELINE_THUMBNAIL_CHUNK_SIZE": "1",
        "PIPELINE_RETRY_DELAY_SCALE": "1",
    }
    celery_worker.start(concurrency=2, extra_env=env)
    celery_beat.start(extra_env=FAULT_ENV)

    job = listing_start_processing(listing_identity_id=6102)
    wait_parts(job.pk, 2)
    s3_proxy.outage(True)
    time.sleep(8)
    s3_proxy.outage(False)
    cleared = Stopwatch()
    done = wait_terminal(job.pk)
    assert done.status == JobStatus.SUCCEEDED, done.last_error
    assert_outputs_exact(moto_server, s3_bucket, listing)
    retried = done.events.filter(kind="retried").count()
    assert retried, "the outage should have made a step retry"
    report("S3 outage 8 s mid-job", recovered_after_clear=cleared(), step_retries=retried)
