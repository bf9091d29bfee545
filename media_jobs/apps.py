from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.utils.translation import gettext_lazy as _


class MediaJobsConfig(AppConfig):
    default = True
    name = "media_jobs"
    verbose_name = _("Media jobs")
    default_auto_field = "django.db.models.BigAutoField"


class AdminConfig(admin_apps.AdminConfig):
    default = False
    """The admin with the portal's own site (dashboard on the index, ops views)."""

    default_site = "media_jobs.admin_site.PortalAdminSite"
