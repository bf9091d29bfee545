"""Benchmark 5: the admin's job page for a listing of 500 assets (MariaDB, S3 links).

A job page shows every asset of the job's listing (a card each: preview, status, links to
the raw object and every derivative, presigned for S3 as in production), the job's timeline,
its deliveries and the listing's other jobs. The database of its own holds a background of
jobs and assets (bulk-loaded from MariaDB's sequence engine) plus two seeded listings: one of
500 assets and one of 50, each with a PARTIAL_SUCCESS job dispatched by the portal (its
timeline records the asset ids) and the largest callback body the column holds.

Pages are requested in-process with Django's test Client as a logged-in superuser, the pages
interleaved; storage is S3 (presigning needs no server). Query counts come from separate
requests, so capturing them never slows the timed ones. For reference, the same job in a
plain ``ModelAdmin`` (bench.admin_urls: no asset cards) and the jobs list are reported.

Targets: the 500-asset job page's median <= 150 ms; its query count equal to the 50-asset
page's (queries constant in the number of assets).

    python -m bench.admin --runs 5 [--smoke]
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
    recreate_database,
    result_path,
    setup_django,
)
from media_jobs.pipeline import keys

FIRST_LISTING = 100_000  # the background rows' listings
BIG_LISTING = 300_500
SMALL_LISTING = 300_050
# callback_body is TEXT (docs/contract.md §3): this is all the column can hold
MAX_TEXT_BYTES = 65_535
PAGE_BUDGET_MS = 150
ASSET_KINDS = (  # (type, share of the listing)
    ("PHOTO_HORIZONTAL", 0.6),
    ("PHOTO_VERTICAL", 0.2),
    ("VIDEO_HORIZONTAL", 0.15),
    ("PROJECT_DOC", 0.05),
)
S3_SETTINGS = {
    "MEDIA_STORAGE_BACKEND": "s3",
    "MEDIA_BUCKET": "toq-bench-admin",
    # Presigning is local computation: no server needs to answer here.
    "AWS_S3_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def bulk_load(database: str, jobs: int, assets: int) -> float:
    """The background: ``jobs`` jobs over ``jobs / 20`` listings, ``assets`` assets."""
    listings = max(1, jobs // 20)
    started = time.perf_counter()
    conn = mysql_connect(database)
    try:
        cursor = conn.cursor()
        cursor.execute(
            f"""
            INSERT INTO media_processing_jobs
                (id, listing_identity_id, status, provider, external_id, retry_count,
                 started_at, completed_at, created_at)
            SELECT seq, {FIRST_LISTING} + (seq * 7919) % {listings},
                   IF(seq % 10 < 8, 'SUCCEEDED', 'FAILED'), 'STEP_FUNCTIONS',
                   CONCAT('celery-workflow-', seq), 0,
                   TIMESTAMP('2025-06-01') + INTERVAL (seq * 20 + 2) SECOND,
                   TIMESTAMP('2025-06-01') + INTERVAL (seq * 20 + 60) SECOND,
                   TIMESTAMP('2025-06-01') + INTERVAL (seq * 20) SECOND
            FROM seq_1_to_{jobs}
            """
        )
        cursor.execute(
            f"""
            INSERT INTO media_assets
                (listing_identity_id, asset_type, sequence, status, s3_key_raw, metadata)
            SELECT {FIRST_LISTING} + (seq - 1) DIV 4, 'PHOTO_HORIZONTAL', seq, 'PROCESSED',
                   CONCAT({FIRST_LISTING} + (seq - 1) DIV 4,
                          '/raw/photo/horizontal/horizontal-', seq, '-IMG_', seq, '.jpg'),
                   JSON_OBJECT('filename', CONCAT('IMG_', seq, '.jpg'))
            FROM seq_1_to_{assets}
            """
        )
    finally:
        conn.close()
    return time.perf_counter() - started


def seed_listing(listing: int, count: int) -> int:
    """``count`` assets of every kind (5 % FAILED) and the PARTIAL_SUCCESS job that took them,
    dispatched by the portal; returns the job's id."""
    from media_jobs.models import MediaAsset, MediaJobEvent, MediaProcessingJob  # noqa: PLC0415 - Django, once setup_django() ran

    assets = []
    sequence = 0
    for asset_type, share in ASSET_KINDS:
        for index in range(1, max(1, round(count * share)) + 1):
            if len(assets) == count:
                break
            sequence += 1
            segment = keys.SEGMENT_BY_TYPE[asset_type]
            extension = {"VIDEO": "mp4", "PROJECT": "pdf"}.get(asset_type.split("_")[0], "jpg")
            name = f"{segment.replace('/', '-')}-{index:03d}-F_{sequence}.{extension}"
            raw = f"{listing}/raw/{segment}/{name}"
            meta: dict[str, Any] = {"filename": name}
            status = "PROCESSED"
            processed = None
            if sequence % 20 == 0:
                status = "FAILED"
                meta.update(errorCode="CORRUPT_IMAGE", error="cannot decode JPEG: broken data")
            elif asset_type.startswith("PHOTO"):
                for size in keys.IMAGE_SIZES:
                    meta[f"{size}_{asset_type.lower()}"] = keys.derivative_key(raw, size)
                meta["thumbnailKey"] = keys.derivative_key(raw, "thumbnail")
                processed = keys.derivative_key(raw, "large")
            elif asset_type.startswith("VIDEO"):
                meta["thumbnailKey"] = keys.poster_key(raw)
                processed = raw
            assets.append(
                MediaAsset(
                    listing_identity_id=listing,
                    asset_type=asset_type,
                    sequence=sequence,
                    status=status,
                    s3_key_raw=raw,
                    s3_key_processed=processed,
                    metadata=meta,
                )
            )
    MediaAsset.objects.bulk_create(assets)
    ids = list(MediaAsset.objects.filter(listing_identity_id=listing).values_list("pk", flat=True))
    job = MediaProcessingJob.objects.create(
        listing_identity_id=listing,
        status="PARTIAL_SUCCESS",
        provider="STEP_FUNCTIONS",
        external_id=f"celery-bench-{listing}",
        retry_count=0,
        last_error="code=DERIVATIVE_ERRORS_DETECTED | some assets failed",
    )
    MediaProcessingJob.objects.filter(pk=job.pk).update(
        callback_body=big_callback_body(job.pk, listing, MAX_TEXT_BYTES)
    )
    events = [
        MediaJobEvent(
            job_id=job.pk,
            step="dispatch",
            kind="INFO",
            detail={"engine": "celery", "workflowId": f"celery-bench-{listing}", "assetIds": ids},
        )
    ]
    for step in ("validate", "thumbnails", "thumbnails", "zip", "callback"):
        events.append(MediaJobEvent(job_id=job.pk, step=step, kind="INFO", duration_ms=1200))
    MediaJobEvent.objects.bulk_create(events)
    return job.pk


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
) -> BenchResult:
    runs = runs or (3 if smoke else 15)
    jobs = jobs or (5_000 if smoke else 100_000)
    assets = assets or (2_000 if smoke else 40_000)
    big_count = 500
    small_count = 50
    database = bench_database("bench_admin_smoke" if smoke else "bench_admin")
    result = BenchResult(
        key="admin",
        title="5. Admin job page, 500-asset listing (MariaDB, S3 links)",
        params={
            "background jobs": jobs,
            "background assets": assets,
            "listing assets": f"{big_count} and {small_count}",
            "runs per page": runs,
            "database": database,
        },
    )
    result.load["before"] = load_average()
    recreate_database(database)
    setup_django(database, **S3_SETTINGS)
    migrate()
    result.figures["bulk load seconds"] = bulk_load(database, jobs, assets)
    big_job = seed_listing(BIG_LISTING, big_count)
    small_job = seed_listing(SMALL_LISTING, small_count)
    conn = mysql_connect(database)
    try:
        cursor = conn.cursor()
        cursor.execute("ANALYZE TABLE media_processing_jobs, media_assets, media_job_events")
        cursor.fetchall()
    finally:
        conn.close()

    from django.conf import settings  # noqa: PLC0415 - Django, once setup_django() ran
    from django.contrib.auth import get_user_model  # noqa: PLC0415 - Django, once setup_django() ran
    from django.db import connection  # noqa: PLC0415 - Django, once setup_django() ran
    from django.test import Client  # noqa: PLC0415 - Django, once setup_django() ran
    from django.test.utils import CaptureQueriesContext  # noqa: PLC0415 - Django, once setup_django() ran

    settings.ROOT_URLCONF = "bench.admin_urls"
    user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    job_url = "/admin/media_jobs/mediaprocessingjob/{}/change/"
    plain_url = "/plain-admin/media_jobs/mediaprocessingjob/{}/change/"
    pages = {
        f"job page, {big_count} assets": job_url.format(big_job),
        f"job page, {small_count} assets": job_url.format(small_job),
        f"plain ModelAdmin job page (no asset cards), {big_count}-asset job": plain_url.format(
            big_job
        ),
        "jobs list": "/admin/media_jobs/mediaprocessingjob/",
    }

    def get(url: str) -> tuple[float, bytes]:
        started = time.perf_counter()
        response = client.get(url)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise AssertionError(f"GET {url} answered {response.status_code}")
        return elapsed, response.content

    for name, url in pages.items():  # warm-up: URLconf, templates, buffer pool
        _, content = get(url)
        if name.startswith("job page"):
            cards = content.count(b"X-Amz-Signature")
            result.figures[f"presigned links on the {name}"] = cards
    for _ in range(runs):
        for name, url in pages.items():
            result.timing(name, "ms").runs.append(get(url)[0] * 1000)
    result.load["after"] = load_average()

    def queries(url: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            get(url)
        return len(captured)

    counts = {name: queries(url) for name, url in pages.items()}
    for name, count in counts.items():
        result.figures[f"queries, {name}"] = count
    big_name, small_name = list(pages)[:2]
    result.targets = [
        Target(
            f"median, {big_name}",
            result.timing(big_name, "ms").median,
            "<=",
            PAGE_BUDGET_MS,
            " ms",
        ),
        Target(
            f"queries, {big_count} minus {small_count} assets",
            counts[big_name] - counts[small_name],
            "==",
            0,
        ),
    ]
    result.notes.append(
        "callback_body is TEXT (docs/contract.md §3), at most 65,535 bytes on MariaDB: each job holds the "
        "largest real-shaped body that fits."
    )
    if smoke:
        result.notes.append("smoke sizes: the times are not meaningful at this scale")
    return result


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=None, help="background jobs")
    parser.add_argument("--assets", type=int, default=None, help="background assets")
    args = parser.parse_args()
    result = run(smoke=args.smoke, runs=args.runs, jobs=args.jobs, assets=args.assets)
    finish(result, args.json or result_path(result.key, args.smoke))


if __name__ == "__main__":
    main()
