"""Benchmark 4: the callback receiver under load - gunicorn (2 workers) on MariaDB.

Seeds jobs (RUNNING) with 40 PROCESSING assets each in a database of its own, starts
gunicorn on a free loopback port, and runs a load generator in a second process: a few
threads POST signed callbacks (40 outputs each; every 10th job a PARTIAL_SUCCESS with one
failed asset) to ``/api/v2/listings/media/callback`` for 60 s, each job once, then replays
(same bytes) if the jobs run out. Afterwards every job and every asset row is checked
against the callback that was answered 200: a row that does not show it is a lost update.
A short reference phase measures the same server answering 401 (bad signature): the floor
of gunicorn + Django for this request, without the database work.

Targets: >= 100 callbacks/s, p99 <= 250 ms, zero errors, zero lost updates.

    python -m bench.callback --seconds 20 --jobs 4000 [--smoke]
"""

from __future__ import annotations

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
    recreate_database,
    result_path,
    setup_django,
)
from bench.services import free_port

DATABASE = bench_database("toq_bench_callback")
CALLBACK_PATH = "/api/v2/listings/media/callback"
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
    """What the pipeline sends for this job (SPEC §4.3/§6)."""
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
    from media_jobs.pipeline.callback import serialise_payload

    return serialise_payload(callback_body(job_id))


# ---------------------------------------------------------------- seeding and checking


def seed(jobs: int) -> None:
    conn = mysql_connect(DATABASE)
    try:
        cursor = conn.cursor()
        cursor.execute(
            f"""
            INSERT INTO media_processing_jobs
                (id, listing_identity_id, status, provider, retry_count, created_at)
            SELECT seq, {FIRST_LISTING} + seq, 'RUNNING', 'STEP_FUNCTIONS', 0, NOW()
            FROM seq_1_to_{jobs}
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
            FROM seq_1_to_{jobs} AS j JOIN seq_1_to_{ASSETS_PER_JOB} AS a
            """
        )
        cursor.execute("ANALYZE TABLE media_processing_jobs, media_assets")
        cursor.fetchall()
    finally:
        conn.close()


def verify(jobs: int, accepted: set[int]) -> dict[str, Any]:
    """Every row against what was accepted: a difference is a lost (or wrong) update."""
    from media_jobs.models import MediaAsset, MediaProcessingJob

    problems: list[str] = []
    job_rows = {
        job.id: job
        for job in MediaProcessingJob.objects.only(
            "id", "status", "callback_body", "external_id", "completed_at"
        )
    }
    assets_by_listing: dict[int, dict[str, MediaAsset]] = {}
    for asset in MediaAsset.objects.only(
        "listing_identity_id", "status", "s3_key_raw", "s3_key_processed", "metadata"
    ).iterator(chunk_size=20_000):
        assets_by_listing.setdefault(asset.listing_identity_id, {})[asset.s3_key_raw] = asset
    checked_assets = 0
    for job_id in range(1, jobs + 1):
        job = job_rows.get(job_id)
        assets = assets_by_listing.get(listing_of(job_id), {})
        if job is None or len(assets) != ASSETS_PER_JOB:
            problems.append(f"job {job_id}: rows missing")
            continue
        if job_id not in accepted:
            if job.status != "RUNNING" or any(a.status != "PROCESSING" for a in assets.values()):
                problems.append(f"job {job_id}: changed without an accepted callback")
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
    return {
        "jobs_checked": len(job_rows),
        "assets_checked": checked_assets,
        "problems": len(problems),
        "examples": problems[:10],
    }


# ---------------------------------------------------------------- the load generator


def load_generator(
    port: int,
    jobs: int,
    seconds: float,
    threads: int,
    out: Path,
    bad_signature: bool,
    first_job: int = 1,
) -> None:
    """POST signed callbacks from ``threads`` threads until ``seconds`` have passed."""
    from media_jobs.pipeline.callback import SIGNATURE_HEADER, sign

    bodies = {job_id: encoded(job_id) for job_id in range(first_job, jobs + 1)}
    signatures = {
        job_id: ("0" * 64 if bad_signature else sign(body, SECRET))
        for job_id, body in bodies.items()
    }
    span = jobs - first_job + 1
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
                connection.request("POST", CALLBACK_PATH, bodies[job_id], headers)
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


def run_load(
    port: int, jobs: int, seconds: float, threads: int, bad: bool, first_job: int = 1
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "load.json"
        cmd = [
            sys.executable,
            "-m",
            "bench.callback",
            "--load-generator",
            "--port",
            str(port),
            "--jobs",
            str(jobs),
            "--seconds",
            str(seconds),
            "--threads",
            str(threads),
            "--out",
            str(out),
            "--first-job",
            str(first_job),
        ]
        if bad:
            cmd.append("--bad-signature")
        subprocess.run(cmd, cwd=ROOT, check=True, timeout=seconds + 300)
        return json.loads(out.read_text())


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


# ---------------------------------------------------------------- gunicorn


def start_gunicorn(
    port: int, workers: int, log: Path, app: str = "toqportal.wsgi:application"
) -> subprocess.Popen:
    env = django_env(DATABASE, CALLBACK_SECRET=SECRET, DATABASE_CONN_MAX_AGE="600")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("gunicorn")),
                app,
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
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("POST", CALLBACK_PATH, b"{}", {"Content-Type": "application/json"})
            status = connection.getresponse().status
            connection.close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("gunicorn did not start:\n" + log.read_text()[-3000:]) from None
            time.sleep(0.2)
    if status == 404:
        # An unsigned POST is a 401 from the receiver; a 404 means no such URL.
        proc.terminate()
        proc.wait(timeout=30)
        raise RuntimeError(f"{CALLBACK_PATH} answers 404: the callback receiver is not routed")
    return proc


def run(
    *,
    smoke: bool = False,
    runs: int | None = None,
    seconds: float | None = None,
    jobs: int | None = None,
    threads: int = 4,
    workers: int = 2,
    proposal_seconds: float | None = None,
) -> BenchResult:
    seconds = seconds or (4 if smoke else 60)
    if proposal_seconds is None:
        proposal_seconds = 2 if smoke else 30
    jobs = jobs or (300 if smoke else 15_000)
    reference_seconds = 2 if smoke else 10
    result = BenchResult(
        key="callback",
        title="4. Callback receiver under load (gunicorn + MariaDB)",
        params={
            "seconds": seconds,
            "jobs seeded": jobs,
            "assets per job": ASSETS_PER_JOB,
            "gunicorn workers": workers,
            "client threads": threads,
        },
    )
    result.load["before"] = load_average()
    recreate_database(DATABASE)
    setup_django(DATABASE)
    migrate()
    seed(jobs)
    conn = mysql_connect()
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT @@innodb_flush_log_at_trx_commit, @@innodb_buffer_pool_size")
        flush, pool = cursor.fetchone()
    finally:
        conn.close()
    result.figures["MariaDB innodb_flush_log_at_trx_commit"] = int(flush)
    result.figures["MariaDB innodb_buffer_pool_size MiB"] = int(pool) // 1024**2

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "gunicorn.log"
        server = start_gunicorn(port, workers, log)
        try:
            load = run_load(port, jobs, seconds, threads, bad=False)
            reference = run_load(port, jobs, reference_seconds, threads, bad=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
        server_log = log.read_text(errors="replace")
        proposal = None
        first_unused = max(load["accepted"], default=0) + 1
        if proposal_seconds and first_unused <= jobs:
            port = free_port()
            server = start_gunicorn(
                port, workers, Path(tmp) / "proposal.log", "bench.callback_bulk_wsgi:application"
            )
            try:
                proposal = run_load(
                    port, jobs, proposal_seconds, threads, bad=False, first_job=first_unused
                )
            finally:
                server.terminate()
                server.wait(timeout=30)
    result.load["after"] = load_average()

    latencies_ms = [x * 1000 for x in load["latencies"]]
    ok = load["statuses"].get("200", 0)
    errors = sum(n for status, n in load["statuses"].items() if status != "200")
    throughput = ok / load["elapsed"]
    result.timing("signed callback latency", "ms").runs = []
    result.figures["callbacks answered 200"] = ok
    result.figures["responses by status"] = json.dumps(load["statuses"])
    result.figures["replays (jobs ran out)"] = load["replays"]
    result.figures["throughput (callbacks/s)"] = throughput
    result.figures["latency p50 (ms)"] = percentile(latencies_ms, 0.50)
    result.figures["latency p90 (ms)"] = percentile(latencies_ms, 0.90)
    result.figures["latency p99 (ms)"] = percentile(latencies_ms, 0.99)
    result.figures["latency max (ms)"] = max(latencies_ms) if latencies_ms else float("nan")
    ref_latencies = [x * 1000 for x in reference["latencies"]]
    result.figures["reference: 401 (bad signature) answers/s"] = (
        len(ref_latencies) / reference["elapsed"]
    )
    result.figures["reference: 401 latency p50 (ms)"] = percentile(ref_latencies, 0.50)
    result.figures["reference: statuses"] = json.dumps(reference["statuses"])
    result.timings = []

    accepted = set(load["accepted"])
    if proposal is not None:
        accepted |= set(proposal["accepted"])
        p_latencies = [x * 1000 for x in proposal["latencies"]]
        result.figures["proposal (bulk_update of the assets): callbacks/s"] = (
            proposal["statuses"].get("200", 0) / proposal["elapsed"]
        )
        result.figures["proposal: latency p50 (ms)"] = percentile(p_latencies, 0.50)
        result.figures["proposal: latency p99 (ms)"] = percentile(p_latencies, 0.99)
        result.figures["proposal: statuses"] = json.dumps(proposal["statuses"])
    checked = verify(jobs, accepted)
    result.figures["jobs checked"] = checked["jobs_checked"]
    result.figures["assets checked (accepted jobs)"] = checked["assets_checked"]
    if checked["examples"]:
        result.notes.append("lost or wrong updates, e.g.: " + "; ".join(checked["examples"]))
    if errors:
        tail = "\n".join(server_log.splitlines()[-15:])
        result.notes.append(f"server log tail:\n\n```\n{tail}\n```")
    result.targets = [
        Target("throughput", throughput, ">=", 100, " callbacks/s"),
        Target("latency p99", percentile(latencies_ms, 0.99), "<=", 250, " ms"),
        Target("errors (non-200 answers, network errors)", errors, "==", 0),
        Target("lost updates (job and asset rows checked)", checked["problems"], "==", 0),
    ]
    if smoke:
        result.notes.append("smoke duration: the rates are not meaningful at this scale")
    del runs
    return result


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=4, help="load generator threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--load-generator", action="store_true", help=_hidden())
    parser.add_argument("--port", type=int, help=_hidden())
    parser.add_argument("--out", type=Path, help=_hidden())
    parser.add_argument("--bad-signature", action="store_true", help=_hidden())
    parser.add_argument("--first-job", type=int, default=1, help=_hidden())
    parser.add_argument(
        "--proposal-seconds",
        type=float,
        default=None,
        help="seconds of load on bench/callback_bulk_wsgi.py (0 = skip)",
    )
    args = parser.parse_args()
    if args.load_generator:
        load_generator(
            args.port,
            args.jobs,
            args.seconds,
            args.threads,
            args.out,
            args.bad_signature,
            args.first_job,
        )
        return
    result = run(
        smoke=args.smoke,
        seconds=args.seconds,
        jobs=args.jobs,
        threads=args.threads,
        workers=args.workers,
        proposal_seconds=args.proposal_seconds,
    )
    finish(result, args.json or result_path(result.key, args.smoke))


def _hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
