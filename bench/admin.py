"""Benchmark 3: the admin at scale - 1,000,000 jobs and 200,000 assets in MariaDB.

The data is bulk-loaded with ``INSERT ... SELECT`` from MariaDB's sequence engine
(``seq_1_to_N``) into a database of its own (kept between runs; ``--reload`` rebuilds it).
Pages are requested in-process with Django's test Client as a logged-in superuser, the
project's admin and the reference interleaved: a plain ``ModelAdmin`` on the same model
(``bench.admin_urls``). Query counts come from a separate request per page, so capturing
them never slows the timed ones.

Targets: every page median <= 150 ms; each list >= 5 x faster than the plain ModelAdmin's;
query counts constant in the number of rows shown (10 vs 50 rows per page).

    python -m bench.admin --runs 5 --jobs 100000 --assets 20000 [--smoke]
"""

from __future__ import annotations

import json
import time
from typing import Any

from bench.common import (
    BenchResult,
    Target,
    base_parser,
    bench_database,
    finish,
    load_average,
    migrate,
    mysql_connect,
    ratio,
    recreate_database,
    result_path,
    setup_django,
)

LISTINGS_PER_JOBS = 20  # about 20 jobs per listing
ASSETS_PER_LISTING = 4
FIRST_LISTING = 100_000
MAX_TEXT_BYTES = 65_535  # callback_body is TEXT (SPEC §3): this is all the column can hold
PAGE_BUDGET_MS = 150


def database_name(smoke: bool) -> str:
    return bench_database("toq_bench_admin_smoke" if smoke else "toq_bench_admin")


def _loaded(database: str, jobs: int, assets: int) -> bool:
    try:
        conn = mysql_connect(database)
    except Exception:  # noqa: BLE001 - no database yet
        return False
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT value FROM bench_meta WHERE name = 'rows'")
        row = cursor.fetchone()
        return row is not None and row[0] == f"{jobs}/{assets}"
    except Exception:  # noqa: BLE001 - an older or half-built database
        return False
    finally:
        conn.close()


def bulk_load(database: str, jobs: int, assets: int) -> float:
    """Fill both tables from the sequence engine; returns the seconds it took."""
    listings = max(1, jobs // LISTINGS_PER_JOBS)
    started = time.perf_counter()
    conn = mysql_connect(database)
    try:
        cursor = conn.cursor()
        cursor.execute("SET SESSION unique_checks = 0, foreign_key_checks = 0")
        cursor.execute(
            f"""
            INSERT INTO media_processing_jobs
                (id, listing_identity_id, status, provider, external_id, payload, retry_count,
                 started_at, completed_at, last_error, callback_body, created_at)
            SELECT s.seq,
                   {FIRST_LISTING} + (s.seq * 7919) % {listings},
                   s.status,
                   IF(s.seq % 10 < 7, 'STEP_FUNCTIONS', 'STEP_FUNCTIONS_FINALIZATION'),
                   CONCAT('celery-workflow-', s.seq),
                   IF(s.status = 'SUCCEEDED' AND s.seq % 10 >= 7,
                      JSON_OBJECT('assetsZipped', 12, 'zipSizeBytes', 123456789), NULL),
                   IF(s.seq % 50 = 0, 1, 0),
                   IF(s.status = 'PENDING', NULL, s.created + INTERVAL 2 SECOND),
                   IF(s.status IN ('SUCCEEDED', 'FAILED', 'PARTIAL_SUCCESS'),
                      s.created + INTERVAL (30 + s.seq % 300) SECOND, NULL),
                   IF(s.status IN ('FAILED', 'PARTIAL_SUCCESS'),
                      CONCAT('code=', ELT(1 + s.seq % 5, 'THUMBNAIL_PROCESSING_FAILED',
                             'VALIDATION_ERROR', 'OBJECT_NOT_FOUND', 'CORRUPT_IMAGE',
                             'DERIVATIVE_ERRORS_DETECTED'),
                             ' | asset failed | bench row ', s.seq), NULL),
                   IF(s.status IN ('SUCCEEDED', 'FAILED', 'PARTIAL_SUCCESS'),
                      CONCAT('{{"jobId":', s.seq, ',"status":"', s.status, '"}}'), NULL),
                   s.created
            FROM (
                SELECT seq,
                       TIMESTAMP('2025-06-01') + INTERVAL (seq * 20) SECOND AS created,
                       CASE WHEN seq % 100 < 80 THEN 'SUCCEEDED'
                            WHEN seq % 100 < 88 THEN 'FAILED'
                            WHEN seq % 100 < 93 THEN 'PARTIAL_SUCCESS'
                            WHEN seq % 100 < 97 THEN 'RUNNING'
                            ELSE 'PENDING' END AS status
                FROM seq_1_to_{jobs}
            ) AS s
            """
        )
        cursor.execute(
            f"""
            INSERT INTO media_assets
                (id, listing_identity_id, asset_type, sequence, status, s3_key_raw,
                 s3_key_processed, title, metadata)
            SELECT seq,
                   {FIRST_LISTING} + (seq - 1) DIV {ASSETS_PER_LISTING},
                   ELT(1 + (seq - 1) % 4, 'PHOTO_HORIZONTAL', 'PHOTO_VERTICAL',
                       'PHOTO_HORIZONTAL', 'VIDEO_HORIZONTAL'),
                   seq,
                   IF(seq % 20 = 0, 'FAILED', 'PROCESSED'),
                   CONCAT({FIRST_LISTING} + (seq - 1) DIV {ASSETS_PER_LISTING},
                          '/raw/photo/horizontal/horizontal-', seq, '-IMG_', seq, '.jpg'),
                   CONCAT({FIRST_LISTING} + (seq - 1) DIV {ASSETS_PER_LISTING},
                          '/processed/photo/horizontal/large/horizontal-', seq, '-IMG_', seq,
                          '.jpg'),
                   NULL,
                   JSON_OBJECT('filename', CONCAT('IMG_', seq, '.jpg'))
            FROM seq_1_to_{assets}
            """
        )
        cursor.execute("CREATE TABLE bench_meta (name VARCHAR(32) PRIMARY KEY, value TEXT)")
        cursor.execute("INSERT INTO bench_meta VALUES ('rows', %s)", (f"{jobs}/{assets}",))
        cursor.execute("ANALYZE TABLE media_processing_jobs, media_assets")
        cursor.fetchall()
    finally:
        conn.close()
    return time.perf_counter() - started


def big_callback_body(job_id: int, listing: int, limit: int) -> str:
    """A real-shaped callback with as many outputs as fit in ``limit`` bytes."""
    outputs: list[dict[str, Any]] = []
    body: dict[str, Any] = {
        "jobId": job_id,
        "listingIdentityId": listing,
        "executionArn": f"celery:{job_id}",
        "provider": "STEP_FUNCTIONS",
        "status": "PARTIAL_SUCCESS",
        "failureReason": "1 derivative failed",
        "error": {"code": "DERIVATIVE_ERRORS_DETECTED", "message": "see outputs"},
        "outputs": outputs,
    }
    text = json.dumps(body)
    index = 0
    while True:
        index += 1
        raw = f"{listing}/raw/photo/horizontal/horizontal-{index:04d}-IMG_{index}.jpg"
        processed = raw.replace("/raw/", "/processed/").replace(
            "/horizontal-", "/large/horizontal-"
        )
        entry = {
            "rawKey": raw,
            "processedKey": processed,
            "thumbnailKey": processed.replace("/large/", "/thumbnail/"),
            "outputs": {
                f"{size}_photo_horizontal": processed.replace("/large/", f"/{size}/")
                for size in ("thumbnail", "small", "medium", "large")
            },
        }
        candidate = json.dumps({**body, "outputs": [*outputs, entry]})
        if len(candidate.encode()) > limit:
            return text
        outputs.append(entry)
        text = candidate


def run(
    *,
    smoke: bool = False,
    runs: int | None = None,
    jobs: int | None = None,
    assets: int | None = None,
    reload: bool = False,
) -> BenchResult:
    runs = runs or (3 if smoke else 15)
    jobs = jobs or (20_000 if smoke else 1_000_000)
    assets = assets or (4_000 if smoke else 200_000)
    database = database_name(smoke)
    result = BenchResult(
        key="admin",
        title="3. Admin at scale (MariaDB)",
        params={"jobs": jobs, "assets": assets, "runs per page": runs, "database": database},
    )
    result.load["before"] = load_average()
    fresh = reload or not _loaded(database, jobs, assets)
    if fresh:
        recreate_database(database)
    setup_django(database)
    migrate()
    if fresh:
        result.figures["bulk load seconds"] = bulk_load(database, jobs, assets)
    else:
        result.notes.append("reused the database loaded by an earlier run (--reload rebuilds it)")

    from django.conf import settings
    from django.contrib import admin as django_admin
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from bench.admin_urls import plain_site
    from media_jobs.models import MediaProcessingJob

    settings.ROOT_URLCONF = "bench.admin_urls"

    # The job with the largest callback body the column holds (see the note below).
    big_job = MediaProcessingJob.objects.order_by("-id").only("id", "listing_identity_id")[0]
    body = big_callback_body(big_job.id, big_job.listing_identity_id, MAX_TEXT_BYTES)
    MediaProcessingJob.objects.filter(pk=big_job.pk).update(
        callback_body=body, status="PARTIAL_SUCCESS"
    )
    result.figures["job page callback_body bytes"] = len(body.encode())
    result.notes.append(
        "The issue asks for a 1 MB callback body, but SPEC §3 makes callback_body TEXT, which "
        f"holds at most {MAX_TEXT_BYTES:,} bytes on MariaDB (strict mode refuses more). The job "
        "page is measured with the largest body the column holds; a 1 MB body needs "
        "MEDIUMTEXT, a schema change the SPEC does not allow against the backend's table."
    )

    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    sample_listing = MediaProcessingJob.objects.order_by("-id").values_list(
        "listing_identity_id", flat=True
    )[10]
    job_list = "/admin/media_jobs/mediaprocessingjob/"
    plain_list = "/plain-admin/media_jobs/mediaprocessingjob/"
    pages: list[tuple[str, str, str | None]] = [
        ("jobs list", job_list, plain_list),
        (
            "jobs list, status FAILED",
            job_list + "?status__exact=FAILED",
            plain_list + "?status__exact=FAILED",
        ),
        (
            f"jobs list, search listing {sample_listing}",
            job_list + f"?q={sample_listing}",
            plain_list + f"?q={sample_listing}",
        ),
        (
            "job page (largest callback body)",
            f"{job_list}{big_job.id}/change/",
            f"{plain_list}{big_job.id}/change/",
        ),
        ("dashboard (admin index)", "/admin/", "/plain-admin/"),
    ]

    def get(url: str) -> float:
        started = time.perf_counter()
        response = client.get(url)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise AssertionError(f"GET {url} answered {response.status_code}")
        return elapsed

    for _, url, plain in pages:  # warm-up: URLconf, templates, buffer pool
        get(url)
        if plain:
            get(plain)
    for _ in range(runs):
        for name, url, plain in pages:
            result.timing(f"project: {name}", "ms").runs.append(get(url) * 1000)
            if plain:
                result.timing(f"plain ModelAdmin: {name}", "ms").runs.append(get(plain) * 1000)
    result.load["after"] = load_average()

    def queries(url: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            get(url)
        return len(captured)

    for name, url, plain in pages:
        result.figures[f"queries, project: {name}"] = queries(url)
        if plain:
            result.figures[f"queries, plain: {name}"] = queries(plain)

    # Rows shown: 10 vs 50 per page on the project's list; the query count must not move.
    job_admin = django_admin.site._registry[MediaProcessingJob]
    default_per_page = job_admin.list_per_page
    counts: dict[int, dict[str, int]] = {}
    try:
        for per_page in (10, 50):
            job_admin.list_per_page = per_page
            counts[per_page] = {name: queries(url) for name, url, _ in pages[:3]}
    finally:
        job_admin.list_per_page = default_per_page
    growth = max(counts[50][name] - counts[10][name] for name in counts[50])
    result.figures["query counts at 10 rows/page"] = json.dumps(counts[10])
    result.figures["query counts at 50 rows/page"] = json.dumps(counts[50])
    del plain_site

    for name, _, _plain in pages:
        median = result.timing(f"project: {name}", "ms").median
        result.targets.append(Target(f"median, {name}", median, "<=", PAGE_BUDGET_MS, " ms"))
    for name, _, _plain in pages[:3]:
        speedup = ratio(
            result.timing(f"plain ModelAdmin: {name}", "ms").median,
            result.timing(f"project: {name}", "ms").median,
        )
        result.targets.append(Target(f"plain ModelAdmin / project, {name}", speedup, ">=", 5, "x"))
    result.targets.append(
        Target("extra queries at 50 vs 10 rows per page (lists)", growth, "==", 0)
    )
    if smoke:
        result.notes.append("smoke sizes: ratios are not meaningful at this scale")
    return result


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--assets", type=int, default=None)
    parser.add_argument("--reload", action="store_true", help="rebuild the bench database")
    args = parser.parse_args()
    result = run(
        smoke=args.smoke, runs=args.runs, jobs=args.jobs, assets=args.assets, reload=args.reload
    )
    finish(result, args.json or result_path(result.key, args.smoke))


if __name__ == "__main__":
    main()
