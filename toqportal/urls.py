"""URL map: the admin portal at /admin/, the JSON API under /api/v2/, the language switch."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    # set_language: the admin header's language switcher posts here.
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("media_jobs.urls")),
]
