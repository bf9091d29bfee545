"""Column types Django lacks, so the migrations produce docs/contract.md §3's schema exactly on MySQL/MariaDB
(INT UNSIGNED ids, TIMESTAMP, TEXT, DATETIME DEFAULT CURRENT_TIMESTAMP). Other databases get
Django's usual types."""

from __future__ import annotations

from typing import Any

from django.db import models


class UnsignedAutoField(models.AutoField):
    """INT UNSIGNED AUTO_INCREMENT primary key."""

    def db_type(self, connection: Any) -> str | None:
        if connection.vendor == "mysql":
            return "integer UNSIGNED AUTO_INCREMENT"
        return super().db_type(connection)

    def rel_db_type(self, connection: Any) -> str | None:
        if connection.vendor == "mysql":
            return "integer UNSIGNED"
        return super().rel_db_type(connection)


class UnsignedIntegerField(models.PositiveIntegerField):
    """INT UNSIGNED without the CHECK constraint Django adds (the column type already says it)."""

    def db_check(self, connection: Any) -> str | None:
        return None


class TimestampField(models.DateTimeField):
    """TIMESTAMP (second precision, stored as UTC) instead of Django's DATETIME(6)."""

    def db_type(self, connection: Any) -> str | None:
        if connection.vendor == "mysql":
            return "timestamp"
        return super().db_type(connection)


class PlainDateTimeField(models.DateTimeField):
    """DATETIME (second precision) instead of Django's DATETIME(6)."""

    def db_type(self, connection: Any) -> str | None:
        if connection.vendor == "mysql":
            return "datetime"
        return super().db_type(connection)


class PlainTextField(models.TextField):
    """TEXT (64 KiB) instead of Django's LONGTEXT, as the backend's schema has it."""

    def db_type(self, connection: Any) -> str | None:
        if connection.vendor == "mysql":
            return "text"
        return super().db_type(connection)


class CurrentTimestamp(models.Func):
    """``CURRENT_TIMESTAMP`` without Django's (6) precision, valid as a DATETIME default."""

    template = "CURRENT_TIMESTAMP"
    output_field = models.DateTimeField()
