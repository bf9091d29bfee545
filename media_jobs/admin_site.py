"""The portal's admin site: the Django admin with the operations dashboard on its index and
the portal's own pages (listing, storage check, error groups, file serving) under /admin/."""

from __future__ import annotations

from typing import Any

from django.contrib.admin import AdminSite
from django.http import HttpRequest, HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path
from django.utils.translation import gettext_lazy as _


class PortalAdminSite(AdminSite):
    site_header = _("TOQ media operations")
    site_title = _("TOQ media portal")
    index_title = _("Operations")
    index_template = "admin/portal_index.html"
    # The header's portal links replace the model sidebar: the jobs list needs the width.
    enable_nav_sidebar = False

    def index(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        from media_jobs.admin.dashboard import dashboard_context  # noqa: PLC0415 - the admin package registers models on this site

        context = {**dashboard_context(request), **(extra_context or {})}
        return super().index(request, context)

    def get_urls(self) -> list[URLResolver | URLPattern]:
        # The views live in the admin package, which registers models on this site: import
        # them when the URLconf is built, after app loading, never at module import.
        from media_jobs.admin import error_groups, files, listing, live  # noqa: PLC0415 - see above

        def page(view: Any) -> Any:
            def bound(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
                return view(self, request, *args, **kwargs)

            return self.admin_view(bound)

        own = [
            path(
                "media_jobs/listing/<int:listing_identity_id>/",
                page(listing.listing_view),
                name="media_jobs_listing",
            ),
            path(
                "media_jobs/listing/<int:listing_identity_id>/storage-check/",
                page(listing.storage_check_view),
                name="media_jobs_storage_check",
            ),
            path(
                "media_jobs/error-groups/",
                page(error_groups.error_groups_view),
                name="media_jobs_error_groups",
            ),
            path(
                "media_jobs/error-groups/<str:key>/retry/",
                page(error_groups.error_group_retry_view),
                name="media_jobs_error_group_retry",
            ),
            path(
                "media_jobs/media-file/", page(files.media_file_view), name="media_jobs_media_file"
            ),
            path("media_jobs/live/", page(live.job_status_view), name="media_jobs_job_status"),
        ]
        return own + super().get_urls()
