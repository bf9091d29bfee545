"""Pieces every page of the portal shares: permissions, object links, badges, JSON display."""

from __future__ import annotations

import functools
import json
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from media_jobs.pipeline.storage import Storage
from media_jobs.storage import pipeline_storage

OPERATE_PERMISSION = "media_jobs.operate_mediaprocessingjob"
VIEW_PERMISSION = "media_jobs.view_mediaprocessingjob"

# Status -> CSS modifier of the badge (static/media_jobs/portal.css).
BADGE_CLASSES = {
    "PENDING": "pending",
    "RUNNING": "running",
    "SUCCEEDED": "ok",
    "PARTIAL_SUCCESS": "partial",
    "FAILED": "failed",
    "PENDING_UPLOAD": "pending",
    "PROCESSING": "running",
    "PROCESSED": "ok",
}


def can_operate(request: HttpRequest) -> bool:
    """Retry, mark failed, reprocess and replay need the custom permission."""
    return request.user.is_active and request.user.has_perm(OPERATE_PERMISSION)


def require_operate(request: HttpRequest) -> None:
    """403 for a user without the permission, whatever the form or URL they forged."""
    if not can_operate(request):
        raise PermissionDenied("You need the 'operate media jobs' permission for this action.")


def require_view(request: HttpRequest) -> None:
    if not (request.user.is_active and request.user.has_perm(VIEW_PERMISSION)):
        raise PermissionDenied("You need the permission to view media processing jobs.")


@functools.lru_cache(maxsize=128)
def status_badge(status: str | None, label: str | None = None) -> SafeString:
    """The badge HTML of a status; a few distinct (status, label) pairs, so each is built
    once (a list page shows 50 of them)."""
    modifier = BADGE_CLASSES.get(status or "", "unknown")
    return format_html(
        '<span class="toq-badge toq-badge--{}">{}</span>', modifier, label or status or "-"
    )


def object_url(key: str, *, storage: Storage | None = None, download: bool = False) -> str:
    """A link to one object: a presigned S3 URL (MEDIA_PRESIGNED_URL_TTL) or, for local
    storage, the portal's staff-only file view."""
    storage = storage or pipeline_storage()
    presigned = storage.presigned_url(key, settings.MEDIA_PRESIGNED_URL_TTL)
    if presigned:
        return presigned
    query = {"key": key}
    if download:
        query["download"] = "1"
    return f"{reverse('admin:media_jobs_media_file')}?{urlencode(query)}"


def pretty_json(value: Any) -> str:
    """Indented JSON text of a value, or of a JSON string; other text is returned as it is."""
    if value is None or value == "":
        return ""
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except (ValueError, TypeError):
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def json_block(value: Any, *, summary: str, open_: bool = False) -> SafeString:
    """Collapsible, escaped, pretty-printed JSON (``<details><pre>``)."""
    text = pretty_json(value)
    if not text:
        return format_html('<span class="toq-muted">{}</span>', "(empty)")
    return format_html(
        '<details class="toq-json"{}><summary>{} ({} lines)</summary><pre>{}</pre></details>',
        " open" if open_ else "",
        summary,
        text.count("\n") + 1,
        text,
    )


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


class ReadOnlyAdminMixin:
    """Nobody adds, edits or deletes these rows by hand: they change only through services
    (SPEC §3 statuses, the callback log), so the admin shows them read-only to everyone."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
