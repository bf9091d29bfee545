"""Serving one stored object to staff: the local-storage stand-in for a presigned URL."""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator
from urllib.parse import quote

from django.conf import settings
from django.contrib.admin import AdminSite
from django.http import (
    Http404,
    HttpRequest,
    HttpResponseBadRequest,
    HttpResponseBase,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.utils.translation import gettext_lazy as _

from media_jobs.pipeline.storage import ObjectNotFound
from media_jobs.storage import pipeline_storage

from .common import require_view

# Served inline by the file view; anything else is a download (never rendered by the browser
# on the admin's origin: an uploaded .html or .svg must not run script as the operator).
INLINE_TYPES = {
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/quicktime",
    "video/webm",
}
STREAM_CHUNK = 256 * 1024


def _safe_key(key: str) -> bool:
    if not key or len(key) > 1024 or key.startswith("/") or "\\" in key or "\x00" in key:
        return False
    return all(part not in ("", ".", "..") for part in key.split("/")) and ".." not in key


def media_file_view(site: AdminSite, request: HttpRequest) -> HttpResponseBase:
    """Stream one object to a staff user: the local-storage stand-in for a presigned URL."""
    require_view(request)
    key = request.GET.get("key", "")
    if not _safe_key(key):
        return HttpResponseBadRequest(_("invalid key"))
    storage = pipeline_storage()
    presigned = storage.presigned_url(key, settings.MEDIA_PRESIGNED_URL_TTL)
    if presigned:
        return HttpResponseRedirect(presigned)
    try:
        info = storage.head(key)
    except (ObjectNotFound, ValueError):
        raise Http404(_("no such object")) from None
    content_type = info.content_type or mimetypes.guess_type(key)[0] or ""
    inline = content_type in INLINE_TYPES and request.GET.get("download") != "1"

    def chunks() -> Iterator[bytes]:
        with storage.open_read(key) as source:
            while chunk := source.read(STREAM_CHUNK):
                yield chunk

    response = StreamingHttpResponse(
        chunks(), content_type=content_type if inline else "application/octet-stream"
    )
    filename = key.rsplit("/", 1)[-1]
    disposition = "inline" if inline else "attachment"
    response["Content-Disposition"] = f"{disposition}; filename*=UTF-8''{quote(filename)}"
    response["Content-Length"] = str(info.size)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=300"
    return response
