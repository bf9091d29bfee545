"""HTML pieces the jobs list and the job page share: a job's own asset figures, what became of
a failure, and whether the backend received its result. Everything is escaped by
``format_html``; the facts come from ``selectors.resolution`` and ``selectors.deliveries``.
Texts are translated when a piece is built (``gettext``, not lazy: a list builds fifty)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from django.urls import get_script_prefix, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import Truncator
from django.utils.translation import gettext as _

from media_jobs.models import JobStatus, MediaProcessingJob
from media_jobs.selectors.deliveries import DeliveryState, JobDelivery
from media_jobs.selectors.resolution import JobAssetFigures, Resolution

from .common import format_time, status_badge

if TYPE_CHECKING:  # django-stubs' type of a string or a lazy translation
    from django_stubs_ext import StrOrPromise

EMPTY = mark_safe("")
STATUS_LABELS: dict[str, StrOrPromise] = dict(JobStatus.choices)


def job_url(pk: int) -> str:
    return _url_pattern("admin:media_jobs_mediaprocessingjob_change", get_script_prefix()) % pk


def replay_url(delivery_id: int) -> str:
    return _url_pattern("admin:media_jobs_callbackdelivery_replay", get_script_prefix()) % (
        delivery_id
    )


@functools.lru_cache(maxsize=16)
def _url_pattern(name: str, prefix: str) -> str:
    """``reverse(name, args=[pk])`` as a %-pattern: one reverse() per URL name and prefix,
    not one per row of a list page."""
    return reverse(name, args=[0]).replace("%", "%%").replace("/0/", "/%d/")


def time_html(value: Any) -> SafeString:
    """The one timestamp format, allowed to wrap between the date and the time (a list of
    ten columns needs the room): ``2026-11-30 | 02:15:29 -03``."""
    text = format_time(value)
    date, _space, clock = text.partition(" ")
    if not clock:
        return format_html("{}", text)
    return format_html(
        '<span class="toq-nowrap">{}</span> <span class="toq-nowrap">{}</span>', date, clock
    )


def _count(value: int | None) -> Any:
    return "–" if value is None else value


def asset_figures_html(
    job: MediaProcessingJob, figures: JobAssetFigures | None, *, long: bool = False
) -> SafeString:
    """``2 / 1 of 3``: processed / failed of the assets the job took (its own, not the
    listing's state now); a finalization says how many it zipped."""
    if figures is None or not figures.known:
        return mark_safe("-")
    if job.is_finalization:
        if long:
            return format_html(
                "{} {}, {} {}",
                _count(figures.zipped),
                _("zipped"),
                _count(figures.taken),
                _("assets taken"),
            )
        return format_html(
            '{} <span class="toq-muted">{} {}</span>',
            _count(figures.zipped),
            _("zipped of"),
            _count(figures.taken),
        )
    if figures.processed is None and figures.failed is None:
        return format_html('<span class="toq-muted">{} {}</span>', _("of"), _count(figures.taken))
    failed_css = "toq-failed" if figures.failed else "toq-muted"
    if long:
        return format_html(
            '<span class="toq-ok">{} {}</span>, <span class="{}">{} {}</span>, {} {}',
            _count(figures.processed),
            _("processed"),
            failed_css,
            _count(figures.failed),
            _("failed"),
            _count(figures.taken),
            _("taken by this job"),
        )
    return format_html(
        '<span class="toq-ok">{}</span> / <span class="{}">{}</span> '
        '<span class="toq-muted">{} {}</span>',
        _count(figures.processed),
        failed_css,
        _count(figures.failed),
        _("of"),
        _count(figures.taken),
    )


def resolution_html(resolution: Resolution | None, *, lineage: bool = True) -> SafeString:
    """ "↳ retried as #N Succeeded" and "✓ resolved by #M" / "unresolved"."""
    if resolution is None:
        return EMPTY
    parts = []
    if lineage and resolution.retried_as:
        status = resolution.retried_status
        parts.append(
            format_html(
                '<span class="toq-lineage">↳ {} <a href="{}">#{}</a> {}</span>',
                _("retried as"),
                job_url(resolution.retried_as),
                resolution.retried_as,
                status_badge(status, STATUS_LABELS.get(status or "", status)) if status else "",
            )
        )
    if resolution.resolved_by is not None:
        parts.append(
            format_html(
                '<span class="toq-resolved">✓ {} <a href="{}">#{}</a></span>',
                _("resolved by"),
                job_url(resolution.resolved_by),
                resolution.resolved_by,
            )
        )
    else:
        parts.append(format_html('<span class="toq-unresolved">{}</span>', _("unresolved")))
    return mark_safe("".join(parts))


def _replay_link(job: MediaProcessingJob, delivery: JobDelivery, markup: str) -> SafeString:
    """The link to replay the last attempt, for operators (``markup`` takes url and label)."""
    if not (getattr(job, "can_operate", False) and delivery.last_attempt_id):
        return EMPTY
    return format_html(markup, replay_url(delivery.last_attempt_id), _("Replay…"))


def undelivered_html(job: MediaProcessingJob, delivery: JobDelivery | None) -> SafeString:
    """The list's marker of a result the backend has not received, with its replay."""
    if delivery is None or not delivery.undelivered:
        return EMPTY
    replay = _replay_link(job, delivery, ' <a class="toq-replay" href="{}">{}</a>')
    return format_html(
        '<span class="toq-undelivered" title="{}">⚠ {}{}</span>',
        delivery.last_problem,
        _("result not delivered"),
        replay,
    )


def delivery_html(job: MediaProcessingJob, delivery: JobDelivery | None) -> SafeString:
    """The job page's sentence about the callback to the backend."""
    if delivery is None:
        return mark_safe("-")
    state = delivery.state
    if state == DeliveryState.NOT_CONFIGURED:
        return format_html(
            '<span class="toq-muted">{}</span>',
            _(
                "Not sent: CALLBACK_URL is not set, so the portal sends no callbacks to the "
                "backend (the delivery log stays empty)."
            ),
        )
    if state == DeliveryState.NOT_DUE:
        return format_html(
            '<span class="toq-muted">{}</span>', _("Nothing to send until the job finishes.")
        )
    if state == DeliveryState.NOT_SENT:
        return format_html(
            '<span class="toq-muted">{}</span>',
            _(
                "No delivery recorded: the portal has not sent this result (a Step Functions "
                "job reports to the backend itself)."
            ),
        )
    log = reverse("admin:media_jobs_callbackdelivery_changelist") + f"?q={job.pk}"
    attempts = _("%(n)s attempt(s)") % {"n": delivery.attempts}
    if state == DeliveryState.DELIVERED:
        return format_html(
            '<span class="toq-badge toq-badge--ok">{}</span> <a href="{}">{}</a>',
            _("delivered"),
            log,
            attempts,
        )
    if state == DeliveryState.SENDING:
        return format_html(
            '<span class="toq-badge toq-badge--running">{}</span> {}',
            _("sending"),
            _("the result is queued for the backend."),
        )
    replay = _replay_link(
        job, delivery, ' <a class="button toq-action" id="toq-replay-last" href="{}">{}</a>'
    )
    if delivery.next_attempt_at is not None:
        outlook = _("sent again automatically at %(next)s (until %(until)s)") % {
            "next": format_time(delivery.next_attempt_at),
            "until": format_time(delivery.expires_at),
        }
    else:
        outlook = _("automatic retries are over; replay it")
    problem = (
        format_html(
            '{} <span class="toq-error">{}</span> ({})',
            _("the last one failed with"),
            Truncator(delivery.last_problem or "?").chars(300),
            format_time(delivery.last_attempt_at),
        )
        if delivery.attempts
        else _("no attempt yet")
    )
    return format_html(
        '<span class="toq-badge toq-badge--failed">{}</span> {} <a href="{}">{}</a>; {}; {}{}',
        _("not delivered"),
        _("the backend has not received this result:"),
        log,
        attempts,
        problem,
        outlook,
        replay,
    )
