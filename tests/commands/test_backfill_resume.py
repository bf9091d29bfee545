"""An interrupted backfill (the process is killed mid-run) resumes without redoing work.

The command runs as a real ``manage.py`` process against the test database and the moto
S3 server; it is SIGKILLed after it reported two finished assets. The bucket is versioned,
so every write of a derivative leaves a version: after the second run, the derivatives of
the assets finished before the kill still have exactly one version each (never rewritten).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from media_jobs.pipeline import keys
from media_jobs.storage import pipeline_storage
from tests.fixtures.s3server import MotoServer

from .conftest import processed_photo, run_command

# Kills and resumes a backfill on a versioned bucket.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
LISTING = 7401
ASSETS = 6
KILL_AFTER = 2


def database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"mysql://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 3306}/{db['NAME']}"


@pytest.fixture
def versioned_bucket(settings: Any, moto_server: MotoServer) -> str:
    name = f"toq-resume-{uuid.uuid4().hex[:8]}"
    s3 = moto_server.client("s3")
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    settings.MEDIA_BUCKET = name
    settings.MEDIA_STORAGE_BACKEND = "s3"
    settings.AWS_S3_ENDPOINT_URL = moto_server.endpoint_url
    return name


def versions_by_key(moto_server: MotoServer, bucket: str, prefix: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    pages = moto_server.client("s3").get_paginator("list_object_versions")
    for page in pages.paginate(Bucket=bucket, Prefix=prefix):
        for version in page.get("Versions", []):
            counts[version["Key"]] = counts.get(version["Key"], 0) + 1
    return counts


@pytest.mark.skipif(connection.vendor != "mysql", reason="the child process needs MariaDB")
@pytest.mark.django_db(transaction=True)
def test_killed_backfill_resumes_where_it_stopped(
    versioned_bucket: str, moto_server: MotoServer
) -> None:
    storage = pipeline_storage()
    assets = [processed_photo(storage, LISTING, n) for n in range(1, ASSETS + 1)]
    env = {
        **os.environ,
        "DJANGO_ENV": "test",
        "DATABASE_URL": database_url(),
        "MEDIA_BUCKET": versioned_bucket,
        "MEDIA_STORAGE_BACKEND": "s3",
        "AWS_S3_ENDPOINT_URL": moto_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "manage.py", "backfill_derivatives", "--listing", str(LISTING)]
    command += ["--batch-size", "1", "-v", "2"]
    child = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    finished_first: list[str] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("done asset #"):
                finished_first.append(line.split()[2])
                if len(finished_first) == KILL_AFTER:
                    child.send_signal(signal.SIGKILL)
                    break
    finally:
        child.kill()
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert len(finished_first) == KILL_AFTER

    resumed = run_command("backfill_derivatives", "--listing", str(LISTING), "--json")

    assert resumed.code == 0, resumed.stderr
    outcomes = {f"#{item['ref']}": item["outcome"] for item in resumed.json["items"]}
    # what the killed run finished is skipped; everything else is done now
    assert {outcomes[ref] for ref in finished_first} == {"skipped"}
    assert resumed.json["done"] + resumed.json["skipped"] == ASSETS
    assert resumed.json["done"] >= ASSETS - KILL_AFTER - 1  # the asset in flight may be done
    versions = versions_by_key(moto_server, versioned_bucket, f"{LISTING}/processed/")
    for asset in assets:
        derivative_keys = [keys.derivative_key(asset.s3_key_raw, s) for s in keys.IMAGE_SIZES]
        assert all(versions.get(key, 0) >= 1 for key in derivative_keys)
        if f"#{asset.pk}" in finished_first:
            assert [versions[key] for key in derivative_keys] == [1, 1, 1, 1]
        asset.refresh_from_db()
        assert asset.s3_key_processed == keys.derivative_key(asset.s3_key_raw, "large")
