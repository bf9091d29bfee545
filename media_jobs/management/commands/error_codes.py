"""``manage.py error_codes``: docs/error-codes.md from the one catalogue of error codes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import CommandParser
from django.utils import translation
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from media_jobs.errorcodes import markdown
from media_jobs.management.base import TranslatedCommand

DOC_PATH = Path(settings.BASE_DIR) / "docs" / "error-codes.md"


class Command(TranslatedCommand):
    help_text = _(
        "Print docs/error-codes.md as media_jobs/errorcodes.py describes the codes (--write "
        "replaces the file). The job page's 'what to do' comes from the same catalogue."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--write", action="store_true", help=gettext("Write %(path)s.") % {"path": DOC_PATH}
        )

    def handle(self, *args: Any, write: bool, **options: Any) -> None:
        with translation.override("en"):
            text = markdown()
        if write:
            DOC_PATH.write_text(text, encoding="utf-8")
            self.stderr.write(gettext("wrote %(path)s") % {"path": DOC_PATH})
        else:
            self.stdout.write(text, ending="")
