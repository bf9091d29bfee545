"""The Celery app: configured from Django settings (``CELERY_*``), tasks in media_jobs.tasks.

The beat schedule (watchdog every WATCHDOG_INTERVAL_SECONDS, callback outbox every
CALLBACK_OUTBOX_INTERVAL_SECONDS, reconciler every RECONCILER_INTERVAL_SECONDS, cleaner daily)
is the ``CELERY_BEAT_SCHEDULE`` setting in toqportal/settings/celery.py.

Broker transport options (polling, visibility timeout, overrides) are settings:
toqportal/settings/celery.py.
"""

from __future__ import annotations

import os

from celery import Celery

from toqportal.entrypoints import load_settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "toqportal.settings")
# `celery -A toqportal worker|beat` enters here: a bad setting is one line, not a traceback.
load_settings()

app = Celery("toqportal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Operations tasks (the management commands' --enqueue) live beside the engine's tasks.
app.autodiscover_tasks(related_name="ops_tasks")
