"""Shared test fixtures: the S3 test server and generated media are plugins under fixtures/."""

pytest_plugins = [
    "tests.fixtures.s3server",
    "tests.fixtures.media",
    "tests.fixtures.storage",
    "tests.fixtures.worker",
]
