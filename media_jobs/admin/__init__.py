"""The admin portal: every model registered on the portal site (``admin_site.PortalAdminSite``,
the default site through ``media_jobs.apps.AdminConfig``)."""

from . import assets, deliveries, jobs  # noqa: F401 - importing registers the ModelAdmins
