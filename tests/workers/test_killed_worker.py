"""A worker killed (SIGKILL) in the middle of a job: after a restart the job still ends
terminal with every derivative present, and what was done before the kill is not redone."""

from __future__ import annotations

import pytest

from media_jobs import sample_media
from media_jobs.models import (
    AssetStatus,
    AssetType,
    JobStatus,
    MediaAsset,
    MediaJobEvent,
    MediaProcessingJob,
)
from media_jobs.pipeline import keys
from media_jobs.services.dispatch import listing_start_processing
from media_jobs.storage import pipeline_storage
from tests.factories import AssetFactory
from tests.fixtures.worker import wait_until
from tests.workers.listing import source_etags

pytestmark = [pytest.mark.worker, pytest.mark.slow]

LISTING = 4201
PHOTOS = 40


def thumbnails_done(job_id: int) -> int:
    return MediaJobEvent.objects.filter(job_id=job_id, step="thumbnails", kind="succeeded").count()


def test_sigkilled_worker_job_resumes_after_restart(celery_worker) -> None:
    storage = pipeline_storage()
    photo = sample_media.jpeg_bytes(3000, 2000, seed=7)
    raw_keys = []
    for number in range(1, PHOTOS + 1):
        raw = keys.raw_key(
            LISTING, AssetType.PHOTO_HORIZONTAL, f"horizontal-{number:02d}", f"P{number}.jpg"
        )
        storage.write(raw, photo, content_type="image/jpeg")
        AssetFactory(
            listing_identity_id=LISTING,
            asset_type=AssetType.PHOTO_HORIZONTAL,
            sequence=number,
            status=AssetStatus.PENDING_UPLOAD,
            s3_key_raw=raw,
        )
        raw_keys.append(raw)
    derivatives = [keys.derivative_key(raw, size) for raw in raw_keys for size in keys.IMAGE_SIZES]

    # One photo per task, and a visibility timeout of a few seconds so the killed worker's
    # unacknowledged tasks come back quickly.
    celery_worker.visibility_timeout = 4
    celery_worker.start(concurrency=2, extra_env={"PIPELINE_THUMBNAIL_CHUNK_SIZE": "1"})
    job = listing_start_processing(listing_identity_id=LISTING)
    wait_until(lambda: thumbnails_done(job.pk) >= 4, timeout=120, what="a few parts done")
    celery_worker.kill()

    killed_at = MediaProcessingJob.objects.get(pk=job.pk)
    assert killed_at.status == JobStatus.RUNNING, "the job finished before the kill; make it longer"
    written_before = {
        key: info.last_modified for key in derivatives if (info := _head(storage, key)) is not None
    }
    assert 0 < len(written_before) < len(derivatives)

    celery_worker.start(concurrency=2, extra_env={"PIPELINE_THUMBNAIL_CHUNK_SIZE": "1"})
    done = wait_until(
        lambda: (j := MediaProcessingJob.objects.get(pk=job.pk)).is_terminal and j,
        timeout=240,
        what="the job to finish after the restart",
    )
    assert done.status == JobStatus.SUCCEEDED, done.last_error
    etags = source_etags(storage, derivatives)
    assert all(etags.values()), [k for k, v in etags.items() if not v][:5]
    statuses = set(
        MediaAsset.objects.filter(listing_identity_id=LISTING).values_list("status", flat=True)
    )
    assert statuses == {AssetStatus.PROCESSED}
    # Resume, not redo: photos whose four derivatives were all written before the kill are
    # not rendered again (a photo interrupted half-way is redone whole).
    complete = [
        raw
        for raw in raw_keys
        if all(keys.derivative_key(raw, size) in written_before for size in keys.IMAGE_SIZES)
    ]
    assert complete
    rewritten = [
        key
        for raw in complete
        for key in (keys.derivative_key(raw, size) for size in keys.IMAGE_SIZES)
        if _head(storage, key).last_modified != written_before[key]
    ]
    assert rewritten == []


def _head(storage, key):
    try:
        return storage.head(key)
    except Exception:  # noqa: BLE001
        return None
