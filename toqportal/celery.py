"""The Celery app: configured from Django settings (``CELERY_*``), tasks in media_jobs.tasks."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "toqportal.settings")

app = Celery("toqportal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
