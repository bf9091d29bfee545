"""Benchmark 5: pipeline scaling - 48 photos of 12 MP through the Celery engine on Redis.

One listing with 48 raw photos in the moto S3 server, assets in a MariaDB database of its
own; Celery workers (separate processes, concurrency 1 each, on a queue of their own) with
1 and then 2 worker processes. A run is one processing job started the way the API starts
it (``services.dispatch.listing_start_processing``); its wall time runs from the dispatch to
the job's terminal status in the database. Between runs the derivatives are deleted, so
every run does all the work (the step skips derivatives that are already current).

Per-photo worker time = the 1-worker wall time / photos (one worker with concurrency 1 is
busy from the first task to the last, so this includes every overhead of the engine), set
against benchmark 1's (a) on the same photo, measured in this run.

Targets: wall(2 workers) <= 0.6 x wall(1 worker); per-photo worker time <= 1.2 x (a).

    python -m bench.pipeline --photos 12 --runs 1 [--smoke]
"""

from __future__ import annotations

import io
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import (
    REDIS_URL,
    ROOT,
    BenchResult,
    Target,
    base_parser,
    bench_database,
    django_env,
    finish,
    load_average,
    migrate,
    ratio,
    recreate_database,
    result_path,
    setup_django,
)
from bench.services import moto_server, new_bucket, s3_env

DATABASE = bench_database("toq_bench_pipeline")
LISTING = 880001
DISTINCT_PHOTOS = 6  # generated once each, uploaded under several keys
TERMINAL = {"SUCCEEDED", "PARTIAL_SUCCESS", "FAILED"}


def raw_key(index: int) -> str:
    return f"{LISTING}/raw/photo/horizontal/horizontal-{index:02d}-IMG_{4000 + index}.jpg"


def start_workers(
    count: int, env: dict[str, str], queue: str, logs: Path
) -> list[subprocess.Popen]:
    celery = str(Path(sys.executable).with_name("celery"))
    workers = []
    for index in range(count):
        log = logs / f"worker-{count}-{index}.log"
        with log.open("wb") as out:
            workers.append(
                subprocess.Popen(
                    [
                        celery,
                        "-A",
                        "toqportal",
                        "worker",
                        "--concurrency",
                        "1",
                        "--pool",
                        "prefork",
                        "--queues",
                        queue,
                        "--hostname",
                        f"bench-{index}-{uuid.uuid4().hex[:6]}@%h",
                        "--without-gossip",
                        "--without-mingle",
                        "--without-heartbeat",
                        "--loglevel",
                        "WARNING",
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    _wait_ready(len(workers), queue)
    return workers


def _wait_ready(count: int, queue: str) -> None:
    """Ping until every worker answers (a job queued before a worker listens still runs,
    but then its start-up would count in the wall time)."""
    from toqportal.celery import app

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0) or []
        if len(replies) >= count:
            return
        time.sleep(0.5)
    raise RuntimeError(f"{count} Celery worker(s) did not answer a ping within 90 s")


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for proc in workers:
        proc.terminate()
    for proc in workers:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def one_run(asset_ids: list[int], storage: Any, timeout_s: float) -> dict[str, Any]:
    from media_jobs.models import MediaJobEvent, MediaProcessingJob
    from media_jobs.services.dispatch import listing_start_processing

    for info in list(storage.list(f"{LISTING}/processed/")):
        storage.delete(info.key)
    started = time.perf_counter()
    job = listing_start_processing(listing_identity_id=LISTING, asset_ids=asset_ids)
    deadline = started + timeout_s
    while True:
        status = MediaProcessingJob.objects.filter(pk=job.pk).values_list("status", flat=True)[0]
        if status in TERMINAL:
            break
        if time.perf_counter() > deadline:
            raise RuntimeError(f"job {job.pk} still {status} after {timeout_s:.0f} s")
        time.sleep(0.05)
    wall = time.perf_counter() - started
    derivatives = sum(1 for _ in storage.list(f"{LISTING}/processed/"))
    step_ms = [
        e.duration_ms
        for e in MediaJobEvent.objects.filter(job_id=job.pk).exclude(step="dispatch")
        if e.duration_ms
    ]
    return {
        "job": job.pk,
        "status": status,
        "wall": wall,
        "derivatives": derivatives,
        "step_seconds": sum(step_ms) / 1000 if step_ms else None,
    }


def reference_per_photo(data: bytes, runs: int) -> float:
    """Benchmark 1's (a) on this photo: render_derivatives in memory, median of ``runs``."""
    from media_jobs.pipeline.thumbnails import render_derivatives

    render_derivatives(io.BytesIO(data))
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        render_derivatives(io.BytesIO(data))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def step_in_process(storage: Any, count: int) -> float:
    """The thumbnails step on ``count`` photos in this process, S3 I/O included, no Celery:
    splits the per-photo overhead into storage (this minus (a)) and orchestration."""
    from media_jobs.pipeline.thumbnails import generate_thumbnails
    from media_jobs.storage import pipeline_config

    keys = [raw_key(index) for index in range(1, count + 1)]
    validation: Any = {
        "jobId": 0,
        "listingIdentityId": LISTING,
        "imageAssets": [{"key": k, "type": "PHOTO_HORIZONTAL", "sourceKey": k} for k in keys],
    }
    for info in list(storage.list(f"{LISTING}/processed/")):
        storage.delete(info.key)
    started = time.perf_counter()
    generate_thumbnails(validation, storage=storage, config=pipeline_config())
    return (time.perf_counter() - started) / count


def run(*, smoke: bool = False, runs: int | None = None, photos: int | None = None) -> BenchResult:
    from media_jobs import sample_media

    runs = runs or (1 if smoke else 3)
    photos = photos or (6 if smoke else 48)
    width, height = (1200, 900) if smoke else (4000, 3000)
    queue = f"bench-{uuid.uuid4().hex[:10]}"
    result = BenchResult(
        key="pipeline",
        title="5. Pipeline scaling (Celery on Redis, S3 = moto, DB = MariaDB)",
        params={
            "photos": photos,
            "size": f"{width}x{height}",
            "runs per worker count": runs,
            "worker concurrency": 1,
        },
    )
    result.load["before"] = load_average()
    originals = [
        sample_media.jpeg_bytes(width, height, seed=seed)
        for seed in range(min(DISTINCT_PHOTOS, photos))
    ]
    with moto_server() as server, tempfile.TemporaryDirectory() as tmp:
        bucket = new_bucket(server, "toq-bench-pipeline")
        extra = {
            **s3_env(server, bucket),
            "CELERY_BROKER_URL": REDIS_URL,
            "CELERY_RESULT_BACKEND": REDIS_URL,
            "CELERY_TASK_DEFAULT_QUEUE": queue,
            "MEDIA_PIPELINE_ENGINE": "celery",
            "CALLBACK_URL": "",
        }
        recreate_database(DATABASE)
        setup_django(DATABASE, **extra)
        migrate()

        from media_jobs.models import MediaAsset
        from media_jobs.storage import pipeline_storage

        storage = pipeline_storage()
        asset_ids = []
        for index in range(1, photos + 1):
            key = raw_key(index)
            storage.write(key, originals[index % len(originals)], content_type="image/jpeg")
            asset_ids.append(
                MediaAsset.objects.create(
                    listing_identity_id=LISTING,
                    asset_type="PHOTO_HORIZONTAL",
                    sequence=index,
                    status="PENDING_UPLOAD",
                    s3_key_raw=key,
                    metadata={"filename": key.rsplit("/", 1)[1]},
                ).pk
            )
        per_photo_a = reference_per_photo(originals[0], 3 if smoke else 7)
        per_photo_step = step_in_process(storage, min(photos, 8))
        worker_env = django_env(DATABASE, **extra)
        timeout = 120 + photos * 10
        by_count: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        for count in (1, 2):
            workers = start_workers(count, worker_env, queue, Path(tmp))
            try:
                one_run(asset_ids, storage, timeout)  # warm-up: imports, connections
                for _ in range(runs):
                    outcome = one_run(asset_ids, storage, timeout)
                    if outcome["status"] != "SUCCEEDED" or outcome["derivatives"] != 4 * photos:
                        raise AssertionError(f"{count} worker(s): unexpected outcome {outcome}")
                    by_count[count].append(outcome)
                    result.timing(f"wall time, {count} worker(s)").runs.append(outcome["wall"])
            finally:
                stop_workers(workers)
    result.load["after"] = load_average()

    wall_1 = result.timing("wall time, 1 worker(s)").median
    wall_2 = result.timing("wall time, 2 worker(s)").median
    per_photo = wall_1 / photos
    result.figures["(a) render_derivatives per photo, same photo (s)"] = per_photo_a
    result.figures["thumbnails step in-process per photo, S3 I/O included, no Celery (s)"] = (
        per_photo_step
    )
    result.figures["per-photo worker time, 1 worker (s)"] = per_photo
    steps = [o["step_seconds"] for o in by_count[1] if o["step_seconds"]]
    if steps:
        result.figures["sum of step durations / photo, 1 worker (s)"] = (
            statistics.median(steps) / photos
        )
    result.figures["photos per second, 1 worker"] = photos / wall_1
    result.figures["photos per second, 2 workers"] = photos / wall_2
    result.targets = [
        Target("wall(2 workers) / wall(1 worker)", ratio(wall_2, wall_1), "<=", 0.6, "x"),
        Target("per-photo worker time / (a)", ratio(per_photo, per_photo_a), "<=", 1.2, "x"),
    ]
    if smoke:
        result.notes.append("smoke sizes: ratios are not meaningful at this scale")
    return result


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=None)
    args = parser.parse_args()
    result = run(smoke=args.smoke, runs=args.runs, photos=args.photos)
    finish(result, args.json or result_path(result.key, args.smoke))


if __name__ == "__main__":
    main()
