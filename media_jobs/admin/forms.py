"""The forms of the operator actions: what each confirmation page posts, validated in
``clean()`` (as django-celery-beat's admin forms do) instead of read from ``request.POST`` by
the views.

A form checks its input and asks the services whether the action can run now; a view acts
only on a valid form and otherwise shows its confirmation page again with the form's errors
(status 400), so a forged, stale or mistyped post is a clear refusal, never a 500. A refusal
the service makes later (another operator acted first) is still reported as a message.

Confirmation: on a single object's page the POST itself is the confirmation (its page has
nothing else to send); a bulk action is confirmed by Django's own ``post=yes`` field, and
without it the action shows its confirmation page.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from media_jobs.exceptions import ApplicationError
from media_jobs.models import TERMINAL_JOB_STATUSES, CallbackDelivery, MediaProcessingJob
from media_jobs.services.deliveries import delivery_target

from .operations import plan_for

# The reason recorded by Mark as failed: whitespace folded, this long at most (the field's
# maxlength on the page).
REASON_MAX_LENGTH = 500
# Django's confirmation value of an action's second step.
CONFIRMED = "yes"
# An id is a positive BIGINT: more digits than this cannot be one.
MAX_ID_DIGITS = 19


def default_reason(request: HttpRequest) -> str:
    """The reason Mark as failed records when the operator gives none."""
    return gettext("marked failed by %(user)s in the admin (stuck)") % {
        "user": request.user.get_username()
    }


class SelectedIdsField(forms.Field):
    """The list's checkboxes (``_selected_action``): ids, as ``filter(pk__in=...)`` needs them.
    Django's action code would raise ValueError (a 500) on one that is not a number."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: Any) -> list[int]:
        if value in self.empty_values:
            return []
        values = [str(v) for v in (value if isinstance(value, list | tuple) else [value])]
        bad = [v for v in values if not (v.isdigit() and len(v) <= MAX_ID_DIGITS)]
        if bad:
            raise ValidationError(
                _("Not a valid id: %(ids)s."),
                code="invalid",
                params={"ids": ", ".join(repr(v)[:40] for v in bad[:5])},
            )
        return [int(v) for v in values]


class SelectionForm(forms.Form):
    """The ids a bulk action was posted with, checked before Django filters by them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields[ACTION_CHECKBOX_NAME] = SelectedIdsField(required=False)


class BulkActionForm(SelectionForm):
    """A bulk action's post: the selection, and ``post=yes`` once the operator confirmed."""

    post = forms.CharField(required=False)

    def clean_post(self) -> bool:
        value = self.cleaned_data.get("post") or ""
        if value not in ("", CONFIRMED):
            raise ValidationError(
                _("Confirm with the button of the confirmation page."), code="confirmation"
            )
        return value == CONFIRMED

    @property
    def confirmed(self) -> bool:
        return self.is_valid() and bool(self.cleaned_data["post"])


class BulkRetryForm(BulkActionForm):
    """Retry selected jobs: each is checked when it is retried (a refused one is reported)."""


class BulkReprocessForm(BulkActionForm):
    """Reprocess selected assets: one reprocessing job per listing."""


class ReasonField(forms.CharField):
    """The reason of Mark as failed: whitespace folded, cut at ``REASON_MAX_LENGTH``."""

    def to_python(self, value: Any) -> str:
        return " ".join(str(value or "").split())[:REASON_MAX_LENGTH]


class BulkMarkFailedForm(BulkActionForm):
    """Mark selected jobs failed, with the reason (the default when left empty)."""

    reason = ReasonField(required=False)

    def __init__(self, *args: Any, request: HttpRequest, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request = request

    def clean_reason(self) -> str:
        return self.cleaned_data.get("reason") or default_reason(self.request)


class RetryForm(forms.Form):
    """Retry one job: the service's retry plan must allow it now."""

    def __init__(self, *args: Any, job: MediaProcessingJob, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.job = job

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        plan, problem = plan_for(self.job)
        if problem is not None:
            raise ValidationError(
                gettext("Job #%(job)s was not retried: %(error)s")
                % {"job": self.job.pk, "error": problem},
                code="not_retryable",
            )
        cleaned["plan"] = plan
        return cleaned


class MarkFailedForm(forms.Form):
    """Mark one job failed: it must still be running or pending; the reason as above."""

    reason = ReasonField(required=False)

    def __init__(
        self, *args: Any, job: MediaProcessingJob, request: HttpRequest, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.job = job
        self.request = request

    def clean_reason(self) -> str:
        return self.cleaned_data.get("reason") or default_reason(self.request)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.job.status in TERMINAL_JOB_STATUSES:
            raise ValidationError(
                gettext("Job #%(job)s is already %(status)s.")
                % {"job": self.job.pk, "status": self.job.status},
                code="finished",
            )
        return cleaned


class ReplayForm(forms.Form):
    """Replay one callback delivery: there must be somewhere to send it, signed."""

    def __init__(self, *args: Any, delivery: CallbackDelivery, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.delivery = delivery

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        try:
            delivery_target()
        except ApplicationError as exc:
            raise ValidationError(
                gettext("Not replayed: %(error)s") % {"error": exc.message}, code="no_target"
            ) from exc
        return cleaned


class ErrorGroupRetryForm(forms.Form):
    """Retry an error group: the window must be one the page offers."""

    def __init__(self, *args: Any, windows: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["days"] = forms.ChoiceField(choices=[(days, days) for days in windows])


def confirmation_response(
    form: forms.Form, request: HttpRequest, template: str, context: dict[str, Any]
) -> TemplateResponse:
    """An action's confirmation page; shown again with the form's errors, it is a 400."""
    status = 400 if form.is_bound and form.errors else 200
    return TemplateResponse(request, template, context, status=status)
