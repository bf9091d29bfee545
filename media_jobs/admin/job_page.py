"""The read-only job page: its summary fields, the context below them (assets, timeline,
deliveries, other jobs of the listing) and the Step Functions execution view."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from media_jobs import errorcodes, stepfunctions
from media_jobs.errorcodes import error_code_of, parse_last_error
from media_jobs.models import TERMINAL_JOB_STATUSES, JobProvider, JobStatus, MediaProcessingJob
from media_jobs.pipeline import keys
from media_jobs.selectors import admin as selectors
from media_jobs.selectors import deliveries as delivery_selectors
from media_jobs.selectors import resolution as resolution_selectors
from media_jobs.services.dispatch import job_asset_ids
from media_jobs.templatetags.portal import code_spans

from .asset_cards import asset_cards, asset_rows
from .cells import asset_figures_html, delivery_html, resolution_html
from .cells import job_url as _job_url_of
from .common import (
    OPERATE_PERMISSION,
    can_operate,
    copy_button,
    format_time,
    json_block,
    object_url,
    pretty_json,
    require_view,
    s3_console_url,
    status_badge,
)
from .job_list import STATUS_LABELS, JobListColumns, annotate_job_rows

if TYPE_CHECKING:  # django-stubs' type of a string or a lazy translation
    from django_stubs_ext import StrOrPromise

# The job page's summary fields that change while a job runs: the live view sends them again.
LIVE_PAGE_FIELDS = (
    "status_badge",
    "started_time",
    "completed_time",
    "duration",
    "asset_figures_text",
    "resolution_text",
    "delivery_text",
    "what_to_do",
    "last_error_full",
)


class JobPage(JobListColumns):
    """The job page of ``MediaProcessingJobAdmin``: fields, context and the execution view
    (it shows some of the list's cells, the listing link among them)."""

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        job = super().get_object(request, object_id, from_field)
        if job is not None:
            annotate_job_rows([job], operate=can_operate(request))
        return job

    @admin.display(description=_("job id"))
    def job_id(self, obj: MediaProcessingJob) -> str:
        return format_html("{} {}", obj.pk, copy_button(obj.pk))

    @admin.display(description=_("listing"))
    def listing_text(self, obj: MediaProcessingJob) -> str:
        return format_html("{} {}", self.listing(obj), copy_button(obj.listing_identity_id))

    @admin.display(description=_("retry count"))
    def retry_count_text(self, obj: MediaProcessingJob) -> str:
        """The model field has no translatable label; 0 for a first run, +1 per retry."""
        return str(obj.retry_count or 0)

    @admin.display(description=_("external id"))
    def external_id_text(self, obj: MediaProcessingJob) -> str:
        if not obj.external_id:
            return format_html('<span class="toq-muted">{}</span>', _("none yet"))
        return format_html("<code>{}</code> {}", obj.external_id, copy_button(obj.external_id))

    @admin.display(description=_("started"))
    def started_time(self, obj: MediaProcessingJob) -> StrOrPromise:
        if obj.started_at is not None:
            return format_time(obj.started_at)
        if obj.status in TERMINAL_JOB_STATUSES:
            return _("never started (it ended before a worker took it)")
        return _("not yet")

    @admin.display(description=_("completed"))
    def completed_time(self, obj: MediaProcessingJob) -> StrOrPromise:
        if obj.completed_at is not None:
            return format_time(obj.completed_at)
        return _("not finished")

    @admin.display(description=_("created"))
    def created_time(self, obj: MediaProcessingJob) -> str:
        return format_time(obj.created_at)

    @admin.display(description=_("assets of this job"))
    def asset_figures_text(self, obj: MediaProcessingJob) -> str:
        return asset_figures_html(obj, getattr(obj, "asset_figures", None), long=True)

    @admin.display(description=_("what became of it"))
    def resolution_text(self, obj: MediaProcessingJob) -> str:
        parts = []
        retried = resolution_selectors.retry_of(job=obj)
        if retried:
            parts.append(
                format_html(
                    '<span class="toq-lineage">{} <a href="{}">#{}</a></span>',
                    _("a retry of"),
                    _job_url_of(retried),
                    retried,
                )
            )
        chain = resolution_selectors.job_lineage(job=obj)
        if chain:
            steps = format_html_join(
                " → ",
                '<a href="{}">#{}</a> {}',
                (
                    (
                        _job_url_of(job.pk),
                        job.pk,
                        status_badge(job.status, STATUS_LABELS.get(job.status, job.status)),
                    )
                    for job in chain
                ),
            )
            parts.append(
                format_html('<span class="toq-lineage">{} {}</span>', _("retried as"), steps)
            )
        resolution = getattr(obj, "resolution", None)
        if resolution is not None:
            parts.append(resolution_html(resolution, lineage=False))
        if not parts:
            return format_html('<span class="toq-muted">{}</span>', "-")
        return format_html_join(mark_safe("<br>"), "{}", ((p,) for p in parts))

    @admin.display(description=_("result sent to the backend"))
    def delivery_text(self, obj: MediaProcessingJob) -> str:
        return delivery_html(obj, getattr(obj, "delivery", None))

    @admin.display(description=_("what to do"))
    def what_to_do(self, obj: MediaProcessingJob) -> str:
        code = error_code_of(obj.last_error)
        if not obj.last_error:
            return format_html('<span class="toq-muted">{}</span>', "-")
        return format_html(
            '<span class="toq-advice"><code>{}</code> {}</span>',
            code or _("(no code)"),
            code_spans(errorcodes.what_to_do(code)),
        )

    @admin.display(description=_("last error"))
    def last_error_full(self, obj: MediaProcessingJob) -> str:
        if not obj.last_error:
            return format_html('<span class="toq-muted">{}</span>', _("(none)"))
        return format_html('<pre class="toq-pre">{}</pre>', obj.last_error)

    @admin.display(description=_("payload"))
    def payload_json(self, obj: MediaProcessingJob) -> str:
        return json_block(obj.payload, summary=_("payload"), open_=True)

    @admin.display(description=_("callback body"))
    def callback_body_json(self, obj: MediaProcessingJob) -> str:
        return json_block(obj.callback_body, summary=_("callback body"))

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: MediaProcessingJob | None = None,
    ) -> HttpResponse:
        if obj is not None:
            context.update(job_page_context(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<int:object_id>/execution/",
                wrap(self.execution_view),
                name="media_jobs_mediaprocessingjob_execution",
            ),
            *super().get_urls(),
        ]

    def execution_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """The Step Functions execution and its history, fetched when asked for."""
        require_view(request)
        job = get_object_or_404(
            MediaProcessingJob.objects.defer("payload", "callback_body"), pk=object_id
        )
        context: dict[str, Any] = {"job": job, "execution": None, "history": [], "problem": None}
        execution_arn = job.external_id or ""
        if not execution_arn.startswith("arn:"):
            context["problem"] = gettext(
                "This job has no Step Functions execution (it ran on Celery)."
            )
        else:
            try:
                execution = stepfunctions.describe_execution(execution_arn)
                history = stepfunctions.execution_history(execution_arn)
                context.update(execution_display(execution, history))
            except stepfunctions.ExecutionNotFound as exc:
                context["problem"] = gettext(
                    "Step Functions does not know this execution: %(error)s"
                ) % {"error": exc}
            except stepfunctions.AwsUnavailable as exc:
                context["problem"] = gettext(
                    "AWS Step Functions could not be reached: %(error)s"
                ) % {"error": exc}
        template = "media_jobs/fragments/execution.html"
        if request.GET.get("fragment") != "1":
            context.update(
                self.admin_site.each_context(request),
                opts=self.opts,
                title=gettext("Execution of job #%(job)s") % {"job": job.pk},
                fragment_template=template,
            )
            template = "media_jobs/fragment_page.html"
        return TemplateResponse(request, template, context)


def execution_display(execution: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    """describe_execution / get_execution_history output as rows with pretty JSON."""
    big = ("input", "output", "inputDetails", "outputDetails", "ResponseMetadata")
    skip = ("id", "timestamp", "type", "previousEventId")
    return {
        "execution": [(k, v) for k, v in execution.items() if k not in big],
        "execution_input": pretty_json(execution.get("input")),
        "execution_output": pretty_json(execution.get("output")),
        "history": [
            {
                "id": event.get("id"),
                "timestamp": event.get("timestamp"),
                "type": event.get("type"),
                "details": [(k, pretty_json(v)) for k, v in event.items() if k not in skip],
            }
            for event in history
        ],
    }


def job_page_context(request: HttpRequest, job: MediaProcessingJob) -> dict[str, Any]:
    """Everything the job page shows below the summary; a fixed number of queries."""
    assets = selectors.listing_assets(listing_identity_id=job.listing_identity_id)
    # The assets this job took (recorded at dispatch); None for a job started elsewhere.
    taken = job_asset_ids(job=job)
    cards = asset_cards(assets)
    outcomes = selectors.job_asset_outcomes(job=job)
    first_line = next(iter(parse_last_error(job.last_error)), None)
    for card in cards:
        asset = card["asset"]
        # None: the job was started elsewhere and did not record which assets it took.
        card["in_job"] = None if taken is None else asset.pk in taken
        outcome = outcomes.get(asset.s3_key_raw or "")
        if outcome is None and card["in_job"] and job.status == JobStatus.FAILED and first_line:
            # A failure without outputs failed every asset the job took, with its own code.
            outcome = selectors.AssetOutcome(False, first_line.code or "", first_line.message)
        card["job_outcome"] = outcome
        if outcome is not None and not outcome.processed:
            card["job_advice"] = errorcodes.what_to_do(outcome.code)
        card["copy_key"] = asset.s3_key_raw
    asset_rows(cards)
    is_sfn = (job.external_id or "").startswith("arn:")
    return {
        "job": job,
        "can_operate": can_operate(request),
        "operate_permission": OPERATE_PERMISSION,
        "is_terminal": job.status in TERMINAL_JOB_STATUSES,
        "can_retry": job.status in (JobStatus.FAILED, JobStatus.PARTIAL_SUCCESS),
        "is_active": job.status in (JobStatus.PENDING, JobStatus.RUNNING),
        "is_finalization": job.provider == JobProvider.STEP_FUNCTIONS_FINALIZATION,
        "is_stepfunctions": is_sfn,
        **timeline_context(job),
        "deliveries": list(job.callback_deliveries.order_by("-created_at", "-id")[:20]),
        "callback_configured": delivery_selectors.callback_configured(),
        "asset_cards": cards,
        "job_asset_count": None if taken is None else len(taken),
        "other_jobs": [
            other
            for other in selectors.listing_jobs(
                listing_identity_id=job.listing_identity_id, limit=21
            )
            if other.pk != job.pk
        ][:20],
        "retry_url": reverse("admin:media_jobs_mediaprocessingjob_retry", args=[job.pk]),
        "mark_failed_url": reverse(
            "admin:media_jobs_mediaprocessingjob_mark_failed", args=[job.pk]
        ),
        "execution_url": reverse("admin:media_jobs_mediaprocessingjob_execution", args=[job.pk]),
        "storage_check_url": reverse(
            "admin:media_jobs_storage_check", args=[job.listing_identity_id]
        ),
        "live_url": reverse("admin:media_jobs_job_status") + f"?job={job.pk}",
        "listing_url": reverse("admin:media_jobs_listing", args=[job.listing_identity_id]),
        "listing_console_url": s3_console_url(f"{job.listing_identity_id}/", folder=True),
        "zip_url": object_url(keys.zip_key(job.listing_identity_id), download=True)
        if job.provider == JobProvider.STEP_FUNCTIONS_FINALIZATION
        else None,
    }


def timeline_context(job: MediaProcessingJob) -> dict[str, Any]:
    """The step timeline (the page's section, and what the live view sends again)."""
    events = list(job.events.order_by("at", "id")[:500])
    return {
        "events": [(event, pretty_json(event.detail)) for event in events],
        "event_count": len(events),
        "is_stepfunctions": (job.external_id or "").startswith("arn:"),
    }
