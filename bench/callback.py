"""Benchmark 3: the callback receiver against the stack's own limit (gunicorn + MariaDB).

Two receivers on one gunicorn (2 workers), one MariaDB database of its own, one load:
(project)   ``/api/v2/listings/media/callback``: the product's receiver (docs/contract.md §6);
(reference) ``/bench/reference-callback`` (bench/callback_reference.py, mounted only by the
            bench's settings): HMAC check, ``SELECT ... FOR UPDATE`` of the job, one UPDATE;
            the least any receiver of a signed callback can do on this stack.

Jobs are seeded RUNNING (the project's with 40 PROCESSING assets each; the reference touches
the job row only). A load generator in another process POSTs the same signed bodies (40
outputs; every 10th job a PARTIAL_SUCCESS with one failed asset) from a few threads, each job
once; phases alternate project, reference, project, reference, so both see the same machine.
Afterwards every job and asset row is checked against the callback answered 200: a row that
does not show it is a lost update.

Targets: project throughput >= 0.6 x the reference's; project p99 <= 2 x the reference's;
zero errors; zero lost updates.

    python -m bench.callback --seconds 10 --rounds 1 [--smoke]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import (
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
from bench.services import free_port
from media_jobs.pipeline.callback import SIGNATURE_HEADER, serialise_payload, sign

DATABASE = bench_database("bench_callback")
CALLBACK_PATH = "/api/v2/listings/media/callback"
REFERENCE_URL = "/bench/reference-callback"
SECRET = "bench-callback-secret-" + "s" * 20
ASSETS_PER_JOB = 40
FIRST_LISTING = 500_000
SIZES = ("thumbnail", "small", "medium", "large")


def listing_of(job_id: int) -> int:
    return FIRST_LISTING + job_id


def raw_key(job_id: int, index: int) -> str:
    return f"{listing_of(job_id)}/raw/photo/horizontal/horizontal-{index:02d}-IMG_{index}.jpg"


def derivative(job_id: int, index: int, size: str) -> str:
    return (
        f"{listing_of(job_id)}/processed/photo/horizontal/{size}/"
        f"horizontal-{index:02d}-IMG_{index}.jpg"
    )


def is_partial(job_id: int) -> bool:
    return job_id % 10 == 0


def callback_body(job_id: int) -> dict[str, Any]:
    """What the pipeline sends for this job (docs/contract.md §4.3/§6)."""
    outputs = []
    for index in range(1, ASSETS_PER_JOB + 1):
        if is_partial(job_id) and index == ASSETS_PER_JOB:
            outputs.append(
                {
                    "rawKey": raw_key(job_id, index),
                    "processedKey": None,
                    "thumbnailKey": None,
                    "outputs": {},
                    "errorCode": "CORRUPT_IMAGE",
                    "errorMessage": "cannot decode JPEG image: broken data stream",
                }
            )
            continue
        outputs.append(
            {
                "rawKey": raw_key(job_id, index),
                "processedKey": derivative(job_id, index, "large"),
                "thumbnailKey": derivative(job_id, index, "thumbnail"),
                "outputs": {
                    f"{size}_photo_horizontal": derivative(job_id, index, size) for size in SIZES
                },
            }
        )
    body: dict[str, Any] = {
        "jobId": job_id,
        "listingIdentityId": listing_of(job_id),
        "executionArn": f"celery:bench-{job_id}",
        "startedAt": "2026-01-01T10:00:00Z",
        "provider": "STEP_FUNCTIONS",
        "status": "PARTIAL_SUCCESS" if is_partial(job_id) else "SUCCEEDED",
        "failureReason": "1 derivative failed" if is_partial(job_id) else None,
        "error": (
            {"code": "DERIVATIVE_ERRORS_DETECTED", "message": "1 asset failed"}
            if is_partial(job_id)
            else None
        ),
        "outputs": outputs,
        "traceparent": f"00-{job_id:032x}-{job_id:016x}-01",
    }
    return body


def encoded(job_id: int) -> bytes:

    return serialise_payload(callback_body(job_id))


# ---------------------------------------------------------------- seeding and checking


def seed(product_jobs: int, reference_jobs: int) -> None:
    """Jobs 1..product_jobs with their assets; then ``reference_jobs`` jobs without any. A
    RUNNING job has its execution id and start time, as the dispatch recorded them."""
    total = product_jobs + reference_jobs
    conn = mysql_connect(DATABASE)
    try:
        cursor = conn.cursor()
        cursor.execute(
            f"""
            INSERT INTO media_processing_jobs
                (id, listing_identity_id, status, provider, external_id, retry_count,
                 started_at, created_at)
            SELECT seq, {FIRST_LISTING} + seq, 'RUNNING', 'STEP_FUNCTIONS',
                   CONCAT('celery:bench-', seq), 0, NOW(), NOW()
            FROM seq_1_to_{total}
            """
        )
        cursor.execute(
            f"""
            INSERT INTO media_assets
                (listing_identity_id, asset_type, sequence, status, s3_key_raw, metadata)
            SELECT {FIRST_LISTING} + j.seq, 'PHOTO_HORIZONTAL', a.seq, 'PROCESSING',
                   CONCAT({FIRST_LISTING} + j.seq, '/raw/photo/horizontal/horizontal-',
                          LPAD(a.seq, 2, '0'), '-IMG_', a.seq, '.jpg'),
                   JSON_OBJECT('filename', CONCAT('IMG_', a.seq, '.jpg'))
            FROM seq_1_to_{product_jobs} AS j JOIN seq_1_to_{ASSETS_PER_JOB} AS a
            """
        )
        cursor.execute("ANALYZE TABLE media_processing_jobs, media_assets")
        cursor.fetchall()
    finally:
        conn.close()


def verify(product_jobs: int, accepted: set[int], reference: range, ref_ok: set[int]) -> dict:
    """Every row against what was accepted: a difference is a lost (or wrong) update."""
    from django.db.models import Count  # noqa: PLC0415 - Django, once setup_django() ran

    from media_jobs.models import MediaAsset, MediaProcessingJob  # noqa: PLC0415 - Django, once setup_django() ran

    problems: list[str] = []
    job_rows = {
        job.id: job
        for job in MediaProcessingJob.objects.only(
            "id", "status", "callback_body", "external_id", "completed_at"
        )
    }
    # The accepted jobs' assets are checked row by row; the others must all be untouched,
    # which one query counts (loading 300,000 rows into Python took a minute).
    accepted_listings = [listing_of(j) for j in accepted if j <= product_jobs]
    assets_by_listing: dict[int, dict[str, MediaAsset]] = {}
    for start in range(0, len(accepted_listings), 2_000):
        for asset in MediaAsset.objects.filter(
            listing_identity_id__in=accepted_listings[start : start + 2_000]
        ).only("listing_identity_id", "status", "s3_key_raw", "s3_key_processed", "metadata"):
            assets_by_listing.setdefault(asset.listing_identity_id, {})[asset.s3_key_raw] = asset
    untouched = (
        MediaAsset.objects.filter(listing_identity_id__lte=listing_of(product_jobs))
        .exclude(listing_identity_id__in=accepted_listings)
        .values("status")
        .annotate(n=Count("id"))
    )
    counts = {row["status"]: row["n"] for row in untouched}
    expected_untouched = (product_jobs - len(accepted_listings)) * ASSETS_PER_JOB
    if counts != ({"PROCESSING": expected_untouched} if expected_untouched else {}):
        problems.append(f"assets of jobs without an accepted callback: {counts}")
    checked_assets = 0
    for job_id in range(1, product_jobs + 1):
        job = job_rows.get(job_id)
        if job_id not in accepted:
            if job is None or job.status != "RUNNING":
                problems.append(f"job {job_id}: changed without an accepted callback")
            continue
        assets = assets_by_listing.get(listing_of(job_id), {})
        if job is None or len(assets) != ASSETS_PER_JOB:
            problems.append(f"job {job_id}: rows missing")
            continue
        want_status = "PARTIAL_SUCCESS" if is_partial(job_id) else "SUCCEEDED"
        if job.status != want_status:
            problems.append(f"job {job_id}: status {job.status}, expected {want_status}")
        if job.callback_body != encoded(job_id).decode():
            problems.append(f"job {job_id}: callback_body is not the bytes sent")
        if job.external_id != f"celery:bench-{job_id}" or job.completed_at is None:
            problems.append(f"job {job_id}: external_id/completed_at not set")
        for index in range(1, ASSETS_PER_JOB + 1):
            asset = assets[raw_key(job_id, index)]
            checked_assets += 1
            meta = asset.metadata if isinstance(asset.metadata, dict) else {}
            if is_partial(job_id) and index == ASSETS_PER_JOB:
                if asset.status != "FAILED" or meta.get("errorCode") != "CORRUPT_IMAGE":
                    problems.append(f"job {job_id} asset {index}: failure not recorded")
                continue
            large = derivative(job_id, index, "large")
            if (
                asset.status != "PROCESSED"
                or asset.s3_key_processed != large
                or meta.get("large_photo_horizontal") != large
                or meta.get("thumbnailKey") != derivative(job_id, index, "thumbnail")
                or meta.get("filename") != f"IMG_{index}.jpg"
            ):
                problems.append(f"job {job_id} asset {index}: update lost or wrong")
    reference_problems = 0
    for job_id in reference:
        job = job_rows.get(job_id)
        done = job is not None and job.status != "RUNNING" and job.completed_at is not None
        if done != (job_id in ref_ok):
            reference_problems += 1
    return {
        "jobs_checked": product_jobs + len(reference),
        "assets_checked": checked_assets,
        "problems": len(problems),
        "reference_problems": reference_problems,
        "examples": problems[:10],
    }


# ---------------------------------------------------------------- the load generator


def load_generator(
    port: int, path: str, first_job: int, last_job: int, seconds: float, threads: int, out: Path
) -> None:
    """POST signed callbacks for jobs first..last from ``threads`` threads for ``seconds``;
    each job once, then (if they run out) again from the first: replays, counted."""

    bodies = {job_id: encoded(job_id) for job_id in range(first_job, last_job + 1)}
    signatures = {job_id: sign(body, SECRET) for job_id, body in bodies.items()}
    span = last_job - first_job + 1
    lock = threading.Lock()
    next_job = [0]
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    accepted: set[int] = set()
    replays = [0]
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        connection: http.client.HTTPConnection | None = None
        while time.perf_counter() < deadline:
            with lock:
                next_job[0] += 1
                job_id = (next_job[0] - 1) % span + first_job
                if next_job[0] > span:
                    replays[0] += 1
            headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signatures[job_id]}
            started = time.perf_counter()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                connection.request("POST", path, bodies[job_id], headers)
                response = connection.getresponse()
                response.read()
                status = str(response.status)
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__
                if connection is not None:
                    connection.close()
                connection = None
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses[status] = statuses.get(status, 0) + 1
                if status == "200":
                    accepted.add(job_id)

    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    out.write_text(
        json.dumps(
            {
                "elapsed": elapsed,
                "latencies": latencies,
                "statuses": statuses,
                "accepted": sorted(accepted),
                "replays": replays[0],
            }
        )
    )


def run_load(port: int, path: str, jobs: range, seconds: float, threads: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "load.json"
        cmd = [
            sys.executable,
            "-m",
            "bench.callback",
            "--load-generator",
            "--port",
            str(port),
            "--path",
            path,
            "--first-job",
            str(jobs.start),
            "--last-job",
            str(jobs.stop - 1),
            "--seconds",
            str(seconds),
            "--threads",
            str(threads),
            "--out",
            str(out),
        ]
        subprocess.run(cmd, cwd=ROOT, check=True, timeout=seconds + 300)
        return json.loads(out.read_text())


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


# ---------------------------------------------------------------- gunicorn


def start_gunicorn(port: int, workers: int, log: Path) -> subprocess.Popen:
    env = django_env(DATABASE, CALLBACK_SECRET=SECRET, DATABASE_CONN_MAX_AGE="600")
    env["DJANGO_SETTINGS_MODULE"] = "bench.callback_settings"  # product URLs + the reference
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("gunicorn")),
                "toqportal.wsgi:application",
                "--workers",
                str(workers),
                "--bind",
                f"127.0.0.1:{port}",
                "--access-logfile",
                "-" if os.environ.get("BENCH_ACCESS_LOG") else "/dev/null",
                "--log-level",
                "warning",
                "--timeout",
                "60",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    statuses = {}
    while True:
        try:
            for path in (CALLBACK_PATH, REFERENCE_URL):
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("POST", path, b"{}", {"Content-Type": "application/json"})
                statuses[path] = connection.getresponse().status
                connection.close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("gunicorn did not start:\n" + log.read_text()[-3000:]) from None
            time.sleep(0.2)
    if 404 in statuses.values():
        # An unsigned POST is a 401 from both receivers; a 404 means no such URL.
        proc.terminate()
        proc.wait(timeout=30)
        raise RuntimeError(f"a receiver is not routed: {statuses}")
    return proc


def run(
    *,
    smoke: bool = False,
    seconds: float | None = None,
    rounds: int | None = None,
    threads: int = 4,
    workers: int = 2,
) -> BenchResult:
    seconds = seconds or (2 if smoke else 12)
    rounds = rounds or (1 if smoke else 2)
    # Jobs per phase: more than either receiver answers in ``seconds`` (replays are counted).
    product_block = 300 if smoke else 3_000
    reference_block = 1_000 if smoke else 8_000
    product_jobs = product_block * rounds
    reference = range(product_jobs + 1, product_jobs + reference_block * rounds + 1)
    result = BenchResult(
        key="callback",
        title="3. Callback receiver vs the stack's limit (gunicorn + MariaDB)",
        params={
            "phases": f"{rounds} x (project {seconds:g} s, reference {seconds:g} s)",
            "jobs seeded": f"{product_jobs} with {ASSETS_PER_JOB} assets, "
            f"{len(reference)} for the reference",
            "gunicorn workers": workers,
            "client threads": threads,
        },
    )
    result.load["before"] = load_average()
    recreate_database(DATABASE)
    setup_django(DATABASE)
    migrate()
    seed(product_jobs, len(reference))
    conn = mysql_connect()
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT @@innodb_flush_log_at_trx_commit, @@innodb_buffer_pool_size")
        flush, pool = cursor.fetchone()
    finally:
        conn.close()
    result.figures["MariaDB innodb_flush_log_at_trx_commit"] = int(flush)
    result.figures["MariaDB innodb_buffer_pool_size MiB"] = int(pool) // 1024**2

    loads: dict[str, list[dict[str, Any]]] = {"project": [], "reference": []}
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "gunicorn.log"
        server = start_gunicorn(port, workers, log)
        try:
            for index in range(rounds):
                block = range(1 + index * product_block, 1 + (index + 1) * product_block)
                ref_start = reference.start + index * reference_block
                ref_block = range(ref_start, ref_start + reference_block)
                phases = [
                    ("project", CALLBACK_PATH, block),
                    ("reference", REFERENCE_URL, ref_block),
                ]
                for kind, path, jobs in phases if index % 2 == 0 else phases[::-1]:
                    loads[kind].append(run_load(port, path, jobs, seconds, threads))
        finally:
            server.terminate()
            server.wait(timeout=30)
        server_log = log.read_text(errors="replace")
    result.load["after"] = load_average()

    figures = {kind: _pooled(runs) for kind, runs in loads.items()}
    for kind, f in figures.items():
        result.figures[f"{kind}: callbacks/s"] = f["throughput"]
        for name in ("p50", "p90", "p99", "max"):
            result.figures[f"{kind}: latency {name} (ms)"] = f[name]
        result.figures[f"{kind}: responses by status"] = json.dumps(f["statuses"])
        result.figures[f"{kind}: replays (jobs ran out)"] = f["replays"]
    for kind, runs in loads.items():
        for run_ in runs:
            rate = run_["statuses"].get("200", 0) / run_["elapsed"]
            result.timing(f"{kind}: callbacks/s per phase", "/s").runs.append(rate)
    checked = verify(
        product_jobs, figures["project"]["accepted"], reference, figures["reference"]["accepted"]
    )
    result.figures["jobs checked"] = checked["jobs_checked"]
    result.figures["assets checked (accepted jobs)"] = checked["assets_checked"]
    result.figures["reference rows not matching its answers"] = checked["reference_problems"]
    if checked["examples"]:
        result.notes.append("lost or wrong updates, e.g.: " + "; ".join(checked["examples"]))
    errors = sum(n for status, n in figures["project"]["statuses"].items() if status != "200")
    if errors or figures["reference"]["statuses"].keys() - {"200"}:
        tail = "\n".join(server_log.splitlines()[-15:])
        result.notes.append(f"server log tail:\n\n```\n{tail}\n```")
    if figures["project"]["replays"] or figures["reference"]["replays"]:
        result.notes.append("a phase ran out of jobs and replayed some: raise the blocks")
    result.targets = [
        Target(
            "project throughput / reference throughput",
            ratio(figures["project"]["throughput"], figures["reference"]["throughput"]),
            ">=",
            0.6,
            "x",
        ),
        Target(
            "project p99 / reference p99",
            ratio(figures["project"]["p99"], figures["reference"]["p99"]),
            "<=",
            2.0,
            "x",
        ),
        Target("errors (non-200 answers, network errors)", errors, "==", 0),
        Target("lost updates (job and asset rows checked)", checked["problems"], "==", 0),
    ]
    if smoke:
        result.notes.append("smoke duration: the rates are not meaningful at this scale")
    return result


def _pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [x * 1000 for r in runs for x in r["latencies"]]
    statuses: dict[str, int] = {}
    for r in runs:
        for status, n in r["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    return {
        "throughput": statuses.get("200", 0) / sum(r["elapsed"] for r in runs),
        "p50": percentile(latencies, 0.50),
        "p90": percentile(latencies, 0.90),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies) if latencies else float("nan"),
        "statuses": statuses,
        "replays": sum(r["replays"] for r in runs),
        "accepted": {job for r in runs for job in r["accepted"]},
    }


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=None, help="seconds per phase")
    parser.add_argument("--rounds", type=int, default=None, help="project+reference rounds")
    parser.add_argument("--threads", type=int, default=4, help="load generator threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--load-generator", action="store_true", help=_hidden())
    parser.add_argument("--port", type=int, help=_hidden())
    parser.add_argument("--path", default=CALLBACK_PATH, help=_hidden())
    parser.add_argument("--out", type=Path, help=_hidden())
    parser.add_argument("--first-job", type=int, default=1, help=_hidden())
    parser.add_argument("--last-job", type=int, default=1, help=_hidden())
    args = parser.parse_args()
    if args.load_generator:
        load_generator(
            args.port,
            args.path,
            args.first_job,
            args.last_job,
            args.seconds,
            args.threads,
            args.out,
        )
        return
    result = run(
        smoke=args.smoke,
        seconds=args.seconds,
        rounds=args.rounds,
        threads=args.threads,
        workers=args.workers,
    )
    finish(result, args.json or result_path(result.key, args.smoke))


def _hidden() -> str:

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
