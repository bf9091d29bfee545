"""Pieces every page of the portal shares: permissions, object links, badges, JSON display."""

from __future__ import annotations

import functools
import json
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from django.conf import settings
from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext_lazy as _

from media_jobs.pipeline.storage import Storage
from media_jobs.storage import pipeline_storage

if TYPE_CHECKING:  # django-stubs' type of a string or a lazy translation
    from django_stubs_ext import StrOrPromise

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
        raise PermissionDenied(_("You need the 'operate media jobs' permission for this action."))


def require_view(request: HttpRequest) -> None:
    if not (request.user.is_active and request.user.has_perm(VIEW_PERMISSION)):
        raise PermissionDenied(_("You need the permission to view media processing jobs."))


def status_badge(status: str | None, label: Any = None) -> SafeString:
    """The badge HTML of a status, in the active language."""
    return _badge(status, str(label) if label else None)


@functools.lru_cache(maxsize=256)
def _badge(status: str | None, label: str | None) -> SafeString:
    # A few distinct (status, label text) pairs, so each is built once (a list page shows 50).
    modifier = BADGE_CLASSES.get(status or "", "unknown")
    return format_html(
        '<span class="toq-badge toq-badge--{}">{}</span>', modifier, label or status or "-"
    )


def format_time(value: datetime | None, *, empty: Any = "-") -> str:
    """The portal's one timestamp format: ``2026-11-30 02:15:29 -03`` (seconds and the zone
    of TIME_ZONE; the format is DATETIME_FORMAT of toqportal/formats)."""
    if value is None:
        return str(empty)
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    django_format = formats.get_format("DATETIME_FORMAT")
    pattern = _strftime_pattern(django_format)
    if pattern is None:
        return formats.date_format(value, django_format)
    return value.strftime(pattern)


# Django's date format characters that strftime says the same way: a list page formats a
# hundred times, and Django's DateFormat costs ten times strftime.
_STRFTIME = {"Y": "%Y", "m": "%m", "d": "%d", "H": "%H", "i": "%M", "s": "%S", "T": "%Z"}


@functools.lru_cache(maxsize=16)
def _strftime_pattern(django_format: str) -> str | None:
    pattern = []
    for char in django_format:
        if char in _STRFTIME:
            pattern.append(_STRFTIME[char])
        elif char.isalpha() or char in "\\%":
            return None  # something strftime would not say the same: Django's own formatter
        else:
            pattern.append(char)
    return "".join(pattern)


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


def s3_console_url(key: str, *, folder: bool = False) -> str | None:
    """The object (or, with ``folder``, the prefix) in the AWS S3 console, when storage is
    S3 and AWS_S3_CONSOLE_URL is not emptied; None otherwise."""
    base = settings.AWS_S3_CONSOLE_URL
    if settings.MEDIA_STORAGE_BACKEND != "s3" or not base:
        return None
    query = urlencode({"region": settings.AWS_S3_REGION_NAME, "prefix": key})
    page = "buckets" if folder else "object"
    return f"{base.rstrip('/')}/{page}/{quote(settings.MEDIA_BUCKET, safe='')}?{query}"


_BACKTICKS = re.compile(r"`([^`]+)`")


def code_spans(text: Any) -> SafeString:
    """Escaped text with its `backticked` parts as <code> (the error-code catalogue)."""
    return mark_safe(_BACKTICKS.sub(r"<code>\1</code>", escape(str(text or ""))))


def copy_button(value: Any) -> SafeString:
    """A "copy" button for an id or a key; hidden until the page's script can copy."""
    if value in (None, ""):
        return mark_safe("")
    return format_html(
        '<button type="button" class="toq-copy" data-copy="{}" title="{}" hidden>{}</button>',
        value,
        _("Copy %(value)s") % {"value": value},
        _("copy"),
    )


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


def json_block(value: Any, *, summary: StrOrPromise, open_: bool = False) -> SafeString:
    """Collapsible, escaped, pretty-printed JSON (``<details><pre>``)."""
    text = pretty_json(value)
    if not text:
        return format_html('<span class="toq-muted">{}</span>', _("(empty)"))
    return format_html(
        '<details class="toq-json"{}><summary>{} ({})</summary><pre>{}</pre></details>',
        " open" if open_ else "",
        summary,
        _("%(count)s lines") % {"count": text.count("\n") + 1},
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
    (docs/contract.md §3 statuses, the callback log), so the admin shows them read-only to everyone."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def page_context(
    site: AdminSite, request: HttpRequest, title: StrOrPromise, **context: Any
) -> dict[str, Any]:
    """The context of one of the portal's own pages: the site's, a title, the page's own."""
    return {**site.each_context(request), "title": title, **context}
