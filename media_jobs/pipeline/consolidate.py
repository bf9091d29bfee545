"""Consolidation and the callback bodies (docs/contract.md §4 steps 3 and 5, §5 steps 2 and 3).

Both engines build their callback bodies here: the Lambda handlers call these functions,
the state machines build the same dicts with ``Parameters`` (the interpreter tests compare
them), and the Celery engine calls them directly. Shape rules, the same everywhere:

- every documented key is always present; a missing string is ``""``, a missing object
  is ``null`` (``error`` of a successful run);
- ``jobId`` and ``listingIdentityId`` are passed through as given (number or numeric
  string), except in the finalization success body where docs/contract.md §5 makes the listing a string;
- ``outputs`` keeps the order of the validated assets (the order of the job's input);
- every body decodes in the TOQ backend's request type (docs/contract.md §6): strings
  where it expects strings, ``error.details`` a map of strings.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from media_jobs.pipeline.errors import ErrorCode, PipelineError
from media_jobs.pipeline.keys import output_name
from media_jobs.pipeline.types import JSON, ConsolidatedOutput

PROVIDER = "STEP_FUNCTIONS"
FINALIZATION_PROVIDER = "STEP_FUNCTIONS_FINALIZATION"

# Best first: processedKey is the first of these sizes that was produced.
SIZE_PREFERENCE = ("original", "large", "medium", "small", "thumbnail")

# failureReason of the two failure bodies of docs/contract.md §4 step 5. The state machine writes the
# same literals; the specific cause goes into ``error``.
FAILURE_REASONS: dict[str, str] = {
    "VALIDATION_FAILED": "raw asset validation failed",
    "PROCESSING_FAILED": "derivative processing failed",
}

# Caps the list of failed keys in error.details (it ends up in last_error).
MAX_DETAILED_FAILURES = 50

FailureStatus = Literal["VALIDATION_FAILED", "PROCESSING_FAILED"]

_NUMERIC = re.compile(r"[0-9]+")
# The ids' columns are INT UNSIGNED: an id outside 0..MAX_ID cannot exist.
MAX_ID = 2**32 - 1


class InvalidJobReference(PipelineError, ValueError):
    """jobId or listingIdentityId missing or not a number / numeric string."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.VALIDATION_ERROR, message)


def job_reference(event: Mapping[str, Any], name: str) -> int | str:
    """The id as given (a number or a string of digits), after checking that it is an
    integer the ids' columns can hold (0..MAX_ID). A 5000-digit string is refused by its
    length, never handed to ``int()`` (which refuses more than 4300 digits with an error
    of its own)."""
    value = event.get(name)
    reference: int | str | None = None
    if isinstance(value, str) and _NUMERIC.fullmatch(value):
        digits = value.lstrip("0") or "0"
        if len(digits) <= len(str(MAX_ID)) and int(digits) <= MAX_ID:
            reference = value
    elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID:
        reference = value
    if reference is None:
        raise InvalidJobReference(
            f"{name} must be an integer from 0 to {MAX_ID}, as a number or a string of "
            f"digits; got {_shown(value)}"
        )
    return reference


def job_reference_value(event: Mapping[str, Any], name: str) -> int:
    """``job_reference`` as an int (leading zeros dropped before ``int()``, so "0" * 5000 +
    "1" is 1, not int's digit-limit error)."""
    value = job_reference(event, name)
    return value if isinstance(value, int) else int(value.lstrip("0") or "0")


def _shown(value: Any) -> str:
    """A value for a message, cut short: a hostile id can be thousands of characters."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def derivative_size(key: str) -> str:
    """The size folder of a derivative key: ``<listing>/processed/<segment>/<size>/<file>``."""
    parts = key.split("/")
    return parts[-2] if len(parts) >= 2 else ""


def _best_key(outputs_by_size: Mapping[str, str]) -> str:
    for size in SIZE_PREFERENCE:
        if size in outputs_by_size:
            return outputs_by_size[size]
    return ""


def _branch_bodies(parallel_results: Iterable[Any]) -> list[Mapping[str, Any]]:
    """The ``body`` of every branch that has one. A branch that is a list (the Map of one
    transcode per video) contributes the body of each of its items; Pass results have
    none."""
    bodies = []
    for result in parallel_results or ():
        items = result if isinstance(result, list) else [result]
        for item in items:
            if isinstance(item, Mapping) and isinstance(item.get("body"), Mapping):
                bodies.append(item["body"])
    return bodies


def consolidate_outputs(
    assets: Iterable[Mapping[str, Any]], parallel_results: Iterable[Any]
) -> list[ConsolidatedOutput]:
    """One output per validated asset, in the assets' order."""
    validated = list(assets)
    outputs: list[ConsolidatedOutput] = []
    by_source: dict[str, list[ConsolidatedOutput]] = {}
    sizes: dict[int, dict[str, str]] = {}
    raw_types: dict[int, str] = {}
    for asset in validated:
        raw_key = asset.get("sourceKey") or asset.get("key") or ""
        output: ConsolidatedOutput = {
            "rawKey": raw_key,
            "processedKey": "",
            "thumbnailKey": "",
            "outputs": {},
            "errorCode": "",
            "errorMessage": "",
        }
        if asset.get("error") or asset.get("errorCode"):
            output["errorCode"] = asset.get("errorCode") or ErrorCode.VALIDATION_ERROR.value
            output["errorMessage"] = asset.get("error") or output["errorCode"]
        outputs.append(output)
        by_source.setdefault(raw_key, []).append(output)
        sizes[id(output)] = {}
        raw_types[id(output)] = str(asset.get("type") or "")

    for body in _branch_bodies(parallel_results):
        for generated in body.get("generatedAssets") or ():
            key = generated.get("key") or ""
            size = derivative_size(key)
            for output in by_source.get(generated.get("sourceKey") or "", ()):
                # Named after the RAW asset's type: a poster is thumbnail_video_horizontal.
                output["outputs"][output_name(size, raw_types[id(output)])] = key
                sizes[id(output)].setdefault(size, key)
        for error in body.get("errors") or ():
            for output in by_source.get(error.get("sourceKey") or "", ()):
                # A branch error says more than the validation verdict: it overrides.
                output["errorCode"] = error.get("errorCode") or ErrorCode.VALIDATION_ERROR.value
                output["errorMessage"] = error.get("errorMessage") or output["errorCode"]

    for output in outputs:
        by_size = sizes[id(output)]
        output["processedKey"] = _best_key(by_size)
        output["thumbnailKey"] = by_size.get("thumbnail", "")
    return outputs


def branch_error_count(parallel_results: Iterable[Any]) -> int:
    """How many asset errors the branches reported (validation errors not counted)."""
    return sum(len(body.get("errors") or ()) for body in _branch_bodies(parallel_results))


def _derivative_error(outputs: list[ConsolidatedOutput]) -> tuple[str, JSON]:
    """failureReason and ``error`` of a PARTIAL_SUCCESS body. ``details`` holds strings
    only: the backend decodes it as a map of strings and answers 400 to anything else."""
    failed = [o for o in outputs if o["errorCode"]]
    codes = Counter(o["errorCode"] for o in failed)
    summary = ", ".join(f"{code} x{count}" for code, count in sorted(codes.items()))
    reason = f"{len(failed)} of {len(outputs)} assets failed: {summary}"
    details: dict[str, str] = {
        "failedAssets": str(len(failed)),
        "totalAssets": str(len(outputs)),
        "errorCodes": ",".join(f"{code}={count}" for code, count in sorted(codes.items())),
        # a JSON list inside the string: raw keys may contain commas
        "failedRawKeys": json.dumps(
            [o["rawKey"] for o in failed[:MAX_DETAILED_FAILURES]], ensure_ascii=False
        ),
    }
    return reason, {
        "code": ErrorCode.DERIVATIVE_ERRORS_DETECTED.value,
        "message": "derivative errors detected",
        "details": details,
    }


def consolidate(event: Mapping[str, Any]) -> dict[str, JSON]:
    """docs/contract.md §4 step 3: merge validation and branch results into the callback body.

    Raises :class:`InvalidJobReference` when jobId or listingIdentityId is missing or not
    numeric. An error reported by a branch makes the run PARTIAL_SUCCESS; validation
    errors alone leave it SUCCEEDED (the assets carry their codes), as in the Go system.
    """
    job_id = job_reference(event, "jobId")
    listing_identity_id = job_reference(event, "listingIdentityId")
    parallel_results = event.get("parallelResults") or ()
    outputs = consolidate_outputs(event.get("assets") or (), parallel_results)
    problem = _derivative_error(outputs) if branch_error_count(parallel_results) else None
    body: JSON = {
        "jobId": job_id,
        "listingIdentityId": listing_identity_id,
        "executionArn": event.get("executionArn") or "",
        "startedAt": event.get("startedAt") or "",
        "provider": PROVIDER,
        "status": "PARTIAL_SUCCESS" if problem else "SUCCEEDED",
        "failureReason": problem[0] if problem else "",
        "error": problem[1] if problem else None,
        "outputs": outputs,
        "traceparent": event.get("traceparent", ""),
    }
    return {"body": body}


def failure_body(
    event: Mapping[str, Any], *, status: FailureStatus, error_code: str, message: str
) -> JSON:
    """docs/contract.md §4 step 5. ``event`` is the run's state (jobId, listingIdentityId, traceparent,
    executionArn, startedAt). On AWS the state machine passes the caught Error as
    ``error_code`` and its Cause as ``message``. Ids are not checked: a failure must still
    be reported."""
    if status not in FAILURE_REASONS:
        raise ValueError(f"status must be one of {sorted(FAILURE_REASONS)}, got {status!r}")
    return {
        "jobId": event.get("jobId"),
        "listingIdentityId": event.get("listingIdentityId"),
        "executionArn": event.get("executionArn") or "",
        "startedAt": event.get("startedAt") or "",
        "provider": PROVIDER,
        "status": status,
        "failureReason": FAILURE_REASONS[status],
        "error": {"code": error_code, "message": message},
        "outputs": [],
        "traceparent": event.get("traceparent", ""),
    }


def finalization_success_body(event: Mapping[str, Any], zip_body: Mapping[str, Any]) -> JSON:
    """docs/contract.md §5 step 2. ``zip_body`` is the ZIP step's body (its ``{"body": ...}`` wrapper
    is accepted too). listingIdentityId is a string here, as the backend expects."""
    if "body" in zip_body and isinstance(zip_body["body"], Mapping):
        zip_body = zip_body["body"]
    return {
        "jobId": event.get("jobId"),
        "status": "SUCCEEDED",
        "provider": FINALIZATION_PROVIDER,
        "listingIdentityId": str(event.get("listingIdentityId")),
        "traceparent": event.get("traceparent", ""),
        "assetsZipped": zip_body["assetsZipped"],
        "zipBundles": list(zip_body["zipBundles"]),
        "zipSizeBytes": zip_body["zipSizeBytes"],
        "unzippedSizeBytes": zip_body["unzippedSizeBytes"],
    }


def finalization_failure_body(event: Mapping[str, Any], *, error: str, cause: str) -> JSON:
    """docs/contract.md §5 step 3: ``error`` keeps Step Functions' own ``{"Error", "Cause"}`` names."""
    return {
        "jobId": event.get("jobId"),
        "listingIdentityId": event.get("listingIdentityId"),
        "status": "FINALIZATION_FAILED",
        "traceparent": event.get("traceparent", ""),
        "error": {"Error": error, "Cause": cause},
    }


def describe_failure(exc: BaseException) -> tuple[str, str]:
    """(error code, message) for an exception caught by an engine that runs steps in
    process: the PipelineError code, else the exception's class name, like a Lambda
    error's ``Error``."""
    if isinstance(exc, PipelineError):
        return exc.code, exc.message
    return type(exc).__name__, str(exc)
