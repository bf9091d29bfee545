"""The asset list (read-only) with "Reprocess selected assets"."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from media_jobs.models import MediaAsset
from media_jobs.selectors import admin as selectors

from .common import (
    ReadOnlyAdminMixin,
    can_operate,
    json_block,
    object_url,
    require_operate,
    status_badge,
)
from .forms import BulkReprocessForm, SelectionForm, confirmation_response
from .job_actions import report_outcomes
from .operations import reprocess_assets

OPERATE_ACTIONS = ("reprocess_selected",)


@admin.register(MediaAsset)
class MediaAssetAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "listing",
        "asset_type",
        "sequence",
        "status_badge",
        "preview",
        "name",
        "error_code",
    )
    list_display_links = ("id",)
    list_filter = ("status", "asset_type")
    # The unique (listing, type, sequence) index gives this order for free.
    ordering = ("listing_identity_id", "asset_type", "sequence")
    sortable_by = ()
    search_fields = ("=id",)  # shows the search box; get_search_results does the work
    search_help_text = _("Asset id or listing id (exact), or raw key (prefix).")
    list_per_page = 50
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = selectors.BoundedCountPaginator
    actions = ["reprocess_selected"]
    fields = (
        "id",
        "listing",
        "asset_type",
        "sequence",
        "status_badge",
        "title",
        "s3_key_raw",
        "s3_key_processed",
        "error_code",
        "error_message",
        "links",
        "metadata_json",
    )
    readonly_fields = fields

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return can_operate(request)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        return selectors.asset_search(queryset=queryset, term=search_term), False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if request.method == "POST" and request.POST.get("action") in OPERATE_ACTIONS:
            require_operate(request)
            if not SelectionForm(request.POST).is_valid():
                # Ids that are not ids: the confirmation page with the error (400), before
                # Django's filter(pk__in=...) raises on them.
                refused = self.reprocess_selected(request, self.get_queryset(request).none())
                if refused is not None:
                    return refused
        return super().changelist_view(request, extra_context)

    @admin.display(description=_("listing"), ordering="listing_identity_id")
    def listing(self, obj: MediaAsset) -> str:
        url = reverse("admin:media_jobs_listing", args=[obj.listing_identity_id])
        return format_html('<a href="{}">{}</a>', url, obj.listing_identity_id)

    @admin.display(description=_("status"))
    def status_badge(self, obj: MediaAsset) -> str:
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description=_("file"))
    def name(self, obj: MediaAsset) -> str:
        return obj.meta.get("filename") or obj.title or obj.s3_key_raw or "-"

    @admin.display(description=_("preview"))
    def preview(self, obj: MediaAsset) -> str:
        key = selectors.asset_thumbnail_key(obj)
        if not key or obj.status != "PROCESSED":
            return "-"
        return format_html(
            '<img class="toq-thumb-small" src="{}" alt="{}" loading="lazy">', object_url(key), key
        )

    @admin.display(description=_("error code"))
    def error_code(self, obj: MediaAsset) -> str:
        return selectors.asset_error(obj)[0] or ""

    @admin.display(description=_("error message"))
    def error_message(self, obj: MediaAsset) -> str:
        return selectors.asset_error(obj)[1] or ""

    @admin.display(description=_("objects"))
    def links(self, obj: MediaAsset) -> str:
        links = selectors.asset_links(obj)
        if not links:
            return "-"
        items = format_html_join(
            "",
            '<li><a href="{}">{}</a> <code>{}</code></li>',
            ((object_url(key), label, key) for label, key in links),
        )
        return format_html('<ul class="toq-links">{}</ul>', items)

    @admin.display(description=_("metadata"))
    def metadata_json(self, obj: MediaAsset) -> str:
        return json_block(obj.metadata, summary=_("metadata"), open_=True)

    @admin.action(description=_("Reprocess selected assets"), permissions=["operate"])
    def reprocess_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        require_operate(request)
        assets = list(queryset.order_by("listing_identity_id", "asset_type", "sequence")[:1000])
        form = BulkReprocessForm(request.POST)
        if form.confirmed:
            outcomes = reprocess_assets(request=request, assets=assets)
            report_outcomes(
                self,
                request,
                outcomes,
                verb=gettext("reprocessed in"),
                source_label=lambda s: gettext("listing %(listing)s") % {"listing": s},
            )
            return None
        by_listing: dict[int, list[MediaAsset]] = {}
        for asset in assets:
            by_listing.setdefault(asset.listing_identity_id, []).append(asset)
        return confirmation_response(
            form,
            request,
            "media_jobs/confirm_reprocess.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": gettext("Reprocess %(count)s asset(s)?") % {"count": len(assets)},
                "assets": assets,
                "by_listing": sorted(by_listing.items()),
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
                "cancel_url": reverse("admin:media_jobs_mediaasset_changelist"),
                "form": form,
            },
        )
