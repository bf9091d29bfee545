"""The Django-free media pipeline.

Every step of docs/contract.md §2, §4, §5 and §6 (sender) lives here as a plain function over a
storage port. Both engines call them: the Celery tasks in ``media_jobs.tasks`` and the
AWS Lambda handlers in ``media_jobs.pipeline.handlers``. Nothing in this package may
import Django (``tests/pipeline/test_no_django.py`` guards it).
"""
