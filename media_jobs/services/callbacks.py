"""The callback receiver (docs/contract.md §6): a pipeline result becomes job and asset state.

One function, :func:`callback_apply`, used by both engines: the HTTP endpoint calls it with
the signed body the Step Functions callback Lambda POSTed; the Celery engine calls it with
the body its consolidation built (``verify=False``: it never left the process). Both
engines therefore change state in exactly the same way, in one transaction per callback.

Decisions where docs/contract.md leaves room (docs/workers.md repeats them):

- A replay is a body byte-identical to the one stored: 200, nothing changes.
- A different body with the job's current terminal status: for FAILED (typically the
  reconciler's verdict, then the pipeline's own failure) its details are applied - error,
  per-asset codes; for a success it is recorded and ignored (the first success stands).
- A failure, or a different kind of success, after a success: recorded, answered 409.
- A progress (non-terminal) callback for a finished job: recorded, ignored, 200.
- ``callback_body`` is a TEXT column (64 KiB). A larger body is stored there cut at a UTF-8
  boundary with a marker naming its size and sha256; the whole body is kept in the
  callback's event (``detail["rawBody"]``), once per job: a later callback with the same
  body points at that event (``detail["rawBodyEventId"]``) instead of storing it again.
  The HTTP endpoint refuses bodies over ``CALLBACK_MAX_BODY_BYTES`` (413) before any of
  this.
- "FAILED with no outputs fails the listing's PROCESSING assets" applies to processing
  jobs only (a finalization (ZIP) failure says nothing about the photos), and to the
  job's own assets when the portal dispatched it (see ``job_fail_processing_assets``).
- ``listingIdentityId`` must be the job's listing (409 otherwise): a signed body that
  points at another listing is a bug upstream, not something to apply.

Long on purpose: the receiver's rules (parsing, replays, success/failure precedence,
outputs onto assets, failure figures) decide one transaction together; each helper below
is used only by :func:`callback_apply`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Field

from ..exceptions import ApplicationError, ConflictError, NotFoundError
from ..models import (
    STEP_CALLBACK,
    TEXT_MAX_BYTES,
    AssetStatus,
    JobStatus,
    MediaAsset,
    MediaJobEvent,
    MediaProcessingJob,
)
from ..pipeline.callback import verify_signature
from ..pipeline.consolidate import InvalidJobReference, job_reference_value
from ..pipeline.errors import ErrorCode
from ..pipeline.logs import log_context
from ..selectors.dispatch import job_asset_ids
from .events import event_record, json_safe
from .job_errors import JobErrorEntry, entries_of_last_error, entries_of_outputs, job_errors_record
from .jobs import (
    ZIP_FIGURES,
    format_last_error,
    job_append_error,
    job_complete,
    job_mark_running,
)

logger = logging.getLogger("toq.media.callbacks")

# docs/contract.md §6 status map; anything else means "still running".
STATUS_MAP: dict[str, str] = {
    "SUCCEEDED": JobStatus.SUCCEEDED,
    "PARTIAL_SUCCESS": JobStatus.PARTIAL_SUCCESS,
    "FAILED": JobStatus.FAILED,
    "PROCESSING_FAILED": JobStatus.FAILED,
    "VALIDATION_FAILED": JobStatus.FAILED,
    "FINALIZATION_FAILED": JobStatus.FAILED,
    "TIMED_OUT": JobStatus.FAILED,
}
SUCCESS = frozenset({JobStatus.SUCCEEDED, JobStatus.PARTIAL_SUCCESS})

# TIMESTAMP columns hold 1970-01-01 00:00:01 .. 2038-01-19 03:14:07 UTC.
TIMESTAMP_MIN = datetime(1970, 1, 2, tzinfo=UTC)
TIMESTAMP_MAX = datetime(2038, 1, 19, tzinfo=UTC)
KEY_MAX_LENGTH = 255
# How many unknown raw keys an event lists (the count is always exact).
MAX_LISTED_KEYS = 20

# Messages the HTTP endpoint returns (the tests import them).
MSG_NO_SECRET = (
    "the callback receiver is disabled: CALLBACK_SECRET is not configured on the portal, "
    "so no signature can be verified"
)
MSG_BAD_SIGNATURE = (
    "missing or wrong X-Toq-Signature: send hex(HMAC-SHA256(CALLBACK_SECRET, raw body))"
)
MSG_TOO_LARGE = "callback body is {size} bytes; the limit is {limit} (CALLBACK_MAX_BODY_BYTES)"
MSG_NOT_JSON = "callback body must be a UTF-8 JSON object: {reason}"
MSG_UNKNOWN_JOB = "no media processing job with id {job_id}"
MSG_WRONG_LISTING = (
    "job {job_id} belongs to listing {expected}, but the callback says listingIdentityId "
    "{given}; nothing was changed"
)
MISSING_PROCESSED_KEY_MESSAGE = "the callback output has no processedKey"


class CallbackUnauthorized(ApplicationError):
    status_code = 401


class CallbackTooLarge(ApplicationError):
    status_code = 413


@dataclass
class CallbackOutcome:
    """What a callback did; the HTTP endpoint answers ``status_code`` with ``as_json()``."""

    status_code: int  # 200, or 409 when a failure arrived after a success
    job_id: int
    job_status: str
    applied: bool  # True when this callback changed state
    message: str
    replay: bool = False
    assets_updated: int = 0
    unknown_raw_keys: list[str] = field(default_factory=list)
    event_id: int | None = None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("status_code")
        return {
            "jobId": data["job_id"],
            "status": data["job_status"],
            "applied": data["applied"],
            "replay": data["replay"],
            "message": data["message"],
            "assetsUpdated": data["assets_updated"],
            "unknownRawKeys": data["unknown_raw_keys"],
        }


# --- parsing ------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_callback_body(raw_body: bytes) -> dict[str, Any]:
    """The JSON object, or ApplicationError (400) saying what is wrong with it."""
    try:
        text = raw_body.decode()
    except UnicodeDecodeError as exc:
        raise ApplicationError(MSG_NOT_JSON.format(reason=f"not UTF-8 ({exc.reason})")) from None
    try:
        body = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ApplicationError(MSG_NOT_JSON.format(reason="nested too deeply")) from None
    except ValueError as exc:
        raise ApplicationError(MSG_NOT_JSON.format(reason=str(exc)[:200])) from None
    if not isinstance(body, dict):
        raise ApplicationError(MSG_NOT_JSON.format(reason=f"got a JSON {type(body).__name__}"))
    return body


def _id(body: Mapping[str, Any], name: str) -> int:
    try:
        value = job_reference_value(body, name)
    except InvalidJobReference as exc:
        raise ApplicationError(exc.message) from None
    return value


def _text(value: Any) -> str:
    """A JSON value as text for a column or a string map: None -> "", others -> JSON text.
    Lone surrogates (valid in JSON escapes, not in UTF-8 columns) become "?"."""
    if value is None:
        return ""
    # Every value here came out of json.loads (or is a str): json.dumps takes it as it is.
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text.encode(errors="replace").decode()


def _parse_started_at(value: Any) -> datetime | None:
    """``startedAt`` as a TIMESTAMP-safe datetime, or None when absent/unusable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        parsed = parsed.astimezone(UTC).replace(microsecond=0)
    except (OverflowError, ValueError):
        return None
    if not TIMESTAMP_MIN <= parsed <= TIMESTAMP_MAX:
        return None
    return parsed


def stored_callback_text(raw_body: bytes) -> tuple[str, bool]:
    """What ``callback_body`` keeps: the body itself, or - over 64 KiB - its beginning cut
    at a UTF-8 boundary plus a marker with the full size and sha256. Deterministic, so a
    replay of a large body is still recognised."""
    if len(raw_body) <= TEXT_MAX_BYTES:
        return raw_body.decode(), False
    digest = hashlib.sha256(raw_body).hexdigest()
    marker = (
        f"\n...[truncated by the portal: the body is {len(raw_body)} bytes, sha256 {digest}; "
        "the full body is in the job's callback event]"
    ).encode()
    head = raw_body[: TEXT_MAX_BYTES - len(marker)].decode(errors="ignore")
    return head + marker.decode(), True


def _error_parts(body: Mapping[str, Any]) -> dict[str, Any]:
    """code, message, failure_reason and meta (error.details) for ``last_error``; the
    processing bodies say ``error.code``/``message``, the finalization failure body keeps
    Step Functions' ``Error``/``Cause``."""
    error = body.get("error")
    meta: Any = None
    if isinstance(error, Mapping):
        code = _text(error.get("code") or error.get("Error"))
        message = _text(error.get("message") or error.get("Cause"))
        meta = error.get("details")
    else:
        # A string (or any other JSON value) is the message; null is "".
        code, message = "", _text(error)
    return {
        "code": code,
        "message": message,
        "failure_reason": _text(body.get("failureReason")),
        "meta": meta,
    }


def _error_code_and_message(body: Mapping[str, Any]) -> tuple[str, str]:
    error = body.get("error")
    if isinstance(error, Mapping):
        code = _text(error.get("code") or error.get("Error"))
        message = _text(error.get("message") or error.get("Cause"))
    else:
        code, message = "", _text(error)
    status = _text(body.get("status"))  # never empty: it is one of the failure statuses
    return code or status, message or _text(body.get("failureReason")) or status


# --- asset updates ------------------------------------------------------------------------


# The fields an output sets on its asset.
OUTPUT_FIELDS = ("status", "s3_key_processed", "metadata")
# Assets written per statement by ``_save_outputs`` (keeps a statement well under 1 MB).
OUTPUT_BATCH = 500


def asset_set_output(*, asset: MediaAsset, output: Mapping[str, Any]) -> MediaAsset:
    """Apply one consolidated output (docs/contract.md §6) to its asset, in memory (``OUTPUT_FIELDS``).

    Without errorCode/errorMessage the asset is PROCESSED and needs a processedKey (else
    FAILED with MISSING_PROCESSED_KEY); ``outputs`` and ``thumbnailKey`` are merged into the
    metadata and a previous error is removed. With an error the asset is FAILED and the
    metadata gets ``errorCode`` and ``error``.
    """
    meta = dict(asset.meta)
    code = _text(output.get("errorCode"))
    message = _text(output.get("errorMessage"))
    processed_key = _text(output.get("processedKey"))
    if not (code or message) and not processed_key:
        code, message = ErrorCode.MISSING_PROCESSED_KEY.value, MISSING_PROCESSED_KEY_MESSAGE
    if not (code or message) and len(processed_key) > KEY_MAX_LENGTH:
        code = ErrorCode.INVALID_KEY.value
        message = f"processedKey is longer than {KEY_MAX_LENGTH} characters"
    if code or message:
        asset.status = AssetStatus.FAILED
        meta["errorCode"] = code or ErrorCode.VALIDATION_ERROR.value
        meta["error"] = message or code
    else:
        asset.status = AssetStatus.PROCESSED
        asset.s3_key_processed = processed_key
        outputs = output.get("outputs")
        if isinstance(outputs, Mapping):
            meta.update({_text(k): _text(v) for k, v in outputs.items()})
        thumbnail_key = _text(output.get("thumbnailKey"))
        if thumbnail_key:
            meta["thumbnailKey"] = thumbnail_key
        meta.pop("errorCode", None)
        meta.pop("error", None)
    asset.metadata = meta
    return asset


def asset_apply_output(*, asset: MediaAsset, output: Mapping[str, Any]) -> MediaAsset:
    """``asset_set_output`` and save: one asset (a backfill). Call it inside the caller's
    transaction."""
    asset_set_output(asset=asset, output=output)
    asset.save(update_fields=list(OUTPUT_FIELDS))
    return asset


def _column(model_field: Field[Any, Any]) -> str:
    """A concrete field's column (Django leaves ``column`` None only on fields without one)."""
    if model_field.column is None:
        raise ValueError(f"{model_field.name} has no database column")
    return model_field.column


def _save_outputs(assets: list[MediaAsset]) -> None:
    """Write the assets' ``OUTPUT_FIELDS`` in one statement per batch: an UPDATE joined to
    the new values. A callback of 40 outputs was 40 UPDATEs (~12 ms of its ~22 ms); this
    is one (~2 ms). Django's ``bulk_update`` (a CASE per column) measured slower than the
    40 UPDATEs on MariaDB, so it is only the fallback for other databases."""
    if connection.vendor != "mysql":
        MediaAsset.objects.bulk_update(assets, list(OUTPUT_FIELDS), batch_size=OUTPUT_BATCH)
        return
    quote = connection.ops.quote_name
    concrete = {f.name: f for f in MediaAsset._meta.concrete_fields}
    fields = [concrete[name] for name in OUTPUT_FIELDS]
    columns = [quote(_column(f)) for f in fields]
    row = "SELECT %s AS id, " + ", ".join(f"%s AS {column}" for column in columns)
    assignments = ", ".join(f"a.{column} = v.{column}" for column in columns)
    for start in range(0, len(assets), OUTPUT_BATCH):
        batch = assets[start : start + OUTPUT_BATCH]
        params: list[Any] = []
        for asset in batch:
            params.append(asset.pk)
            params += [f.get_db_prep_save(getattr(asset, f.attname), connection) for f in fields]
        values = " UNION ALL ".join([row] * len(batch))
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {quote(MediaAsset._meta.db_table)} AS a JOIN ({values}) AS v "
                f"ON a.id = v.id SET {assignments}",
                params,
            )


def _apply_outputs(job: MediaProcessingJob, outputs: list[Any]) -> tuple[int, list[str], list[str]]:
    """(assets updated, unknown raw keys, malformed entries) for the callback's outputs."""
    by_key: dict[str, list[Mapping[str, Any]]] = {}
    malformed: list[str] = []
    for entry in outputs:
        raw_key = entry.get("rawKey") if isinstance(entry, Mapping) else None
        if not isinstance(raw_key, str) or not raw_key:
            malformed.append(_text(entry)[:200])
            continue
        by_key.setdefault(_text(raw_key), []).append(entry)
    assets = MediaAsset.objects.select_for_update().filter(
        listing_identity_id=job.listing_identity_id, s3_key_raw__in=list(by_key)
    )
    found: set[str] = set()
    changed: list[MediaAsset] = []
    for asset in assets.order_by("id"):
        key = asset.s3_key_raw or ""
        entries = by_key.get(key)
        if not entries:
            # Matched only by the column's case-insensitive collation: S3 keys are
            # case-sensitive, so the output is for another object.
            continue
        found.add(key)
        for entry in entries:
            asset_set_output(asset=asset, output=entry)
        changed.append(asset)
    _save_outputs(changed)
    unknown = [key for key in by_key if key not in found]
    for key in unknown[:MAX_LISTED_KEYS]:
        logger.warning("callback output for an unknown raw key skipped", extra={"raw_key": key})
    return len(changed), unknown, malformed


def job_fail_processing_assets(*, job: MediaProcessingJob, code: str, message: str) -> int:
    """The job's PROCESSING assets become FAILED with ``errorCode``/``error``; returns how many.

    docs/contract.md §6 says "the listing's PROCESSING assets". When the portal dispatched the job it knows
    exactly which assets the job took (its dispatch event), and only those fail: another
    job running for the same listing keeps its assets. For jobs started elsewhere (the
    backend) it falls back to every PROCESSING asset of the listing. Call it inside a
    transaction.
    """

    assets = MediaAsset.objects.select_for_update().filter(
        listing_identity_id=job.listing_identity_id, status=AssetStatus.PROCESSING
    )
    asset_ids = job_asset_ids(job=job)
    if asset_ids is not None:
        assets = assets.filter(pk__in=asset_ids)
    failed = 0
    for asset in assets.order_by("id"):
        meta = dict(asset.meta)
        meta["errorCode"] = code
        meta["error"] = message
        asset.status = AssetStatus.FAILED
        asset.metadata = meta
        asset.save(update_fields=["status", "metadata"])
        failed += 1
    return failed


def _fill_identity(job: MediaProcessingJob, body: Mapping[str, Any]) -> None:
    """external_id from executionArn and started_at from startedAt, only when empty."""
    fields = []
    arn = body.get("executionArn")
    if not job.external_id and isinstance(arn, str) and arn:
        job.external_id = _text(arn)[:KEY_MAX_LENGTH]
        fields.append("external_id")
    started_at = _parse_started_at(body.get("startedAt"))
    if job.started_at is None and started_at is not None:
        job.started_at = started_at
        fields.append("started_at")
    if fields:
        job.save(update_fields=fields)


def _payload(
    job: MediaProcessingJob, body: Mapping[str, Any], outputs: Any, assets_failed: int
) -> dict[str, Any]:
    """What ``payload`` keeps: the zip figures when present, else the job's own asset
    figures - from the outputs, or for a failure without outputs (validation, a failed
    branch) from the assets the job took, all failed (``assets_failed`` of them)."""
    figures: dict[str, Any] = json_safe({k: body[k] for k in ZIP_FIGURES if k in body})
    if figures or job.is_finalization:
        return figures
    if isinstance(outputs, list) and outputs:
        failed = sum(
            1
            for o in outputs
            if isinstance(o, Mapping) and (o.get("errorCode") or o.get("errorMessage"))
        )
        return {
            "assetsTotal": len(outputs),
            "assetsProcessed": len(outputs) - failed,
            "assetsFailed": failed,
        }
    return job_failure_figures(job=job, assets_failed=assets_failed)


def job_failure_figures(*, job: MediaProcessingJob, assets_failed: int) -> dict[str, Any]:
    """The asset figures of a processing job that failed as a whole: it processed none of
    the assets it took (its dispatch record; ``assets_failed`` when it has none)."""

    if job.is_finalization:
        return {}
    taken = job_asset_ids(job=job)
    total = len(taken) if taken is not None else assets_failed
    return {"assetsTotal": total, "assetsProcessed": 0, "assetsFailed": assets_failed}


def _error_entries(
    status: str, error_line: str, outputs: Any, assets_updated: int
) -> list[JobErrorEntry]:
    """The codes this outcome leaves on the job: none for a success; the job's own code and
    its failed assets' codes otherwise (a failure without outputs failed ``assets_updated``
    assets with the job's code)."""
    if status == JobStatus.SUCCEEDED:
        return []
    per_asset = entries_of_outputs(outputs)
    own = entries_of_last_error(error_line, assets=0 if per_asset else assets_updated)
    # The per-asset codes counted in the line are the outputs' own, with their messages.
    own = [entry for entry in own if entry.scope == "job"]
    if status == JobStatus.FAILED and not own:
        own = [JobErrorEntry("job", "", "", 0 if per_asset else assets_updated)]
    return own + per_asset


def _raw_body_detail(job: MediaProcessingJob, raw_body: bytes, digest: str) -> dict[str, Any]:
    """Where the event keeps a body too large for ``callback_body``: the body itself the
    first time, else a pointer to the event that holds it (``rawBodyEventId``) - a replayed
    2 MiB body must not add 2 MiB to the job's timeline at every replay."""
    holder = (
        MediaJobEvent.objects.filter(
            job_id=job.pk, step=STEP_CALLBACK, detail__sha256=digest, detail__has_key="rawBody"
        )
        .order_by("id")
        .values_list("pk", flat=True)
        .first()
    )
    if holder is not None:
        return {"rawBodyEventId": holder}
    return {"rawBody": raw_body.decode()}


# --- the receiver -------------------------------------------------------------------------


def callback_apply(
    *,
    raw_body: bytes,
    signature: str | None = None,
    verify: bool = True,
    source: str = "http",
) -> CallbackOutcome:
    """Apply one callback (docs/contract.md §6) in one transaction.

    Raises CallbackUnauthorized (401: no secret configured, missing or wrong signature),
    CallbackTooLarge (413), ApplicationError (400: not a JSON object, bad ids),
    NotFoundError (404: unknown job) or ConflictError (409: the listing does not match) -
    all before anything changes. A failure after a success is recorded on the job and
    returned as an outcome with status_code 409. ``verify=False`` is for the Celery engine,
    whose body never left the process; ``source`` is noted in the job's timeline.
    """
    if verify:
        limit = settings.CALLBACK_MAX_BODY_BYTES
        if len(raw_body) > limit:
            raise CallbackTooLarge(MSG_TOO_LARGE.format(size=len(raw_body), limit=limit))
        secret = settings.CALLBACK_SECRET
        if not secret:
            raise CallbackUnauthorized(MSG_NO_SECRET)
        if not verify_signature(raw_body, secret, signature):
            raise CallbackUnauthorized(MSG_BAD_SIGNATURE)
    body = parse_callback_body(raw_body)
    job_id = _id(body, "jobId")
    listing_identity_id = _id(body, "listingIdentityId")
    traceparent = body.get("traceparent") if isinstance(body.get("traceparent"), str) else None
    with log_context(
        job_id=job_id,
        listing_identity_id=listing_identity_id,
        step=STEP_CALLBACK,
        traceparent=traceparent or None,
    ):
        outcome = _apply(raw_body, body, job_id, listing_identity_id, source)
        logger.info(
            "callback %s",
            "applied" if outcome.applied else "not applied",
            extra={
                "source": source,
                "callback_status": _text(body.get("status")),
                "job_status": outcome.job_status,
                "http_status": outcome.status_code,
                "replay": outcome.replay,
                "assets_updated": outcome.assets_updated,
                "reason": outcome.message,
            },
        )
    return outcome


@transaction.atomic
def _apply(
    raw_body: bytes,
    body: dict[str, Any],
    job_id: int,
    listing_identity_id: int,
    source: str,
) -> CallbackOutcome:
    try:
        job = MediaProcessingJob.objects.select_for_update().get(pk=job_id)
    except MediaProcessingJob.DoesNotExist:
        raise NotFoundError(MSG_UNKNOWN_JOB.format(job_id=job_id)) from None
    if job.listing_identity_id != listing_identity_id:
        raise ConflictError(
            MSG_WRONG_LISTING.format(
                job_id=job_id, expected=job.listing_identity_id, given=listing_identity_id
            )
        )
    raw_status = _text(body.get("status")).strip().upper()[:100]
    new_status = STATUS_MAP.get(raw_status, JobStatus.RUNNING)
    stored_text, truncated = stored_callback_text(raw_body)
    digest = hashlib.sha256(raw_body).hexdigest()
    detail: dict[str, Any] = {
        "source": source,
        "callbackStatus": raw_status,
        "bodyBytes": len(raw_body),
        "sha256": digest,
        "previousStatus": job.status,
    }
    if truncated:
        detail.update(_raw_body_detail(job, raw_body, digest))

    def outcome(code: int, applied: bool, message: str, kind: str, **extra: Any) -> CallbackOutcome:
        event = event_record(
            job=job,
            step=STEP_CALLBACK,
            kind=kind,
            detail={**detail, "message": message, "applied": applied, **extra},
        )
        return CallbackOutcome(
            status_code=code,
            job_id=job.pk,
            job_status=job.status,
            applied=applied,
            message=message,
            replay=extra.get("replay", False),
            assets_updated=extra.get("assetsUpdated", 0),
            unknown_raw_keys=extra.get("unknownRawKeys", []),
            event_id=event.pk,
        )

    identical = job.callback_body is not None and job.callback_body == stored_text

    # Progress callbacks: the job is running.
    if new_status == JobStatus.RUNNING:
        if job.is_terminal:
            return outcome(200, False, f"job already {job.status}; progress ignored", "note")
        arn = body.get("executionArn")
        job = job_mark_running(
            job=job,
            external_id=_text(arn)[:KEY_MAX_LENGTH] if isinstance(arn, str) and arn else None,
            started_at=_parse_started_at(body.get("startedAt")),
        )
        job.callback_body = stored_text
        job.save(update_fields=["callback_body"])
        return outcome(200, True, "job is RUNNING", "note")

    if job.is_terminal:
        if identical:
            return outcome(200, False, "replay of the stored callback", "note", replay=True)
        if job.status in SUCCESS and new_status not in SUCCESS:
            return outcome(
                409,
                False,
                f"job already {job.status}; a {raw_status} callback does not replace a success",
                "failed",
            )
        if job.status in SUCCESS and new_status != job.status:
            return outcome(
                409, False, f"job already {job.status}; {raw_status} does not replace it", "failed"
            )
        if job.status in SUCCESS:
            return outcome(
                200, False, f"job already {job.status}; the first success stands", "note"
            )

    late_success = job.status == JobStatus.FAILED and new_status in SUCCESS
    failure_update = job.status == JobStatus.FAILED and new_status == JobStatus.FAILED
    _fill_identity(job, body)
    outputs = body.get("outputs")
    updated = 0
    unknown: list[str] = []
    malformed: list[str] = []
    if isinstance(outputs, list) and outputs:
        updated, unknown, malformed = _apply_outputs(job, outputs)
    elif new_status == JobStatus.FAILED and not job.is_finalization:
        code, message = _error_code_and_message(body)
        updated = job_fail_processing_assets(job=job, code=code, message=message)
    error_parts = _error_parts(body)
    error_line = format_last_error(**error_parts)
    if failure_update:
        # Same terminal status, new facts (the pipeline's own failure after the reconciler's).
        job.callback_body = stored_text
        job.save(update_fields=["callback_body"])
        job = job_append_error(job=job, **error_parts)
    else:
        job = job_complete(
            job=job,
            status=new_status,
            error_line=error_line or None,
            payload=_payload(job, body, outputs, updated) or None,
            callback_body=stored_text,
            allow_late_success=late_success,
            locked=True,  # selected FOR UPDATE above, in this transaction
        )
    job_errors_record(
        job=job,
        entries=_error_entries(new_status, error_line, outputs, updated),
        replace=not failure_update,
    )
    if late_success:
        message = f"late {new_status} applied over FAILED (the reconciler or an operator gave up)"
    elif failure_update:
        message = "failure details applied to the FAILED job"
    else:
        message = f"job {job.status}"
    return outcome(
        200,
        True,
        message,
        "succeeded" if new_status in SUCCESS else "failed",
        assetsUpdated=updated,
        unknownRawKeys=unknown[:MAX_LISTED_KEYS],
        unknownRawKeyCount=len(unknown),
        malformedOutputs=malformed[:MAX_LISTED_KEYS],
        truncated=truncated,
        lateSuccess=late_success,
    )


__all__ = [
    "CallbackOutcome",
    "CallbackTooLarge",
    "CallbackUnauthorized",
    "asset_apply_output",
    "asset_set_output",
    "callback_apply",
    "job_fail_processing_assets",
    "parse_callback_body",
    "stored_callback_text",
]
