"""The watchdog leaves slow work alone: parts that run several times longer than the stall
threshold (storage answering slowly) keep their job alive through their heartbeats and are
never queued or run twice."""

from __future__ import annotations

import pytest

from media_jobs.models import EventKind, JobStatus, MediaJobEvent
from media_jobs.services.dispatch import listing_start_processing
from media_jobs.services.workflow import PART_STEPS
from media_jobs.storage import pipeline_storage
from tests.faults.infra import Stopwatch, assert_outputs_exact, report, wait_terminal
from tests.fixtures.faults import FAULT_ENV
from tests.workers.listing import seed_listing

pytestmark = [pytest.mark.fault, pytest.mark.worker, pytest.mark.slow]

STALL_S = 8


def test_slow_parts_are_not_run_twice(
    celery_worker, celery_beat, s3_proxy, moto_server, s3_bucket
) -> None:
    listing = seed_listing(pipeline_storage(), 6501, photos=6, videos=1)
    # Every storage request takes 2 s: a part takes far longer than the stall threshold.
    s3_proxy.set_faults(delay=1.0, delay_s=2.0)
    env = {
        **FAULT_ENV,
        "WATCHDOG_STALL_SECONDS": str(STALL_S),
        "PIPELINE_THUMBNAIL_CHUNK_SIZE": "3",
    }
    celery_worker.start(concurrency=2, extra_env={**env, "AWS_S3_ENDPOINT_URL": s3_proxy.url})
    celery_beat.start(extra_env=env)
    clock = Stopwatch()

    job = listing_start_processing(listing_identity_id=6501)
    done = wait_terminal(job.pk)
    assert done.status == JobStatus.SUCCEEDED, done.last_error
    assert_outputs_exact(moto_server, s3_bucket, listing)
    starts = list(
        MediaJobEvent.objects.filter(job_id=job.pk, step__in=PART_STEPS, kind=EventKind.STARTED)
        .order_by("id")
        .values_list("detail__part", "at")
    )
    ends = dict(
        MediaJobEvent.objects.filter(
            job_id=job.pk, step__in=PART_STEPS, kind=EventKind.SUCCEEDED
        ).values_list("detail__part", "at")
    )
    longest = max((ends[part] - at).total_seconds() for part, at in starts)
    assert longest > 1.5 * STALL_S, f"the parts were not slow enough ({longest:.1f}s)"
    assert sorted(part for part, _ in starts) == sorted(ends), "a part was started twice"
    assert not MediaJobEvent.objects.filter(job_id=job.pk, step="watchdog").exists()
    report(
        "slow storage (every request +2 s)",
        job=clock(),
        longest_part=longest,
        stall_threshold=float(STALL_S),
        parts_started_twice=0,
    )
