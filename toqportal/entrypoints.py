"""Load settings early in every entry point so a configuration error is one clear line."""

from __future__ import annotations

import importlib
import os
import sys

from django.core.exceptions import ImproperlyConfigured


def load_settings() -> None:
    """Import the settings module; on a bad environment variable print one line and exit 2."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "toqportal.settings")
    try:
        importlib.import_module(os.environ["DJANGO_SETTINGS_MODULE"])
    except ImproperlyConfigured as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
