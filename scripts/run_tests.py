#!/usr/bin/env python
"""``make test``: pick the real backends when they answer, say which, then run pytest.

MariaDB/MySQL from DATABASE_URL (else mysql://root@127.0.0.1:3306/test) and Redis from
CELERY_BROKER_URL (else redis://127.0.0.1:6379/15). Without them the suite falls back to
SQLite and skips the worker tests - except with CI=true, where an unreachable backend fails
the run, so CI never passes on the fallback by accident.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import MySQLdb
import redis

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "mysql://root@127.0.0.1:3306/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/15"


def probe_mysql(url: str) -> str | None:
    """The server version when it answers, else None."""

    parts = urlparse(url)
    try:
        conn = MySQLdb.connect(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=parts.username or "root",
            passwd=parts.password or "",
            connect_timeout=3,
        )
    except MySQLdb.Error as exc:
        print(f"database: {url} unreachable ({exc})")
        return None
    cur = conn.cursor()
    cur.execute("SELECT VERSION()")
    version = cur.fetchone()[0]
    conn.close()
    return version


def probe_redis(url: str) -> bool:

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=3).ping())
    except redis.RedisError as exc:
        print(f"redis: {url} unreachable ({exc})")
        return False


def main(argv: list[str]) -> int:
    ci = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
    env = dict(os.environ, DJANGO_ENV="test")

    db_url = os.environ.get("DATABASE_URL") or DEFAULT_DB
    if db_url.startswith(("mysql://", "mariadb://")):
        version = probe_mysql(db_url)
        if version:
            env["DATABASE_URL"] = db_url
            print(f"backend database: {db_url} (server {version})")
        elif ci:
            print("CI=true: MariaDB/MySQL is required; not falling back to SQLite")
            return 1
        else:
            env.pop("DATABASE_URL", None)
            print("backend database: SQLite (fallback; MariaDB unreachable)")
    else:
        print(f"backend database: {db_url}")

    broker = os.environ.get("CELERY_BROKER_URL", "")
    redis_url = broker if broker.startswith("redis") else DEFAULT_REDIS
    if probe_redis(redis_url):
        env["TEST_REDIS_URL"] = redis_url
        print(f"backend redis (worker tests): {redis_url}")
    elif ci:
        print("CI=true: Redis is required for the worker tests")
        return 1
    else:
        env.pop("TEST_REDIS_URL", None)
        print("backend redis: unreachable; worker tests will be skipped")
    print("backend s3: moto server on a free loopback port (started by the tests)")
    # The tests' own Celery app must not inherit a developer's broker.
    env.pop("CELERY_BROKER_URL", None)
    # The suite starts many Python processes (xdist workers, Celery workers, manage.py and
    # Lambda-container subprocesses). Without bytecode caches each one compiles every module
    # it imports again, and pytest rewrites every test module's asserts again: 10 s of
    # collection in each process instead of 2. So the runner keeps the caches (__pycache__,
    # ignored by git) even where the machine's environment turns them off.
    if env.pop("PYTHONDONTWRITEBYTECODE", None):
        print("bytecode caches: on for the test run (PYTHONDONTWRITEBYTECODE ignored)")

    cmd = [sys.executable, "-m", "pytest", *argv]
    print("running:", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
