"""Settings come from the environment; a bad value is one line naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROD = {
    "DJANGO_ENV": "production",
    "SECRET_KEY": "k" * 20 + "-production-secret-key-for-the-deploy-check-0123456789",
    "CALLBACK_SECRET": "callback-secret",
    "ALLOWED_HOSTS": "portal.example.com",
    "DATABASE_URL": "sqlite:////tmp/toq-settings-test.sqlite3",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # A fresh process as an operator would start it: none of the suite's own variables
    # (the browser tests allow sync ORM calls beside Playwright's event loop, for one).
    harness = {"DATABASE_URL", "DJANGO_ENV", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    clean = {k: v for k, v in os.environ.items() if k not in harness}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DATABASE_URL": "postgres://x@y/z"}, "DATABASE_URL"),
        ({"CALLBACK_TIMEOUT_SECONDS": "ten"}, "CALLBACK_TIMEOUT_SECONDS"),
        ({"RECONCILER_TIMEOUT_SECONDS": "1.5h"}, "RECONCILER_TIMEOUT_SECONDS"),
        ({**PROD, "SECRET_KEY": ""}, "SECRET_KEY"),
        ({**PROD, "CALLBACK_SECRET": ""}, "CALLBACK_SECRET"),
        ({"CELERY_BROKER_URL": "kafka://broker"}, "CELERY_BROKER_URL"),
        ({"MEDIA_PIPELINE_ENGINE": "lambda"}, "MEDIA_PIPELINE_ENGINE"),
        ({"WATCHDOG_STALL_SECONDS": "30"}, "WATCHDOG_STALL_SECONDS"),
        ({"CELERY_TASK_DEFAULT_QUEUE_TYPE": "lazy"}, "CELERY_TASK_DEFAULT_QUEUE_TYPE"),
    ],
)
def test_bad_value_stops_startup_with_one_line(env: dict[str, str], variable: str) -> None:
    result = manage("check", **env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("configuration error: ") and variable in lines[0]
    assert "Traceback" not in result.stderr


def test_production_profile_passes_check_deploy() -> None:
    result = manage("check", "--deploy", "--fail-level", "DEBUG", **PROD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_defaults_are_embedded(settings) -> None:
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings as s; print(s.DATABASES['default']['ENGINE'], "
        "s.CELERY_BROKER_URL, s.MEDIA_STORAGE_BACKEND, s.STORAGES['default']['BACKEND'])",
        CELERY_BROKER_URL="",
        MEDIA_BUCKET="",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.sqlite3",
        "filesystem://",
        "local",
        "django.core.files.storage.FileSystemStorage",
    ]


def test_mysql_and_s3_from_environment() -> None:
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings as s; d = s.DATABASES['default']; "
        "print(d['ENGINE'], d['OPTIONS']['charset'], 'STRICT_TRANS_TABLES' in d['OPTIONS']['init_command'], "
        "s.STORAGES['default']['BACKEND'], s.STORAGES['default']['OPTIONS']['endpoint_url'], s.CELERY_RESULT_BACKEND)",
        DATABASE_URL="mysql://u:p@db.example:3306/toq",
        MEDIA_BUCKET="bucket-x",
        AWS_S3_ENDPOINT_URL="http://127.0.0.1:9",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/3",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.mysql",
        "utf8mb4",
        "True",
        "storages.backends.s3.S3Storage",
        "http://127.0.0.1:9",
        "redis://127.0.0.1:6379/3",
    ]


@pytest.mark.slow  # two manage.py runs, ~10 s
def test_models_and_migrations_do_not_drift() -> None:
    for managed in ("true", "false"):
        result = manage("makemigrations", "--check", "--dry-run", MEDIA_JOBS_MANAGE_TABLES=managed)
        assert result.returncode == 0, result.stdout + result.stderr


def test_worker_start_with_bad_value_is_one_line() -> None:
    """`celery -A toqportal worker` is an entry point too."""
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DJANGO_ENV"}}
    result = subprocess.run(
        [str(Path(sys.executable).with_name("celery")), "-A", "toqportal", "worker"],
        cwd=ROOT,
        env={**clean, "DATABASE_URL": "postgres://x@y/z"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("configuration error: DATABASE_URL"), (
        result.stderr
    )
