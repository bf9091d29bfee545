"""Servers the benchmarks start for themselves: the moto S3 server (the tests' way, reused).

``tests.fixtures.s3server`` holds the launch as a pytest fixture; the helpers it exposes
(``free_port``, ``MotoServer``, ``REGION``) are imported, and the few lines that start the
process are here because a fixture cannot be called outside pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.fixtures.s3server import REGION, MotoServer, free_port

__all__ = ["REGION", "BenchMoto", "MotoServer", "free_port", "moto_server", "s3_env"]


@dataclass(frozen=True)
class BenchMoto(MotoServer):
    """The tests' server handle, plus the process id (the ZIP bench watches its memory)."""

    pid: int = 0


@contextmanager
def moto_server() -> Iterator[BenchMoto]:
    """moto_server on a free loopback port; credentials exported for this process' children."""
    port = free_port()
    binary = Path(sys.executable).with_name("moto_server")
    log = Path(tempfile.gettempdir()) / f"bench-moto-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"{endpoint}/moto-api/", timeout=1)
            break
        except requests.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"moto_server did not start: {log.read_text()}") from None
            time.sleep(0.1)
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION
    )
    server = BenchMoto(endpoint, pid=proc.pid)
    try:
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
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
