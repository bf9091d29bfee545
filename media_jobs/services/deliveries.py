"""Sending a job's signed callback to the TOQ backend (``CALLBACK_URL``), with a log.

Every attempt is a ``CallbackDelivery`` row: the exact bytes signed and sent, the signature,
the answer (status, first 2 KB), the latency, the network error if any, and the outbox entry
it belongs to. What is sent when, and until when, is the outbox's business
(``services.outbox``: the docs/contract.md §4 step 4 retries first - 3 retries, 5 s, backoff 2, the
number of attempts is ``CALLBACK_MAX_ATTEMPTS`` - then backoff for
``CALLBACK_OUTBOX_TTL_SECONDS``). Nothing here runs inside a database transaction: each
attempt is committed on its own, so the log survives a crash mid-retry.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.utils.translation import gettext

from ..exceptions import ApplicationError
from ..models import (
    STEP_DELIVERY,
    CallbackDelivery,
    CallbackOutbox,
    EventKind,
    MediaProcessingJob,
    OutboxState,
)
from ..pipeline.callback import CallbackAttempt, CallbackFailed, send_callback
from .events import event_record

logger = logging.getLogger("toq.media.deliveries")

BACKOFF_RATE = 2.0
URL_MAX_LENGTH = CallbackDelivery._meta.get_field("url").max_length or 500


def delivery_target() -> tuple[str, str]:
    """(CALLBACK_URL, CALLBACK_SECRET), or ApplicationError naming the one missing."""
    url = settings.CALLBACK_URL
    secret = settings.CALLBACK_SECRET
    if not url:
        raise ApplicationError(
            gettext("CALLBACK_URL is not configured: there is nowhere to send it")
        )
    if not secret:
        raise ApplicationError(
            gettext("CALLBACK_SECRET is not configured: a callback must be signed")
        )
    return url, secret


def delivery_send(
    *,
    job_id: int,
    body: Any,
    url: str,
    secret: str,
    attempt_number: int,
    replay_of: CallbackDelivery | None = None,
    outbox: CallbackOutbox | None = None,
) -> CallbackDelivery:
    """POST ``body`` signed, once, and log the attempt (a network error is a failed
    attempt, not an exception)."""
    try:
        # Wrapped in {"body": ...}: send_callback posts the body member, whatever it holds.
        attempt: CallbackAttempt = send_callback(
            {"body": body}, url=url, secret=secret, timeout_s=settings.CALLBACK_TIMEOUT_SECONDS
        )
    except CallbackFailed as failed:
        attempt = failed.attempt
    return CallbackDelivery.objects.create(
        job_id=job_id,
        url=attempt.url[:URL_MAX_LENGTH],
        request_body=attempt.request_body.decode(),
        signature=attempt.signature,
        response_status=attempt.status_code,
        response_excerpt=attempt.response_excerpt,
        error=attempt.error or "",
        latency_ms=round(attempt.latency_ms),  # a perf_counter difference: never negative
        attempt=attempt_number,
        succeeded=attempt.delivered,
        replay_of=replay_of,
        outbox=outbox,
    )


def delivery_replay(*, delivery: CallbackDelivery) -> CallbackDelivery:
    """Send a recorded callback again, once: the same bytes, signed with today's secret (a
    rotated secret would make the old signature useless). The new attempt is logged with
    ``replay_of`` pointing at the original; when it is accepted, the result's outbox entry
    (pending or expired) becomes delivered."""
    url, secret = delivery_target()
    try:
        body = json.loads(delivery.request_body)
    except ValueError as exc:
        raise ApplicationError(
            gettext("delivery %(delivery)s has no JSON body to replay: %(error)s")
            % {"delivery": delivery.pk, "error": exc}
        ) from exc
    job = MediaProcessingJob.objects.get(pk=delivery.job_id)
    outbox = delivery.outbox
    replay = delivery_send(
        job_id=job.pk,
        body=body,
        url=url,
        secret=secret,
        attempt_number=1,
        replay_of=delivery,
        outbox=outbox,
    )
    if replay.succeeded and outbox is not None:
        CallbackOutbox.objects.filter(pk=outbox.pk).exclude(state=OutboxState.DELIVERED).update(
            state=OutboxState.DELIVERED, delivered_at=replay.created_at, last_error=""
        )
    event_record(
        job=job,
        step=STEP_DELIVERY,
        kind=EventKind.SUCCEEDED if replay.succeeded else EventKind.FAILED,
        detail={
            "message": f"replay of delivery #{delivery.pk}",
            "deliveryId": replay.pk,
            "replayOf": delivery.pk,
            "outboxId": outbox.pk if outbox else None,
            "url": replay.url,
            "responseStatus": replay.response_status,
            "error": replay.error,
        },
    )
    return replay
