"""Database: ``DATABASE_URL``; a SQLite file under var/ by default, MySQL/MariaDB in production."""

from __future__ import annotations

from .env import ConfigError, env, typed, var_path

_DEFAULT_URL = f"sqlite:///{var_path() / 'portal.sqlite3'}"
_SCHEMES = ("sqlite", "mysql", "mariadb")

DATABASE_URL = env.str("DATABASE_URL", default=_DEFAULT_URL)
_scheme = DATABASE_URL.split("://", 1)[0] if "://" in DATABASE_URL else ""
if _scheme not in _SCHEMES:
    raise ConfigError(
        f"DATABASE_URL: unknown scheme {_scheme or DATABASE_URL!r}; "
        "use sqlite:///path/to/file.sqlite3 or mysql://user:password@host:3306/name"
    )
if _scheme == "mariadb":
    DATABASE_URL = "mysql" + DATABASE_URL[len("mariadb") :]

_db = env.db_url_config(DATABASE_URL)
if _db["ENGINE"] == "django.db.backends.mysql":
    _db["OPTIONS"] = {
        "charset": "utf8mb4",
        "init_command": "SET sql_mode='STRICT_TRANS_TABLES', innodb_strict_mode=1, time_zone='+00:00'",
        "isolation_level": "read committed",
    }
    _db["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    _db["CONN_HEALTH_CHECKS"] = True
    _db["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
else:
    # The embedded default has a web process and a worker pool writing to one file. WAL lets
    # readers run beside the writer; IMMEDIATE takes the write lock when a transaction begins,
    # so two writers queue on the busy timeout instead of one failing at once with "database
    # is locked" (a deferred transaction that reads first and then writes cannot wait).
    _timeout = typed("SQLITE_BUSY_TIMEOUT_SECONDS", float, 30.0)
    _db["OPTIONS"] = {
        "timeout": _timeout,
        "transaction_mode": "IMMEDIATE",
        "init_command": (
            f"PRAGMA busy_timeout = {int(_timeout * 1000)}; "
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
        ),
    }
# Parallel test runs (and CI beside a developer) need distinct test databases.
if env.str("DATABASE_TEST_NAME", default=""):
    _db.setdefault("TEST", {})["NAME"] = env.str("DATABASE_TEST_NAME")

DATABASES = {"default": _db}

# False: the media tables belong to the TOQ backend's live database; migrate leaves them alone.
MEDIA_JOBS_MANAGE_TABLES = env.bool("MEDIA_JOBS_MANAGE_TABLES", default=True)
