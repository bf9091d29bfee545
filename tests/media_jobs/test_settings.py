"""Settings come from the environment; a bad value is one line naming the variable.

Each variable's rule is checked by evaluating the settings package afresh in this process
(``fresh_settings``); what an operator sees when start-up stops (exit 2, one line, no
traceback) is checked on real ``manage.py`` and ``celery`` processes.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from django.core.exceptions import ImproperlyConfigured

import toqportal

ROOT = Path(__file__).resolve().parents[2]
PROD = {
    "DJANGO_ENV": "production",
    "SECRET_KEY": "k" * 20 + "-production-secret-key-for-the-deploy-check-0123456789",
    "CALLBACK_SECRET": "callback-secret",
    "ALLOWED_HOSTS": "portal.example.com",
    "DATABASE_URL": "sqlite:////tmp/toq-settings-test.sqlite3",
}


# The suite's own variables, which an operator's environment does not have (the browser
# tests allow sync ORM calls beside Playwright's event loop, for one).
HARNESS = ("DATABASE_URL", "DJANGO_ENV", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE")
PACKAGE = "toqportal.settings"


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``manage.py`` in a fresh process, as an operator would start it."""
    clean = {k: v for k, v in os.environ.items() if k not in HARNESS}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def fresh_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    """The settings package evaluated afresh with ``env`` over an operator's environment (no
    harness variables); the running suite keeps its own settings modules."""
    for name in HARNESS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ours = {n: m for n, m in sys.modules.items() if n == PACKAGE or n.startswith(PACKAGE + ".")}
    for name in ours:
        del sys.modules[name]
    try:
        return importlib.import_module(PACKAGE)
    finally:
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]
        sys.modules.update(ours)
        toqportal.settings = ours[PACKAGE]  # type: ignore[attr-defined]


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
def test_a_bad_value_is_one_line_naming_the_variable(
    env: dict[str, str], variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the entry points catch (ConfigError, of the settings evaluated afresh, is one)
    with pytest.raises(ImproperlyConfigured) as raised:
        fresh_settings(monkeypatch, **env)
    message = str(raised.value)
    assert message.startswith(f"{variable}: ") and "\n" not in message


def test_bad_value_stops_startup_with_one_line() -> None:
    result = manage("check", CALLBACK_TIMEOUT_SECONDS="ten")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0] == "configuration error: CALLBACK_TIMEOUT_SECONDS: expected int, got 'ten'"
    assert "Traceback" not in result.stderr


def test_production_profile_passes_check_deploy() -> None:
    result = manage("check", "--deploy", "--fail-level", "DEBUG", **PROD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_defaults_are_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    s = fresh_settings(monkeypatch, CELERY_BROKER_URL="", MEDIA_BUCKET="")
    assert s.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert s.CELERY_BROKER_URL == "filesystem://"
    assert s.MEDIA_STORAGE_BACKEND == "local"
    assert s.STORAGES["default"]["BACKEND"] == "django.core.files.storage.FileSystemStorage"


def test_mysql_and_s3_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    s = fresh_settings(
        monkeypatch,
        DATABASE_URL="mysql://u:p@db.example:3306/toq",
        MEDIA_BUCKET="bucket-x",
        AWS_S3_ENDPOINT_URL="http://127.0.0.1:9",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/3",
    )
    database = s.DATABASES["default"]
    assert database["ENGINE"] == "django.db.backends.mysql"
    assert database["OPTIONS"]["charset"] == "utf8mb4"
    assert "STRICT_TRANS_TABLES" in database["OPTIONS"]["init_command"]
    assert s.STORAGES["default"]["BACKEND"] == "storages.backends.s3.S3Storage"
    assert s.STORAGES["default"]["OPTIONS"]["endpoint_url"] == "http://127.0.0.1:9"
    assert s.CELERY_RESULT_BACKEND == "redis://127.0.0.1:6379/3"


def test_fresh_settings_leave_the_suites_own_in_place(
    monkeypatch: pytest.MonkeyPatch, settings
) -> None:
    before = sys.modules[PACKAGE]
    fresh_settings(monkeypatch, DATABASE_URL="mysql://u:p@db.example:3306/toq")
    assert sys.modules[PACKAGE] is before and toqportal.settings is before
    assert settings.DATABASES["default"]["NAME"] != "toq"


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
