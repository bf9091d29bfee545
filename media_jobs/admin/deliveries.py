"""The callback delivery log: what the workers sent to CALLBACK_URL, and Replay."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from media_jobs.models import CallbackDelivery
from media_jobs.selectors import admin as selectors
from media_jobs.selectors.deliveries import callback_configured

from .common import ReadOnlyAdminMixin, can_operate, json_block, require_operate
from .forms import ReplayForm, confirmation_response
from .operations import replay_delivery


def _delivery_url(delivery: CallbackDelivery) -> str:
    return reverse("admin:media_jobs_callbackdelivery_change", args=[delivery.pk])


@admin.register(CallbackDelivery)
class CallbackDeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "job_link",
        "created_at",
        "attempt",
        "outcome",
        "response_status",
        "latency",
        "url",
        "replay_of_link",
    )
    list_display_links = ("id",)
    list_filter = ("succeeded",)
    ordering = ("-created_at", "-id")
    sortable_by = ()
    search_fields = ("=job__id",)
    search_help_text = _("Job id (exact).")
    list_per_page = 50
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = selectors.BoundedCountPaginator
    change_form_template = "admin/media_jobs/delivery_change_form.html"
    change_list_template = "admin/media_jobs/delivery_change_list.html"
    fields = (
        "id",
        "job_link",
        "url",
        "created_at",
        "attempt",
        "outcome",
        "response_status",
        "latency",
        "signature",
        "request_json",
        "response_text",
        "error_text",
        "replay_of_link",
    )
    readonly_fields = fields

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # An empty log with CALLBACK_URL unset is expected: the page says so.
        context = {"callback_configured": callback_configured(), **(extra_context or {})}
        return super().changelist_view(request, context)

    def get_search_results(self, request: HttpRequest, queryset: Any, search_term: str) -> Any:
        term = search_term.strip().lstrip("#")
        if not term:
            return queryset, False
        if term.isdigit() and len(term) <= 10:
            return queryset.filter(job_id=int(term)), False
        return queryset.none(), False

    @admin.display(description=_("job"))
    def job_link(self, obj: CallbackDelivery) -> str:
        url = reverse("admin:media_jobs_mediaprocessingjob_change", args=[obj.job_id])
        return format_html(
            '<a href="{}">{}</a>', url, gettext("job #%(job)s") % {"job": obj.job_id}
        )

    @admin.display(description=_("outcome"))
    def outcome(self, obj: CallbackDelivery) -> str:
        if obj.succeeded:
            return format_html('<span class="toq-badge toq-badge--ok">{}</span>', _("delivered"))
        return format_html('<span class="toq-badge toq-badge--failed">{}</span>', _("failed"))

    @admin.display(description=_("latency"))
    def latency(self, obj: CallbackDelivery) -> str:
        return f"{obj.latency_ms} ms" if obj.latency_ms is not None else "-"

    @admin.display(description=_("replay of"))
    def replay_of_link(self, obj: CallbackDelivery) -> str:
        if not obj.replay_of_id:
            return "-"
        url = reverse("admin:media_jobs_callbackdelivery_change", args=[obj.replay_of_id])
        return format_html('<a href="{}">#{}</a>', url, obj.replay_of_id)

    @admin.display(description=_("request body"))
    def request_json(self, obj: CallbackDelivery) -> str:
        return json_block(obj.request_body, summary=_("request body"), open_=True)

    @admin.display(description=_("response body (excerpt)"))
    def response_text(self, obj: CallbackDelivery) -> str:
        if not obj.response_excerpt:
            return "-"
        return format_html('<pre class="toq-pre">{}</pre>', obj.response_excerpt)

    @admin.display(description=_("network error"))
    def error_text(self, obj: CallbackDelivery) -> str:
        return obj.error or "-"

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: CallbackDelivery | None = None,
    ) -> HttpResponse:
        if obj is not None:
            context.update(
                can_operate=can_operate(request),
                replay_url=reverse("admin:media_jobs_callbackdelivery_replay", args=[obj.pk]),
                replays=list(obj.replays.order_by("-created_at")[:20]),
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self) -> list:
        return [
            path(
                "<int:object_id>/replay/",
                self.admin_site.admin_view(self.replay_view),
                name="media_jobs_callbackdelivery_replay",
            ),
            *super().get_urls(),
        ]

    def replay_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """Send the same signed body again (confirmation first); the replay is a new row."""

        require_operate(request)
        delivery = get_object_or_404(CallbackDelivery, pk=object_id)
        form = ReplayForm(request.POST if request.method == "POST" else None, delivery=delivery)
        if form.is_valid():
            outcome = replay_delivery(request=request, delivery=delivery)
            if outcome.error:
                self.message_user(
                    request,
                    gettext("Not replayed: %(error)s") % {"error": outcome.error},
                    messages.ERROR,
                )
                return HttpResponseRedirect(_delivery_url(delivery))
            replay = outcome.result
            level = messages.SUCCESS if replay.succeeded else messages.WARNING
            result = replay.response_status if replay.response_status is not None else replay.error
            self.message_user(
                request,
                format_html(
                    gettext('Replayed as <a href="{}">delivery #{}</a>: response {}.'),
                    _delivery_url(replay),
                    replay.pk,
                    result,
                ),
                level,
            )
            return HttpResponseRedirect(_delivery_url(replay))
        return confirmation_response(
            form,
            request,
            "media_jobs/confirm_replay.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": gettext("Replay callback delivery #%(delivery)s?")
                % {"delivery": delivery.pk},
                "delivery": delivery,
                "request_json": json_block(delivery.request_body, summary=gettext("request body")),
                "cancel_url": _delivery_url(delivery),
                "form": form,
            },
        )
