"""What the infrastructure fault tests share: waiting for a job (the bound: 5 minutes after
the fault clears), checking that the bucket holds exactly the expected objects - no
derivative missing, none extra - and printing the time each fault took to recover from."""

from __future__ import annotations

import time

from media_jobs.models import (
    AssetStatus,
    EventKind,
    MediaAsset,
    MediaJobEvent,
    MediaProcessingJob,
)
from media_jobs.services.workflow import PART_STEPS
from tests.fixtures.faults import RECOVERY_TIMEOUT_S
from tests.fixtures.s3server import MotoServer
from tests.fixtures.worker import wait_until
from tests.workers.listing import SeededListing


def parts_done(job_id: int) -> int:
    return MediaJobEvent.objects.filter(
        job_id=job_id, step__in=PART_STEPS, kind=EventKind.SUCCEEDED
    ).count()


def wait_parts(job_id: int, count: int, *, timeout: float = 120) -> None:
    """Until ``count`` parts have a result; the job must still be running (else the fault
    would come too late to mean anything: make the listing bigger)."""
    wait_until(lambda: parts_done(job_id) >= count, timeout=timeout, what=f"{count} parts done")
    job = MediaProcessingJob.objects.get(pk=job_id)
    assert not job.is_terminal, "the job finished before the fault; give it more work"


def wait_terminal(job_id: int, *, timeout: float = RECOVERY_TIMEOUT_S) -> MediaProcessingJob:
    return wait_until(
        lambda: (job := MediaProcessingJob.objects.get(pk=job_id)).is_terminal and job,
        timeout=timeout,
        interval=0.2,
        what=f"job {job_id} to finish",
    )


def bucket_keys(moto_server: MotoServer, bucket: str) -> set[str]:
    s3 = moto_server.client("s3")
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.update(obj["Key"] for obj in page.get("Contents", []))
    return keys


def assert_outputs_exact(
    moto_server: MotoServer, bucket: str, listing: SeededListing, *extra: str
) -> None:
    """The bucket holds the raw objects, every derivative of the good assets and ``extra``
    - nothing missing, nothing more (no stray temporary or duplicate object) - and every
    asset is PROCESSED."""
    expected = {a.s3_key_raw for a in listing.assets} | set(listing.derivative_keys()) | set(extra)
    found = bucket_keys(moto_server, bucket)
    assert not expected - found, f"missing: {sorted(expected - found)[:10]}"
    assert not found - expected, f"extra: {sorted(found - expected)[:10]}"
    statuses = dict(
        MediaAsset.objects.filter(pk__in=[a.pk for a in listing.assets]).values_list("id", "status")
    )
    assert set(statuses.values()) == {AssetStatus.PROCESSED}, statuses


def watchdog_notes(job_id: int) -> list[str]:
    return list(
        MediaJobEvent.objects.filter(job_id=job_id, step="watchdog")
        .order_by("id")
        .values_list("detail__message", flat=True)
    )


def report(fault: str, **figures: object) -> None:
    """One line per fault in the test output (``-s`` or the captured stdout of a failure):
    the recovery figures docs/workers.md reports."""
    shown = ", ".join(
        f"{name}={value:.1f}s" if isinstance(value, float) else f"{name}={value}"
        for name, value in figures.items()
    )
    print(f"\n[fault] {fault}: {shown}", flush=True)


class Stopwatch:
    """Seconds since the fault cleared (or began)."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.started
