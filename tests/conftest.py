"""Shared test fixtures as plugins: the S3 test server, storage adapters, generated media,
Celery worker processes, a local HTTP receiver for signed callbacks, and the servers the
fault suite breaks (a fault-injecting proxy, a private Redis and RabbitMQ, Celery beat)."""

import atexit
import logging
import os
import shutil
import sys
import tempfile

import pytest

from media_jobs.sample_media import SHARED_DIR_VARIABLE

pytest_plugins = [
    "tests.fixtures.s3server",
    "tests.fixtures.media",
    "tests.fixtures.storage",
    "tests.fixtures.worker",
    "tests.fixtures.embedded",
    "tests.fixtures.faults",
    "tests.support.callback_receiver",
]


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        atexit.register(_leave_without_teardown)
    elif not os.environ.get(SHARED_DIR_VARIABLE):
        # One folder for the run's generated clips: the xdist workers (started after this,
        # with this environment) make each clip once between them, not once each.
        shared = tempfile.mkdtemp(prefix="toq-sample-media-")
        os.environ[SHARED_DIR_VARIABLE] = shared
        config.add_cleanup(lambda: _forget_shared_media(shared))


def _forget_shared_media(shared: str) -> None:
    shutil.rmtree(shared, ignore_errors=True)
    os.environ.pop(SHARED_DIR_VARIABLE, None)


def _leave_without_teardown() -> None:
    """An xdist worker (make test-fast) has reported everything and closed its servers by
    now; what is left of its exit is the interpreter freeing a heap of every test's objects,
    1.6 s of CPU per worker (measured with strace), while the run waits for the last one.
    Exit handlers run last-registered first: this one runs after those the session added;
    logging's own would run later, so it shuts logging down itself, flushes and leaves."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
