"""The admin history (``django_admin_log``) for operator actions.

Retry, mark failed, reprocess and replay do not go through a ModelAdmin form, so Django would
record nothing; these helpers write the same LogEntry rows the admin's "History" page shows.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.db import models

__all__ = ["ADDITION", "CHANGE", "audit_record"]


def audit_record(
    *,
    user_id: int,
    objects: Sequence[models.Model],
    message: str,
    action_flag: int = CHANGE,
) -> None:
    """One LogEntry per object (one INSERT for all), shown on each object's History page."""
    if not objects:
        return
    # One call for one object or many: single_object only changes what log_actions returns
    # (the entry instead of a one-item list), and nothing here reads it.
    LogEntry.objects.log_actions(
        user_id=user_id,
        queryset=list(objects),
        action_flag=action_flag,
        change_message=message,
    )
