"""The portal's admin site: the Django admin with the operations dashboard."""

from django.contrib.admin import AdminSite


class PortalAdminSite(AdminSite):
    site_header = "TOQ media operations"
    site_title = "TOQ media portal"
    index_title = "Operations"
