"""The jobs admin: the change list, the job page and the operate actions, assembled from
``job_list``, ``job_page`` and ``job_actions`` (one idea each) on one registered ModelAdmin."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _

from media_jobs.models import MediaProcessingJob
from media_jobs.selectors import admin as selectors

from .common import ReadOnlyAdminMixin, can_operate, require_operate
from .job_actions import OPERATE_ACTIONS, JobActions
from .job_list import (
    CallbackFilter,
    ErrorCodeFilter,
    JobChangeList,
    JobListColumns,
    ResolutionFilter,
    StuckFilter,
)
from .job_page import LIVE_PAGE_FIELDS, JobPage


@admin.register(MediaProcessingJob)
class MediaProcessingJobAdmin(
    JobActions, JobPage, JobListColumns, ReadOnlyAdminMixin, admin.ModelAdmin
):
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
