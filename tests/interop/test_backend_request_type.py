"""The strict description of the TOQ backend's callback request type is itself strict:
it refuses what the Go backend refuses (400 INVALID_CALLBACK) and accepts what it accepts,
case by case, from the Go DTO and converter (tests/support/go_callback.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tests.support.go_callback import BackendRejects, decode_callback

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def body(**members: object) -> dict[str, object]:
    base: dict[str, object] = {
        "jobId": 12,
        "listingIdentityId": 4711,
        "executionArn": "arn:aws:states:us-east-1:1:execution:sm:run",
        "startedAt": "2025-01-02T03:04:05.678Z",
        "provider": "STEP_FUNCTIONS",
        "status": "PARTIAL_SUCCESS",
        "failureReason": "1 of 2 assets failed",
        "error": {
            "code": "DERIVATIVE_ERRORS_DETECTED",
            "message": "derivative errors detected",
            "details": {"failedAssets": "1", "totalAssets": "2"},
        },
        "outputs": [
            {
                "rawKey": "4711/raw/photo/vertical/v-01-a.jpg",
                "processedKey": "4711/processed/photo/vertical/large/v-01-a.jpg",
                "thumbnailKey": "4711/processed/photo/vertical/thumbnail/v-01-a.jpg",
                "outputs": {
                    "large_photo_vertical": "4711/processed/photo/vertical/large/v-01-a.jpg"
                },
                "errorCode": "",
                "errorMessage": "",
            },
            {
                "rawKey": "4711/raw/photo/vertical/v-02-b.jpg",
                "processedKey": "",
                "thumbnailKey": "",
                "outputs": {},
                "errorCode": "CORRUPT_IMAGE",
                "errorMessage": "truncated",
            },
        ],
        "traceparent": TRACE,
    }
    base.update(members)
    return base


def decode(value: object) -> object:
    return decode_callback(json.dumps(value).encode())


def rejected(value: object) -> str:
    with pytest.raises(BackendRejects) as caught:
        decode(value)
    return str(caught.value)


def test_a_partial_success_body_decodes_to_what_the_service_receives() -> None:
    got = decode(body())
    assert (got.job_id, got.listing_identity_id, got.status) == (12, 4711, "PARTIAL_SUCCESS")
    assert got.job_status == "PARTIAL_SUCCESS"
    assert got.started_at == datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert got.error_code == "DERIVATIVE_ERRORS_DETECTED"
    assert got.error_metadata == {"failedAssets": "1", "totalAssets": "2"}
    assert [(r.status, r.error_code) for r in got.results] == [
        ("PROCESSED", ""),
        ("FAILED", "CORRUPT_IMAGE"),
    ]
    assert got.results[0].metadata == {
        "large_photo_vertical": "4711/processed/photo/vertical/large/v-01-a.jpg"
    }


@pytest.mark.parametrize(
    "details",
    [
        {"failedAssets": 1},  # the defect: a number in details
        {"errorCodes": {"CORRUPT_IMAGE": 1}},
        {"failedRawKeys": ["a", "b"]},
        {"ok": True},
    ],
)
def test_details_must_be_a_map_of_strings(details: dict) -> None:
    message = rejected(body(error={"code": "X", "message": "m", "details": details}))
    assert "MediaProcessingCallbackError.error.details of type string" in message


def test_details_may_be_absent_null_or_hold_null() -> None:
    assert decode(body(error={"code": "X", "message": "m"})).error_metadata == {}
    assert decode(body(error={"code": "X", "details": None})).error_metadata == {}
    # a null value decodes as "" and the converter drops empty values
    assert decode(body(error={"code": "X", "details": {"a": None, "b": " 2 "}})).error_metadata == {
        "b": "2"
    }
    assert decode(body(error=None)).error_code == ""


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("assetsZipped", 1.5),
        ("assetsZipped", "3"),
        ("assetsZipped", 1e3),
        ("zipSizeBytes", 2**63),
        ("unzippedSizeBytes", True),
        ("zipBundles", [1]),
        ("zipBundles", "a.zip"),
        ("status", 1),
        ("failureReason", {"a": 1}),
        ("traceparent", ["x"]),
        ("outputs", {"rawKey": "x"}),
        ("outputs", ["x"]),
        ("error", "boom"),
    ],
)
def test_wrong_json_types_are_refused(member: str, value: object) -> None:
    assert "cannot unmarshal" in rejected(body(**{member: value}))


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("errorCode", 3),
        ("processedKey", 1),
        ("outputs", {"large_photo_vertical": 3}),
        ("outputs", ["a"]),
    ],
)
def test_output_entries_are_typed_too(member: str, value: object) -> None:
    entry = dict(body()["outputs"][0])  # type: ignore[index]
    entry[member] = value
    assert "MediaProcessingJobPayload" in rejected(body(outputs=[entry]))


def test_big_integers_within_int64_and_null_members_decode() -> None:
    got = decode(
        body(
            assetsZipped=3,
            zipSizeBytes=2**40,
            unzippedSizeBytes=2**63 - 1,
            zipBundles=["a.zip", None],
            status=None,
            outputs=None,
        )
    )
    assert (got.assets_zipped, got.zip_size_bytes, got.unzipped_size_bytes) == (
        3,
        2**40,
        2**63 - 1,
    )
    assert got.zip_bundles == ["a.zip"] and got.results == [] and got.status == "UNKNOWN"


@pytest.mark.parametrize(
    ("job_id", "parsed"),
    [(12, 12), ("12", 12), (" 12 ", 12), ("12 x", 12), ("012", 0), (2**64 - 1, 2**64 - 1)],
)
def test_ids_parse_like_parse_uint_from_json(job_id: object, parsed: int) -> None:
    assert decode(body(jobId=job_id)).job_id == parsed


@pytest.mark.parametrize(
    "job_id", [None, "", "  ", "abc", "x12", True, [1], {"id": 1}, 1.5, -1, "1e3", "12.", 2**64]
)
def test_ids_the_converter_refuses(job_id: object) -> None:
    assert rejected(body(jobId=job_id)).startswith("invalid job identifier")
    assert rejected(body(listingIdentityId=job_id)).startswith("invalid listing identifier")


def test_missing_ids_are_refused() -> None:
    value = body()
    del value["listingIdentityId"]
    assert "value is empty" in rejected(value)


@pytest.mark.parametrize(
    ("started_at", "ok"),
    [
        ("", True),
        ("2025-01-02T03:04:05Z", True),
        ("2025-01-02T03:04:05.123456789+02:00", True),
        ("2025-01-02T03:04:05 02:00", True),  # '+' lost in a query string: tolerated
        ("2025-01-02 03:04:05", False),
        ("2025-01-02T03:04:05", False),
        ("2025-02-30T03:04:05Z", False),
        ("yesterday", False),
    ],
)
def test_started_at_must_be_rfc3339(started_at: str, ok: bool) -> None:
    if ok:
        decode(body(startedAt=started_at))
    else:
        assert "RFC3339" in rejected(body(startedAt=started_at))


def test_keys_match_case_insensitively_and_unknown_keys_are_ignored() -> None:
    value = body()
    value["JOBID"] = value.pop("jobId")
    value["somethingNew"] = {"nested": [1, 2.5]}
    assert decode(value).job_id == 12


def test_a_repeated_key_is_decoded_again() -> None:
    raw = b'{"jobId": 1, "listingIdentityId": 2, "status": "RUNNING", "status": "SUCCEEDED"}'
    assert decode_callback(raw).status == "SUCCEEDED"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"jobId": 1, "listingIdentityId": 2} {}',
        b'{"jobId": 1, "listingIdentityId": 2} x',
        b"[1, 2]",
        b'"a string"',
        b'{"jobId": NaN, "listingIdentityId": 2}',
        b"{",
        b"",
    ],
)
def test_malformed_documents_are_refused(raw: bytes) -> None:
    with pytest.raises(BackendRejects):
        decode_callback(raw)


def test_trailing_whitespace_is_fine() -> None:
    assert decode_callback(b'{"jobId": 1, "listingIdentityId": 2}\n \t').job_id == 1


def test_the_finalization_failure_error_shape_decodes_but_loses_its_members() -> None:
    """docs/contract.md §5 keeps Step Functions' {"Error", "Cause"}; the backend's error
    type has code/message only, so it decodes with both empty, and its status
    FINALIZATION_FAILED leaves the backend's job RUNNING (the portal marks it FAILED)."""
    got = decode(
        {
            "jobId": "9",
            "listingIdentityId": "4711",
            "status": "FINALIZATION_FAILED",
            "traceparent": TRACE,
            "error": {"Error": "ZIP_FAILED", "Cause": "disk full"},
        }
    )
    assert (got.error_code, got.error) == ("", "")
    assert got.job_status == "RUNNING"
