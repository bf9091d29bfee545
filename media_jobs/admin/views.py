"""The portal's own admin pages: dashboard, listing page, storage check, error groups, files.

Mounted by ``PortalAdminSite.get_urls`` behind ``admin_view`` (staff login, CSRF, no cache);
each view checks the model permission it needs on top of that.
"""

from __future__ import annotations

import html
import mimetypes
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from django.conf import settings
from django.contrib import messages
from django.contrib.admin import AdminSite
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseBase,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext, pgettext
from django.utils.translation import gettext_lazy as _

from media_jobs.models import (
    TERMINAL_JOB_STATUSES,
    AssetStatus,
    JobStatus,
    MediaAsset,
    MediaProcessingJob,
)
from media_jobs.pipeline import keys
from media_jobs.pipeline.storage import ObjectInfo, ObjectNotFound, Storage
from media_jobs.selectors import admin as selectors
from media_jobs.selectors import errors as error_selectors
from media_jobs.services.broker import default_queue, queue_depth
from media_jobs.services.storage_audit import storage_check
from media_jobs.storage import pipeline_storage

from .charts import daily_bar_chart
from .common import (
    can_operate,
    code_spans,
    copy_button,
    object_url,
    require_operate,
    require_view,
    s3_console_url,
    status_badge,
)
from .jobs import (
    LIVE_PAGE_FIELDS,
    annotate_job_rows,
    job_list_row_queryset,
    timeline_context,
)
from .operations import plan_for, retry_jobs

if TYPE_CHECKING:  # django-stubs' type of a string or a lazy translation
    from django_stubs_ext import StrOrPromise

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


def _page(
    site: AdminSite, request: HttpRequest, title: StrOrPromise, **context: Any
) -> dict[str, Any]:
    return {**site.each_context(request), "title": title, **context}


# -- shared pieces ----------------------------------------------------------------------------


def asset_cards(assets: Sequence[MediaAsset], *, storage: Storage | None = None) -> list[dict]:
    """What the job and listing pages show per asset (links are presigned or portal URLs)."""
    storage = storage or pipeline_storage()
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
        cards.append(
            {
                "asset": asset,
                "type_label": type_labels.get(asset.asset_type, asset.asset_type),
                "badge": status_badge(asset.status, status_labels.get(asset.status, asset.status)),
                "name": asset.meta.get("filename") or asset.title or asset.s3_key_raw or "-",
                "preview_url": (
                    url_of(thumbnail)
                    if thumbnail and asset.status == AssetStatus.PROCESSED
                    else None
                ),
                "links": [(label, url_of(key)) for label, key in selectors.asset_links(asset)],
                "error_code": code,
                "error_message": message,
            }
        )
    return cards


class AssetChangeUrl:
    """The admin change URL of an asset, reversed once per page (not once per asset)."""

    _PLACEHOLDER = 2_147_483_647

    def __init__(self) -> None:
        url = reverse("admin:media_jobs_mediaasset_change", args=[self._PLACEHOLDER])
        self._head, self._tail = url.split(str(self._PLACEHOLDER))

    def __call__(self, pk: int) -> str:
        return f"{self._head}{int(pk)}{self._tail}"


def asset_rows(cards: list[dict[str, Any]]) -> None:
    """Give each job-page card its table row as one escaped string (``row``).

    A listing of 500 assets rendered through template tags cost ~100 ms of a job page;
    formatted here, a few ms. The cards carry the job's view of each asset (``in_job``,
    ``job_outcome``, ``job_advice``, ``copy_key``: see ``jobs.job_page_context``).
    """
    change_url = AssetChangeUrl()
    text = {
        "preview_of": str(_("preview of %(name)s")),
        "no_preview": str(_("no preview")),
        "in_job": str(_("in this job")),
        "processed": pgettext("an asset's outcome in a job", "processed"),
        "failed": pgettext("an asset's outcome in a job", "failed"),
        "no_code": str(_("(no code)")),
        "what_to_do": str(_("What to do:")),
        "now": str(_("now:")),
        "no_result": str(_("no result yet")),
        "unknown": str(_("unknown (the job was started elsewhere)")),
        "not_in_job": str(_("not in this job")),
    }
    for card in cards:
        card["row"] = _asset_row(card, change_url(card["asset"].pk), text)


def _asset_row(card: dict[str, Any], change_url: str, text: dict[str, str]) -> SafeString:
    """One row of the job page's asset table (templates/media_jobs/includes/asset_table.html),
    every value escaped with ``html.escape`` (what Django's ``escape`` does, without its
    lazy-text wrapper: ~30 values a row, 500 rows)."""
    asset = card["asset"]
    if card["preview_url"]:
        alt = text["preview_of"] % {"name": card["name"]}
        preview = (
            f'<img class="toq-thumb" src="{_esc(card["preview_url"])}" alt="{_esc(alt)}" '
            'loading="lazy">'
        )
    else:
        preview = f'<span class="toq-muted">{_esc(text["no_preview"])}</span>'
    in_job = card.get("in_job")
    badge = (
        f'<br><span class="toq-badge toq-badge--running toq-in-job">{_esc(text["in_job"])}</span>'
        if in_job
        else ""
    )
    copy = copy_button(card.get("copy_key"))
    links = "".join(
        f'<li><a href="{_esc(url)}">{_esc(label)}</a></li>' for label, url in card["links"]
    )
    row_class = ' class="toq-in-job-row"' if in_job else ""
    return mark_safe(
        f'<tr{row_class}><td class="toq-preview-cell">{preview}</td><td><a href="'
        f'{_esc(change_url)}">#{asset.pk}</a> {_esc(card["type_label"])} {asset.sequence}<br>'
        f'<span class="toq-filename">{_esc(card["name"])}</span>'
        f"{' ' + copy if copy else ''}{badge}</td>"
        f"<td>{card['badge']}</td>"
        f'<td class="toq-job-outcome">{_job_outcome_cell(card, text)}</td>'
        f'<td><ul class="toq-links">{links}</ul></td></tr>'
    )


def _job_outcome_cell(card: dict[str, Any], text: dict[str, str]) -> str:
    """What this job did to the asset: its own outcome, else the asset's current error."""
    outcome = card.get("job_outcome")
    if outcome is not None:
        if outcome.processed:
            return f'<span class="toq-badge toq-badge--ok">{_esc(text["processed"])}</span>'
        cell = (
            f'<span class="toq-badge toq-badge--failed">{_esc(text["failed"])}</span> '
            f'<code class="toq-failed">{_esc(outcome.code or text["no_code"])}</code>'
        )
        if outcome.message:
            cell += f'<div class="toq-error">{_esc(outcome.message)}</div>'
        if card.get("job_advice"):
            advice = code_spans(card["job_advice"])
            cell += f'<div class="toq-advice">{_esc(text["what_to_do"])} {advice}</div>'
        return cell
    if card["error_code"]:
        cell = (
            f'<span class="toq-muted">{_esc(text["now"])}</span> '
            f'<code class="toq-failed">{_esc(card["error_code"])}</code>'
        )
        if card["error_message"]:
            cell += f'<div class="toq-error">{_esc(card["error_message"])}</div>'
        return cell
    if card.get("in_job"):
        return f'<span class="toq-muted">{_esc(text["no_result"])}</span>'
    if card.get("in_job") is None:
        return f'<span class="toq-muted">{_esc(text["unknown"])}</span>'
    return f'<span class="toq-muted">{_esc(text["not_in_job"])}</span>'


def _esc(value: Any) -> str:
    return html.escape(str(value))


# -- dashboard --------------------------------------------------------------------------------


def dashboard_summary() -> selectors.Dashboard:
    """The dashboard's figures: the database's from the selector, the queue's from the
    broker (half a second at most: unknown beats a slow page)."""
    return selectors.dashboard_summary(
        queue_name=default_queue(), queue_depth=queue_depth(timeout_s=0.5)
    )


def dashboard_context(request: HttpRequest) -> dict[str, Any]:
    if not request.user.has_perm("media_jobs.view_mediaprocessingjob"):
        return {}
    summary = dashboard_summary()
    changelist = reverse("admin:media_jobs_mediaprocessingjob_changelist")
    return {
        "dashboard": summary,
        "chart": daily_bar_chart(summary.days),
        "status_rows": [
            (status, label, summary.last_24h.get(status, 0), summary.last_7d.get(status, 0))
            for status, label in JobStatus.choices
        ],
        "jobs_url": changelist,
        "error_groups_url": reverse("admin:media_jobs_error_groups"),
        "live_url": reverse("admin:media_jobs_job_status") + "?dashboard=1",
        "undelivered_oldest_url": reverse(
            "admin:media_jobs_mediaprocessingjob_change",
            args=[summary.undelivered.oldest_job_id],
        )
        if summary.undelivered and summary.undelivered.oldest_job_id
        else None,
    }


def dashboard_live(summary: selectors.Dashboard) -> dict[str, Any]:
    """The dashboard's figures that change while jobs run, for the page's script."""
    undelivered = summary.undelivered
    return {
        "active": summary.active,
        "status": {
            status: [summary.last_24h.get(status, 0), summary.last_7d.get(status, 0)]
            for status in JobStatus.values
        },
        "stuck": f"{summary.stuck_count}{'+' if summary.stuck_more else ''}",
        "unresolved": f"{summary.unresolved_count}{'+' if summary.unresolved_more else ''}",
        "undelivered": f"{undelivered.count}{'+' if undelivered.more else ''}"
        if undelivered
        else "0",
        "queue": "" if summary.queue_depth is None else summary.queue_depth,
    }


# -- live updates -----------------------------------------------------------------------------

# What the jobs list replaces in place: the cells of a row (names of the job admin's display
# methods); the job page's fields are LIVE_PAGE_FIELDS.
LIST_CELLS = ("status_badge", "started", "completed", "duration", "assets", "error_summary")
LIVE_MAX_JOBS = 200


def _ids(value: str) -> list[int]:
    ids = [int(part) for part in value.split(",") if part.strip().isdigit()]
    return ids[:LIVE_MAX_JOBS]


def job_status_view(site: AdminSite, request: HttpRequest) -> JsonResponse:
    """GET: the state of running jobs as JSON, for the page's script (staff with the view
    permission; pages work without it). ``?ids=1,2`` the list's rows, ``?job=1&events=N``
    the job page (its timeline again when it has more than N events), ``?dashboard=1``
    the dashboard's figures. Every piece of HTML is what the page itself renders."""
    require_view(request)

    model_admin = site._registry[MediaProcessingJob]
    data: dict[str, Any] = {}
    if request.GET.get("dashboard") == "1":
        data["dashboard"] = dashboard_live(dashboard_summary())
    page_job = request.GET.get("job", "")
    ids = _ids(request.GET.get("ids", "")) + ([int(page_job)] if page_job.isdigit() else [])
    if ids:
        jobs = list(job_list_row_queryset().filter(pk__in=ids))
        annotate_job_rows(jobs, operate=can_operate(request))
        data["jobs"] = {
            str(job.pk): {
                "status": job.status,
                "terminal": job.status in TERMINAL_JOB_STATUSES,
                "cells": {name: str(getattr(model_admin, name)(job)) for name in LIST_CELLS},
            }
            for job in jobs
        }
    if page_job.isdigit():
        job = MediaProcessingJob.objects.filter(pk=int(page_job)).first()
        if job is not None:
            annotate_job_rows([job], operate=can_operate(request))
            entry = data["jobs"].setdefault(str(job.pk), {})
            entry["fields"] = {
                name: str(getattr(model_admin, name)(job)) for name in LIVE_PAGE_FIELDS
            }
            timeline = timeline_context(job)
            entry["events"] = timeline["event_count"]
            if str(timeline["event_count"]) != request.GET.get("events"):
                entry["timeline"] = render_to_string(
                    "media_jobs/includes/timeline.html", timeline, request=request
                )
    return JsonResponse(data)  # admin_view adds never_cache


# -- listing page and storage check -----------------------------------------------------------


def listing_view(site: AdminSite, request: HttpRequest, listing_identity_id: int) -> HttpResponse:
    require_view(request)
    storage = pipeline_storage()
    assets = selectors.listing_assets(listing_identity_id=listing_identity_id)
    jobs = selectors.listing_jobs(listing_identity_id=listing_identity_id, limit=100)
    if not assets and not jobs:
        raise Http404(
            _("Listing %(listing)s has no assets and no jobs.") % {"listing": listing_identity_id}
        )
    zip_job = selectors.listing_zip_job(listing_identity_id=listing_identity_id)
    zip_key = keys.zip_key(listing_identity_id)
    zip_info: ObjectInfo | None = None
    zip_problem: StrOrPromise | None = None
    try:
        zip_info = storage.head(zip_key)
    except ObjectNotFound:
        zip_problem = (
            _("No ZIP in storage.") if zip_job is None else _("The ZIP is MISSING from storage.")
        )
    except Exception as exc:  # noqa: BLE001 - storage down: say so on the page
        zip_problem = _("Storage could not be asked: %(error)s") % {"error": exc}
    payload = zip_job.payload if zip_job and isinstance(zip_job.payload, dict) else {}
    return TemplateResponse(
        request,
        "media_jobs/listing.html",
        _page(
            site,
            request,
            _("Listing %(listing)s") % {"listing": listing_identity_id},
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
    check = storage_check(listing_identity_id=listing_identity_id, storage=storage)
    rows = [
        {
            "obj": obj,
            "url": object_url(obj.key, storage=storage) if obj.present else None,
            "console_url": s3_console_url(obj.key) if obj.present else None,
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
        _page(
            site,
            request,
            _("Storage check of listing %(listing)s") % {"listing": listing_identity_id},
        ),
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
    report = error_selectors.error_groups(since=timezone.now() - timedelta(days=days))
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
                "listings": format_html(gettext("{} (+{} more)"), listing_links, more)
                if more > 0
                else listing_links,
                "jobs_url": f"{changelist}?error_code={quote(group.code)}" if group.code else None,
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
            _("Error groups"),
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
    group = error_selectors.error_group(key=key, since=timezone.now() - timedelta(days=days))
    back = reverse("admin:media_jobs_error_groups") + f"?days={days_param}"
    if group is None:
        messages.warning(request, _("That error group has no failures in this window any more."))
        return HttpResponseRedirect(back)
    targets = error_selectors.error_group_retry_targets(group=group)
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
            messages.success(
                request, format_html("{} {}: {}.", _("Retried job(s):"), len(done), links)
            )
        for outcome in outcomes:
            if outcome.error:
                messages.error(request, f"#{outcome.source.pk}: {outcome.error}")
        if not outcomes:
            messages.info(
                request, _("Nothing to retry: every listing of the group ran again since.")
            )
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
            _("Retry error group %(code)s?") % {"code": group.code_label},
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
