"""The jobs list and the read-only job page, with Retry and Mark as failed."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.templatetags.admin_list import ResultList, result_headers
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import formats, timezone
from django.utils.html import conditional_escape, escape, format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import capfirst
from django.utils.translation import gettext, pgettext
from django.utils.translation import gettext_lazy as _

from media_jobs import errorcodes, stepfunctions
from media_jobs.errorcodes import error_code_of, parse_last_error
from media_jobs.models import (
    TERMINAL_JOB_STATUSES,
    JobProvider,
    JobStatus,
    MediaProcessingJob,
)
from media_jobs.pipeline import keys
from media_jobs.selectors import admin as selectors
from media_jobs.selectors import deliveries as delivery_selectors
from media_jobs.selectors import errors as error_selectors
from media_jobs.selectors import resolution as resolution_selectors
from media_jobs.services.dispatch import job_asset_ids
from media_jobs.templatetags.portal import code_spans

from .cells import (
    asset_figures_html,
    delivery_html,
    resolution_html,
    time_html,
    undelivered_html,
)
from .cells import job_url as _job_url_of
from .common import (
    OPERATE_PERMISSION,
    ReadOnlyAdminMixin,
    can_operate,
    copy_button,
    duration_text,
    format_time,
    json_block,
    object_url,
    pretty_json,
    require_operate,
    require_view,
    s3_console_url,
    status_badge,
)
from .operations import mark_failed, plan_for, retry_jobs

if TYPE_CHECKING:  # django-stubs' type of a string or a lazy translation
    from django_stubs_ext import StrOrPromise

OPERATE_ACTIONS = ("retry_selected", "mark_failed_selected")
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
# The error-code filter offers the documented codes and those seen in this many days.
ERROR_CODE_CHOICE_DAYS = 30
# Labels by value for the list's cells: Model.get_FOO_display() rebuilds the choices dict on
# every call, twice per row. An unknown value (a backend's newer status) shows as it is.
STATUS_LABELS: dict[str, StrOrPromise] = dict(JobStatus.choices)
KIND_LABELS: dict[str, StrOrPromise] = dict(JobProvider.choices)


class StuckFilter(admin.SimpleListFilter):
    title = _("stuck")
    parameter_name = "stuck"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        minutes = settings.RECONCILER_TIMEOUT_SECONDS // 60
        return [("yes", _("Running or pending > %(minutes)s min") % {"minutes": minutes})]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(selectors.job_stuck_q())
        return queryset


class ResolutionFilter(admin.SimpleListFilter):
    """Failures no later job of the same listing and kind has made good (the "Failed"
    shortcut and the dashboard link here), or those that one has."""

    title = _("failures")
    parameter_name = "resolution"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, StrOrPromise]]:
        return [
            ("unresolved", _("Unresolved (no later success)")),
            ("resolved", _("Resolved by a later success")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "unresolved":
            return queryset.filter(resolution_selectors.unresolved_failures_q())
        if self.value() == "resolved":
            return queryset.filter(resolution_selectors.resolved_failures_q())
        return queryset


class CallbackFilter(admin.SimpleListFilter):
    """Jobs whose result the TOQ backend has not received (selectors.deliveries decides)."""

    title = _("callback to the backend")
    parameter_name = "callback"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, StrOrPromise]]:
        return [("undelivered", _("Not delivered"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "undelivered":
            return queryset.filter(delivery_selectors.undelivered_q())
        return queryset


class ErrorCodeFilter(admin.SimpleListFilter):
    """Jobs that ended with a code - their own or one of their assets' (media_job_errors)."""

    title = _("error code")
    parameter_name = "error_code"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        choices = error_selectors.error_code_choices(
            recent_since=timezone.now() - datetime.timedelta(days=ERROR_CODE_CHOICE_DAYS)
        )
        current = self.value()
        if current and current not in choices:
            choices.append(current)
        return [(code, code) for code in choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        code = self.value()
        if code:
            return queryset.filter(error_selectors.job_error_code_q(code))
        return queryset


class JobChangeList(ChangeList):
    """Adds, per page, a fixed number of queries for what the rows show besides their own
    columns - each job's own asset figures, the resolution of its failure, whether the
    backend received its result - and a date hierarchy that never runs
    ``SELECT DISTINCT YEAR(created_at)`` over the table."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        self.result_list = list(self.result_list)
        annotate_job_rows(self.result_list, operate=can_operate(request))

    def result_table(self) -> dict[str, Any]:
        """The context Django's ``result_list`` tag gives ``change_list_results.html``, built
        in one pass: the generic ``items_for_result`` (a field lookup that raises per computed
        cell) and then one template variable per cell were most of the page's time on 50
        rows. Each row is one safe string of its cells: Django's markup, except that an empty
        cell (no error) stays empty where Django would print its "-"."""
        headers = list(result_headers(self))
        # The job link of every row: escaped once, the primary key (digits) put in per row.
        change_url = reverse("admin:media_jobs_mediaprocessingjob_change", args=[0])
        change_url = escape(
            add_preserved_filters(
                {"preserved_filters": self.preserved_filters, "opts": self.opts},
                change_url.replace("/0/", "/__pk__/"),
            )
        )
        with_checkbox = "action_checkbox" in self.list_display
        # (opening tag, display method) per computed column; names come from list_display.
        columns = [
            (f'<td class="field-{name}">', getattr(self.model_admin, name))
            for name in self.list_display
            if isinstance(name, str) and name not in ("action_checkbox", "id")
        ]
        rows = []
        select_label = gettext("Select this object for an action - %(job)s")
        for job in self.result_list:
            pk = int(job.pk)
            cells: list[str] = []
            if with_checkbox:
                label = escape(select_label % {"job": job})
                cells.append(
                    f'<td class="action-checkbox"><input type="checkbox" '
                    f'name="{ACTION_CHECKBOX_NAME}" value="{pk}" class="action-select" '
                    f'aria-label="{label}"></td>'
                )
            url = change_url.replace("__pk__", str(pk), 1)
            cells.append(f'<th class="field-id"><a href="{url}">{pk}</a></th>')
            for opening, display in columns:
                cells += (opening, conditional_escape(display(job)), "</td>")
            # Every part above is escaped; ResultList is the row type Django's template expects.
            rows.append(ResultList(None, [mark_safe("".join(cells))]))
        return {
            "result_headers": headers,
            "num_sorted_fields": sum(1 for h in headers if h["sortable"] and h["sorted"]),
            "results": rows,
            "result_hidden_fields": [],
        }

    def cheap_date_hierarchy(self) -> dict[str, Any]:
        """Same links as Django's date hierarchy, for the months and days that have jobs:
        found by index look-ups (the table's first and last created_at, then a loose scan
        of a year or a month), never DISTINCT over the rows."""
        field = self.date_hierarchy
        year_field, month_field, day_field = (f"{field}__{p}" for p in ("year", "month", "day"))
        year, month, day = (self.params.get(f) for f in (year_field, month_field, day_field))
        year, month, day = (_int_param(v) for v in (year, month, day))

        def link(filters: dict[str, Any]) -> str:
            return self.get_query_string(filters, [f"{field}__"])

        first = last = None
        if not (year or month or day):
            # The whole table's first and last day (date_hierarchy is created_at): the ends of
            # its index, cached a minute. Min/Max of a filtered list could read every row the
            # filter matches.
            first, last = selectors.job_created_bounds()
            if first and last:
                first, last = timezone.localtime(first), timezone.localtime(last)
                if first.year == last.year:
                    year = first.year
                    if first.month == last.month:
                        month = first.month
        if year and month and day:
            date = datetime.date(year, month, day)
            return {
                "show": True,
                "back": {
                    "link": link({year_field: year, month_field: month}),
                    "title": capfirst(formats.date_format(date, "YEAR_MONTH_FORMAT")),
                },
                "choices": [{"title": capfirst(formats.date_format(date, "MONTH_DAY_FORMAT"))}],
            }
        if year and month:
            day_format = pgettext(
                "date format of a day in the date bar (Django date syntax)", "M j"
            )
            return {
                "show": True,
                "back": {"link": link({year_field: year}), "title": str(year)},
                "choices": [
                    {
                        "link": link({year_field: year, month_field: month, day_field: d}),
                        "title": formats.date_format(datetime.date(year, month, d), day_format),
                    }
                    for d in selectors.job_created_days(year=year, month=month)
                ],
            }
        if year:
            return {
                "show": True,
                "back": {"link": link({}), "title": _("All dates")},
                "choices": [
                    {
                        "link": link({year_field: year, month_field: m}),
                        "title": capfirst(
                            formats.date_format(datetime.date(year, m, 1), "YEAR_MONTH_FORMAT")
                        ),
                    }
                    for m in selectors.job_created_months(year=year)
                ],
            }
        if first and last:
            return {
                "show": True,
                "back": None,
                "choices": [
                    {"link": link({year_field: y}), "title": str(y)}
                    for y in range(first.year, last.year + 1)
                ],
            }
        return {"show": False}


def _int_param(value: Any) -> int | None:
    if isinstance(value, list):
        value = value[-1] if value else None
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def job_list_row_queryset() -> QuerySet:
    """The jobs as the list reads them (the live view reads a page's rows again)."""
    return selectors.job_list_columns(queryset=MediaProcessingJob.objects.all())


def annotate_job_rows(jobs: list[MediaProcessingJob], *, operate: bool = False) -> None:
    """What a row shows besides its own columns, for a page of jobs in a fixed number of
    queries: its own asset figures, the resolution of a failure, the delivery of its
    result; and the link to its listing (one reverse() for the page)."""
    figures, resolutions = resolution_selectors.job_list_facts(jobs=jobs)
    deliveries = delivery_selectors.job_delivery_states(jobs=jobs)
    listing_url = reverse("admin:media_jobs_listing", args=[0]).replace("/0/", "/{}/")
    # Attributes of this page's rows only, read by the row cells: not model fields.
    for job in jobs:
        job.asset_figures = figures.get(job.pk)  # type: ignore[attr-defined]
        job.resolution = resolutions.get(job.pk)  # type: ignore[attr-defined]
        job.delivery = deliveries.get(job.pk)  # type: ignore[attr-defined]
        job.listing_url = listing_url.format(job.listing_identity_id)  # type: ignore[attr-defined]
        job.can_operate = operate  # type: ignore[attr-defined]


@admin.register(MediaProcessingJob)
class MediaProcessingJobAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "listing",
        "kind",
        "status_badge",
        "started",
        "completed",
        "duration",
        "assets",
        "error_summary",
    )
    list_display_links = ("id",)
    list_filter = (
        "status",
        ("provider", admin.ChoicesFieldListFilter),
        ResolutionFilter,
        CallbackFilter,
        StuckFilter,
        ErrorCodeFilter,
    )
    date_hierarchy = "created_at"
    # created_at + id: every filter's index (status|provider, created_at) also gives the order.
    ordering = ("-created_at", "-id")
    sortable_by = ("id",)
    search_fields = ("=id",)  # shows the search box; get_search_results does the work
    search_help_text = _(
        "Job id or listing id (exact), external id (prefix) or raw key (prefix, with a '/')."
    )
    list_per_page = 50
    list_max_show_all = 200
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = selectors.BoundedCountPaginator
    actions = ["retry_selected", "mark_failed_selected"]
    # Explicit names, not Django's per-model paths (admin/<app>/<model>/...), which every
    # admin of this model would pick up - another site's plain ModelAdmin included.
    change_list_template = "admin/media_jobs/job_change_list.html"
    change_form_template = "admin/media_jobs/job_change_form.html"
    fieldsets = (
        (
            _("Summary"),
            {
                "fields": (
                    ("job_id", "status_badge"),
                    ("listing_text", "kind"),
                    ("retry_count_text", "external_id_text"),
                    ("created_time", "started_time", "completed_time", "duration"),
                    "asset_figures_text",
                    "resolution_text",
                    "delivery_text",
                )
            },
        ),
        (_("Last error"), {"fields": ("what_to_do", "last_error_full")}),
        (_("Data"), {"fields": ("payload_json", "callback_body_json")}),
    )
    readonly_fields = (
        "job_id",
        "listing_text",
        "kind",
        "retry_count_text",
        "external_id_text",
        "created_time",
        *LIVE_PAGE_FIELDS,
        "payload_json",
        "callback_body_json",
    )

    # -- permissions: read-only for everyone; operating is a separate permission --------------

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return can_operate(request)

    # -- list -------------------------------------------------------------------------------

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return JobChangeList

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The list never reads the big TEXT/JSON columns; the job page reads them by pk.
        queryset = super().get_queryset(request)
        url_name = request.resolver_match.url_name if request.resolver_match else None
        if url_name and url_name.endswith("changelist"):
            queryset = selectors.job_list_columns(queryset=queryset)
        return queryset

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        return selectors.job_search(queryset=queryset, term=search_term), False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if request.method == "POST" and request.POST.get("action") in OPERATE_ACTIONS:
            require_operate(request)  # a forged action POST is a 403, not "no action"
        return super().changelist_view(request, extra_context)

    @admin.display(description=_("listing"), ordering="listing_identity_id")
    def listing(self, obj: MediaProcessingJob) -> str:
        url = getattr(obj, "listing_url", None) or reverse(
            "admin:media_jobs_listing", args=[obj.listing_identity_id]
        )
        return format_html('<a href="{}">{}</a>', url, obj.listing_identity_id)

    @admin.display(description=_("kind"))
    def kind(self, obj: MediaProcessingJob) -> str:
        return str(KIND_LABELS.get(obj.provider, obj.provider))

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: MediaProcessingJob) -> str:
        """The badge (live: the page's script updates a PENDING/RUNNING one), then what
        became of a failure and whether the backend has the result."""
        badge = status_badge(obj.status, STATUS_LABELS.get(obj.status, obj.status))
        extra = resolution_html(getattr(obj, "resolution", None)) + undelivered_html(
            obj, getattr(obj, "delivery", None)
        )
        # Every part is escaped (badge and extra are safe HTML): one string, fifty times a page.
        return mark_safe(
            f'<span class="toq-live" data-job="{int(obj.pk)}" data-status="{escape(obj.status)}">'
            f"{badge}</span>{extra}"
        )

    @admin.display(description=_("started"))
    def started(self, obj: MediaProcessingJob) -> str:
        if obj.started_at is None and obj.status in TERMINAL_JOB_STATUSES:
            return format_html('<span class="toq-muted">{}</span>', gettext("never started"))
        return time_html(obj.started_at)

    @admin.display(description=_("completed"))
    def completed(self, obj: MediaProcessingJob) -> str:
        return time_html(obj.completed_at)

    @admin.display(description=_("duration"))
    def duration(self, obj: MediaProcessingJob) -> str:
        if not obj.started_at:
            return "-"
        end = obj.completed_at or timezone.now()
        return duration_text((end - obj.started_at).total_seconds())

    @admin.display(description=_("assets ok / failed"))
    def assets(self, obj: MediaProcessingJob) -> str:
        """The job's own assets: what it took and what came of them (not the listing now)."""
        return asset_figures_html(obj, getattr(obj, "asset_figures", None))

    @admin.display(description=_("last error"))
    def error_summary(self, obj: MediaProcessingJob) -> str:
        head = obj.error_head if hasattr(obj, "error_head") else obj.last_error
        if not head:
            return ""
        first_line = head.split("\n", 1)[0]
        return format_html(
            '<span class="toq-error toq-clamp" title="{}">{}</span>', first_line, first_line
        )

    # -- job page ---------------------------------------------------------------------------

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

    # -- actions ----------------------------------------------------------------------------

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
            path(
                "<int:object_id>/execution/",
                wrap(self.execution_view),
                name="media_jobs_mediaprocessingjob_execution",
            ),
            *super().get_urls(),
        ]

    def retry_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        require_operate(request)
        job = get_object_or_404(MediaProcessingJob, pk=object_id)
        if request.method == "POST":
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
        plan, problem = plan_for(job)
        return TemplateResponse(
            request,
            "media_jobs/confirm_retry.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": gettext("Retry job #%(job)s?") % {"job": job.pk},
                "items": [{"job": job, "plan": plan, "problem": problem}],
                "can_submit": problem is None,
                "form_action": "",
                "cancel_url": _job_url(job),
            },
        )

    def mark_failed_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        require_operate(request)
        job = get_object_or_404(MediaProcessingJob, pk=object_id)
        if request.method == "POST":
            reason = _reason(request)
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
        return TemplateResponse(
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
                "default_reason": _default_reason(request),
                "cancel_url": _job_url(job),
            },
        )

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

    @admin.action(description=_("Retry selected jobs"), permissions=["operate"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        require_operate(request)
        jobs = list(queryset.defer("payload", "callback_body").order_by("-pk")[:200])
        if request.POST.get("post") == "yes":
            outcomes = retry_jobs(request=request, jobs=jobs)
            report_outcomes(self, request, outcomes, verb=gettext("retried as"))
            return None
        items = []
        for job in jobs:
            plan, problem = plan_for(job)
            items.append({"job": job, "plan": plan, "problem": problem})
        return TemplateResponse(
            request,
            "media_jobs/confirm_retry.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": gettext("Retry %(count)s job(s)?") % {"count": len(jobs)},
                "items": items,
                "can_submit": any(item["problem"] is None for item in items),
                "action_name": "retry_selected",
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                "cancel_url": reverse("admin:media_jobs_mediaprocessingjob_changelist"),
            },
        )

    @admin.action(description=_("Mark selected stuck jobs as failed"), permissions=["operate"])
    def mark_failed_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        require_operate(request)
        jobs = list(queryset.defer("payload", "callback_body").order_by("-pk")[:200])
        if request.POST.get("post") == "yes":
            outcomes = mark_failed(request=request, jobs=jobs, reason=_reason(request))
            report_outcomes(
                self, request, outcomes, verb=gettext("marked failed"), link_result=False
            )
            return None
        finished = [job for job in jobs if job.status in TERMINAL_JOB_STATUSES]
        return TemplateResponse(
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
                "default_reason": _default_reason(request),
                "action_name": "mark_failed_selected",
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                "cancel_url": reverse("admin:media_jobs_mediaprocessingjob_changelist"),
            },
        )


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


def _job_url(job: MediaProcessingJob) -> str:
    return reverse("admin:media_jobs_mediaprocessingjob_change", args=[job.pk])


def _default_reason(request: HttpRequest) -> str:
    return gettext("marked failed by %(user)s in the admin (stuck)") % {
        "user": request.user.get_username()
    }


def _reason(request: HttpRequest) -> str:
    reason = " ".join(request.POST.get("reason", "").split())[:500]
    return reason or _default_reason(request)


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


def job_page_context(request: HttpRequest, job: MediaProcessingJob) -> dict[str, Any]:
    """Everything the job page shows below the summary; a fixed number of queries."""
    from .views import asset_cards, asset_rows  # noqa: PLC0415 - views imports this module

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
