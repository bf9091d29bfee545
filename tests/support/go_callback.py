"""The TOQ backend's callback request type, as a strict decoder (docs/contract.md §6).

The real backend (Go, projeto-toq/toq_server) binds every callback with
``BindMediaProcessingCallbackRequest`` (``internal/adapter/left/http/dto/
media_processing_callback_dto.go``): ``encoding/json`` into ``MediaProcessingCallbackRequest``
with ``UseNumber`` and no trailing content, then ``toHandleProcessingCallbackInput``
(``handle_processing_callback_converter.go``) parses the ids and ``startedAt``. Anything
either step refuses is answered ``400 INVALID_CALLBACK`` and the listing never hears back.

This module restates those rules in Python, from reading the Go code (facts, not its code):

- field names match exactly or case-insensitively (exact preferred); unknown keys are ignored;
  a repeated key is decoded again over the first;
- ``string`` fields take a JSON string or null; ``int``/``int64`` a JSON number that is an
  integer in range (``1.5``, ``1e3``, ``"3"`` are errors); ``[]string`` an array of strings;
  ``map[string]string`` an object whose values are strings (null becomes ""); a pointer to a
  struct takes null or an object; ``json.RawMessage`` takes any value;
- ``jobId`` / ``listingIdentityId`` (RawMessage) go through ``ParseUintFromJSON``: a number,
  or a string whose content starts with a JSON number, must be an unsigned 64-bit integer;
  null, "" and non-numbers are refused. Like Go's tokenizer, only the leading number of the
  content counts (``"12 x"`` is 12, ``"012"`` is 0);
- a non-empty ``startedAt`` must be RFC 3339 (``ParseRFC3339Relaxed``: a space before the
  offset is tolerated).

``decode_callback`` returns what the backend's service receives (``BackendCallbackInput``)
or raises ``BackendRejects`` with a message in Go's words.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any


class BackendRejects(ValueError):
    """The backend would answer 400 INVALID_CALLBACK with this message."""


class _GoNumber(str):
    """A JSON number literal, kept as written (Go's UseNumber / RawMessage view)."""


class _GoObject(list):
    """A JSON object as its (key, value) pairs, in order, duplicates kept."""


def _refuse_constant(name: str) -> Any:
    raise BackendRejects(f"invalid character '{name[0]}' looking for beginning of value")


def _parse(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:  # Go would replace the bytes; our senders never do this
        raise BackendRejects(f"body is not UTF-8: {exc}") from None
    try:
        return json.loads(
            text,
            object_pairs_hook=_GoObject,
            parse_int=_GoNumber,
            parse_float=_GoNumber,
            parse_constant=_refuse_constant,
        )
    except json.JSONDecodeError as exc:
        raise BackendRejects(f"decode callback body: {exc}") from None


# -- Go types -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Kind:
    go: str  # the Go type as its error messages name it


STRING = _Kind("string")
INT = _Kind("int")  # 64 bits on the backend's amd64 build
INT64 = _Kind("int64")
RAW = _Kind("json.RawMessage")
STRINGS = _Kind("[]string")
STRING_MAP = _Kind("map[string]string")


@dataclass(frozen=True)
class _Struct:
    go: str
    fields: dict[str, Any]  # JSON name -> kind


@dataclass(frozen=True)
class _PointerTo:
    target: _Struct

    @property
    def go(self) -> str:
        return f"*{self.target.go}"


@dataclass(frozen=True)
class _SliceOf:
    element: _Struct

    @property
    def go(self) -> str:
        return f"[]{self.element.go}"


# mediaprocessingmodel.MediaProcessingJobPayload (one entry of outputs[])
JOB_PAYLOAD = _Struct(
    "MediaProcessingJobPayload",
    {
        "rawKey": STRING,
        "processedKey": STRING,
        "thumbnailKey": STRING,
        "outputs": STRING_MAP,
        "errorCode": STRING,
        "errorMessage": STRING,
        "zipBundles": STRINGS,
        "assetsZipped": INT,
        "zipSizeBytes": INT64,
        "unzippedSizeBytes": INT64,
    },
)
CALLBACK_ERROR = _Struct(
    "MediaProcessingCallbackError",
    {"code": STRING, "message": STRING, "details": STRING_MAP},
)
CALLBACK_REQUEST = _Struct(
    "MediaProcessingCallbackRequest",
    {
        "executionArn": STRING,
        "startedAt": STRING,
        "jobId": RAW,
        "listingIdentityId": RAW,
        "externalId": STRING,
        "status": STRING,
        "provider": STRING,
        "traceparent": STRING,
        "outputs": _SliceOf(JOB_PAYLOAD),
        "assetsZipped": INT,
        "zipBundles": STRINGS,
        "zipSizeBytes": INT64,
        "unzippedSizeBytes": INT64,
        "failureReason": STRING,
        "error": _PointerTo(CALLBACK_ERROR),
    },
)

_INT_RANGE = (-(2**63), 2**63 - 1)


def _json_kind(value: Any) -> str:
    if isinstance(value, _GoNumber):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, _GoObject):
        return "object"
    if isinstance(value, list):
        return "array"
    return "null"


def _type_error(value: Any, struct: str, path: str, go_type: str) -> BackendRejects:
    kind = _json_kind(value)
    shown = f"number {value}" if kind == "number" else kind
    return BackendRejects(
        f"decode callback body: json: cannot unmarshal {shown} into Go struct field "
        f"{struct}.{path} of type {go_type}"
    )


def _field_for(struct: _Struct, key: str) -> str | None:
    """Go's rule: the exact name first, else a case-insensitive match."""
    if key in struct.fields:
        return key
    folded = key.casefold()
    for name in struct.fields:
        if name.casefold() == folded:
            return name
    return None


def _decode_struct(
    value: Any, struct: _Struct, path: str, into: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    if value is None:
        return into
    if not isinstance(value, _GoObject):
        if path:
            raise _type_error(value, struct.go, path, struct.go)
        raise BackendRejects(
            f"decode callback body: json: cannot unmarshal {_json_kind(value)} into Go value "
            f"of type dto.{struct.go}"
        )
    decoded = dict(into or {})
    for key, item in value:
        name = _field_for(struct, key)
        if name is None:
            continue  # unknown keys are ignored
        field_path = f"{path}.{name}" if path else name
        decoded[name] = _decode_value(item, struct.fields[name], struct, field_path, decoded)
    return decoded


def _decode_value(value: Any, kind: Any, owner: _Struct, path: str, current: dict[str, Any]) -> Any:
    name = path.rsplit(".", 1)[-1]
    if kind is RAW:
        return value  # any JSON value; parsed later by ParseUintFromJSON
    if value is None:
        # null leaves a string or a number as it was; a slice, map or pointer becomes nil
        return current.get(name) if kind in (STRING, INT, INT64) else None
    if kind is STRING:
        if isinstance(value, str) and not isinstance(value, _GoNumber):
            return str(value)
        raise _type_error(value, owner.go, path, "string")
    if kind in (INT, INT64):
        if isinstance(value, _GoNumber):
            if re.fullmatch(r"-?[0-9]+", value):
                number = int(value)
                if _INT_RANGE[0] <= number <= _INT_RANGE[1]:
                    return number
        raise _type_error(value, owner.go, path, kind.go)
    if kind is STRINGS:
        if isinstance(value, list) and not isinstance(value, _GoObject):
            out = []
            for item in value:
                if item is None:
                    out.append("")
                elif isinstance(item, str) and not isinstance(item, _GoNumber):
                    out.append(str(item))
                else:
                    raise _type_error(item, owner.go, path, "string")
            return out
        raise _type_error(value, owner.go, path, "[]string")
    if kind is STRING_MAP:
        if isinstance(value, _GoObject):
            out_map: dict[str, str] = {}
            for key, item in value:
                if item is None:
                    out_map[key] = ""
                elif isinstance(item, str) and not isinstance(item, _GoNumber):
                    out_map[key] = str(item)
                else:
                    raise _type_error(item, owner.go, path, "string")
            return out_map
        raise _type_error(value, owner.go, path, "map[string]string")
    if isinstance(kind, _PointerTo):
        if not isinstance(value, _GoObject):
            raise _type_error(value, owner.go, path, kind.go)
        return _decode_struct(value, kind.target, path, current.get(name))
    if isinstance(kind, _SliceOf):
        if not isinstance(value, list) or isinstance(value, _GoObject):
            raise _type_error(value, owner.go, path, kind.go)
        return [_decode_struct(item, kind.element, path) or {} for item in value]
    raise AssertionError(f"unknown kind {kind!r}")  # pragma: no cover


# -- the converter ----------------------------------------------------------------------------

_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_GO_SPACE = " \t\n\r\v\f\u0085\u00a0"  # bytes.TrimSpace on ASCII content, roughly


def parse_uint_from_json(value: Any) -> int:
    """``utils.ParseUintFromJSON``: a JSON number, or a string holding one, as uint64."""
    if value is None:
        raise BackendRejects("value is empty")
    if isinstance(value, _GoNumber):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip(_GO_SPACE)
        if not text:
            raise BackendRejects("value is empty")
    else:
        raise BackendRejects("value is not a number")
    match = _JSON_NUMBER.match(text)
    if match is None:
        raise BackendRejects("value is not a number")
    rest = text[match.end() :]
    # Go's scanner fails on a '.', 'e' or '-' it cannot complete, and stops (value done)
    # at any other character.
    if rest[:1] in (".", "e", "E") or (match.group() == "-"):
        raise BackendRejects(f"invalid number literal {text!r}")
    literal = match.group()
    if not re.fullmatch(r"[0-9]+", literal):
        raise BackendRejects(f'strconv.ParseUint: parsing "{literal}": invalid syntax')
    number = int(literal)
    if number >= 2**64:
        raise BackendRejects(f'strconv.ParseUint: parsing "{literal}": value out of range')
    return number


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})"
)


def parse_rfc3339_relaxed(raw: str) -> datetime:
    """``utils.ParseRFC3339Relaxed``: RFC 3339, a space before the offset tolerated."""
    text = raw.strip(_GO_SPACE)
    head, _, tail = text.rpartition(" ")
    if head and len(tail) == 5 and tail[2] == ":":
        text = head + (tail if tail[0] in "+-" else "+" + tail)
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise BackendRejects("startedAt must be a valid RFC3339 timestamp")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        if zone == "Z":
            offset = timedelta(0)
        else:
            hours, minutes = int(zone[1:3]), int(zone[4:6])
            if hours > 23 or minutes > 59:
                raise ValueError("offset out of range")
            offset = (1 if zone[0] == "+" else -1) * timedelta(hours=hours, minutes=minutes)
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=timezone(offset),
        )
    except ValueError:
        raise BackendRejects("startedAt must be a valid RFC3339 timestamp") from None
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class BackendResult:
    """One ``dto.ProcessingResult`` (``mapOutputsToResults``)."""

    raw_key: str
    status: str  # PROCESSED, or FAILED when errorCode or errorMessage is set
    processed_key: str
    thumbnail_key: str
    metadata: dict[str, str]
    error: str
    error_code: str


@dataclass(frozen=True)
class BackendCallbackInput:
    """``dto.HandleProcessingCallbackInput``: what the backend's service works with."""

    job_id: int
    listing_identity_id: int
    status: str
    provider: str
    execution_arn: str
    started_at: datetime | None
    results: list[BackendResult]
    assets_zipped: int
    zip_bundles: list[str]
    zip_size_bytes: int
    unzipped_size_bytes: int
    error: str
    error_code: str
    error_metadata: dict[str, str]
    failure_reason: str
    traceparent: str
    raw_payload: str = field(repr=False, default="")

    @property
    def job_status(self) -> str:
        """The job status ``HandleProcessingCallback`` sets (note: FINALIZATION_FAILED is
        not in its list and leaves the job RUNNING, a backend bug the portal does not copy)."""
        if self.status == "SUCCEEDED":
            return "SUCCEEDED"
        if self.status == "PARTIAL_SUCCESS":
            return "PARTIAL_SUCCESS"
        if self.status in ("FAILED", "PROCESSING_FAILED", "VALIDATION_FAILED", "TIMED_OUT"):
            return "FAILED"
        return "RUNNING"


def _results(outputs: list[dict[str, Any]] | None) -> list[BackendResult]:
    results = []
    for output in outputs or ():
        code, message = output.get("errorCode") or "", output.get("errorMessage") or ""
        metadata = {
            k.strip(): v.strip()
            for k, v in (output.get("outputs") or {}).items()
            if k.strip() and v.strip()
        }
        results.append(
            BackendResult(
                raw_key=output.get("rawKey") or "",
                status="FAILED" if code or message else "PROCESSED",
                processed_key=output.get("processedKey") or "",
                thumbnail_key=output.get("thumbnailKey") or "",
                metadata=metadata,
                error=message,
                error_code=code,
            )
        )
    return results


def decode_callback(raw: bytes) -> BackendCallbackInput:
    """Bind and convert ``raw`` as the backend does, or raise ``BackendRejects``."""
    request = _decode_struct(_parse(raw), CALLBACK_REQUEST, "") or {}
    try:
        job_id = parse_uint_from_json(request.get("jobId"))
    except BackendRejects as exc:
        raise BackendRejects(f"invalid job identifier: {exc}") from None
    try:
        listing_identity_id = parse_uint_from_json(request.get("listingIdentityId"))
    except BackendRejects as exc:
        raise BackendRejects(f"invalid listing identifier: {exc}") from None
    started_raw = (request.get("startedAt") or "").strip(_GO_SPACE)
    started_at = parse_rfc3339_relaxed(started_raw) if started_raw else None
    error = request.get("error") or {}
    details = {
        k: v.strip(_GO_SPACE) for k, v in (error.get("details") or {}).items() if v.strip(_GO_SPACE)
    }
    return BackendCallbackInput(
        job_id=job_id,
        listing_identity_id=listing_identity_id,
        status=(request.get("status") or "").strip().upper() or "UNKNOWN",
        provider=(request.get("provider") or "").strip().upper(),
        execution_arn=(request.get("executionArn") or "").strip(),
        started_at=started_at,
        results=_results(request.get("outputs")),
        assets_zipped=request.get("assetsZipped") or 0,
        zip_bundles=[b.strip() for b in request.get("zipBundles") or () if b.strip()],
        zip_size_bytes=request.get("zipSizeBytes") or 0,
        unzipped_size_bytes=request.get("unzippedSizeBytes") or 0,
        error=(error.get("message") or "").strip(),
        error_code=(error.get("code") or "").strip().upper(),
        error_metadata=details,
        failure_reason=request.get("failureReason") or "",
        traceparent=(request.get("traceparent") or "").strip(),
        raw_payload=raw.decode("utf-8"),
    )
