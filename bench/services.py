"""Servers the benchmarks start for themselves: the moto S3 server (the tests' way, reused).

``tests.fixtures.s3server.moto_server_process`` starts the server for both the tests'
fixture and the benchmarks.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.fixtures.s3server import REGION, MotoServer, free_port, moto_server_process

__all__ = ["REGION", "BenchMoto", "MotoServer", "free_port", "moto_server", "s3_env"]


@dataclass(frozen=True)
class BenchMoto(MotoServer):
    """The tests' server handle, plus the process id (the ZIP bench watches its memory)."""

    pid: int = 0


@contextmanager
def moto_server(*, lean: bool = False) -> Iterator[BenchMoto]:
    """moto_server on a free loopback port; credentials exported for this process' children.
    ``lean``: moto with a streaming CompleteMultipartUpload (bench/moto_lean.py), for
    archives of several GiB."""
    log = Path(tempfile.gettempdir()) / f"bench-moto-{uuid.uuid4().hex[:8]}.log"
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION
    )
    command = [sys.executable, "-m", "bench.moto_lean"] if lean else None
    try:
        with moto_server_process(log, command) as (endpoint, pid):
            yield BenchMoto(endpoint, pid=pid)
    finally:
        log.unlink(missing_ok=True)


def new_bucket(server: MotoServer, prefix: str = "toq-bench") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    server.client("s3").create_bucket(Bucket=name)
    return name


def s3_env(server: MotoServer, bucket: str) -> dict[str, str]:
    """What a child process (worker, gunicorn) needs to use the same server and bucket."""
    return {
        "MEDIA_BUCKET": bucket,
        "MEDIA_STORAGE_BACKEND": "s3",
        "AWS_S3_ENDPOINT_URL": server.endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }
