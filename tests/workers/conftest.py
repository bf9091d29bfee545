"""The Celery engine run eagerly (in this process) for the failure paths and the retry
policies; the real worker process is the ``celery_worker`` fixture."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures.worker import TEST_CALLBACK_SECRET
from toqportal.celery import app


@pytest.fixture
def eager_engine(
    transactional_db: None, settings: Any, moto_server: Any, s3_bucket: str
) -> Iterator[None]:
    """Tasks run inline (retries too, without waiting); storage is the S3 test server."""

    settings.MEDIA_BUCKET = s3_bucket
    settings.MEDIA_STORAGE_BACKEND = "s3"
    settings.AWS_S3_ENDPOINT_URL = moto_server.endpoint_url
    settings.MEDIA_PIPELINE_ENGINE = "celery"
    settings.CALLBACK_SECRET = TEST_CALLBACK_SECRET
    settings.CALLBACK_URL = ""
    settings.PIPELINE_RETRY_DELAY_SCALE = 0.0
    saved = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, False
    try:
        yield
    finally:
        app.conf.task_always_eager, app.conf.task_eager_propagates = saved
