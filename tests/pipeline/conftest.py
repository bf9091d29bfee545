"""Fixtures shared by the pipeline's tests."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator

import pytest

from media_jobs.pipeline.logs import JsonFormatter


@pytest.fixture
def json_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own writing JSON lines to a stream, at DEBUG, not propagating."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"toq.test.{uuid.uuid4().hex[:6]}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)
