"""Has the TOQ backend received this job's result? The one place in the portal that decides.

The jobs list (a column marker and the "callback" filter), the job page's summary, the
dashboard and ``/metrics`` all ask here. The answer comes from the callback outbox
(``media_callback_outbox``, one entry per result to send; ``services.outbox``), whose
attempts are the rows of the delivery log (``media_callback_deliveries``).

A job's result is:

- **delivered**: the backend accepted every result of the job;
- **sending**: queued a moment ago, no attempt has failed yet;
- **undelivered**: the backend has not accepted it - attempts failed and it is being sent
  again with backoff (``retrying``), or the retry period is over (``expired``: replay it),
  or it waits behind an older result that found the backend unreachable (the outbox
  probes a backend that is down with its oldest result only), or it has waited in the queue
  longer than ``STALE_AFTER`` without an attempt (no worker sends it);
- **not sent**: there is no entry (the Step Functions engine's own callback Lambda reports
  to the backend);
- **not configured**: ``CALLBACK_URL`` is empty, so the portal sends nothing at all.

A job that is not finished has nothing to deliver yet (**not due**).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings
from django.db.models import Max, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from media_jobs.models import (
    TERMINAL_JOB_STATUSES,
    CallbackDelivery,
    CallbackOutbox,
    MediaProcessingJob,
    OutboxState,
)

UNDELIVERED_STATES = (OutboxState.PENDING, OutboxState.EXPIRED)
# A pending result nobody has tried to send for this long is undelivered too.
STALE_AFTER = timedelta(minutes=5)
# The list filter shows the newest FILTER_LIMIT undelivered jobs; the dashboard counts to
# COUNT_CAP.
FILTER_LIMIT = 5_000
COUNT_CAP = 1_000


class DeliveryState(StrEnum):
    NOT_CONFIGURED = "not_configured"
    NOT_DUE = "not_due"
    NOT_SENT = "not_sent"
    SENDING = "sending"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"


@dataclass(frozen=True)
class JobDelivery:
    """A job's delivery state, the attempts of the result it is about, and the last
    attempt (what failed, and the delivery to replay)."""

    state: DeliveryState
    attempts: int = 0
    last_attempt_id: int | None = None
    last_attempt_at: datetime | None = None
    last_problem: str = ""
    next_attempt_at: datetime | None = None  # set while it is retried automatically
    expires_at: datetime | None = None

    @property
    def undelivered(self) -> bool:
        return self.state == DeliveryState.UNDELIVERED


def callback_configured() -> bool:
    return bool(settings.CALLBACK_URL)


def backend_unreachable() -> bool:
    """A pending result has failed attempts: every pending result waits for the backend."""
    return CallbackOutbox.objects.filter(state=OutboxState.PENDING, attempts__gt=0).exists()


def undelivered_entries(*, now: datetime | None = None) -> QuerySet[CallbackOutbox]:
    """Outbox entries the backend has not accepted and that are no longer just queued."""
    if backend_unreachable():
        return CallbackOutbox.objects.filter(state__in=UNDELIVERED_STATES)
    now = now or timezone.now()
    return CallbackOutbox.objects.filter(
        Q(state=OutboxState.EXPIRED)
        | Q(state=OutboxState.PENDING, created_at__lt=now - STALE_AFTER)
    )


def _problem(entry: CallbackOutbox, waiting: bool) -> str:
    if entry.last_error:
        return entry.last_error
    if entry.last_status is not None:
        return f"HTTP {entry.last_status}"
    if waiting and not entry.attempts:
        return str(_("waiting: the backend did not answer an older result"))
    return ""


def _entry_delivery(
    entry: CallbackOutbox, last_attempt: int | None, *, now: datetime, unreachable: bool
) -> JobDelivery:
    if entry.state == OutboxState.DELIVERED:
        state = DeliveryState.DELIVERED
    elif entry.state == OutboxState.EXPIRED or unreachable or entry.created_at < now - STALE_AFTER:
        state = DeliveryState.UNDELIVERED
    else:
        state = DeliveryState.SENDING
    return JobDelivery(
        state,
        attempts=entry.attempts,
        last_attempt_id=last_attempt,
        last_attempt_at=entry.last_attempt_at,
        last_problem=_problem(entry, unreachable),
        next_attempt_at=entry.next_attempt_at if entry.state == OutboxState.PENDING else None,
        expires_at=entry.expires_at,
    )


def job_delivery_states(*, jobs: Sequence[MediaProcessingJob]) -> dict[int, JobDelivery]:
    """The delivery state of each job: two or three queries for a page of jobs (its outbox
    entries, the last attempt of each, whether the backend is unreachable). A job with several results is judged by its oldest
    result not yet accepted, else by its newest."""
    ids = [job.pk for job in jobs]
    relevant: dict[int, CallbackOutbox] = {}
    for result in CallbackOutbox.objects.filter(job_id__in=ids).defer("body").order_by("id"):
        held = relevant.get(result.job_id)
        if held is None or held.state == OutboxState.DELIVERED:
            relevant[result.job_id] = result
    last_attempts = dict(
        CallbackDelivery.objects.filter(outbox_id__in=[e.pk for e in relevant.values()])
        .order_by()
        .values("outbox_id")
        .annotate(last=Max("pk"))
        .values_list("outbox_id", "last")
    )
    configured = callback_configured()
    now = timezone.now()
    pending = any(e.state == OutboxState.PENDING for e in relevant.values())
    unreachable = pending and backend_unreachable()
    states = {}
    for job in jobs:
        entry = relevant.get(job.pk)
        if entry is not None:
            states[job.pk] = _entry_delivery(
                entry, last_attempts.get(entry.pk), now=now, unreachable=unreachable
            )
        elif job.status not in TERMINAL_JOB_STATUSES:
            states[job.pk] = JobDelivery(DeliveryState.NOT_DUE)
        else:
            states[job.pk] = JobDelivery(
                DeliveryState.NOT_SENT if configured else DeliveryState.NOT_CONFIGURED
            )
    return states


def undelivered_q(*, limit: int = FILTER_LIMIT) -> Q:
    """Jobs whose result the backend has not received: the newest ``limit`` of them."""
    ids = (
        undelivered_entries()
        .order_by("-job_id")
        .values_list("job_id", flat=True)
        .distinct()[:limit]
    )
    return Q(pk__in=list(ids))


@dataclass(frozen=True)
class UndeliveredSummary:
    count: int
    more: bool
    oldest_job_id: int | None
    oldest_since: datetime | None  # when its result was queued


def undelivered_summary() -> UndeliveredSummary:
    """For the dashboard: how many jobs wait for delivery (counted to COUNT_CAP), and the
    one waiting longest."""
    entries = undelivered_entries().order_by("created_at", "id")
    oldest = entries.values_list("job_id", "created_at").first() or (None, None)
    jobs = list(entries.order_by().values_list("job_id", flat=True).distinct()[: COUNT_CAP + 1])
    return UndeliveredSummary(
        count=min(len(jobs), COUNT_CAP),
        more=len(jobs) > COUNT_CAP,
        oldest_job_id=oldest[0],
        oldest_since=oldest[1],
    )


def outbox_list(
    *,
    state: str | None = None,
    job_id: int | None = None,
    listing_identity_id: int | None = None,
) -> QuerySet[CallbackOutbox]:
    """Outbox entries, oldest first, optionally of one state, job or listing."""
    entries = CallbackOutbox.objects.all()
    if state is not None:
        entries = entries.filter(state=state)
    if job_id is not None:
        entries = entries.filter(job_id=job_id)
    if listing_identity_id is not None:
        entries = entries.filter(listing_identity_id=listing_identity_id)
    return entries.order_by("id")
