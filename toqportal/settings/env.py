"""The one ``env`` object every settings module reads, and the error a bad value raises.

A bad value stops start-up with one line naming the variable (see ``toqportal.entrypoints``),
never a traceback from deep inside Django.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()

# Where the embedded default keeps its state (SQLite file, local media, the filesystem broker's
# queue): var/ in the checkout, or PORTAL_VAR_DIR (a second instance, the embedded tests).
VAR_DIR = Path(env.str("PORTAL_VAR_DIR", default="") or BASE_DIR / "var")


class ConfigError(ImproperlyConfigured):
    """A setting from the environment is missing or malformed; the message names it."""


def typed(name: str, cast: type, default: Any) -> Any:
    """Read ``name`` cast to int/float/bool, turning environ's ValueError into ConfigError."""
    raw = env.str(name, default="")
    if raw == "":
        return default
    try:
        if cast is bool:
            return env.bool(name)
        return cast(raw)
    except (ValueError, TypeError):
        raise ConfigError(f"{name}: expected {cast.__name__}, got {raw!r}") from None


def var_path(*parts: str) -> Path:
    """A path under var/, created on first use (the embedded default keeps its state there)."""
    path = VAR_DIR.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
