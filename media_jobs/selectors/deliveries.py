"""Has the TOQ backend received this job's result? The one place in the portal that decides.

The jobs list (a column marker and the "callback" filter), the job page's summary and the
dashboard all ask here, so the answer can move from the delivery log
(``media_callback_deliveries``, one row per attempt, today) to another source - a durable
outbox - by changing this module alone.

A finished job's result is:

- **delivered**: an attempt to ``CALLBACK_URL`` was accepted (2xx);
- **undelivered**: attempts were made and none was accepted (the backend still waits);
- **not sent**: no attempt is recorded (the Step Functions engine's own callback Lambda
  reports to the backend; or the delivery has not run yet);
- **not configured**: ``CALLBACK_URL`` is empty, so the portal sends nothing at all.

A job that is not finished has nothing to deliver yet (**not due**).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings
from django.db.models import Count, Max, Min, Q, QuerySet
from django.utils import timezone

from media_jobs.models import TERMINAL_JOB_STATUSES, CallbackDelivery, MediaProcessingJob

# Undelivered jobs are looked for among the attempts of this many days (the delivery log's
# created_at index); the list filter shows the newest FILTER_LIMIT of them.
WINDOW_DAYS = 30
FILTER_LIMIT = 5_000
COUNT_CAP = 1_000


class DeliveryState(StrEnum):
    NOT_CONFIGURED = "not_configured"
    NOT_DUE = "not_due"
    NOT_SENT = "not_sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"


@dataclass(frozen=True)
class JobDelivery:
    """A job's delivery state, its attempts, and the last attempt (what failed, and the
    delivery to replay)."""

    state: DeliveryState
    attempts: int = 0
    last_attempt_id: int | None = None
    last_attempt_at: datetime | None = None
    last_problem: str = ""

    @property
    def undelivered(self) -> bool:
        return self.state == DeliveryState.UNDELIVERED


def callback_configured() -> bool:
    return bool(settings.CALLBACK_URL)


def _problem(delivery: CallbackDelivery) -> str:
    if delivery.error:
        return delivery.error
    if delivery.response_status is not None:
        return f"HTTP {delivery.response_status}"
    return ""


def job_delivery_states(*, jobs: Sequence[MediaProcessingJob]) -> dict[int, JobDelivery]:
    """The delivery state of each job: one grouped query over the page's attempts, and one
    for the last attempt of the undelivered ones."""
    ids = [job.pk for job in jobs]
    attempts = {
        row["job_id"]: row
        for row in CallbackDelivery.objects.filter(job_id__in=ids)
        .order_by()
        .values("job_id")
        .annotate(n=Count("pk"), delivered=Max("succeeded"), last_id=Max("pk"))
    }
    undelivered_last = [row["last_id"] for row in attempts.values() if not row["delivered"]]
    last = (
        {
            d.pk: d
            for d in CallbackDelivery.objects.filter(pk__in=undelivered_last).defer("request_body")
        }
        if undelivered_last
        else {}
    )
    configured = callback_configured()
    states = {}
    for job in jobs:
        row = attempts.get(job.pk)
        if row is not None:
            delivery = last.get(row["last_id"])
            states[job.pk] = JobDelivery(
                DeliveryState.DELIVERED if row["delivered"] else DeliveryState.UNDELIVERED,
                attempts=row["n"],
                last_attempt_id=row["last_id"],
                last_attempt_at=delivery.created_at if delivery else None,
                last_problem=_problem(delivery) if delivery else "",
            )
        elif job.status not in TERMINAL_JOB_STATUSES:
            states[job.pk] = JobDelivery(DeliveryState.NOT_DUE)
        else:
            states[job.pk] = JobDelivery(
                DeliveryState.NOT_SENT if configured else DeliveryState.NOT_CONFIGURED
            )
    return states


def _undelivered_attempts(*, now: datetime | None = None) -> QuerySet:
    """Per job with attempts in the window and none accepted: (job_id, first, last)."""
    since = (now or timezone.now()) - timedelta(days=WINDOW_DAYS)
    return (
        CallbackDelivery.objects.filter(created_at__gte=since)
        .order_by()
        .values("job_id")
        .annotate(delivered=Max("succeeded"), first=Min("created_at"), last=Max("created_at"))
        .filter(delivered=False)
    )


def undelivered_q(*, limit: int = FILTER_LIMIT) -> Q:
    """Jobs whose result the backend has not received: the newest ``limit`` of them."""
    ids = _undelivered_attempts().order_by("-last").values_list("job_id", flat=True)[:limit]
    return Q(pk__in=list(ids))


@dataclass(frozen=True)
class UndeliveredSummary:
    count: int
    more: bool
    oldest_job_id: int | None
    oldest_since: datetime | None  # its first failed attempt


def undelivered_summary() -> UndeliveredSummary:
    """For the dashboard: how many jobs wait for delivery (counted to COUNT_CAP), and the
    one waiting longest."""
    rows = list(
        _undelivered_attempts().order_by("first").values_list("job_id", "first")[: COUNT_CAP + 1]
    )
    oldest = rows[0] if rows else (None, None)
    return UndeliveredSummary(
        count=min(len(rows), COUNT_CAP),
        more=len(rows) > COUNT_CAP,
        oldest_job_id=oldest[0],
        oldest_since=oldest[1],
    )
