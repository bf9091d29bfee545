"""A listing of hostile uploads end to end: a real Celery worker on Redis, MariaDB, the S3
test server. Asserts the job's and every asset's final state with its precise code, that
exactly the derivatives of the good photos exist, the worker processes' peak RSS, and the
CPU time of every photo (from the worker's structured log)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from media_jobs import sample_media
from media_jobs.models import AssetStatus, AssetType, JobStatus, MediaAsset, MediaProcessingJob
from media_jobs.pipeline.decode_budget import DEFAULT_CPU_SECONDS
from media_jobs.pipeline.keys import IMAGE_SIZES, derivative_key
from media_jobs.services.dispatch import listing_start_processing
from media_jobs.storage import pipeline_storage
from tests.factories import AssetFactory
from tests.fixtures import hostile
from tests.fixtures.worker import CeleryWorker, wait_until

pytestmark = [pytest.mark.fault, pytest.mark.worker, pytest.mark.slow]

LISTING = 6606
MIB = 1024 * 1024
# The goal of the memory budget: a worker process stays under this, whatever it decodes.
WORKER_PEAK_RSS_BYTES = 512 * MIB
PHOTO = AssetType.PHOTO_HORIZONTAL
VIDEO = AssetType.VIDEO_HORIZONTAL


@dataclass(frozen=True)
class Upload:
    name: str  # the raw file name (the extension may lie)
    asset_type: str
    data: bytes | None  # None: never uploaded (the key itself is refused)
    code: str | None  # None: PROCESSED


def _png_named_jpg() -> bytes:
    out = io.BytesIO()
    sample_media.with_marker(sample_media.photographic(640, 480)).save(out, "PNG")
    return out.getvalue()


def uploads() -> list[Upload]:
    return [
        Upload("camera-45mp.jpg", PHOTO, hostile.camera_jpeg(8256, 5504, orientation=6), None),
        Upload("really-a-png.jpg", PHOTO, _png_named_jpg(), None),
        Upload("really-a-jpeg.heic", PHOTO, sample_media.jpeg_bytes(800, 600), None),
        Upload("gif-bomb-13000.gif", PHOTO, hostile.gif_bomb(13000, 13000), None),
        # about the largest WebP the default budget admits (libwebp holds ~16 B/px)
        Upload("webp-4500x3400.webp", PHOTO, hostile.webp_bomb(4500, 3400), None),
        Upload(
            "scans-30000.jpg",
            PHOTO,
            hostile.progressive_scan_bomb(2048, 2048, 30000),
            "TOO_MANY_SCANS",
        ),
        Upload(
            "png-bomb-13300.png", PHOTO, hostile.png_bomb(13300, 13300), "MEMORY_BUDGET_EXCEEDED"
        ),
        Upload("claims-13000.png", PHOTO, hostile.png_claiming(13000, 13000), "CORRUPT_IMAGE"),
        Upload("cut.jpg", PHOTO, sample_media.truncated_jpeg_bytes(), "CORRUPT_IMAGE"),
        Upload("notes.jpg", PHOTO, b"just text, named like a photo\n" * 20, "UNSUPPORTED_FORMAT"),
        Upload("esc\x1b[31m.jpg", PHOTO, None, "INVALID_KEY"),
        Upload(
            "tour.mp4",
            VIDEO,
            hostile.hls_playlist(["http://127.0.0.1:9/segment.ts"]),
            "UNSUPPORTED_FORMAT",
        ),
    ]


def _seed(items: list[Upload]) -> dict[str, Upload]:
    storage = pipeline_storage()
    by_key: dict[str, Upload] = {}
    for number, item in enumerate(items, start=1):
        segment = "video/horizontal" if item.asset_type == VIDEO else "photo/horizontal"
        key = f"{LISTING}/raw/{segment}/horizontal-{number:02d}-{item.name}"
        if item.data is not None:
            storage.write(key, item.data)
        AssetFactory(
            listing_identity_id=LISTING,
            asset_type=item.asset_type,
            sequence=number,
            status=AssetStatus.PENDING_UPLOAD,
            s3_key_raw=key,
        )
        by_key[key] = item
    return by_key


def _peak_rss(worker: CeleryWorker) -> dict[int, int]:
    """VmHWM of the worker and each of its pool processes (bytes), read while they live."""
    assert worker.proc is not None
    main = psutil.Process(worker.proc.pid)
    peaks = {}
    for process in [main, *main.children(recursive=True)]:
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks[process.pid] = int(line.split()[1]) * 1024
    return peaks


def _photo_cpu_ms(worker: CeleryWorker) -> dict[str, float]:
    """source_key -> cpu_ms of every thumbnails log record (JSON lines)."""
    found = {}
    for line in worker.log().splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        if record.get("step") == "thumbnails" and "cpu_ms" in record:
            found[record["source_key"]] = float(record["cpu_ms"])
    return found


def test_a_listing_of_hostile_uploads_on_a_real_worker(celery_worker: CeleryWorker) -> None:
    seeded = _seed(uploads())
    celery_worker.start(concurrency=1)

    job = listing_start_processing(listing_identity_id=LISTING)
    done = wait_until(
        lambda: (j := MediaProcessingJob.objects.get(pk=job.pk)).is_terminal and j,
        timeout=300,
        what="the hostile listing's job",
    )
    peaks = _peak_rss(celery_worker)
    cpu_ms = _photo_cpu_ms(celery_worker)

    assert done.status == JobStatus.PARTIAL_SUCCESS, done.last_error
    assert "code=DERIVATIVE_ERRORS_DETECTED" in done.last_error
    expected_derivatives = set()
    for asset in MediaAsset.objects.filter(listing_identity_id=LISTING):
        item = seeded[asset.s3_key_raw]
        if item.code is None:
            assert asset.status == AssetStatus.PROCESSED, (item.name, asset.metadata)
            assert asset.s3_key_processed == derivative_key(asset.s3_key_raw, "large")
            expected_derivatives |= {derivative_key(asset.s3_key_raw, s) for s in IMAGE_SIZES}
        else:
            assert asset.status == AssetStatus.FAILED, (item.name, asset.metadata)
            assert asset.metadata["errorCode"] == item.code, (item.name, asset.metadata)
    written = {info.key for info in pipeline_storage().list(f"{LISTING}/processed/")}
    assert written == expected_derivatives  # none missing, none extra

    print(f"worker peak RSS (MiB) by process: { {p: v // MIB for p, v in peaks.items()} }")
    print(f"CPU ms by photo: {cpu_ms}")
    assert max(peaks.values()) <= WORKER_PEAK_RSS_BYTES, peaks
    # every photo validation let through was rendered (or refused) within the CPU budget
    rendered = {
        key
        for key, item in seeded.items()
        if item.asset_type == PHOTO and item.code not in ("UNSUPPORTED_FORMAT", "INVALID_KEY")
    }
    assert set(cpu_ms) == rendered, (sorted(rendered), cpu_ms)
    assert max(cpu_ms.values()) <= DEFAULT_CPU_SECONDS * 1000, cpu_ms
