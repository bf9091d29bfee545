"""The migrations create docs/contract.md §3's schema exactly on MariaDB/MySQL (information_schema), and
``MEDIA_JOBS_MANAGE_TABLES=false`` leaves existing tables alone."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.db import connection

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "mysql", reason="schema contract is MySQL/MariaDB's"),
]
ROOT = Path(__file__).resolve().parents[2]

# column -> (DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, default, extra); DATA_TYPE of a JSON column is
# 'longtext' on MariaDB (JSON is an alias with a json_valid CHECK) and 'json' on MySQL.
JOBS = {
    "id": ("int", "int(10) unsigned", "NO", None, "auto_increment"),
    "listing_identity_id": ("int", "int(10) unsigned", "NO", None, ""),
    "status": ("varchar", "varchar(50)", "NO", None, ""),
    "provider": ("varchar", "varchar(50)", "NO", None, ""),
    "external_id": ("varchar", "varchar(255)", "YES", "NULL", ""),
    "payload": ("json", "json", "YES", "NULL", ""),
    "retry_count": ("smallint", "smallint(6)", "YES", "0", ""),
    "started_at": ("timestamp", "timestamp", "YES", "NULL", ""),
    "completed_at": ("timestamp", "timestamp", "YES", "NULL", ""),
    "last_error": ("text", "text", "YES", "NULL", ""),
    "callback_body": ("text", "text", "YES", "NULL", ""),
    "created_at": ("datetime", "datetime", "NO", "current_timestamp()", ""),
}
ASSETS = {
    "id": ("int", "int(10) unsigned", "NO", None, "auto_increment"),
    "listing_identity_id": ("int", "int(10) unsigned", "NO", None, ""),
    "asset_type": ("varchar", "varchar(50)", "NO", None, ""),
    "sequence": ("int", "int(11)", "NO", None, ""),
    "status": ("varchar", "varchar(50)", "NO", None, ""),
    "s3_key_raw": ("varchar", "varchar(255)", "YES", "NULL", ""),
    "s3_key_processed": ("varchar", "varchar(255)", "YES", "NULL", ""),
    "title": ("varchar", "varchar(255)", "YES", "NULL", ""),
    "metadata": ("json", "json", "YES", "NULL", ""),
}


def _normalise(
    data_type: str, column_type: str, default: str | None
) -> tuple[str, str, str | None]:
    """MySQL 8 and MariaDB spell the same column differently; compare their common form."""
    if data_type == "longtext" and column_type == "longtext":
        data_type = column_type = "json"  # MariaDB's JSON alias (checked below)
    column_type = column_type.replace("int(10) unsigned", "int unsigned").replace("int(11)", "int")
    column_type = column_type.replace("smallint(6)", "smallint")
    if default is not None:
        default = default.lower().replace("current_timestamp()", "current_timestamp")
        default = default.strip("'")
    return data_type, column_type, default


def columns(table: str) -> dict[str, tuple]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA "
            "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s "
            "ORDER BY ORDINAL_POSITION",
            [table],
        )
        return {name: rest for name, *rest in cur.fetchall()}


@pytest.mark.parametrize(
    ("table", "expected"), [("media_processing_jobs", JOBS), ("media_assets", ASSETS)]
)
def test_columns_match_spec(table: str, expected: dict) -> None:
    actual = columns(table)
    assert list(actual) == list(expected), "column names and order"
    for name, (data_type, column_type, nullable, default, extra) in expected.items():
        got_type, got_column_type, got_nullable, got_default, got_extra = actual[name]
        got = (*_normalise(got_type, got_column_type, got_default), got_nullable, got_extra.lower())
        want = (*_normalise(data_type, column_type, default), nullable, extra)
        if default == "NULL" and got_default is None:  # MySQL 8 reports no default as NULL
            got = (got[0], got[1], "null", got[3], got[4])
            want = (want[0], want[1], "null", want[3], want[4])
        assert got == want, f"{table}.{name}"


def test_json_columns_are_checked_json() -> None:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
            "WHERE CONSTRAINT_SCHEMA = DATABASE()"
        )
        checks = {(table, clause) for table, clause in cur.fetchall()}
    if not checks:  # MySQL 8 has a native JSON type and no check
        assert columns("media_assets")["metadata"][0] == "json"
        return
    assert ("media_processing_jobs", "json_valid(`payload`)") in checks
    assert ("media_assets", "json_valid(`metadata`)") in checks


def test_keys_and_indexes() -> None:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) "
            "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_NAME IN ('media_processing_jobs', 'media_assets') "
            "GROUP BY TABLE_NAME, INDEX_NAME, NON_UNIQUE"
        )
        indexes = {(t, cols): (name, non_unique) for t, name, non_unique, cols in cur.fetchall()}
    assert indexes[("media_assets", "listing_identity_id,asset_type,sequence")][1] == 0
    assert indexes[("media_processing_jobs", "id")] == ("PRIMARY", 0)
    for cols in ("listing_identity_id", "created_at", "completed_at"):
        assert ("media_processing_jobs", cols) in indexes, cols
    with connection.cursor() as cur:
        cur.execute(
            "SELECT TABLE_NAME, ENGINE, TABLE_COLLATION FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ('media_processing_jobs', 'media_assets')"
        )
        for _table, engine, collation in cur.fetchall():
            assert engine == "InnoDB"
            assert collation.startswith("utf8mb4")


@pytest.mark.slow  # migrates a second database
def test_unmanaged_migrate_leaves_existing_tables_alone() -> None:
    """Point the portal at a "backend" database whose tables exist already: migrate must not
    create, alter or empty them."""
    settings_dict = connection.settings_dict
    name = f"toq_backend_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        with connection.cursor() as cur:
            # The backend's own variant: an extra column the portal knows nothing about.
            cur.execute(
                f"CREATE TABLE `{name}`.media_processing_jobs (id INT UNSIGNED AUTO_INCREMENT "
                "PRIMARY KEY, listing_identity_id INT UNSIGNED NOT NULL, status VARCHAR(50) NOT NULL, "
                "backend_only VARCHAR(10) NULL) ENGINE=InnoDB"
            )
            cur.execute(
                f"INSERT INTO `{name}`.media_processing_jobs (listing_identity_id, status) VALUES (7, 'PENDING')"
            )
            cur.execute(f"SHOW CREATE TABLE `{name}`.media_processing_jobs")
            before = cur.fetchone()[1]
        user = settings_dict["USER"]
        password = settings_dict["PASSWORD"]
        auth = f"{user}:{password}@" if password else f"{user}@"
        url = f"mysql://{auth}{settings_dict['HOST'] or '127.0.0.1'}:{settings_dict['PORT'] or 3306}/{name}"
        env = dict(
            os.environ, DATABASE_URL=url, MEDIA_JOBS_MANAGE_TABLES="false", DJANGO_ENV="test"
        )
        result = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        with connection.cursor() as cur:
            cur.execute(f"SHOW CREATE TABLE `{name}`.media_processing_jobs")
            assert cur.fetchone()[1] == before
            cur.execute(f"SELECT listing_identity_id FROM `{name}`.media_processing_jobs")
            assert cur.fetchall() == ((7,),)
            cur.execute(
                "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                "AND TABLE_NAME = 'media_assets'",
                [name],
            )
            assert cur.fetchone()[0] == 0, "migrate must not create the backend's tables"
            cur.execute(f"SELECT COUNT(*) FROM `{name}`.django_migrations WHERE app = 'media_jobs'")
            assert cur.fetchone()[0] >= 1, "media_jobs migrations recorded as applied"
    finally:
        with connection.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
