"""The jobs change list: its filters, the ChangeList that builds a page of rows in one pass,
what a row shows besides its columns, and the columns themselves (``JobListColumns``)."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.templatetags.admin_list import ResultList, result_headers
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.html import conditional_escape, escape, format_html
from django.utils.safestring import mark_safe
from django.utils.text import capfirst
from django.utils.translation import gettext, pgettext
from django.utils.translation import gettext_lazy as _

from media_jobs.models import TERMINAL_JOB_STATUSES, JobProvider, JobStatus, MediaProcessingJob
from media_jobs.selectors import admin as selectors
from media_jobs.selectors import deliveries as delivery_selectors
from media_jobs.selectors import errors as error_selectors
from media_jobs.selectors import resolution as resolution_selectors

from .cells import asset_figures_html, resolution_html, time_html, undelivered_html
from .common import can_operate, duration_text, status_badge

if TYPE_CHECKING:  # django-stubs' type of a string or a lazy translation
    from django_stubs_ext import StrOrPromise

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


class JobListColumns(admin.ModelAdmin):
    """The list's computed columns (names in ``MediaProcessingJobAdmin.list_display``; the live
    view renders the same cells again)."""

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
