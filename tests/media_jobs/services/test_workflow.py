"""The fan-in state of a Celery workflow in the job's timeline (services.workflow), on
MariaDB's JSON lookups."""

from __future__ import annotations

import pytest

from media_jobs.models import MediaJobEvent
from media_jobs.services.workflow import step_result, step_result_record
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db


def test_a_result_is_recorded_once_per_workflow_step_and_part() -> None:
    job = JobFactory()
    first = step_result_record(
        job=job, step="thumbnails", workflow_id="wf-1", detail={"part": "p1", "result": 1}
    )
    # The write repeated after a lost connection, or a duplicate task: the first is kept.
    again = step_result_record(
        job=job, step="thumbnails", workflow_id="wf-1", detail={"part": "p1", "result": 2}
    )
    other_part = step_result_record(
        job=job, step="thumbnails", workflow_id="wf-1", detail={"part": "p2", "result": 3}
    )
    # The job requeued: a new workflow records its own result.
    next_run = step_result_record(
        job=job, step="thumbnails", workflow_id="wf-2", detail={"part": "p1", "result": 4}
    )

    assert again.pk == first.pk
    assert len({first.pk, other_part.pk, next_run.pk}) == 3
    rows = MediaJobEvent.objects.filter(job_id=job.pk, step="thumbnails").order_by("id")
    assert [(e.detail["workflowId"], e.detail["part"], e.detail["result"]) for e in rows] == [
        ("wf-1", "p1", 1),
        ("wf-1", "p2", 3),
        ("wf-2", "p1", 4),
    ]
    assert step_result(job.pk, "thumbnails", "wf-2") == {
        "part": "p1",
        "result": 4,
        "workflowId": "wf-2",
    }
