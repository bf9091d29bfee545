"""The JSON API (docs/contract.md §6-§7): start processing, start finalization, receive callbacks.

Thin views: parse and check the request, call one service, present its answer. Every
refusal is JSON ``{"error": {"status", "code", "message", ...}}`` with a message that says
what to fix; bad input is a 4xx, never a 500.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.csrf import csrf_exempt

from .exceptions import ApplicationError
from .models import MediaProcessingJob
from .pipeline.callback import SIGNATURE_HEADER
from .pipeline.consolidate import InvalidJobReference, job_reference_value
from .selectors.dispatch import dispatch_detail
from .services.callbacks import callback_apply
from .services.dispatch import listing_start_finalization, listing_start_processing

if TYPE_CHECKING:  # django-stubs' type of a string or a lazy translation
    from django_stubs_ext import StrOrPromise

# The start endpoints take a tiny JSON object; anything bigger is a mistake.
MAX_START_BODY_BYTES = 16 * 1024

ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    503: "UNAVAILABLE",
}
MSG_NO_TOKENS = _(
    "the API is disabled: no API_TOKENS are configured on the portal, so no bearer token "
    "can be accepted"
)
MSG_NO_BEARER = _(
    "send the header 'Authorization: Bearer <token>' with one of the portal's API_TOKENS"
)
MSG_BAD_TOKEN = _("the bearer token is not one of the portal's API_TOKENS")
MSG_BODY_SHAPE = _('send a JSON object such as {"listingIdentityId": 123}')
MSG_LISTING = _(
    "listingIdentityId is required: a positive integer (or a string of digits) such as "
    '{"listingIdentityId": 123}'
)


def error_response(
    status: int,
    message: str,
    *,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    error = {"status": status, "code": ERROR_CODES.get(status, "ERROR"), "message": message}
    if extra:
        error.update(extra)
    response = JsonResponse({"error": error}, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _method_not_allowed(request: HttpRequest) -> JsonResponse:
    return error_response(
        405,
        gettext("%(method)s is not allowed here; use POST") % {"method": request.method},
        headers={"Allow": "POST"},
    )


def _bearer_problem(request: HttpRequest) -> StrOrPromise | None:
    """None when the Authorization header carries one of API_TOKENS, else why not."""
    tokens = [t for t in getattr(settings, "API_TOKENS", []) if t]
    if not tokens:
        return MSG_NO_TOKENS
    scheme, _space, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return MSG_NO_BEARER
    given = token.encode("utf-8", "replace")
    # Compare with every token (no early exit) so timing says nothing about which matched.
    matches = [hmac.compare_digest(given, t.encode("utf-8")) for t in tokens]
    return None if any(matches) else MSG_BAD_TOKEN


def _read_body(request: HttpRequest, limit: int) -> bytes:
    """The raw body, refusing more than ``limit`` bytes without reading them."""
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared:
        try:
            length = int(declared)
        except ValueError:
            raise ApplicationError(
                gettext("Content-Length %(value)r is not a number") % {"value": declared[:40]}
            ) from None
        if length > limit:
            raise _TooLarge(length, limit)
    data = request.read(limit + 1)
    if len(data) > limit:
        raise _TooLarge(len(data), limit)
    return data


class _TooLarge(ApplicationError):
    status_code = 413

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            gettext("the body is %(size)s bytes or more; the limit here is %(limit)s bytes")
            % {"size": size, "limit": limit}
        )


def _listing_identity_id(body: dict[str, Any]) -> int:
    try:
        value = job_reference_value(body, "listingIdentityId")
    except InvalidJobReference:
        value = 0
    if value == 0:
        given = repr(body.get("listingIdentityId"))
        raise ApplicationError(MSG_LISTING, extra={"given": given[:100]})
    return value


def _start_body(request: HttpRequest) -> tuple[int, str | None]:
    raw = _read_body(request, MAX_START_BODY_BYTES)
    try:
        body = json.loads(raw.decode("utf-8") or "null")
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ApplicationError(
            gettext("the body is not valid JSON; %(hint)s") % {"hint": MSG_BODY_SHAPE}
        ) from None
    if not isinstance(body, dict):
        raise ApplicationError(
            gettext("the body must be a JSON object; %(hint)s") % {"hint": MSG_BODY_SHAPE}
        )
    traceparent = request.headers.get("traceparent") or body.get("traceparent")
    return _listing_identity_id(body), traceparent if isinstance(traceparent, str) else None


def job_json(job: MediaProcessingJob) -> dict[str, Any]:
    """The job as the start endpoints answer it.

    ``provider`` is docs/contract.md §3's column of that name, kept as the backend reads it: it names
    the kind of job (STEP_FUNCTIONS = processing, STEP_FUNCTIONS_FINALIZATION = the ZIP),
    not what runs it - ``kind`` says the same in words. ``engine`` is what runs it:
    ``celery`` or ``stepfunctions`` (MEDIA_PIPELINE_ENGINE when it was dispatched)."""
    detail = dispatch_detail(job=job) or {}
    started_with = detail.get("input")
    workflow = started_with if isinstance(started_with, dict) else {}
    return {
        "jobId": job.pk,
        "listingIdentityId": job.listing_identity_id,
        "status": job.status,
        "kind": "finalization" if job.is_finalization else "processing",
        "provider": job.provider,
        "externalId": job.external_id,
        "retryCount": job.retry_count,
        "startedAt": job.started_at.isoformat() if job.started_at else None,
        "createdAt": job.created_at.isoformat() if job.created_at else None,
        "assets": len(detail.get("assetIds") or []),
        "engine": detail.get("engine"),
        "traceparent": workflow.get("traceparent"),
    }


def _start_view(start: Callable[..., MediaProcessingJob]) -> Callable[[HttpRequest], JsonResponse]:
    @csrf_exempt
    def view(request: HttpRequest) -> JsonResponse:
        if request.method != "POST":
            return _method_not_allowed(request)
        problem = _bearer_problem(request)
        if problem:
            return error_response(401, str(problem), headers={"WWW-Authenticate": "Bearer"})
        try:
            listing_identity_id, traceparent = _start_body(request)
            job = start(listing_identity_id=listing_identity_id, traceparent=traceparent)
        except ApplicationError as exc:
            return error_response(exc.status_code, exc.message, extra=exc.extra)
        if job.status == "FAILED":
            # The broker refused the job after the commit: say so rather than 202.
            return error_response(
                503,
                gettext("job %(job)s could not be queued: %(error)s")
                % {"job": job.pk, "error": job.last_error or gettext("see the job")},
                extra={"job": job_json(job)},
            )
        return JsonResponse(job_json(job), status=202)

    view.__name__ = start.__name__
    return view


process_uploads = _start_view(listing_start_processing)
process_uploads.__doc__ = "POST /api/v2/listings/media/uploads/process (docs/contract.md §7)."
complete_uploads = _start_view(listing_start_finalization)
complete_uploads.__doc__ = "POST /api/v2/listings/media/uploads/complete (docs/contract.md §7)."


@csrf_exempt
def media_callback(request: HttpRequest) -> JsonResponse:
    """POST /api/v2/listings/media/callback: the signed pipeline result (docs/contract.md §6)."""
    if request.method != "POST":
        return _method_not_allowed(request)
    try:
        raw = _read_body(request, settings.CALLBACK_MAX_BODY_BYTES)
        outcome = callback_apply(raw_body=raw, signature=request.headers.get(SIGNATURE_HEADER))
    except ApplicationError as exc:
        headers = {"WWW-Authenticate": 'HMAC realm="callback"'} if exc.status_code == 401 else None
        return error_response(exc.status_code, exc.message, extra=exc.extra, headers=headers)
    if outcome.status_code >= 400:
        return error_response(outcome.status_code, outcome.message, extra=outcome.as_json())
    return JsonResponse(outcome.as_json(), status=outcome.status_code)
