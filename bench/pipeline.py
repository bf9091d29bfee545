"""Benchmark 4: pipeline efficiency - 48 photos of 12 MP through the Celery engine on Redis.

One listing with 48 raw photos in the moto S3 server, assets in a MariaDB database of its
own, Celery workers (``bench.pipeline_worker``: the project's worker plus request counters;
concurrency 1 each, on a queue of their own). A run is one processing job started the way
the API starts it (``services.dispatch.listing_start_processing``) and ends when the job's
terminal status is in the database. Between runs the derivatives are deleted, so every run
does all the work (the step skips derivatives that are already current).

Measured:
- worker CPU-seconds per photo (1 worker: user + system of the worker's processes over a
  run, from /proc) against the renderer alone (``render_derivatives`` in this process, CPU
  time per photo on the same photos);
- with 2 workers, how busy each core is over a run (/proc/stat: everything on the machine,
  the S3 server, MariaDB and Redis included - and, on a shared machine, other work);
- the orchestration overhead of an empty job: a job of one small photo whose derivatives
  are already current (validated, resume-checked, nothing to render), from the dispatch call
  to the callback applied (terminal status in the database);
- per photo: task messages, SQL writes and S3 requests (counted in the workers), Redis
  commands (counted with MONITOR on the bench's Redis database, one extra run); and the
  capacity of this Redis (redis-benchmark) and MariaDB (single-row INSERT commits from 4
  threads) for those operations: how many workers one of each carries.

Targets: worker CPU per photo <= 1.10 x the renderer's; with 2 workers both cores >= 90 %
busy; empty-job overhead median <= 50 ms.

    python -m bench.pipeline --photos 12 --runs 1 [--smoke]
"""

from __future__ import annotations

import io
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import redis

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
    mysql_connect,
    ratio,
    recreate_database,
    result_path,
    setup_django,
)
from bench.pipeline_worker import read_counts
from bench.services import moto_server, new_bucket, s3_env
from media_jobs import sample_media
from media_jobs.pipeline.thumbnails import generate_thumbnails, render_derivatives

DATABASE = bench_database("bench_pipeline")
LISTING = 880001
EMPTY_LISTING = 880002
DISTINCT_PHOTOS = 6  # generated once each, uploaded under several keys
TERMINAL = {"SUCCEEDED", "PARTIAL_SUCCESS", "FAILED"}
CPU_TARGET = 1.10
BUSY_TARGET = 0.90
EMPTY_JOB_TARGET_MS = 50


def raw_key(index: int) -> str:
    return f"{LISTING}/raw/photo/horizontal/horizontal-{index:02d}-IMG_{4000 + index}.jpg"


# ---------------------------------------------------------------- workers


def start_workers(
    count: int, env: dict[str, str], queue: str, logs: Path
) -> list[subprocess.Popen]:
    workers = []
    for index in range(count):
        log = logs / f"worker-{count}-{index}.log"
        with log.open("wb") as out:
            workers.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "bench.pipeline_worker",
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
    _wait_ready(len(workers))
    return workers


def _wait_ready(count: int) -> None:
    """Ping until every worker answers (a job queued before a worker listens still runs,
    but then its start-up would count in the wall time)."""
    from toqportal.celery import app  # noqa: PLC0415 - Django, once setup_django() ran

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


def worker_cpu_seconds(workers: list[subprocess.Popen], *, main_only: bool = False) -> float:
    """User + system CPU of the workers and their pool processes so far (``main_only``: the
    workers' main processes, which receive and hand out the tasks)."""
    total = 0.0
    for proc in workers:
        try:
            main = psutil.Process(proc.pid)
            processes = [main] if main_only else [main, *main.children(recursive=True)]
            for process in processes:
                times = process.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            continue
    return total


def core_times() -> list[tuple[float, float]]:
    """(busy, total) jiffies per core from /proc/stat."""
    cores = []
    for line in Path("/proc/stat").read_text().splitlines():
        if re.match(r"cpu\d+ ", line):
            values = [float(v) for v in line.split()[1:]]
            idle = values[3] + values[4]  # idle + iowait
            cores.append((sum(values) - idle, sum(values)))
    return cores


# ---------------------------------------------------------------- runs


def one_run(
    listing: int, asset_ids: list[int], storage: Any, timeout_s: float, *, fresh: bool = True
) -> dict:
    """One job from dispatch to terminal status; ``fresh``: its derivatives deleted first."""
    from media_jobs.models import MediaProcessingJob  # noqa: PLC0415 - Django, once setup_django() ran
    from media_jobs.services.dispatch import listing_start_processing  # noqa: PLC0415 - Django, once setup_django() ran

    if fresh:
        for info in list(storage.list(f"{listing}/processed/")):
            storage.delete(info.key)
    started = time.perf_counter()
    job = listing_start_processing(listing_identity_id=listing, asset_ids=asset_ids)
    deadline = started + timeout_s
    while True:
        status = MediaProcessingJob.objects.filter(pk=job.pk).values_list("status", flat=True)[0]
        if status in TERMINAL:
            break
        if time.perf_counter() > deadline:
            raise RuntimeError(f"job {job.pk} still {status} after {timeout_s:.0f} s")
        time.sleep(0.002)
    wall = time.perf_counter() - started
    derivatives = sum(1 for _ in storage.list(f"{listing}/processed/"))
    return {"job": job.pk, "status": status, "wall": wall, "derivatives": derivatives}


def timeline_gaps(job_id: int) -> dict[str, float]:
    """Milliseconds between the job's consecutive timeline events (dispatch, each step's
    start and end, the callback): where an empty job's time goes."""
    from media_jobs.models import MediaJobEvent  # noqa: PLC0415 - Django, once setup_django() ran

    events = list(MediaJobEvent.objects.filter(job_id=job_id).order_by("at", "id"))
    gaps = {}
    for before, after in zip(events, events[1:], strict=False):
        name = f"{before.step} {before.kind} -> {after.step} {after.kind}"
        gaps[name] = (after.at - before.at).total_seconds() * 1000
    return gaps


def renderer_cpu_per_photo(photos: list[bytes], runs: int) -> float:
    """The renderer alone: CPU seconds of render_derivatives per photo (median of runs)."""

    samples = []
    for _ in range(runs):
        for data in photos:
            started = time.process_time()
            render_derivatives(io.BytesIO(data))
            samples.append(time.process_time() - started)
    return statistics.median(samples)


def step_cpu_per_photo(storage: Any, count: int) -> float:
    """The thumbnails step on ``count`` photos in this process (S3 I/O included, no Celery,
    no database): CPU seconds per photo, its I/O threads included. Splits the worker's
    overhead into storage (this minus the renderer's) and orchestration (the rest)."""
    from media_jobs.storage import pipeline_config  # noqa: PLC0415 - Django, once setup_django() ran

    keys = [raw_key(index) for index in range(1, count + 1)]
    validation: Any = {
        "jobId": 0,
        "listingIdentityId": LISTING,
        "imageAssets": [{"key": k, "type": "PHOTO_HORIZONTAL", "sourceKey": k} for k in keys],
    }
    for info in list(storage.list(f"{LISTING}/processed/")):
        storage.delete(info.key)
    started = time.process_time()
    generate_thumbnails(validation, storage=storage, config=pipeline_config())
    return (time.process_time() - started) / count


def redis_commands_during(fn: Any, redis_url: str) -> tuple[Any, Counter[str]]:
    """Run ``fn`` while MONITOR counts the commands sent to the bench's Redis database."""

    client = redis.Redis.from_url(redis_url)
    db = client.connection_pool.connection_kwargs.get("db", 0)
    counts: Counter[str] = Counter()
    stop = threading.Event()

    def watch() -> None:
        with client.monitor() as monitor:
            ready.set()
            for command in monitor.listen():
                if stop.is_set():
                    return
                if int(command.get("db", -1)) == int(db):
                    counts[command["command"].split(" ", 1)[0].strip('"').upper()] += 1

    ready = threading.Event()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    ready.wait(10)
    try:
        value = fn()
    finally:
        stop.set()
        client.ping()  # one more command wakes the watcher up
        watcher.join(timeout=10)
    counts.pop("PING", None)
    return value, counts


# ---------------------------------------------------------------- capacity


def redis_capacity(redis_url: str) -> float | None:
    """Single commands per second of this Redis (redis-benchmark, 8 clients, no pipelining):
    the mean of LPUSH, RPOP, SET and GET on the bench's database (its keys deleted after)."""

    binary = shutil.which("redis-benchmark")
    if binary is None:
        return None
    client = redis.Redis.from_url(redis_url)
    kwargs = client.connection_pool.connection_kwargs
    cmd = [
        binary,
        "-h",
        str(kwargs.get("host", "127.0.0.1")),
        "-p",
        str(kwargs.get("port", 6379)),
        "--dbnum",
        str(kwargs.get("db", 0)),
        "-q",
        "-n",
        "40000",
        "-c",
        "8",
        "-t",
        "lpush,rpop,set,get",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False).stdout
    rates = [float(m) for m in re.findall(r"([\d.]+) requests per second", out)]
    client.delete("mylist", "key:__rand_int__", "counter:__rand_int__")
    return statistics.mean(rates) if rates else None


def mariadb_capacity(database: str, seconds: float) -> float:
    """Single-row INSERT commits per second from 4 threads (autocommit: one commit each, so
    innodb_flush_log_at_trx_commit's log flush included), in a table of the bench's own."""
    conn = mysql_connect(database)
    try:
        conn.cursor().execute(
            "CREATE TABLE IF NOT EXISTS bench_capacity (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
            "job_id INT, step VARCHAR(64), detail JSON, at DATETIME(6))"
        )
    finally:
        conn.close()
    deadline = time.perf_counter() + seconds

    def insert_loop(_: int) -> int:
        conn = mysql_connect(database)
        done = 0
        try:
            cursor = conn.cursor()
            while time.perf_counter() < deadline:
                cursor.execute(
                    "INSERT INTO bench_capacity (job_id, step, detail, at) "
                    "VALUES (%s, 'thumbnails', '{\"part\": \"thumbnails:0\"}', NOW(6))",
                    (done,),
                )
                done += 1
        finally:
            conn.close()
        return done

    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        total = sum(pool.map(insert_loop, range(4)))
    return total / (time.perf_counter() - started)


# ---------------------------------------------------------------- the benchmark


def run(*, smoke: bool = False, runs: int | None = None, photos: int | None = None) -> BenchResult:

    runs = runs or (1 if smoke else 3)
    photos = photos or (6 if smoke else 48)
    empty_jobs = 5 if smoke else 15
    width, height = (1200, 900) if smoke else (4000, 3000)
    queue = f"bench-{uuid.uuid4().hex[:10]}"
    result = BenchResult(
        key="pipeline",
        title="4. Pipeline efficiency (Celery on Redis, S3 = moto, DB = MariaDB)",
        params={
            "photos": photos,
            "size": f"{width}x{height}",
            "runs per worker count": runs,
            "worker concurrency": 1,
            "empty jobs": empty_jobs,
        },
    )
    result.load["before"] = load_average()
    originals = [
        sample_media.jpeg_bytes(width, height, seed=seed)
        for seed in range(min(DISTINCT_PHOTOS, photos))
    ]
    with moto_server() as server, tempfile.TemporaryDirectory() as tmp:
        bucket = new_bucket(server, "toq-bench-pipeline")
        counts_dir = Path(tmp) / "counts"
        counts_dir.mkdir()
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

        from media_jobs.models import MediaAsset  # noqa: PLC0415 - Django, once setup_django() ran
        from media_jobs.storage import pipeline_storage  # noqa: PLC0415 - Django, once setup_django() ran

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
        small_key = f"{EMPTY_LISTING}/raw/photo/horizontal/horizontal-01-IMG_1.jpg"
        storage.write(small_key, sample_media.jpeg_bytes(320, 240), content_type="image/jpeg")
        empty_ids = [
            MediaAsset.objects.create(
                listing_identity_id=EMPTY_LISTING,
                asset_type="PHOTO_HORIZONTAL",
                sequence=1,
                status="PENDING_UPLOAD",
                s3_key_raw=small_key,
                metadata={"filename": "IMG_1.jpg"},
            ).pk
        ]
        renderer_cpu_per_photo(originals, 1)  # warm-up
        step_cpu_per_photo(storage, min(photos, 8))  # warm-up: connections, imports
        step_cpu = step_cpu_per_photo(storage, min(photos, 16))
        worker_env = django_env(DATABASE, BENCH_COUNTS_DIR=str(counts_dir), **extra)
        timeout = 120 + photos * 10

        # 1 worker: CPU per photo, the empty jobs, the counts.
        workers = start_workers(1, worker_env, queue, Path(tmp))
        try:
            one_run(LISTING, asset_ids, storage, timeout)  # warm-up: imports, connections
            one_run(EMPTY_LISTING, empty_ids, storage, 60)  # its derivatives, kept from now on
            before = read_counts(counts_dir)
            cpu_runs = []
            for _ in range(runs):
                # The renderer alone, right before each run: CPU time also drifts with load.
                result.timing("renderer alone: CPU seconds per photo").runs.append(
                    renderer_cpu_per_photo(originals, 1)
                )
                cpu_before = worker_cpu_seconds(workers)
                main_before = worker_cpu_seconds(workers, main_only=True)
                outcome = one_run(LISTING, asset_ids, storage, timeout)
                cpu_runs.append(worker_cpu_seconds(workers) - cpu_before)
                result.timing("of which the worker's main process, per photo").runs.append(
                    (worker_cpu_seconds(workers, main_only=True) - main_before) / photos
                )
                _check(outcome, photos, 1)
                result.timing("wall time, 1 worker").runs.append(outcome["wall"])
                result.timing("worker CPU seconds per photo, 1 worker").runs.append(
                    cpu_runs[-1] / photos
                )
            counts = read_counts(counts_dir)
            counts.subtract(before)
            for _ in range(empty_jobs):
                outcome = one_run(EMPTY_LISTING, empty_ids, storage, 60, fresh=False)
                if outcome["status"] != "SUCCEEDED":
                    raise AssertionError(f"empty job: unexpected outcome {outcome}")
                result.timing("empty job: dispatch -> callback applied", "ms").runs.append(
                    outcome["wall"] * 1000
                )
                for hop, ms in timeline_gaps(outcome["job"]).items():
                    result.timing(f"empty job timeline: {hop}", "ms").runs.append(ms)
            _, redis_counts = redis_commands_during(
                lambda: one_run(LISTING, asset_ids, storage, timeout), REDIS_URL
            )
        finally:
            stop_workers(workers)

        # 2 workers: how busy the cores are.
        workers = start_workers(2, worker_env, queue, Path(tmp))
        try:
            one_run(LISTING, asset_ids, storage, timeout)
            for _ in range(runs):
                cores_before = core_times()
                cpu_before = worker_cpu_seconds(workers)
                outcome = one_run(LISTING, asset_ids, storage, timeout)
                cores_after = core_times()
                _check(outcome, photos, 2)
                busy = [
                    (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
                    for (b0, t0), (b1, t1) in zip(cores_before, cores_after, strict=True)
                ]
                result.timing("wall time, 2 workers").runs.append(outcome["wall"])
                result.timing("least busy core, 2 workers", "%").runs.append(min(busy) * 100)
                result.timing("workers' own CPU / (cores x wall), 2 workers", "%").runs.append(
                    (worker_cpu_seconds(workers) - cpu_before) / (len(busy) * outcome["wall"]) * 100
                )
        finally:
            stop_workers(workers)
        redis_rate = redis_capacity(REDIS_URL)
        mariadb_rate = mariadb_capacity(DATABASE, 1.0 if smoke else 3.0)
    result.load["after"] = load_average()

    cpu_per_photo = result.timing("worker CPU seconds per photo, 1 worker").median
    wall_1 = result.timing("wall time, 1 worker").median
    renderer_cpu = result.timing("renderer alone: CPU seconds per photo").median
    result.figures["thumbnails step in process (S3 I/O, no Celery/DB): CPU s per photo"] = step_cpu
    result.figures["photos per second, 1 worker"] = photos / wall_1
    result.figures["photos per second, 2 workers"] = (
        photos / result.timing("wall time, 2 workers").median
    )
    _capacity(result, counts, redis_counts, photos, runs, wall_1, redis_rate, mariadb_rate)
    least_busy = result.timing("least busy core, 2 workers", "%").median
    result.targets = [
        Target(
            "worker CPU seconds per photo / renderer's alone",
            ratio(cpu_per_photo, renderer_cpu),
            "<=",
            CPU_TARGET,
            "x",
        ),
        Target(
            "with 2 workers, the least busy core (median of runs)",
            least_busy,
            ">=",
            BUSY_TARGET * 100,
            " %",
        ),
        Target(
            "empty job, dispatch -> callback applied (median)",
            result.timing("empty job: dispatch -> callback applied", "ms").median,
            "<=",
            EMPTY_JOB_TARGET_MS,
            " ms",
        ),
    ]
    if smoke:
        result.notes.append("smoke sizes: ratios are not meaningful at this scale")
    return result


def _check(outcome: dict[str, Any], photos: int, workers: int) -> None:
    if outcome["status"] != "SUCCEEDED" or outcome["derivatives"] != 4 * photos:
        raise AssertionError(f"{workers} worker(s): unexpected outcome {outcome}")


def _capacity(
    result: BenchResult,
    counts: Counter[str],
    redis_counts: Counter[str],
    photos: int,
    runs: int,
    wall_1: float,
    redis_rate: float | None,
    mariadb_rate: float,
) -> None:
    """Per-photo demand on Redis, MariaDB and S3, and how many workers each one carries."""
    done = photos * runs
    per_photo = {name: n / done for name, n in sorted(counts.items()) if n}
    for name, value in per_photo.items():
        result.figures[f"per photo: {name}"] = value
    redis_per_photo = sum(redis_counts.values()) / photos
    result.figures["per photo: Redis commands (MONITOR, bench database)"] = redis_per_photo
    result.figures["Redis commands by name, one run"] = ", ".join(
        f"{name} {n}" for name, n in redis_counts.most_common()
    )
    writes = sum(v for k, v in per_photo.items() if k.split()[-1] in ("INSERT", "UPDATE", "DELETE"))
    s3 = sum(v for k, v in per_photo.items() if k.startswith("s3 "))
    result.figures["per photo: SQL writes"] = writes
    result.figures["per photo: S3 requests"] = s3
    worker_rate = photos / wall_1  # photos/s of one worker
    rows = []
    if redis_rate:
        carried = redis_rate / (redis_per_photo * worker_rate) if redis_per_photo else None
        result.figures["Redis capacity (commands/s, redis-benchmark)"] = redis_rate
        result.figures["workers one Redis carries"] = carried
        rows.append(
            ["Redis", f"{redis_rate:,.0f} commands/s", f"{redis_per_photo:.1f}", _n(carried)]
        )
    carried_db = mariadb_rate / (writes * worker_rate) if writes else None
    result.figures["MariaDB capacity (INSERT commits/s, 4 threads)"] = mariadb_rate
    result.figures["workers one MariaDB carries"] = carried_db
    rows.append(["MariaDB", f"{mariadb_rate:,.0f} commits/s", f"{writes:.2f}", _n(carried_db)])
    rows.append(["S3", "scales per prefix (see note)", f"{s3:.2f}", "-"])
    result.tables.append(
        {
            "title": "How many workers one Redis and one MariaDB of this machine carry",
            "header": ["service", "capacity measured", "operations per photo", "workers"],
            "rows": rows,
            "note": (
                f"One worker (concurrency 1) renders {worker_rate:.1f} photos/s here; workers "
                "carried = capacity / (operations per photo x photos/s per worker), with the "
                "service doing nothing else. MariaDB's figure counts every SQL write as one "
                "commit (an upper bound: a step's writes share transactions). S3 is not a "
                "limit for a listing's photos: AWS serves 3,500 PUT and 5,500 GET requests/s "
                "per prefix, and each listing is its own prefix."
            ),
        }
    )


def _n(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=None)
    args = parser.parse_args()
    result = run(smoke=args.smoke, runs=args.runs, photos=args.photos)
    finish(result, args.json or result_path(result.key, args.smoke))


if __name__ == "__main__":
    main()
