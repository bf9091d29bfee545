"""The finalization workflow's task (docs/contract.md §5): the listing ZIP, then the callback."""

from __future__ import annotations

import time

from celery import Task

from toqportal.celery import app

from ..models import STEP_ZIP
from ..pipeline.consolidate import (
    describe_failure,
    finalization_failure_body,
    finalization_success_body,
)
from ..pipeline.zipper import create_zip_bundle
from ..services import queueing
from ..services.transient import db_retry
from ..services.workflow import step_result, step_result_record
from ..storage import pipeline_storage
from .policies import TIME_LIMITS, ZIP_RETRY, FirstTask
from .steps import (
    apply_result,
    claim,
    elapsed_ms,
    give_up,
    heartbeat,
    job_start_running,
    retry_or_give_up,
    step_run,
    worker_lost,
)


@app.task(
    bind=True,
    base=FirstTask,
    first_step=STEP_ZIP,
    name=queueing.RUN_FINALIZATION,
    ignore_result=True,
    soft_time_limit=TIME_LIMITS[STEP_ZIP][0],
    time_limit=TIME_LIMITS[STEP_ZIP][1],
)
def run_finalization(self: Task, job_id: int) -> None:
    """CreateZipBundle + FinalizeAndCallback (docs/contract.md §5). A ZIP already recorded
    for this workflow (its result written, then the task lost) is not built again."""
    with step_run(job_id, STEP_ZIP) as run:
        if run is None:
            return
        input, workflow_id = run.input, run.workflow_id
        job = job_start_running(run.job, workflow_id)
        if job is None:
            return
        recorded = step_result(job.pk, STEP_ZIP, workflow_id)
        if recorded is not None:
            apply_result(job, finalization_success_body(input, recorded["result"]))
            return
        attempt = claim(self, job, STEP_ZIP, workflow_id)
        if attempt is None:
            return
        started = time.perf_counter()
        detail = {"workflowId": workflow_id}
        lost = worker_lost(attempt, STEP_ZIP)
        if lost is not None:
            give_up(job, STEP_ZIP, lost, started, detail, attempt.lost_before)
            code, message = describe_failure(lost)
            apply_result(job, finalization_failure_body(input, error=code, cause=message))
            return

        with heartbeat(attempt):
            try:
                result = create_zip_bundle(dict(input), storage=pipeline_storage())
            except Exception as exc:  # noqa: BLE001 - the state machine catches States.ALL
                retry_or_give_up(self, job, STEP_ZIP, exc, ZIP_RETRY, started, detail)
                code, message = describe_failure(exc)
                apply_result(job, finalization_failure_body(input, error=code, cause=message))
                return
        db_retry(
            lambda: step_result_record(
                job=job,
                step=STEP_ZIP,
                workflow_id=workflow_id,
                detail={"result": result},
                duration_ms=elapsed_ms(started),
            ),
            what="zip result",
        )
        apply_result(job, finalization_success_body(input, result))
