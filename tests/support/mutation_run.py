"""A pytest plugin for ``make mutation`` (loaded with ``-p`` from pyproject's mutmut
settings; inert in every other run).

- A mutant's tests run fastest first (durations from mutmut's stats run), so a killed
  mutant stops (``-x``) at its cheapest failing test instead of after the slow ones.
- Each concurrent mutant run takes a free slot (a lock held for the process's life) and
  its own test database, ``<DATABASE_TEST_NAME>_slot<N>``, kept between runs
  (``--reuse-db``): two mutants never share rows or flushes.
- mutmut's fork server collects the tests once and forks a process per mutant. Before it
  forks, it also reads botocore's service models (a mutant whose tests touch S3 spent a fifth
  of its time doing that again), and it freezes its heap, so the garbage collections of a
  mutant (pytest runs five at its end) skip the objects every mutant inherits: those took
  nearly a third of a mutant's time.
"""

from __future__ import annotations

import fcntl
import gc
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import boto3
import pytest
from django.conf import settings
from django.db import connections

from media_jobs.pipeline.aws import ClientOptions, shared_client

SLOTS = 32  # mutmut's own (fork server + children) and everyone's --try
_held: dict[int, Any] = {}  # pid -> its slot's lock file, open until the process exits
_base_names: dict[str, str] = {}  # alias -> the test database name before any slot


def _under_mutmut() -> bool:
    # mutmut sets it for the stats, clean and mutant runs ("" for the clean run)
    return "MUTANT_UNDER_TEST" in os.environ


@cache
def _durations() -> dict[str, float]:
    stats = Path("mutmut-stats.json")  # mutmut runs the tests from mutants/
    if not stats.exists():
        return {}
    return dict(json.loads(stats.read_text()).get("duration_by_test", {}))


def _take_slot() -> int:
    for slot in range(SLOTS):
        handle = open(f"mutmut-db-slot-{slot}.lock", "w")  # held until the process exits
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _held[os.getpid()] = handle
        return slot
    raise RuntimeError(f"more than {SLOTS} concurrent mutant runs")


def pytest_configure(config: pytest.Config) -> None:
    # A process forked from one that has a slot (mutmut's fork server) takes its own.
    if not _under_mutmut() or os.getpid() in _held:
        return
    gc.freeze()
    for connection in connections.all(initialized_only=True):
        connection.connection = None  # the parent's socket: never close or reuse it
    slot = _take_slot()
    for alias, database in settings.DATABASES.items():
        test = database.setdefault("TEST", {})
        base = _base_names.setdefault(alias, test.get("NAME") or f"test_{database['NAME']}")
        test["NAME"] = f"{base}_slot{slot}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if _under_mutmut():
        durations = _durations()
        items.sort(key=lambda item: durations.get(item.nodeid, 0.0))


def pytest_collection_finish(session: pytest.Session) -> None:
    # the fork server's warm-up is the only collect-only run under mutmut
    if _under_mutmut() and session.config.option.collectonly:
        _warm_up_fork_server()


def _warm_up_fork_server() -> None:
    nowhere = "http://127.0.0.1:9"  # building a client sends nothing
    for service in ("s3", "stepfunctions"):
        shared_client(service, ClientOptions(endpoint_url=nowhere, region="us-east-1"))
        # the tests' own administrator clients go through boto3's default session
        boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=nowhere,
            region_name="us-east-1",
            aws_access_key_id="warm-up",
            aws_secret_access_key="warm-up",
        )
    gc.freeze()
