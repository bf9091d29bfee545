"""Starting jobs (docs/contract.md §7) at the service level: which assets, which input, which engine."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import OperationalError, connection

from media_jobs import tasks
from media_jobs.exceptions import ApplicationError, NotFoundError
from media_jobs.models import (
    AssetStatus,
    AssetType,
    JobProvider,
    JobStatus,
    MediaAsset,
    MediaJobEvent,
    MediaProcessingJob,
)
from media_jobs.selectors.dispatch import (
    dispatch_detail,
    job_asset_ids,
    workflow_id_of,
    workflow_input,
)
from media_jobs.services import queueing
from media_jobs.services.dispatch import (
    job_dispatch_failed,
    listing_finalization_blockers,
    listing_start_finalization,
    listing_start_processing,
    pipeline_engine,
    traceparent_or_new,
)
from tests.factories import AssetFactory, JobFactory

pytestmark = pytest.mark.django_db

VALID = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def lock_wait_timeout(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    """A database wrapper under which every locking read ends in MariaDB's lock wait timeout."""
    if "FOR UPDATE" in sql:
        raise OperationalError(1205, "Lock wait timeout exceeded; try restarting transaction")
    return execute(sql, params, many, context)


@pytest.fixture(autouse=True)
def celery_engine(settings: Any) -> None:
    settings.MEDIA_PIPELINE_ENGINE = "celery"


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...]]]:
    calls: list[tuple[str, tuple[Any, ...]]] = []
    monkeypatch.setattr(queueing, "enqueue", lambda name, *args, **kw: calls.append((name, args)))
    return calls


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (VALID, True),
        (VALID.upper(), True),
        (" " + VALID + " ", True),
        ("00-" + "0" * 32 + "-b7ad6b7169203331-01", False),
        ("00-0af7651916cd43dd8448eb211c80319c-" + "0" * 16 + "-01", False),
        ("garbage", False),
        ("", False),
        (None, False),
    ],
)
def test_traceparent_is_kept_when_valid_else_renewed(given: str | None, kept: bool) -> None:
    result = traceparent_or_new(given)
    assert (result == VALID) is kept
    assert len(result.split("-")) == 4 and len(result) == 55


def test_processing_queues_run_processing_after_commit(
    queued: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    AssetFactory(listing_identity_id=801, status=AssetStatus.PENDING_UPLOAD)
    with django_capture_on_commit_callbacks(execute=True):
        job = listing_start_processing(listing_identity_id=801, traceparent=VALID)
        assert queued == []  # nothing is queued before the commit
    assert queued == [("media_jobs.tasks.run_processing", (job.pk,))]
    detail = dispatch_detail(job=job)
    assert detail["engine"] == "celery" and detail["workflowId"] == workflow_id_of(job=job)
    # celery-<job>-<random>: 6 random bytes as 12 hex digits, unique per dispatch.
    assert re.fullmatch(rf"celery-{job.pk}-[0-9a-f]{{12}}", workflow_id_of(job=job))
    assert job.status == JobStatus.PENDING and job.external_id is None


def test_exact_assets_whatever_their_status(queued: list[Any]) -> None:
    done = AssetFactory(listing_identity_id=802, status=AssetStatus.PROCESSED)
    busy = AssetFactory(listing_identity_id=802, status=AssetStatus.PROCESSING)
    AssetFactory(listing_identity_id=802, status=AssetStatus.PENDING_UPLOAD)
    job = listing_start_processing(
        listing_identity_id=802, asset_ids=[busy.pk, done.pk, done.pk], retry_count=2
    )
    assert job.retry_count == 2
    assert job_asset_ids(job=job) == [done.pk, busy.pk]
    assert [a["key"] for a in workflow_input(job=job)["assets"]] == [
        done.s3_key_raw,
        busy.s3_key_raw,
    ]
    assert MediaAsset.objects.get(pk=done.pk).status == AssetStatus.PROCESSING


def test_unusable_asset_ids_are_refused_with_the_ids(queued: list[Any]) -> None:
    mine = AssetFactory(listing_identity_id=803, status=AssetStatus.FAILED)
    other = AssetFactory(listing_identity_id=804, status=AssetStatus.FAILED)
    no_raw = AssetFactory(listing_identity_id=803, status=AssetStatus.FAILED, s3_key_raw=None)
    zip_row = AssetFactory(
        listing_identity_id=803, asset_type=AssetType.ZIP, s3_key_raw="803/raw/z.zip"
    )
    with pytest.raises(NotFoundError, match=str(other.pk)):
        listing_start_processing(listing_identity_id=803, asset_ids=[mine.pk, other.pk])
    with pytest.raises(ApplicationError, match="no raw key"):
        listing_start_processing(listing_identity_id=803, asset_ids=[no_raw.pk])
    with pytest.raises(ApplicationError, match="ZIP rows"):
        listing_start_processing(listing_identity_id=803, asset_ids=[zip_row.pk])
    with pytest.raises(ApplicationError, match="empty"):
        listing_start_processing(listing_identity_id=803, asset_ids=[])
    assert MediaAsset.objects.get(pk=mine.pk).status == AssetStatus.FAILED
    assert queued == []


def test_default_selection_skips_outputs_and_assets_without_raw(queued: list[Any]) -> None:
    photo = AssetFactory(listing_identity_id=805, status=AssetStatus.FAILED)
    AssetFactory(
        listing_identity_id=805, asset_type=AssetType.ZIP, status=AssetStatus.PENDING_UPLOAD
    )
    AssetFactory(listing_identity_id=805, status=AssetStatus.PENDING_UPLOAD, s3_key_raw="")
    job = listing_start_processing(listing_identity_id=805)
    assert job_asset_ids(job=job) == [photo.pk]


def test_finalization_is_running_at_once_with_every_asset_in_its_input(queued: list[Any]) -> None:
    assets = [
        AssetFactory(
            listing_identity_id=806, status=AssetStatus.PROCESSED, s3_key_processed=f"806/p/{n}.jpg"
        )
        for n in range(3)
    ]
    AssetFactory(
        listing_identity_id=806, asset_type=AssetType.ZIP, status=AssetStatus.PENDING_UPLOAD
    )
    assert listing_finalization_blockers(listing_identity_id=806) == []
    job = listing_start_finalization(listing_identity_id=806, traceparent=VALID)
    assert job.provider == JobProvider.STEP_FUNCTIONS_FINALIZATION
    assert job.status == JobStatus.RUNNING and job.external_id == workflow_id_of(job=job)
    assert workflow_input(job=job) == {
        "jobId": job.pk,
        "listingIdentityId": 806,
        "assets": [{"key": a.s3_key_raw, "type": a.asset_type} for a in assets],
        "traceparent": VALID,
    }


def test_dispatch_failure_fails_the_job_and_its_assets_at_once(queued: list[Any]) -> None:
    asset = AssetFactory(listing_identity_id=807, status=AssetStatus.PENDING_UPLOAD)
    job = listing_start_processing(listing_identity_id=807)

    failed = job_dispatch_failed(job_id=job.pk, reason="the broker said no")

    assert failed is not None and failed.status == JobStatus.FAILED
    assert failed.last_error == "code=DISPATCH_FAILED | the broker said no"
    asset.refresh_from_db()
    assert asset.status == AssetStatus.FAILED and asset.metadata["errorCode"] == "DISPATCH_FAILED"
    # a finished job is left alone
    assert job_dispatch_failed(job_id=job.pk, reason="again") is None
    assert job_dispatch_failed(job_id=999_999, reason="gone") is None


def test_a_first_task_that_cannot_start_fails_the_job_with_dispatch_failed() -> None:
    """A PENDING job without the dispatch record its first task reads (nothing to retry):
    FAILED with DISPATCH_FAILED by the task itself, not left PENDING for the reconciler."""
    job = JobFactory(listing_identity_id=808, status=JobStatus.PENDING)

    tasks.run_processing.apply(args=[job.pk])

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.last_error.startswith("code=DISPATCH_FAILED | the job's first step (validate)")
    assert "no dispatch record" in job.last_error


def test_a_dispatch_failure_is_recorded_as_the_dispatcher_s(queued: list[Any]) -> None:
    AssetFactory(listing_identity_id=809, status=AssetStatus.PENDING_UPLOAD)
    job = listing_start_processing(listing_identity_id=809)
    job_dispatch_failed(job_id=job.pk, reason="the broker said no")
    actors = [e.detail.get("actor") for e in MediaJobEvent.objects.filter(job_id=job.pk)]
    assert "dispatch" in actors


def test_a_database_that_refuses_every_attempt_leaves_the_job_and_says_so(
    queued: list[Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Each attempt ends in a lock wait timeout: the pause doubles between attempts, each
    failure and the final give-up are logged with the job, and the job is left for the
    reconciler."""
    AssetFactory(listing_identity_id=810, status=AssetStatus.PENDING_UPLOAD)
    job = listing_start_processing(listing_identity_id=810)
    before = job.status
    slept: list[float] = []
    monkeypatch.setattr("media_jobs.services.dispatch.time.sleep", slept.append)

    with (
        caplog.at_level("WARNING", logger="toq.media.dispatch"),
        connection.execute_wrapper(lock_wait_timeout),
    ):
        assert job_dispatch_failed(job_id=job.pk, reason="no", attempts=3, pause_s=0.5) is None
    assert slept == [0.5, 1.0]
    records = [r for r in caplog.records if r.name == "toq.media.dispatch" and r.levelno >= 30]
    assert [r.levelname for r in records] == ["WARNING", "WARNING", "WARNING", "ERROR"]
    assert [r.job_id for r in records] == [job.pk] * 4  # type: ignore[attr-defined]
    job.refresh_from_db()
    assert job.status == before and job.status != JobStatus.FAILED


def test_a_broker_that_refuses_the_job_fails_it_and_logs_which(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    def refused(name: str, *args: Any, **kw: Any) -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(queueing, "enqueue", refused)
    AssetFactory(listing_identity_id=811, status=AssetStatus.PENDING_UPLOAD)
    with (
        caplog.at_level("ERROR", logger="toq.media.dispatch"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        job = listing_start_processing(listing_identity_id=811)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "could not queue the job on the Celery broker: ConnectionRefusedError" in job.last_error
    (record,) = [r for r in caplog.records if r.getMessage() == "could not queue job"]
    assert record.job_id == job.pk  # type: ignore[attr-defined]


def test_a_malformed_traceparent_is_logged_when_replaced(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="toq.media.dispatch"):
        traceparent_or_new("00-not-a-trace")
        traceparent_or_new(None)  # absent is no news
    (record,) = [r for r in caplog.records if r.name == "toq.media.dispatch"]
    assert record.getMessage() == "malformed traceparent replaced"
    assert record.given == "00-not-a-trace"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("configured", "engine"),
    [("celery", "celery"), ("stepfunctions", "stepfunctions"), ("temporal", "celery")],
)
def test_the_engine_is_the_setting_when_known_else_celery(
    settings: Any, configured: str, engine: str
) -> None:
    settings.MEDIA_PIPELINE_ENGINE = configured
    assert pipeline_engine() == engine


def test_a_replaced_traceparent_is_logged_cut_to_100_characters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    given = "00-" + "z" * 300
    with caplog.at_level("WARNING", logger="toq.media.dispatch"):
        traceparent_or_new(given)
    (record,) = [r for r in caplog.records if r.name == "toq.media.dispatch"]
    assert record.given == given[:100] and len(record.given) == 100  # type: ignore[attr-defined]


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_job_returned_says_the_broker_refused_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Called outside a transaction, the enqueue runs at the commit inside the service: the
    job it returns is read again, so the caller sees it FAILED, not PENDING."""

    def refused(name: str, *args: Any, **kw: Any) -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(queueing, "enqueue", refused)
    AssetFactory(listing_identity_id=812, status=AssetStatus.PENDING_UPLOAD)
    job = listing_start_processing(listing_identity_id=812)
    assert job.status == JobStatus.FAILED
    assert job.last_error == (
        "code=DISPATCH_FAILED | could not queue the job on the Celery broker: "
        "ConnectionRefusedError: [Errno 111] Connection refused"
    )


@pytest.mark.parametrize(
    "given",
    [
        "00-" + "0" * 32 + "-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-" + "0" * 16 + "-01",
    ],
    ids=["zero-trace-id", "zero-parent-id"],
)
def test_an_all_zero_trace_or_parent_id_is_replaced_by_a_fresh_traceparent(given: str) -> None:
    """W3C: an all-zero trace id or parent id is invalid; the trace restarts."""
    result = traceparent_or_new(given)
    assert result != given
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", result)


def test_by_default_five_attempts_with_a_doubling_pause_are_logged_before_giving_up(
    queued: list[Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Without arguments: five attempts, pauses from half a second doubling between them,
    each failure logged with its number and the database's error, then the give-up."""
    AssetFactory(listing_identity_id=813, status=AssetStatus.PENDING_UPLOAD)
    job = listing_start_processing(listing_identity_id=813)
    slept: list[float] = []
    monkeypatch.setattr("media_jobs.services.dispatch.time.sleep", slept.append)

    with (
        caplog.at_level("WARNING", logger="toq.media.dispatch"),
        connection.execute_wrapper(lock_wait_timeout),
    ):
        assert job_dispatch_failed(job_id=job.pk, reason="no") is None

    assert slept == [0.5, 1.0, 2.0, 4.0]
    error = "(1205, 'Lock wait timeout exceeded; try restarting transaction')"
    assert [
        r.getMessage() for r in caplog.records if r.name == "toq.media.dispatch" and r.levelno >= 30
    ] == [
        *(
            f"could not record the dispatch failure (attempt {n} of 5): {error}"
            for n in range(1, 6)
        ),
        "job left unchanged: the database refused every attempt",
    ]


def test_blockers_come_by_asset_type_then_sequence(queued: list[Any]) -> None:
    """The order the 409 and the rebuild report name them in: type, then sequence, whatever
    order the rows were created in."""
    vertical = AssetFactory(
        listing_identity_id=814,
        asset_type=AssetType.PHOTO_VERTICAL,
        sequence=1,
        status=AssetStatus.FAILED,
    )
    second = AssetFactory(listing_identity_id=814, sequence=2, status=AssetStatus.FAILED)
    first = AssetFactory(listing_identity_id=814, sequence=1, status=AssetStatus.FAILED)

    blockers = listing_finalization_blockers(listing_identity_id=814)

    assert [(b["assetId"], b["assetType"], b["sequence"]) for b in blockers] == [
        (first.pk, "PHOTO_HORIZONTAL", 1),
        (second.pk, "PHOTO_HORIZONTAL", 2),
        (vertical.pk, "PHOTO_VERTICAL", 1),
    ]


def test_a_finalization_started_without_a_retry_count_is_a_first_try(queued: list[Any]) -> None:
    """retry_count counts retries: a finalization nobody retried starts at 0."""
    AssetFactory(
        listing_identity_id=815, status=AssetStatus.PROCESSED, s3_key_processed="815/p/1.jpg"
    )
    job = listing_start_finalization(listing_identity_id=815)
    assert job.retry_count == 0


def test_a_processing_started_without_a_retry_count_is_a_first_try(queued: list[Any]) -> None:
    """The same for a processing job: the upload's own start is no retry."""
    AssetFactory(listing_identity_id=816, status=AssetStatus.PENDING_UPLOAD)
    job = listing_start_processing(listing_identity_id=816)
    assert MediaProcessingJob.objects.get(pk=job.pk).retry_count == 0
