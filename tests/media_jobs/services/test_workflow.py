"""The fan-in state of a Celery workflow in the job's timeline (services.workflow), on
MariaDB's JSON lookups."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from media_jobs.models import MediaJobEvent, MediaProcessingJob
from media_jobs.services.workflow import (
    step_result,
    step_result_record,
    step_results,
    workflow_part_results,
    workflow_parts_done,
)
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


def event(
    job: MediaProcessingJob, step: str, detail: Any, *, kind: str = "succeeded", **fields: Any
) -> MediaJobEvent:
    return MediaJobEvent.objects.create(
        job_id=job.pk, step=step, kind=kind, detail=detail, **fields
    )


def test_step_results_are_this_workflows_successes_of_these_steps_oldest_first() -> None:
    """Oldest first by id, whatever the events' clock says (a worker's clock may lag)."""
    job, other_job = JobFactory(), JobFactory()
    later = timezone.now() + timedelta(minutes=5)
    first = event(job, "thumbnails", {"workflowId": "wf-1", "part": "a"}, at=later)
    second = event(job, "video_thumbnails", {"workflowId": "wf-1", "part": "b"})
    event(job, "thumbnails", {"workflowId": "wf-1", "part": "c"}, kind="failed")
    event(job, "thumbnails", {"workflowId": "wf-2", "part": "d"})
    event(job, "video_transcode", {"workflowId": "wf-1", "part": "e"})
    event(job, "thumbnails", None)  # an event without a detail
    event(job, "thumbnails", ["not", "a", "dict"])
    event(other_job, "thumbnails", {"workflowId": "wf-1", "part": "f"})

    found = step_results(job.pk, ["thumbnails", "video_thumbnails"], "wf-1")

    assert found == [first.detail, second.detail]
    assert [d["part"] for d in found] == ["a", "b"]


def test_step_result_is_the_latest_result_of_the_step_or_none() -> None:
    job = JobFactory()
    for n in (1, 2, 3):
        event(job, "validate", {"workflowId": "wf-1", "result": n})
    assert step_result(job.pk, "validate", "wf-1") == {"workflowId": "wf-1", "result": 3}
    assert step_result(job.pk, "validate", "wf-2") is None
    assert step_result(job.pk, "consolidate", "wf-1") is None


def test_part_results_and_parts_done_of_a_workflow() -> None:
    """Every part step counts (photos, posters, transcodes); other steps, other kinds,
    other workflows and other jobs do not."""
    job, other_job = JobFactory(), JobFactory()
    event(job, "thumbnails", {"workflowId": "wf-1", "part": "p1", "result": {"n": 1}})
    event(job, "video_thumbnails", {"workflowId": "wf-1", "part": "p2", "result": [2]})
    event(job, "video_transcode", {"workflowId": "wf-1", "part": "p3"})
    event(job, "thumbnails", {"workflowId": "wf-1", "part": "p4"}, kind="failed")
    event(job, "validate", {"workflowId": "wf-1", "part": "p5", "result": 5})
    event(job, "thumbnails", {"workflowId": "wf-2", "part": "p6", "result": 6})
    event(other_job, "thumbnails", {"workflowId": "wf-1", "part": "p7", "result": 7})
    event(job, "thumbnails", {"workflowId": "wf-1", "part": "p1", "result": {"n": 9}})

    assert workflow_part_results(job.pk, "wf-1") == {"p1": {"n": 9}, "p2": [2], "p3": None}
    assert workflow_parts_done(job.pk, "wf-1") == {"p1", "p2", "p3"}
    assert workflow_parts_done(job.pk, "wf-3") == set()


def test_a_step_result_without_parts_is_recorded_once_with_its_duration() -> None:
    """Only a success of the same job, step and workflow counts as already recorded."""
    job, other_job = JobFactory(), JobFactory()
    event(other_job, "validate", {"workflowId": "wf-1", "result": "other job"})
    event(job, "consolidate", {"workflowId": "wf-1", "result": "other step"})
    event(job, "validate", {"workflowId": "wf-1", "result": "failed"}, kind="failed")
    event(job, "validate", {"workflowId": "wf-2", "result": "other workflow"})

    first = step_result_record(
        job=job, step="validate", workflow_id="wf-1", detail={"result": 1}, duration_ms=1234
    )
    again = step_result_record(job=job, step="validate", workflow_id="wf-1", detail={"result": 2})

    assert again.pk == first.pk
    stored = MediaJobEvent.objects.get(pk=first.pk)
    assert (stored.job_id, stored.step, stored.kind, stored.duration_ms) == (
        job.pk,
        "validate",
        "succeeded",
        1234,
    )
    assert stored.detail == {"result": 1, "workflowId": "wf-1"}
    assert MediaJobEvent.objects.filter(job_id=job.pk, step="validate").count() == 3
