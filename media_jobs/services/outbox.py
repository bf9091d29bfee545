"""Durable callback delivery: the outbox of results the TOQ backend has not accepted yet.

docs/contract.md §4 step 4 retries a callback 3 times within 35 s; a backend down for longer would never
hear about the result. Here a result the Celery engine applies is written to the outbox in
the same transaction (:func:`result_apply`), so no result is applied without being queued
for the backend, and then:

1. the ``deliver_callback`` task sends it at once with the contract's quick retries
   (CALLBACK_MAX_ATTEMPTS attempts, CALLBACK_RETRY_INTERVAL_SECONDS, backoff 2);
2. while it is not accepted, beat's ``send_pending_callbacks`` (every
   CALLBACK_OUTBOX_INTERVAL_SECONDS) sends it again with the same backoff, capped at
   CALLBACK_RETRY_MAX_INTERVAL_SECONDS, until CALLBACK_OUTBOX_TTL_SECONDS (24 h) after it
   was produced. Then it is ``expired``: the job's timeline says so and an operator can
   still replay it.

Rules:

- One sender per entry at a time: an attempt first claims the entry (``claimed_until``,
  a conditional UPDATE), so a drain and the task, or two drains, never send one result
  twice at once; a sender that dies leaves a claim that simply runs out.
- In order per job: an entry is not sent while an older entry of the same job is pending.
- Oldest first, even across an outage: a drain sends due entries in the order they were
  produced and stops at the first attempt that finds the backend unreachable (no answer,
  5xx, 429). That failure holds every newer result back until its own next attempt, and a
  new result skips its quick attempts while older ones wait, so only the oldest result
  probes a backend that is down (a few hundred attempts a day, whatever the backlog).
  The first result the backend accepts again brings every waiting result forward, and
  the pass sends them in order. A body the backend refuses (another 4xx) keeps its own
  backoff and holds nothing back.
- Each attempt is a ``CallbackDelivery`` row (the log the admin shows); the entry's
  ``state`` is ``pending``, ``delivered`` or ``expired``.

Long on purpose: the outbox's states, its backoff and the probe-with-the-oldest rule are one
idea; split, the rule for when a result counts as delivered would live in two places.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ..models import (
    STEP_DELIVERY,
    CallbackDelivery,
    CallbackOutbox,
    EventKind,
    MediaProcessingJob,
    OutboxState,
)
from ..pipeline.callback import serialise_payload
from .callbacks import CallbackOutcome, callback_apply
from .deliveries import BACKOFF_RATE, delivery_send, delivery_target
from .events import event_record
from .housekeeping import go_duration

logger = logging.getLogger("toq.media.outbox")

# Seconds an attempt may take beyond CALLBACK_TIMEOUT_SECONDS before its claim runs out.
CLAIM_MARGIN_S = 30
DRAIN_BATCH = 500
LAST_ERROR_CHARS = 1000


def _scale() -> float:
    return float(settings.PIPELINE_RETRY_DELAY_SCALE)


def outbox_backoff(attempts: int, *, interval_s: float | None = None) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: the contract's interval
    doubling each time (5, 10, 20, 40 s ...), capped at CALLBACK_RETRY_MAX_INTERVAL_SECONDS;
    both scaled by PIPELINE_RETRY_DELAY_SCALE unless ``interval_s`` is given."""
    first = (
        settings.CALLBACK_RETRY_INTERVAL_SECONDS * _scale() if interval_s is None else interval_s
    )
    cap = max(first, settings.CALLBACK_RETRY_MAX_INTERVAL_SECONDS * _scale())
    return float(min(first * BACKOFF_RATE ** max(0, attempts - 1), cap))


def outbox_add(*, job: MediaProcessingJob, raw_body: bytes) -> CallbackOutbox:
    """Queue a result for the backend (inside the transaction that applied it)."""
    now = timezone.now()
    return CallbackOutbox.objects.create(
        job_id=job.pk,
        listing_identity_id=job.listing_identity_id,
        body=raw_body.decode(),
        next_attempt_at=now,
        expires_at=now + timedelta(seconds=settings.CALLBACK_OUTBOX_TTL_SECONDS),
        created_at=now,
    )


def result_apply(
    *,
    job: MediaProcessingJob,
    body: dict[str, Any],
    deliver: Callable[[int], None] | None = None,
) -> CallbackOutcome:
    """Apply a workflow's result through the receiver's service and, when the portal
    talks to a TOQ backend (CALLBACK_URL), put it in the outbox - one transaction. After
    the commit ``deliver(entry_id)`` is called to send it right away (the drain sends it
    anyway if that is lost). Safe to repeat: the same body again is a replay, applies
    nothing and queues nothing."""
    raw_body = serialise_payload(body)
    with transaction.atomic():
        outcome = callback_apply(raw_body=raw_body, verify=False, source="celery")
        if outcome.applied and settings.CALLBACK_URL:
            entry = outbox_add(job=job, raw_body=raw_body)
            if deliver is not None:
                entry_id = entry.pk
                transaction.on_commit(lambda: deliver(entry_id))
    return outcome


def _claim(entry_id: int, *, hold_s: float) -> CallbackOutbox | None:
    """The entry, claimed for ``hold_s`` seconds; None when it is not pending, not due,
    waits behind an older result of its job, or another sender holds it."""
    now = timezone.now()
    entry = CallbackOutbox.objects.filter(pk=entry_id).first()
    if entry is None or entry.state != OutboxState.PENDING or entry.next_attempt_at > now:
        return None
    if entry.claimed_until is not None and entry.claimed_until > now:
        return None
    older = CallbackOutbox.objects.filter(
        job_id=entry.job_id, state=OutboxState.PENDING, id__lt=entry.pk
    )
    if older.exists():
        return None
    until = now + timedelta(seconds=hold_s)
    claimed = (
        CallbackOutbox.objects.filter(pk=entry.pk, state=OutboxState.PENDING)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=now))
        .update(claimed_until=until)
    )
    if not claimed:
        return None
    entry.claimed_until = until
    return entry


def _attempt(entry: CallbackOutbox, *, url: str, secret: str) -> CallbackDelivery:
    """One signed POST of the entry's body; the entry records the attempt."""
    delivery = delivery_send(
        job_id=entry.job_id,
        body=json.loads(entry.body),
        url=url,
        secret=secret,
        attempt_number=entry.attempts + 1,
        outbox=entry,
    )
    now = timezone.now()
    entry.attempts += 1
    entry.last_attempt_at = now
    entry.last_status = delivery.response_status
    fields = ["attempts", "last_attempt_at", "last_status", "last_error"]
    if delivery.succeeded:
        entry.state = OutboxState.DELIVERED
        entry.delivered_at = now
        entry.claimed_until = None
        entry.last_error = ""
        fields += ["state", "delivered_at", "claimed_until"]
    else:
        entry.last_error = delivery.error[:LAST_ERROR_CHARS]  # "HTTP 503", or the network error
    entry.save(update_fields=fields)
    return delivery


# The backend refused the body itself (a 4xx other than 429): that result keeps its own
# backoff; every other failure says the backend is down or overloaded.
REFUSED = Q(last_status__gte=400, last_status__lt=500) & ~Q(last_status=429)


def _backend_down_before(entry_id: int) -> bool:
    """An older result is waiting because the backend was unreachable: it is down, and
    the drain sends the results in order when it is back."""
    return (
        CallbackOutbox.objects.filter(state=OutboxState.PENDING, id__lt=entry_id, attempts__gt=0)
        .exclude(REFUSED)
        .exists()
    )


def _hold_back_newer(entry: CallbackOutbox) -> None:
    """The backend is unreachable: no newer result is due before this one's next attempt,
    so the oldest result probes the backend and, when it is back, goes first."""
    CallbackOutbox.objects.filter(
        state=OutboxState.PENDING, id__gt=entry.pk, next_attempt_at__lt=entry.next_attempt_at
    ).update(next_attempt_at=entry.next_attempt_at)


def _bring_forward() -> int:
    """The backend accepted a result: every result that waited for it is due now.
    Results it refused keep their backoff."""
    now = timezone.now()
    return (
        CallbackOutbox.objects.filter(state=OutboxState.PENDING, next_attempt_at__gt=now)
        .exclude(REFUSED)
        .update(next_attempt_at=now)
    )


def _unreachable(delivery: CallbackDelivery) -> bool:
    """The backend is down or overloaded (no answer, 5xx, 429) rather than refusing this
    one body (another 4xx): no point sending it the other results on this pass."""
    status = delivery.response_status
    return status is None or status >= 500 or status == 429


def _record(
    entry: CallbackOutbox,
    delivery: CallbackDelivery,
    kind: str,
    message: str,
    started: float | None = None,
) -> None:
    # event_record reads only the job's id: no query for the row.
    job = MediaProcessingJob(pk=entry.job_id)
    event_record(
        job=job,
        step=STEP_DELIVERY,
        kind=kind,
        duration_ms=(time.perf_counter() - started) * 1000 if started is not None else None,
        detail={
            "message": message,
            "url": delivery.url,
            "attempts": entry.attempts,
            "outboxId": entry.pk,
            "deliveryId": delivery.pk,
            "responseStatus": delivery.response_status,
            "error": delivery.error,
        },
    )


def _expire(entry: CallbackOutbox, delivery: CallbackDelivery | None) -> None:
    entry.state = OutboxState.EXPIRED
    entry.save(update_fields=["state"])
    ttl = go_duration(settings.CALLBACK_OUTBOX_TTL_SECONDS)
    message = f"callback not delivered within {ttl} ({entry.attempts} attempts); replay it"
    # event_record reads only the job's id: no query for the row.
    job = MediaProcessingJob(pk=entry.job_id)
    event_record(
        job=job,
        step=STEP_DELIVERY,
        kind=EventKind.FAILED,
        detail={
            "message": message,
            "attempts": entry.attempts,
            "outboxId": entry.pk,
            "deliveryId": delivery.pk if delivery else None,
            "error": entry.last_error,
        },
    )
    logger.error(message, extra={"job_id": entry.job_id, "outbox_id": entry.pk})


def _reschedule(entry: CallbackOutbox, delivery: CallbackDelivery) -> None:
    """After a failed attempt: the next one after the backoff, or expired past the TTL;
    either way the claim ends."""
    now = timezone.now()
    entry.claimed_until = None
    if now >= entry.expires_at:
        entry.save(update_fields=["claimed_until"])
        _expire(entry, delivery)
        return
    entry.next_attempt_at = min(
        now + timedelta(seconds=outbox_backoff(entry.attempts)), entry.expires_at
    )
    entry.save(update_fields=["next_attempt_at", "claimed_until"])
    if _unreachable(delivery):
        _hold_back_newer(entry)


def outbox_send(
    *,
    entry_id: int,
    max_attempts: int | None = None,
    interval_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> CallbackDelivery | None:
    """The first attempts at a new result (docs/contract.md §4 step 4): up to CALLBACK_MAX_ATTEMPTS,
    waiting the backoff in between; returns the last attempt, or None when the entry was
    not this sender's to send (delivered, claimed, behind an older result, not due, or
    older results already wait for an unreachable backend: the drain keeps the order).
    The job's timeline gets ``succeeded``, or ``retried`` when the outbox keeps trying."""
    url, secret = delivery_target()
    if _backend_down_before(entry_id):
        logger.info(
            "the backend is unreachable; the outbox sends this result after the older ones",
            extra={"outbox_id": entry_id},
        )
        return None
    attempts = max(1, max_attempts or settings.CALLBACK_MAX_ATTEMPTS)
    timeout = settings.CALLBACK_TIMEOUT_SECONDS + CLAIM_MARGIN_S
    waits = [outbox_backoff(n, interval_s=interval_s) for n in range(1, attempts)]
    entry = _claim(entry_id, hold_s=sum(waits) + attempts * timeout)
    if entry is None:
        return None
    started = time.perf_counter()
    delivery = _attempt(entry, url=url, secret=secret)
    for wait in waits:
        if delivery.succeeded:
            break
        sleep(wait)
        delivery = _attempt(entry, url=url, secret=secret)
    if delivery.succeeded:
        _record(entry, delivery, EventKind.SUCCEEDED, "callback delivered", started)
        logger.info(
            "callback delivered after %d attempt(s)", entry.attempts, extra={"job_id": entry.job_id}
        )
        _bring_forward()
        return delivery
    _reschedule(entry, delivery)
    if entry.state == OutboxState.PENDING:
        _record(
            entry,
            delivery,
            EventKind.RETRIED,
            f"callback not delivered after {entry.attempts} attempt(s); the outbox sends it "
            f"again with backoff until {entry.expires_at.isoformat(timespec='seconds')}",
            started,
        )
        logger.warning(
            "callback not delivered after %d attempt(s); left in the outbox",
            entry.attempts,
            extra={"job_id": entry.job_id, "outbox_id": entry.pk, "error": entry.last_error},
        )
    return delivery


def _due(sent: set[int], limit: int) -> list[int]:
    now = timezone.now()
    due = (
        CallbackOutbox.objects.filter(state=OutboxState.PENDING, next_attempt_at__lte=now)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=now))
        .exclude(pk__in=sent)
        .order_by("id")
        .values_list("id", flat=True)
    )
    return list(due[:limit])


def outbox_drain(*, limit: int = DRAIN_BATCH) -> dict[str, int]:
    """One pass over the outbox (beat): expire what is past its retry period, then send
    each due result once, oldest first, until the backend looks unreachable. Returns
    counts: delivered, failed, expired."""
    counts = {"delivered": 0, "failed": 0, "expired": 0}
    now = timezone.now()
    overdue = CallbackOutbox.objects.filter(state=OutboxState.PENDING, expires_at__lte=now)
    for overdue_entry in overdue.order_by("id")[:limit]:
        _expire(overdue_entry, None)
        counts["expired"] += 1
    if not settings.CALLBACK_URL:
        return counts
    url, secret = delivery_target()
    hold = settings.CALLBACK_TIMEOUT_SECONDS + CLAIM_MARGIN_S
    sent: set[int] = set()
    brought_forward = False
    while len(sent) < limit:
        restart = False
        for entry_id in _due(sent, limit - len(sent)):
            entry = _claim(entry_id, hold_s=hold)
            if entry is None:
                continue  # claimed elsewhere, or behind an older result of its job
            sent.add(entry_id)
            delivery = _attempt(entry, url=url, secret=secret)
            if delivery.succeeded:
                counts["delivered"] += 1
                _record(entry, delivery, EventKind.SUCCEEDED, "callback delivered by the outbox")
                if not brought_forward and _bring_forward():
                    brought_forward = restart = True
                    break  # the results that waited are due now: take them in order
                continue
            counts["failed"] += 1
            _reschedule(entry, delivery)
            counts["expired"] += entry.state == OutboxState.EXPIRED
            if _unreachable(delivery):
                break
        if not restart:
            break
    if any(counts.values()):
        logger.info("callback outbox pass: %s", counts, extra=counts)
    return counts


def callback_deliver(
    *,
    job: MediaProcessingJob,
    body: dict[str, Any],
    max_attempts: int | None = None,
    interval_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> CallbackDelivery | None:
    """Put ``body`` in the outbox and make the first attempts at once (docs/contract.md §4 step 4:
    until accepted or CALLBACK_MAX_ATTEMPTS are used, ``interval_s`` apart, backoff 2).
    Returns the last attempt (``succeeded`` says which), or None when an older result of
    the job is still pending and this one waits behind it. The job's own state is not
    touched: the portal applied the result already; this only tells the backend."""
    delivery_target()
    entry = outbox_add(job=job, raw_body=serialise_payload(body))
    return outbox_send(
        entry_id=entry.pk, max_attempts=max_attempts, interval_s=interval_s, sleep=sleep
    )
