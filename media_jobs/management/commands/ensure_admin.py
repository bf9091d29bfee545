"""Create the portal's admin user once and print its credentials (``make run``)."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from media_jobs.management.base import TranslatedCommand


class Command(TranslatedCommand):
    help_text = _(
        "Create the admin user (ADMIN_USERNAME / ADMIN_PASSWORD, or generated) and print it."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        env = settings.ENV_ADMIN
        username = env["username"]
        creds_file = settings.BASE_DIR / "var" / "admin-credentials.txt"
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        if user is None:
            password = env["password"] or secrets.token_urlsafe(12)
            user_model.objects.create_superuser(username, env["email"], password)
            creds_file.parent.mkdir(parents=True, exist_ok=True)
            creds_file.write_text(f"{username}\n{password}\n")
            creds_file.chmod(0o600)
            self.stdout.write(
                self.style.SUCCESS(gettext("created admin user %(user)r") % {"user": username})
            )
        elif env["password"]:
            user.set_password(env["password"])
            user.save(update_fields=["password"])
            password = env["password"]
        else:
            saved = creds_file.read_text().split("\n") if creds_file.exists() else []
            password = (
                saved[1] if len(saved) > 1 and saved[0] == username else gettext("(unchanged)")
            )
        self.stdout.write(
            gettext("admin login: %(url)s  user=%(user)s  password=%(password)s")
            % {"url": "http://127.0.0.1:8000/admin/", "user": username, "password": password}
        )
