"""A task module nobody imports up front: ``test_queueing`` removes it from ``sys.modules``
and Celery's registry, so ``task_named`` meets it as a web or command process meets
``media_jobs.tasks`` - by name only."""

from __future__ import annotations

from toqportal.celery import app


@app.task(name="tests.media_jobs.services.lazy_tasks.probe")
def probe(value: int) -> int:
    return value
