"""Shared test fixtures as plugins: the S3 test server, storage adapters, generated media,
Celery worker processes, and a local HTTP receiver for signed callbacks."""

pytest_plugins = [
    "tests.fixtures.s3server",
    "tests.fixtures.media",
    "tests.fixtures.storage",
    "tests.fixtures.worker",
    "tests.fixtures.embedded",
    "tests.support.callback_receiver",
]
