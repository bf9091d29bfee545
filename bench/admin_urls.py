"""The portal's URLs plus the reference of benchmark 3: a plain ``ModelAdmin`` on a site of its
own, at /plain-admin/, serving the same model from the same database in the same process."""

from django.contrib import admin
from django.urls import path
from django.urls.resolvers import URLPattern

from media_jobs.models import CallbackDelivery, MediaAsset, MediaProcessingJob
from toqportal.urls import urlpatterns as portal_urlpatterns


class PlainAdminSite(admin.AdminSite):
    """Django's AdminSite. The project's admin templates are global (templates/admin/) and link
    to the portal's own pages by name, so those names are re-exported here for ``reverse``
    only; the pages measured are the stock ModelAdmin views."""

    def get_urls(self) -> list:
        urls = super().get_urls()
        names = {u.name for u in urls if isinstance(u, URLPattern)}
        portal_own = [
            u
            for u in admin.site.get_urls()
            if isinstance(u, URLPattern) and u.name and u.name not in names
        ]
        return urls + portal_own


plain_site = PlainAdminSite(name="plain_admin")


class PlainJobAdmin(admin.ModelAdmin):
    """What a first version would look like: the columns, a status filter, a search box."""

    list_display = (
        "id",
        "listing_identity_id",
        "status",
        "provider",
        "created_at",
        "started_at",
        "completed_at",
    )
    list_filter = ("status", "provider")
    search_fields = ("listing_identity_id",)
    list_per_page = 50  # the portal's page size: the same number of rows on both


plain_site.register(MediaProcessingJob, PlainJobAdmin)
plain_site.register(MediaAsset)
plain_site.register(CallbackDelivery)

urlpatterns = [path("plain-admin/", plain_site.urls), *portal_urlpatterns]
