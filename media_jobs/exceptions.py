"""Errors the services and selectors raise; views map them to 4xx, commands to a one-line
message. Below the services and selectors so both can raise them (CONTRIBUTING.md, layers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # django-stubs' type of a string or a lazy translation
    from django_stubs_ext import StrOrPromise


class ApplicationError(Exception):
    """A request the rules refuse; ``message`` says what to fix."""

    status_code = 400

    def __init__(self, message: StrOrPromise, *, extra: dict[str, Any] | None = None) -> None:
        # Rendered now, in the language of the request or command that raised it.
        self.message = str(message)
        super().__init__(self.message)
        self.extra = extra or {}


class NotFoundError(ApplicationError):
    status_code = 404


class ConflictError(ApplicationError):
    """The current state forbids the change (e.g. a failure over a success)."""

    status_code = 409


class JobStateError(ConflictError):
    """A job transition that the lifecycle does not allow."""
