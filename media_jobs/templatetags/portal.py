"""Template filters of the portal: ``{% load portal %}``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template
from django.utils.safestring import SafeString

from media_jobs.admin.common import code_spans as _code_spans
from media_jobs.admin.common import copy_button as _copy_button
from media_jobs.admin.common import format_time

register = template.Library()


@register.filter
def toq_time(value: datetime | None) -> str:
    """``{{ job.created_at|toq_time }}``: the one timestamp format (seconds, time zone)."""
    return format_time(value)


@register.filter
def code_spans(text: Any) -> SafeString:
    """Escaped text with its `backticked` parts as <code> (the error-code catalogue)."""
    return _code_spans(text)


@register.simple_tag
def copy_button(value: Any) -> SafeString:
    """``{% copy_button key %}``: a button that copies an id or a key (shown with script)."""
    return _copy_button(value)
