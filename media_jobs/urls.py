"""The JSON API (docs/contract.md §6-§7) and the Prometheus endpoint; the admin lives at /admin/."""

from django.urls import path

from . import api, metrics

app_name = "media_jobs"
urlpatterns = [
    path("api/v2/listings/media/uploads/process", api.process_uploads, name="uploads-process"),
    path("api/v2/listings/media/uploads/complete", api.complete_uploads, name="uploads-complete"),
    path("api/v2/listings/media/callback", api.media_callback, name="media-callback"),
    path("metrics", metrics.metrics_view, name="metrics"),
]
