"""The error groups page: failures grouped by code and message, and retrying a group."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

from django.contrib import messages
from django.contrib.admin import AdminSite
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from media_jobs.models import MediaProcessingJob
from media_jobs.selectors import errors as error_selectors

from .common import can_operate, page_context, require_operate, require_view
from .forms import ErrorGroupRetryForm, confirmation_response
from .operations import retry_items, retry_jobs

ERROR_GROUP_WINDOWS = {"1": 1, "7": 7, "30": 30}


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
        page_context(
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
    form = ErrorGroupRetryForm(
        {"days": request.POST.get("days") or request.GET.get("days") or "7"}
        if request.method == "POST"
        else None,
        windows=list(ERROR_GROUP_WINDOWS),
    )
    if form.is_valid():
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
    items = retry_items(targets)
    return confirmation_response(
        form,
        request,
        "media_jobs/confirm_retry.html",
        page_context(
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
            form=form,
        ),
    )
