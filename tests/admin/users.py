"""Staff users in the groups migration 0003 creates (shared by the admin and browser tests)."""

from __future__ import annotations

import importlib

from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

groups_migration = importlib.import_module("media_jobs.migrations.0003_operator_groups")
OPERATORS = groups_migration.OPERATORS
VIEWERS = groups_migration.VIEWERS
PASSWORD = "correct-horse-battery-staple-42"


def ensure_groups() -> None:
    """The migration made them; a transactional test's flush removes them: re-create."""
    if Group.objects.filter(name__in=[OPERATORS, VIEWERS]).count() < 2:
        groups_migration.create_groups(django_apps, None)


def make_user(
    username: str, *, group: str | None = None, superuser: bool = False, staff: bool = True
):
    ensure_groups()
    user_model = get_user_model()
    if superuser:
        user = user_model.objects.create_superuser(username, f"{username}@example.com", PASSWORD)
    else:
        user = user_model.objects.create_user(
            username, f"{username}@example.com", PASSWORD, is_staff=staff
        )
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user
