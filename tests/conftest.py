"""Shared test fixtures as plugins: the S3 test server, storage adapters, generated media,
Celery worker processes, a local HTTP receiver for signed callbacks, and the servers the
fault suite breaks (a fault-injecting proxy, a private Redis and RabbitMQ, Celery beat)."""

pytest_plugins = [
    "tests.fixtures.s3server",
    "tests.fixtures.media",
    "tests.fixtures.storage",
    "tests.fixtures.worker",
    "tests.fixtures.embedded",
    "tests.fixtures.faults",
    "tests.support.callback_receiver",
]
