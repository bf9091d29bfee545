"""The portal's own admin pages: dashboard, listing page, storage check, error groups, files.

Mounted by ``PortalAdminSite.get_urls`` behind ``admin_view`` (staff login, CSRF, no cache);
each view checks the model permission it needs on top of that.
"""

from __future__ import annotations

import html
import mimetypes
from collections.abc import Collection, Iterator, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.contrib import messages
from django.contrib.admin import AdminSite
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

from media_jobs.models import AssetStatus, MediaAsset, MediaProcessingJob
from media_jobs.pipeline import keys
from media_jobs.pipeline.storage import ObjectNotFound, Storage
from media_jobs.selectors import admin as selectors
from media_jobs.storage import pipeline_storage

from .charts import daily_bar_chart
from .common import can_operate, object_url, require_operate, require_view, status_badge
from .operations import plan_for, retry_jobs

ERROR_GROUP_WINDOWS = {"1": 1, "7": 7, "30": 30}
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


def _page(site: AdminSite, request: HttpRequest, title: str, **context: Any) -> dict[str, Any]:
    return {**site.each_context(request), "title": title, **context}


# -- shared pieces ----------------------------------------------------------------------------


def asset_cards(
    assets: Sequence[MediaAsset],
    *,
    storage: Storage | None = None,
    taken: Collection[int] | None = None,
) -> list[dict]:
    """What the job and listing pages show per asset (links are presigned or portal URLs).

    ``taken``: the ids of the assets the job took (``in_job``). Each card also carries its
    table row as one escaped string (``row``): a listing of 500 assets rendered through
    template tags cost ~100 ms of a job page; formatted here, a few ms.
    """
    storage = storage or pipeline_storage()
    taken = set(taken or ())
    change_url = AssetChangeUrl()
    text = {
        "preview_of": _("preview of %(name)s"),
        "no_preview": _("no preview"),
        "in_job": _("in this job"),
    }
    # Labels looked up once (get_FOO_display rebuilds its choices map on every call), and
    # each key presigned once (the preview is also one of the links).
    type_labels = dict(MediaAsset._meta.get_field("asset_type").flatchoices)
    status_labels = dict(MediaAsset._meta.get_field("status").flatchoices)
    urls: dict[str, str] = {}

    def url_of(key: str) -> str:
        if key not in urls:
            urls[key] = object_url(key, storage=storage)
        return urls[key]

    cards = []
    for asset in assets:
        thumbnail = selectors.asset_thumbnail_key(asset)
        code, message = selectors.asset_error(asset)
        card = {
            "asset": asset,
            "type_label": type_labels.get(asset.asset_type, asset.asset_type),
            "badge": status_badge(asset.status, status_labels.get(asset.status, asset.status)),
            "name": asset.meta.get("filename") or asset.title or asset.s3_key_raw or "-",
            "preview_url": (
                url_of(thumbnail) if thumbnail and asset.status == AssetStatus.PROCESSED else None
            ),
            "links": [(label, url_of(key)) for label, key in selectors.asset_links(asset)],
            "error_code": code,
            "error_message": message,
            "in_job": asset.pk in taken,
        }
        card["row"] = _asset_row(card, change_url(asset.pk), text)
        cards.append(card)
    return cards


class AssetChangeUrl:
    """The admin change URL of an asset, reversed once per page (not once per asset)."""

    _PLACEHOLDER = 2_147_483_647

    def __init__(self) -> None:
        url = reverse("admin:media_jobs_mediaasset_change", args=[self._PLACEHOLDER])
        self._head, self._tail = url.split(str(self._PLACEHOLDER))

    def __call__(self, pk: int) -> str:
        return f"{self._head}{int(pk)}{self._tail}"


def _asset_row(card: dict[str, Any], change_url: str, text: dict[str, str]) -> SafeString:
    """One row of the asset table (templates/media_jobs/includes/asset_table.html), every
    value escaped with ``html.escape`` (what Django's ``escape`` does, without its lazy-text
    wrapper: ~30 values a row, 500 rows)."""
    asset = card["asset"]
    if card["preview_url"]:
        alt = text["preview_of"] % {"name": card["name"]}
        preview = (
            f'<img class="toq-thumb" src="{_esc(card["preview_url"])}" alt="{_esc(alt)}" '
            'loading="lazy">'
        )
    else:
        preview = f'<span class="toq-muted">{_esc(text["no_preview"])}</span>'
    in_job = (
        f'<br><span class="toq-badge toq-badge--running toq-in-job">{_esc(text["in_job"])}</span>'
        if card["in_job"]
        else ""
    )
    error = ""
    if card["error_code"]:
        error += f'<code class="toq-failed">{_esc(card["error_code"])}</code>'
    if card["error_message"]:
        error += f'<div class="toq-error">{_esc(card["error_message"])}</div>'
    links = "".join(
        f'<li><a href="{_esc(url)}">{_esc(label)}</a></li>' for label, url in card["links"]
    )
    return mark_safe(  # noqa: S308 - every value above is escaped
        f'<tr><td class="toq-preview-cell">{preview}</td><td><a href="{_esc(change_url)}">'
        f"#{asset.pk}</a> {_esc(card['type_label'])} {asset.sequence}<br>"
        f'<span class="toq-filename">{_esc(card["name"])}</span>{in_job}</td>'
        f"<td>{card['badge']}</td><td>{error}</td>"
        f'<td><ul class="toq-links">{links}</ul></td></tr>'
    )


def _esc(value: Any) -> str:
    return html.escape(str(value))


# -- dashboard --------------------------------------------------------------------------------


def dashboard_context(request: HttpRequest) -> dict[str, Any]:
    if not request.user.has_perm("media_jobs.view_mediaprocessingjob"):
        return {}
    summary = selectors.dashboard_summary()
    changelist = reverse("admin:media_jobs_mediaprocessingjob_changelist")
    return {
        "dashboard": summary,
        "chart": daily_bar_chart(summary.days),
        "status_rows": [
            (status, label, summary.last_24h.get(status, 0), summary.last_7d.get(status, 0))
            for status, label in MediaProcessingJob._meta.get_field("status").choices
        ],
        "jobs_url": changelist,
        "error_groups_url": reverse("admin:media_jobs_error_groups"),
    }


# -- listing page and storage check -----------------------------------------------------------


def listing_view(site: AdminSite, request: HttpRequest, listing_identity_id: int) -> HttpResponse:
    require_view(request)
    storage = pipeline_storage()
    assets = selectors.listing_assets(listing_identity_id=listing_identity_id)
    jobs = selectors.listing_jobs(listing_identity_id=listing_identity_id, limit=100)
    if not assets and not jobs:
        raise Http404(f"Listing {listing_identity_id} has no assets and no jobs.")
    zip_job = selectors.listing_zip_job(listing_identity_id=listing_identity_id)
    zip_key = keys.zip_key(listing_identity_id)
    zip_info, zip_problem = None, None
    try:
        zip_info = storage.head(zip_key)
    except ObjectNotFound:
        zip_problem = (
            "No ZIP in storage." if zip_job is None else "The ZIP is MISSING from storage."
        )
    except Exception as exc:  # noqa: BLE001 - storage down: say so on the page
        zip_problem = f"Storage could not be asked: {exc}"
    payload = zip_job.payload if zip_job and isinstance(zip_job.payload, dict) else {}
    return TemplateResponse(
        request,
        "media_jobs/listing.html",
        _page(
            site,
            request,
            f"Listing {listing_identity_id}",
            listing_identity_id=listing_identity_id,
            asset_cards=asset_cards(assets, storage=storage),
            jobs=jobs,
            zip_job=zip_job,
            zip_key=zip_key,
            zip_info=zip_info,
            zip_problem=zip_problem,
            zip_assets=payload.get("assetsZipped"),
            zip_size=payload.get("zipSizeBytes"),
            zip_url=object_url(zip_key, storage=storage, download=True) if zip_info else None,
            storage_check_url=reverse("admin:media_jobs_storage_check", args=[listing_identity_id]),
            can_operate=can_operate(request),
        ),
    )


def storage_check_view(
    site: AdminSite, request: HttpRequest, listing_identity_id: int
) -> HttpResponse:
    """Expected keys (pipeline.keys) against ``storage.list(prefix)``; a fragment for the
    job/listing pages (``?fragment=1``) or a page of its own."""
    require_view(request)
    storage = pipeline_storage()
    check = selectors.storage_check(listing_identity_id=listing_identity_id, storage=storage)
    rows = [
        {
            "obj": obj,
            "url": object_url(obj.key, storage=storage) if obj.present else None,
            "state": "present" if obj.present else ("missing" if obj.required else "absent"),
        }
        for obj in check.expected
    ]
    context = {
        "check": check,
        "rows": rows,
        "extra_rows": [
            {"info": info, "url": object_url(info.key, storage=storage)}
            for info in check.unexpected[:200]
        ],
        "listing_identity_id": listing_identity_id,
    }
    template = "media_jobs/fragments/storage_check.html"
    if request.GET.get("fragment") == "1":
        return TemplateResponse(request, template, context)
    context.update(
        _page(site, request, f"Storage check of listing {listing_identity_id}"),
        fragment_template=template,
    )
    return TemplateResponse(request, "media_jobs/fragment_page.html", context)


# -- error groups -----------------------------------------------------------------------------


def _window(request: HttpRequest) -> tuple[str, int]:
    days = request.GET.get("days") or request.POST.get("days") or "7"
    if days not in ERROR_GROUP_WINDOWS:
        days = "7"
    return days, ERROR_GROUP_WINDOWS[days]


def error_groups_view(site: AdminSite, request: HttpRequest) -> HttpResponse:
    require_view(request)
    days_param, days = _window(request)
    report = selectors.error_groups(since=timezone.now() - timedelta(days=days))
    changelist = reverse("admin:media_jobs_mediaprocessingjob_changelist")
    groups = []
    for group in report.groups:
        listing_links = format_html_join(
            ", ",
            '<a href="{}">{}</a>',
            (
                (reverse("admin:media_jobs_listing", args=[listing]), listing)
                for listing in group.listing_ids[:10]
            ),
        )
        more = len(group.listing_ids) - 10
        groups.append(
            {
                "group": group,
                "listings": format_html("{} (+{} more)", listing_links, more)
                if more > 0
                else listing_links,
                "jobs_url": f"{changelist}?error_code={quote(group.code)}"
                if group.code != "(no code)"
                else None,
                "retry_url": reverse("admin:media_jobs_error_group_retry", args=[group.key])
                + f"?days={days_param}",
            }
        )
    return TemplateResponse(
        request,
        "media_jobs/error_groups.html",
        _page(
            site,
            request,
            "Error groups",
            report=report,
            groups=groups,
            days=days_param,
            windows=list(ERROR_GROUP_WINDOWS),
            can_operate=can_operate(request),
        ),
    )


def error_group_retry_view(site: AdminSite, request: HttpRequest, key: str) -> HttpResponse:
    """Retry a whole group: the newest failed job per listing and kind not retried yet."""
    require_operate(request)
    days_param, days = _window(request)
    group = selectors.error_group(key=key, since=timezone.now() - timedelta(days=days))
    back = reverse("admin:media_jobs_error_groups") + f"?days={days_param}"
    if group is None:
        messages.warning(request, "That error group has no failures in this window any more.")
        return HttpResponseRedirect(back)
    targets = selectors.error_group_retry_targets(group=group)
    if request.method == "POST":
        outcomes = retry_jobs(request=request, jobs=targets)
        done = [o for o in outcomes if not o.error]
        if done:
            links = format_html_join(
                ", ",
                '<a href="{}">#{} → #{}</a>',
                (
                    (
                        reverse("admin:media_jobs_mediaprocessingjob_change", args=[o.result.pk]),
                        o.source.pk,
                        o.result.pk,
                    )
                    for o in done
                ),
            )
            messages.success(request, format_html("Retried {} job(s): {}.", len(done), links))
        for outcome in outcomes:
            if outcome.error:
                messages.error(request, f"#{outcome.source.pk}: {outcome.error}")
        if not outcomes:
            messages.info(request, "Nothing to retry: every listing of the group ran again since.")
        return HttpResponseRedirect(back)
    items = []
    for job in targets:
        plan, problem = plan_for(job)
        items.append({"job": job, "plan": plan, "problem": problem})
    return TemplateResponse(
        request,
        "media_jobs/confirm_retry.html",
        _page(
            site,
            request,
            f"Retry error group {group.code}?",
            opts=MediaProcessingJob._meta,
            group=group,
            items=items,
            can_submit=any(item["problem"] is None for item in items),
            form_action="",
            days=days_param,
            cancel_url=back,
        ),
    )


# -- files (local storage) --------------------------------------------------------------------


def _safe_key(key: str) -> bool:
    if not key or len(key) > 1024 or key.startswith("/") or "\\" in key or "\x00" in key:
        return False
    return all(part not in ("", ".", "..") for part in key.split("/")) and ".." not in key


def media_file_view(site: AdminSite, request: HttpRequest) -> HttpResponse:
    """Stream one object to a staff user: the local-storage stand-in for a presigned URL."""
    require_view(request)
    key = request.GET.get("key", "")
    if not _safe_key(key):
        return HttpResponseBadRequest("invalid key")
    storage = pipeline_storage()
    presigned = storage.presigned_url(key, settings.MEDIA_PRESIGNED_URL_TTL)
    if presigned:
        return HttpResponseRedirect(presigned)
    try:
        info = storage.head(key)
    except (ObjectNotFound, ValueError):
        raise Http404("no such object") from None
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
