"""The broker and the workers failing mid-job: a private Redis restarted without
persistence, a private RabbitMQ node restarted, kill -9 of a pool process and of a whole
worker - on Redis and on RabbitMQ, with the time each takes to hand a killed worker's part
to another worker."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import pytest

from media_jobs.models import EventKind, JobStatus, MediaJobEvent
from media_jobs.services.dispatch import listing_start_processing
from media_jobs.storage import pipeline_storage
from tests.faults.infra import (
    Stopwatch,
    assert_outputs_exact,
    parts_done,
    report,
    wait_parts,
    wait_terminal,
    watchdog_notes,
)
from tests.fixtures.faults import FAULT_ENV
from tests.fixtures.worker import wait_until
from tests.workers.listing import seed_listing

pytestmark = [pytest.mark.fault, pytest.mark.worker, pytest.mark.slow]

# One photo per part, photos large enough that a part takes a noticeable time.
ONE_PHOTO_PARTS = {**FAULT_ENV, "PIPELINE_THUMBNAIL_CHUNK_SIZE": "1"}
PHOTO_SIZE = (2000, 1500)


def seed(listing_identity_id: int, photos: int = 10):
    return seed_listing(
        pipeline_storage(), listing_identity_id, photos=photos, photo_size=PHOTO_SIZE
    )


def running_parts() -> list[dict]:
    """Open part attempts (started, not ended): part, worker pid, event id."""
    found = {}
    for row in MediaJobEvent.objects.order_by("id").values(
        "id", "kind", "step", "detail__part", "detail__worker"
    ):
        if row["step"] not in ("thumbnails", "video_thumbnails", "video_transcode"):
            continue
        if row["kind"] == EventKind.STARTED:
            found[row["detail__part"]] = row
        else:
            found.pop(row["detail__part"], None)
    return list(found.values())


def kill_and_time_restart(kill: Callable[[], None], lost: dict) -> float:
    """Kill, then seconds until the ``lost`` part (an open attempt) starts again."""
    kill()
    killed = Stopwatch()
    wait_until(
        lambda: MediaJobEvent.objects.filter(
            kind=EventKind.STARTED, detail__part=lost["detail__part"], id__gt=lost["id"]
        ).exists(),
        timeout=120,
        interval=0.05,
        what=f"{lost['detail__part']} to start again after the kill",
    )
    return killed()


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_broker_restarted_mid_job(
    broker, request, celery_worker, celery_beat, moto_server, s3_bucket
) -> None:
    """Redis restarted without persistence loses every queued and unacknowledged part:
    the watchdog queues them again. RabbitMQ (quorum queues, what docs/workers.md
    recommends for a cluster) keeps them across a restart."""
    listing_identity_id = 6201 if broker == "redis" else 6202
    listing = seed(listing_identity_id, photos=12)
    server = request.getfixturevalue(f"private_{broker}")
    celery_worker.use_broker(server.url, queue_type="quorum" if broker == "rabbitmq" else "classic")
    celery_worker.start(concurrency=1, extra_env=ONE_PHOTO_PARTS)
    celery_beat.start(extra_env=FAULT_ENV)
    try:
        job = listing_start_processing(listing_identity_id=listing_identity_id)
        wait_parts(job.pk, 2)
        down = Stopwatch()
        server.restart()
        downtime = down()
        restarted = Stopwatch()
        done = wait_terminal(job.pk)
        recovered = restarted()
        assert done.status == JobStatus.SUCCEEDED, done.last_error
        assert_outputs_exact(moto_server, s3_bucket, listing)
        notes = watchdog_notes(job.pk)
        if broker == "redis":
            assert notes, "only the watchdog can bring back parts a Redis restart lost"
        report(
            f"{broker} restarted mid-job",
            broker_down=downtime,
            recovered_after_restart=recovered,
            watchdog=notes,
        )
    finally:
        # Before the private server goes: a worker cut off from its broker stops slowly.
        celery_beat.stop()
        celery_worker.stop()


PHOTOS_TO_HAND_OVER = 6


def part_on(worker) -> dict | None:
    """An open part attempt running in one of ``worker``'s pool processes, or None."""
    pool = worker.pool_pids()
    for part in running_parts():
        if int(str(part["detail__worker"]).rsplit(":", 1)[1]) in pool:
            return part
    return None


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_killed_worker_hands_its_part_to_another(
    broker, request, celery_worker, celery_beat, s3_proxy, moto_server, s3_bucket
) -> None:
    """Two workers; the one that reaches S3 through a slow proxy is SIGKILLed (with its
    pool) in the middle of a part, while the other one is idle. RabbitMQ hands the part to
    the idle worker as soon as the dead connection closes. Redis would keep it until the
    visibility timeout (here 1 h, as in production), so the watchdog hands it over once
    the part's heartbeat is older than WATCHDOG_STALL_SECONDS; the part the dead worker had
    prefetched follows when the job has been idle that long."""
    listing_identity_id = 6203 if broker == "redis" else 6204
    listing = seed(listing_identity_id, photos=PHOTOS_TO_HAND_OVER)
    if broker == "rabbitmq":
        celery_worker.use_broker(request.getfixturevalue("private_rabbitmq").url)
    else:
        celery_worker.visibility_timeout = 3600
    # The victim reaches S3 through a proxy that delays every request by 4 s: its first
    # part outlasts the survivor's work on all the others.
    s3_proxy.set_faults(delay=1.0, delay_s=4.0)
    victim, survivor = celery_worker, celery_worker.sibling()
    victim.start(concurrency=1, extra_env={**ONE_PHOTO_PARTS, "AWS_S3_ENDPOINT_URL": s3_proxy.url})
    survivor.start(concurrency=1, extra_env=ONE_PHOTO_PARTS)
    celery_beat.start(extra_env=FAULT_ENV)
    try:
        job = listing_start_processing(listing_identity_id=listing_identity_id)
        # The survivor drains the queue; the victim is still on its first (slow) part.
        lost = wait_until(
            lambda: parts_done(job.pk) >= PHOTOS_TO_HAND_OVER - 1 and part_on(victim),
            timeout=120,
            what="the survivor idle while the victim runs a part",
        )
        killed = Stopwatch()
        handed_over = kill_and_time_restart(victim.kill, lost)
        if broker == "rabbitmq":  # the broker itself handed it over, not the watchdog
            assert not watchdog_notes(job.pk)
        done = wait_terminal(job.pk)
        assert done.status == JobStatus.SUCCEEDED, done.last_error
        assert_outputs_exact(moto_server, s3_bucket, listing)
        report(
            f"kill -9 of a whole worker ({broker})",
            part_restarted_after=handed_over,
            job_done_after=killed(),
            watchdog=watchdog_notes(job.pk),
        )
    finally:
        celery_beat.stop()
        survivor.stop()


def test_killed_pool_process_part_is_redelivered(
    celery_worker, celery_beat, s3_proxy, moto_server, s3_bucket
) -> None:
    listing = seed(6205, photos=6)
    s3_proxy.set_faults(delay=1.0, delay_s=0.5)  # parts of a few seconds
    celery_worker.start(
        concurrency=2, extra_env={**ONE_PHOTO_PARTS, "AWS_S3_ENDPOINT_URL": s3_proxy.url}
    )
    celery_beat.start(extra_env=FAULT_ENV)

    job = listing_start_processing(listing_identity_id=6205)
    lost = wait_until(lambda: part_on(celery_worker), timeout=60, what="a running part")
    pid = int(str(lost["detail__worker"]).rsplit(":", 1)[1])
    killed = Stopwatch()
    restarted = kill_and_time_restart(lambda: os.kill(pid, signal.SIGKILL), lost)
    done = wait_terminal(job.pk)
    assert done.status == JobStatus.SUCCEEDED, done.last_error
    assert_outputs_exact(moto_server, s3_bucket, listing)
    takeover = MediaJobEvent.objects.filter(
        job_id=job.pk, kind=EventKind.STARTED, detail__part=lost["detail__part"], id__gt=lost["id"]
    ).first()
    assert takeover.detail["lostAttempts"] == 1
    report(
        "kill -9 of a pool process (Redis)",
        part_restarted_after=restarted,
        job_done_after=killed(),
        watchdog=watchdog_notes(job.pk),
    )
