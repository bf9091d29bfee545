"""The Celery app: configured from Django settings (``CELERY_*``), tasks in media_jobs.tasks.

Beat schedule (``celery -A toqportal beat``, the ``beat`` line of the Procfile):

- ``media_jobs.tasks.reconcile_stuck_jobs`` every ``RECONCILER_INTERVAL_SECONDS`` (300);
- ``media_jobs.tasks.clean_old_jobs`` daily at 03:17 UTC.

``CELERY_BROKER_TRANSPORT_OPTIONS_JSON`` (a JSON object) is merged over the settings'
broker transport options: the worker tests use it for a short Redis visibility timeout and
a key prefix of their own (see tests/fixtures/worker.py).
"""

from __future__ import annotations

import json
import os

from celery import Celery
from celery.schedules import crontab
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "toqportal.settings")

app = Celery("toqportal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Operations tasks (the management commands' --enqueue) live beside the engine's tasks.
app.autodiscover_tasks(related_name="ops_tasks")

# Task logs go through Django's LOGGING (one JSON object per line, with job_id, step,
# traceparent and duration_ms from media_jobs.pipeline.logs), not Celery's text format.
app.conf.worker_hijack_root_logger = False

# The embedded broker polls its folder; Kombu's default of 1 s would add a second to every
# hop of a workflow (validate -> parts -> consolidate).
if str(app.conf.broker_url or "").startswith("filesystem"):
    app.conf.broker_transport_options = {
        "polling_interval": 0.2,
        **(app.conf.broker_transport_options or {}),
    }

_transport_overrides = os.environ.get("CELERY_BROKER_TRANSPORT_OPTIONS_JSON", "")
if _transport_overrides:
    app.conf.broker_transport_options = {
        **(app.conf.broker_transport_options or {}),
        **json.loads(_transport_overrides),
    }

# SPEC §8: the reconciler every few minutes, the cleaner once a day.
app.conf.beat_schedule = {
    "reconcile stuck media jobs": {
        "task": "media_jobs.tasks.reconcile_stuck_jobs",
        "schedule": float(settings.RECONCILER_INTERVAL_SECONDS),
    },
    "clean old media jobs": {
        "task": "media_jobs.tasks.clean_old_jobs",
        "schedule": crontab(hour=3, minute=17),
    },
}
