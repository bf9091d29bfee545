"""What an operator does to jobs: Retry and Mark as failed, from the job page and as bulk
actions of the list, each behind a confirmation page; and the messages that report them."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from media_jobs.models import TERMINAL_JOB_STATUSES, MediaProcessingJob

from .common import require_operate
from .forms import (
    BulkMarkFailedForm,
    BulkRetryForm,
    MarkFailedForm,
    RetryForm,
    SelectionForm,
    confirmation_response,
    default_reason,
)
from .operations import mark_failed, retry_items, retry_jobs

OPERATE_ACTIONS = ("retry_selected", "mark_failed_selected")


class JobActions(admin.ModelAdmin):
    """The operate actions of ``MediaProcessingJobAdmin`` and their confirmation views."""

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """An operate action posted with ids that are not ids gets its confirmation page with
        the error (400), before Django's ``filter(pk__in=...)`` raises on them."""
        action = request.POST.get("action") if request.method == "POST" else None
        if action in OPERATE_ACTIONS and not SelectionForm(request.POST).is_valid():
            return getattr(self, action)(request, self.get_queryset(request).none())
        return super().changelist_view(request, extra_context)

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<int:object_id>/retry/",
                wrap(self.retry_view),
                name="media_jobs_mediaprocessingjob_retry",
            ),
            path(
                "<int:object_id>/mark-failed/",
                wrap(self.mark_failed_view),
                name="media_jobs_mediaprocessingjob_mark_failed",
            ),
            *super().get_urls(),
        ]

    def retry_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        require_operate(request)
        job = get_object_or_404(MediaProcessingJob, pk=object_id)
        form = RetryForm(request.POST if request.method == "POST" else None, job=job)
        if form.is_valid():
            (outcome,) = retry_jobs(request=request, jobs=[job])
            if outcome.error:
                self.message_user(
                    request,
                    gettext("Job #%(job)s was not retried: %(error)s")
                    % {"job": job.pk, "error": outcome.error},
                    messages.ERROR,
                )
                return HttpResponseRedirect(_job_url(job))
            new_url = _job_url(outcome.result)
            self.message_user(
                request,
                format_html(
                    gettext('Job #{} retried as <a href="{}">job #{}</a>.'),
                    job.pk,
                    new_url,
                    outcome.result.pk,
                ),
                messages.SUCCESS,
            )
            return HttpResponseRedirect(new_url)
        items = retry_items([job])
        return confirmation_response(
            form,
            request,
            "media_jobs/confirm_retry.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": gettext("Retry job #%(job)s?") % {"job": job.pk},
                "items": items,
                "can_submit": items[0]["problem"] is None,
                "form_action": "",
                "cancel_url": _job_url(job),
                "form": form,
            },
        )

    def mark_failed_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        require_operate(request)
        job = get_object_or_404(MediaProcessingJob, pk=object_id)
        form = MarkFailedForm(
            request.POST if request.method == "POST" else None, job=job, request=request
        )
        if form.is_valid():
            reason = form.cleaned_data["reason"]
            (outcome,) = mark_failed(request=request, jobs=[job], reason=reason)
            if outcome.error:
                self.message_user(
                    request,
                    gettext("Job #%(job)s not changed: %(error)s")
                    % {"job": job.pk, "error": outcome.error},
                    messages.ERROR,
                )
            else:
                self.message_user(
                    request,
                    gettext("Job #%(job)s marked failed.") % {"job": job.pk},
                    messages.SUCCESS,
                )
            return HttpResponseRedirect(_job_url(job))
        return confirmation_response(
            form,
            request,
            "media_jobs/confirm_mark_failed.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": gettext("Mark job #%(job)s as failed?") % {"job": job.pk},
                "jobs": [job],
                "problem": None
                if job.status not in TERMINAL_JOB_STATUSES
                else gettext("Job #%(job)s is already %(status)s.")
                % {"job": job.pk, "status": job.status},
                "default_reason": default_reason(request),
                "cancel_url": _job_url(job),
                "form": form,
            },
        )

    @admin.action(description=_("Retry selected jobs"), permissions=["operate"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        require_operate(request)
        jobs = list(queryset.defer("payload", "callback_body").order_by("-pk")[:200])
        form = BulkRetryForm(request.POST)
        if form.confirmed:
            outcomes = retry_jobs(request=request, jobs=jobs)
            report_outcomes(self, request, outcomes, verb=gettext("retried as"))
            return None
        items = retry_items(jobs)
        return confirmation_response(
            form,
            request,
            "media_jobs/confirm_retry.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": gettext("Retry %(count)s job(s)?") % {"count": len(jobs)},
                "items": items,
                "can_submit": any(item["problem"] is None for item in items),
                "action_name": "retry_selected",
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
                "cancel_url": reverse("admin:media_jobs_mediaprocessingjob_changelist"),
                "form": form,
            },
        )

    @admin.action(description=_("Mark selected stuck jobs as failed"), permissions=["operate"])
    def mark_failed_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        require_operate(request)
        jobs = list(queryset.defer("payload", "callback_body").order_by("-pk")[:200])
        form = BulkMarkFailedForm(request.POST, request=request)
        if form.confirmed:
            outcomes = mark_failed(request=request, jobs=jobs, reason=form.cleaned_data["reason"])
            report_outcomes(
                self, request, outcomes, verb=gettext("marked failed"), link_result=False
            )
            return None
        finished = [job for job in jobs if job.status in TERMINAL_JOB_STATUSES]
        return confirmation_response(
            form,
            request,
            "media_jobs/confirm_mark_failed.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": gettext("Mark %(count)s job(s) as failed?") % {"count": len(jobs)},
                "jobs": jobs,
                "problem": (
                    gettext("Already finished (left unchanged):")
                    + " "
                    + ", ".join(f"#{job.pk} {job.status}" for job in finished)
                )
                if finished
                else None,
                "default_reason": default_reason(request),
                "action_name": "mark_failed_selected",
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
                "cancel_url": reverse("admin:media_jobs_mediaprocessingjob_changelist"),
                "form": form,
            },
        )


def _job_url(job: MediaProcessingJob) -> str:
    return reverse("admin:media_jobs_mediaprocessingjob_change", args=[job.pk])


def report_outcomes(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    outcomes: list,
    *,
    verb: str,
    source_label: Any = None,
    link_result: bool = True,
) -> None:
    """One success message (with links to what was created), one error message per refusal."""
    label = source_label or (lambda source: f"#{getattr(source, 'pk', source)}")
    done = [o for o in outcomes if not o.error]
    if done and link_result:
        links = format_html_join(
            ", ",
            '{} {} <a href="{}">{}</a>',
            ((label(o.source), verb, _result_url(o.result), _result_label(o.result)) for o in done),
        )
        model_admin.message_user(
            request, format_html(gettext("Done: {}."), links), messages.SUCCESS
        )
    elif done:
        names = ", ".join(label(o.source) for o in done)
        model_admin.message_user(request, f"{capfirst(verb)}: {names}.", messages.SUCCESS)
    for outcome in outcomes:
        if outcome.error:
            model_admin.message_user(
                request, f"{label(outcome.source)}: {outcome.error}", messages.ERROR
            )


def _result_url(result: Any) -> str:
    return reverse(
        f"admin:{result._meta.app_label}_{result._meta.model_name}_change", args=[result.pk]
    )


def _result_label(result: Any) -> str:
    if isinstance(result, MediaProcessingJob):
        return gettext("job #%(job)s") % {"job": result.pk}
    return f"#{result.pk}"
