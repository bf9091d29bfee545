"""The JSON API (SPEC §6-§7) and the portal's own pages outside the admin."""

from django.urls import path  # noqa: F401

app_name = "media_jobs"
urlpatterns: list = []
