"""Reads of the callback outbox: which results the TOQ backend has not accepted.

``job_list_undelivered`` is the one question the portal's "undelivered" screens ask: jobs
with a result still ``pending`` (being retried) or ``expired`` (retries over; replay it).
Both reads use the outbox's (state, next_attempt_at) and (job, state) indexes.
"""

from __future__ import annotations

from django.db.models import QuerySet

from ..models import CallbackOutbox, MediaProcessingJob, OutboxState

UNDELIVERED_STATES = (OutboxState.PENDING, OutboxState.EXPIRED)


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


def job_list_undelivered(*, states: tuple[str, ...] = UNDELIVERED_STATES) -> QuerySet:
    """Jobs with a result the backend has not accepted (pending or expired), newest first."""
    job_ids = CallbackOutbox.objects.filter(state__in=states).values("job_id")
    return MediaProcessingJob.objects.filter(pk__in=job_ids).order_by("-id")
