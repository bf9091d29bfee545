"""URL map: the admin portal at /admin/, the JSON API under /api/v2/."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("", include("media_jobs.urls")),
]
