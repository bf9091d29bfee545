"""The processing workflow's tasks (docs/contract.md §4): validate and fan out, one task per
part, consolidate once every part has a result."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task

from toqportal.celery import app

from ..models import (
    STEP_CONSOLIDATE,
    STEP_POSTERS,
    STEP_THUMBNAILS,
    STEP_TRANSCODE,
    STEP_VALIDATE,
    EventKind,
)
from ..pipeline.consolidate import consolidate
from ..pipeline.thumbnails import generate_thumbnails
from ..pipeline.validate import validate_assets
from ..pipeline.video import generate_poster_frames, transcode_videos
from ..services import queueing
from ..services.events import event_record
from ..services.transient import db_retry
from ..services.workflow import step_result_record, workflow_part_results, workflow_parts_done
from ..storage import pipeline_config, pipeline_storage
from .planning import iso_time, merge_parallel_results, part_input, part_summary, plan_parts
from .policies import (
    BRANCH_RETRY,
    CONSOLIDATE_RETRY,
    PART_LIMITS,
    TIME_LIMITS,
    VALIDATE_RETRY,
    FirstTask,
    ResilientTask,
    thumbnail_chunk_size,
)
from .steps import (
    apply_result,
    claim,
    elapsed_ms,
    fail_processing,
    failure_context,
    give_up,
    heartbeat,
    job_start_running,
    retry_or_give_up,
    step_run,
    validation_of,
    worker_lost,
)

logger = logging.getLogger("toq.media.tasks")


@app.task(
    bind=True,
    base=FirstTask,
    first_step=STEP_VALIDATE,
    name=queueing.RUN_PROCESSING,
    ignore_result=True,
    soft_time_limit=TIME_LIMITS[STEP_VALIDATE][0],
    time_limit=TIME_LIMITS[STEP_VALIDATE][1],
)
def run_processing(self: Task, job_id: int) -> None:
    """First step of a processing job: RUNNING, validate, fan the parallel parts out."""
    with step_run(job_id, STEP_VALIDATE) as run:
        if run is None:
            return
        input, workflow_id = run.input, run.workflow_id
        job = job_start_running(run.job, workflow_id)
        if job is None:
            return
        validation = validation_of(job.pk, workflow_id)
        chunk_size = thumbnail_chunk_size()
        if validation is None:
            attempt = claim(self, job, STEP_VALIDATE, workflow_id)
            if attempt is None:
                return
            started = time.perf_counter()
            detail = {"workflowId": workflow_id}
            lost = worker_lost(attempt, STEP_VALIDATE)
            if lost is not None:
                give_up(job, STEP_VALIDATE, lost, started, detail, attempt.lost_before)
                fail_processing(job, input, workflow_id, "VALIDATION_FAILED", lost)
                return
            event = {**input, "executionArn": workflow_id, "startedAt": iso_time(job.started_at)}
            with heartbeat(attempt):
                try:
                    result = dict(validate_step(event))
                except Exception as exc:  # noqa: BLE001 - the state machine catches States.ALL
                    retry_or_give_up(self, job, STEP_VALIDATE, exc, VALIDATE_RETRY, started, detail)
                    fail_processing(job, input, workflow_id, "VALIDATION_FAILED", exc)
                    return
            parts = plan_parts(result, chunk_size)
            summary = {
                "result": result,
                "parts": parts,
                "chunkSize": chunk_size,
                "assets": len(result.get("assets") or []),
                "failedAssets": sum(1 for a in result.get("assets") or [] if a.get("error")),
            }
            db_retry(
                lambda: step_result_record(
                    job=job,
                    step=STEP_VALIDATE,
                    workflow_id=workflow_id,
                    detail=summary,
                    duration_ms=elapsed_ms(started),
                ),
                what="validate result",
            )
            validation = validation_of(job.pk, workflow_id)
            assert validation is not None
            logger.info(
                "validate finished",
                extra={"duration_ms": round(elapsed_ms(started), 1), "parts": len(parts)},
            )
        done = workflow_parts_done(job.pk, workflow_id)
        pending = [p for p in validation["parts"] if p not in done]
        try:
            queueing.enqueue_each(processing_part.name, [(job.pk, part) for part in pending])
        except Exception:
            logger.exception("parts not queued; the watchdog will queue them")
            return
        if not pending:
            consolidate_or_queue(job.pk)


def validate_step(event: dict[str, Any]) -> dict[str, Any]:

    return dict(validate_assets(event, storage=pipeline_storage(), config=pipeline_config()))


def _run_part(step: str, validation: dict[str, Any]) -> dict[str, Any]:
    storage, config = pipeline_storage(), pipeline_config()
    if step == STEP_THUMBNAILS:
        # the stored validation result is plain JSON of the ValidationResult shape
        return dict(generate_thumbnails(validation, storage=storage, config=config))  # type: ignore[arg-type]
    if step == STEP_POSTERS:
        return dict(generate_poster_frames(validation, storage=storage, config=config))
    if step == STEP_TRANSCODE:
        return dict(transcode_videos(validation, storage=storage, config=config))
    raise ValueError(f"unknown part step {step!r}")


@app.task(
    bind=True,
    base=ResilientTask,
    name="media_jobs.tasks.processing_part",
    ignore_result=True,
    soft_time_limit=PART_LIMITS[0],
    time_limit=PART_LIMITS[1],
)
def processing_part(self: Task, job_id: int, part: str) -> None:
    """One parallel part: a chunk of photos, or one video's poster frame or transcode. A
    photo or video that cannot be processed is an error entry of the part's result (an
    error of that asset only); only what fails the step itself is retried and, when the
    retries are used up, fails the job."""
    step = part.split(":")[0]
    with step_run(job_id, step, part=part) as run:
        if run is None:
            return
        job, input, workflow_id = run.job, run.input, run.workflow_id
        validation = validation_of(job.pk, workflow_id)
        if validation is None or part not in validation.get("parts", []):
            logger.error(
                "part without a validated workflow; dropped", extra={"workflow_id": workflow_id}
            )
            return
        if part not in workflow_parts_done(job.pk, workflow_id):
            attempt = claim(self, job, step, workflow_id, part)
            if attempt is None:
                return
            started = time.perf_counter()
            detail = {"workflowId": workflow_id, "part": part}
            lost = worker_lost(attempt, step)
            if lost is not None:
                give_up(job, step, lost, started, detail, attempt.lost_before)
                fail_processing(job, input, workflow_id, "PROCESSING_FAILED", lost)
                return
            subset = part_input(validation["result"], part, validation.get("chunkSize") or 1)
            with heartbeat(attempt):
                try:
                    result = _run_part(step, subset)
                except Exception as exc:  # noqa: BLE001 - any uncaught error -> ReportFailure
                    retry_or_give_up(self, job, step, exc, BRANCH_RETRY, started, detail)
                    fail_processing(job, input, workflow_id, "PROCESSING_FAILED", exc)
                    return
            # The result is the part's whole work: a lost connection must not lose it.
            db_retry(
                lambda: step_result_record(
                    job=job,
                    step=step,
                    workflow_id=workflow_id,
                    detail={**detail, "result": result, **part_summary(result)},
                    duration_ms=elapsed_ms(started),
                ),
                what=f"{part} result",
            )
        # Fan-in: after this part's commit, the last part to finish sees every result.
        if set(validation["parts"]) <= workflow_parts_done(job.pk, workflow_id):
            consolidate_or_queue(job.pk)


@app.task(
    bind=True,
    base=ResilientTask,
    name="media_jobs.tasks.consolidate_processing",
    ignore_result=True,
    soft_time_limit=TIME_LIMITS[STEP_CONSOLIDATE][0],
    time_limit=TIME_LIMITS[STEP_CONSOLIDATE][1],
)
def consolidate_processing(self: Task, job_id: int) -> None:
    """ConsolidateResults + FinalizeAndCallback: the same body the state machine builds."""
    _consolidate(job_id, self)


def consolidate_or_queue(job_id: int) -> None:
    """Consolidate in the task that completed the fan-in: consolidation is a pure function
    of the recorded results (a few ms), so a broker hop for it is only latency (~15-30 ms
    a job). When that fails for any reason the consolidation task takes over, with its own
    retry policy; a duplicate run is harmless (the receiver's service applies a body once)."""
    try:
        _consolidate(job_id, None)
    except Exception:
        logger.warning("consolidation in place failed; queued", exc_info=True)
        queueing.enqueue_or_leave(consolidate_processing.name, job_id)


def _consolidate(job_id: int, task: Task | None) -> None:
    """Build and apply the run's body. Without ``task`` (in place) an error is raised for
    the caller to queue the task; with it, it is retried and in the end reported."""
    with step_run(job_id, STEP_CONSOLIDATE) as run:
        if run is None:
            return
        job, input, workflow_id = run.job, run.input, run.workflow_id
        validation = validation_of(job.pk, workflow_id)
        parts = workflow_part_results(job.pk, workflow_id)
        if validation is None or not set(validation["parts"]) <= set(parts):
            logger.warning("consolidation before every part finished; skipped")
            return
        started = time.perf_counter()
        detail = {"workflowId": workflow_id}
        event_record(job=job, step=STEP_CONSOLIDATE, kind=EventKind.STARTED, detail=detail)
        result = validation["result"]
        event = {
            **failure_context(job, input, workflow_id),
            "assets": result.get("assets") or [],
            "parallelResults": merge_parallel_results(result, parts),
        }
        try:
            body = consolidate(event)["body"]
        except Exception as exc:
            if task is None:
                raise
            retry_or_give_up(task, job, STEP_CONSOLIDATE, exc, CONSOLIDATE_RETRY, started, detail)
            fail_processing(job, input, workflow_id, "PROCESSING_FAILED", exc)
            return
        db_retry(
            lambda: event_record(
                job=job,
                step=STEP_CONSOLIDATE,
                kind=EventKind.SUCCEEDED,
                duration_ms=elapsed_ms(started),
                detail={**detail, "status": body["status"], "outputs": len(body["outputs"])},
            ),
            what="consolidation result",
        )
        apply_result(job, body)
