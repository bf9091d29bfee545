"""Sending a job's signed callback to the TOQ backend (``CALLBACK_URL``), with a log.

Every attempt is a ``CallbackDelivery`` row: the exact bytes signed and sent, the signature,
the answer (status, first 2 KB), the latency, the network error if any. Retries follow the
state machine's callback policy (SPEC §4 step 4: 3 retries, 5 s, backoff 2; the number of
attempts is ``CALLBACK_MAX_ATTEMPTS``). Nothing here runs inside a database transaction:
each attempt is committed on its own, so the log survives a crash mid-retry.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings

from ..models import CallbackDelivery, EventKind, MediaProcessingJob
from ..pipeline.callback import CallbackAttempt, CallbackFailed, send_callback
from .errors import ApplicationError
from .events import STEP_DELIVERY, event_record

logger = logging.getLogger("toq.media.deliveries")

BACKOFF_RATE = 2.0
URL_MAX_LENGTH = CallbackDelivery._meta.get_field("url").max_length or 500


def _target() -> tuple[str, str]:
    url = settings.CALLBACK_URL
    secret = settings.CALLBACK_SECRET
    if not url:
        raise ApplicationError("CALLBACK_URL is not configured: there is nowhere to send it")
    if not secret:
        raise ApplicationError("CALLBACK_SECRET is not configured: a callback must be signed")
    return url, secret


def _send_once(
    *,
    job: MediaProcessingJob,
    body: Any,
    url: str,
    secret: str,
    attempt_number: int,
    replay_of: CallbackDelivery | None = None,
) -> CallbackDelivery:
    try:
        # Wrapped in {"body": ...}: send_callback posts the body member, whatever it holds.
        attempt: CallbackAttempt = send_callback(
            {"body": body}, url=url, secret=secret, timeout_s=settings.CALLBACK_TIMEOUT_SECONDS
        )
    except CallbackFailed as failed:
        attempt = failed.attempt
    return CallbackDelivery.objects.create(
        job_id=job.pk,
        url=attempt.url[:URL_MAX_LENGTH],
        request_body=attempt.request_body.decode("utf-8"),
        signature=attempt.signature,
        response_status=attempt.status_code,
        response_excerpt=attempt.response_excerpt,
        error=attempt.error or "",
        latency_ms=max(0, round(attempt.latency_ms)),
        attempt=attempt_number,
        succeeded=attempt.delivered,
        replay_of=replay_of,
    )


def callback_deliver(
    *,
    job: MediaProcessingJob,
    body: dict[str, Any],
    max_attempts: int | None = None,
    interval_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> CallbackDelivery:
    """Send ``body`` signed to CALLBACK_URL until it is accepted or the attempts run out;
    returns the last attempt (``succeeded`` says which). The job's timeline gets one event
    with the outcome. The job's own state is not touched: the portal applied the result
    already; this only tells the backend."""
    url, secret = _target()
    attempts = max(1, max_attempts or settings.CALLBACK_MAX_ATTEMPTS)
    interval = interval_s if interval_s is not None else settings.CALLBACK_RETRY_INTERVAL_SECONDS
    started = time.perf_counter()
    delivery: CallbackDelivery | None = None
    for number in range(1, attempts + 1):
        delivery = _send_once(job=job, body=body, url=url, secret=secret, attempt_number=number)
        if delivery.succeeded or number == attempts:
            break
        sleep(interval * BACKOFF_RATE ** (number - 1))
    assert delivery is not None
    event_record(
        job=job,
        step=STEP_DELIVERY,
        kind=EventKind.SUCCEEDED if delivery.succeeded else EventKind.FAILED,
        duration_ms=(time.perf_counter() - started) * 1000,
        detail={
            "url": delivery.url,
            "attempts": delivery.attempt,
            "deliveryId": delivery.pk,
            "responseStatus": delivery.response_status,
            "error": delivery.error,
        },
    )
    logger.log(
        logging.INFO if delivery.succeeded else logging.ERROR,
        "callback delivery %s after %d attempt(s)",
        "succeeded" if delivery.succeeded else "failed",
        delivery.attempt,
        extra={"job_id": job.pk, "listing_identity_id": job.listing_identity_id},
    )
    return delivery


def delivery_replay(*, delivery: CallbackDelivery) -> CallbackDelivery:
    """Send a recorded callback again, once: the same bytes, signed with today's secret (a
    rotated secret would make the old signature useless). The new attempt is logged with
    ``replay_of`` pointing at the original."""
    url, secret = _target()
    try:
        body = json.loads(delivery.request_body)
    except ValueError as exc:
        raise ApplicationError(f"delivery {delivery.pk} has no JSON body to replay: {exc}") from exc
    job = MediaProcessingJob.objects.get(pk=delivery.job_id)
    replay = _send_once(
        job=job, body=body, url=url, secret=secret, attempt_number=1, replay_of=delivery
    )
    event_record(
        job=job,
        step=STEP_DELIVERY,
        kind=EventKind.SUCCEEDED if replay.succeeded else EventKind.FAILED,
        detail={
            "message": f"replay of delivery #{delivery.pk}",
            "deliveryId": replay.pk,
            "replayOf": delivery.pk,
            "url": replay.url,
            "responseStatus": replay.response_status,
            "error": replay.error,
        },
    )
    return replay
