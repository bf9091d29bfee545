"""Consolidation and callback bodies (docs/contract.md §4 steps 3 and 5, §5 steps 2 and 3)."""

from __future__ import annotations

import json

import pytest

from media_jobs.pipeline.consolidate import (
    InvalidJobReference,
    branch_error_count,
    consolidate,
    derivative_size,
    describe_failure,
    failure_body,
    finalization_failure_body,
    finalization_success_body,
    job_reference,
    job_reference_value,
)
from media_jobs.pipeline.errors import ErrorCode, PipelineError

L = "4711"
RAW_A = f"{L}/raw/photo/horizontal/horizontal-01-IMG_1.jpg"
RAW_B = f"{L}/raw/photo/vertical/vertical-01-IMG_2.jpg"
RAW_V = f"{L}/raw/video/horizontal/horizontal-01-clip.mov"


def derivative(raw: str, size: str) -> str:
    segment, name = raw.split("/raw/")[1].rsplit("/", 1)
    stem = name.rsplit(".", 1)[0]
    return f"{L}/processed/{segment}/{size}/{stem}.jpg"


def asset(key: str, kind: str, **extra: object) -> dict:
    return {"key": key, "type": kind, "sourceKey": key, "size": 10, "etag": "e", **extra}


def thumbnails_result(raw: str, kind: str, sizes=("thumbnail", "small", "medium", "large")):
    return {
        "body": {
            "status": "SUCCESS",
            "generatedAssets": [
                {"key": derivative(raw, s), "type": kind, "sourceKey": raw} for s in sizes
            ],
            "errors": [],
        }
    }


def event(assets: list[dict], parallel: list, **extra: object) -> dict:
    return {
        "jobId": 12,
        "listingIdentityId": 4711,
        "executionArn": "arn:aws:states:us-east-1:1:execution:sm:run-1",
        "startedAt": "2025-01-02T03:04:05.678Z",
        "assets": assets,
        "parallelResults": parallel,
        "traceparent": "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01",
        **extra,
    }


def test_successful_run_body_is_exact() -> None:
    result = consolidate(
        event(
            [asset(RAW_A, "PHOTO_HORIZONTAL")],
            [
                thumbnails_result(RAW_A, "PHOTO_HORIZONTAL"),
                {"status": "no_videos_to_thumbnail"},
                {"status": "no_videos_to_process"},
            ],
        )
    )
    assert result == {
        "body": {
            "jobId": 12,
            "listingIdentityId": 4711,
            "executionArn": "arn:aws:states:us-east-1:1:execution:sm:run-1",
            "startedAt": "2025-01-02T03:04:05.678Z",
            "provider": "STEP_FUNCTIONS",
            "status": "SUCCEEDED",
            "failureReason": "",
            "error": None,
            "outputs": [
                {
                    "rawKey": RAW_A,
                    "processedKey": f"{L}/processed/photo/horizontal/large/horizontal-01-IMG_1.jpg",
                    "thumbnailKey": f"{L}/processed/photo/horizontal/thumbnail/horizontal-01-IMG_1.jpg",
                    "outputs": {
                        "thumbnail_photo_horizontal": f"{L}/processed/photo/horizontal/thumbnail/horizontal-01-IMG_1.jpg",
                        "small_photo_horizontal": f"{L}/processed/photo/horizontal/small/horizontal-01-IMG_1.jpg",
                        "medium_photo_horizontal": f"{L}/processed/photo/horizontal/medium/horizontal-01-IMG_1.jpg",
                        "large_photo_horizontal": f"{L}/processed/photo/horizontal/large/horizontal-01-IMG_1.jpg",
                    },
                    "errorCode": "",
                    "errorMessage": "",
                }
            ],
            "traceparent": "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01",
        }
    }


def test_entries_without_body_are_skipped() -> None:
    media_convert_like = {"Job": {"Id": "123", "Status": "COMPLETE"}}
    map_items_without_body = [{"mediaConvertJobId": "1", "status": "COMPLETE"}, None, "x"]
    body = consolidate(
        event(
            [asset(RAW_A, "PHOTO_HORIZONTAL")],
            [
                None,
                media_convert_like,
                map_items_without_body,
                {"status": "no_videos_to_process"},
            ],
        )
    )["body"]
    assert body["status"] == "SUCCEEDED"
    assert body["outputs"][0]["outputs"] == {}
    assert body["outputs"][0]["processedKey"] == ""


@pytest.mark.parametrize(
    ("job_id", "listing"),
    [(12, 4711), ("12", "4711"), (12, "4711"), ("0012", 4711)],
)
def test_ids_are_kept_as_given(job_id: object, listing: object) -> None:
    body = consolidate(event([], [], jobId=job_id, listingIdentityId=listing))["body"]
    assert body["jobId"] == job_id and type(body["jobId"]) is type(job_id)
    assert body["listingIdentityId"] == listing
    assert type(body["listingIdentityId"]) is type(listing)


@pytest.mark.parametrize("name", ["jobId", "listingIdentityId"])
@pytest.mark.parametrize("bad", [None, "", "abc", "12a", " 12", "-3", True, 1.5, [1]])
def test_invalid_ids_are_refused(name: str, bad: object) -> None:
    broken = event([], [])
    broken[name] = bad
    with pytest.raises(InvalidJobReference, match=name) as caught:
        consolidate(broken)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, PipelineError)


def test_missing_ids_are_refused() -> None:
    for name in ("jobId", "listingIdentityId"):
        broken = event([], [])
        del broken[name]
        with pytest.raises(InvalidJobReference, match=name):
            consolidate(broken)


@pytest.mark.parametrize(
    ("sizes", "best"),
    [
        (("thumbnail", "small", "medium", "large"), "large"),
        (("thumbnail", "small", "medium"), "medium"),
        (("thumbnail", "small"), "small"),
        (("thumbnail",), "thumbnail"),
        (("thumbnail", "original", "small"), "original"),
    ],
)
def test_processed_key_is_the_best_size_present(sizes: tuple[str, ...], best: str) -> None:
    body = consolidate(
        event([asset(RAW_A, "PHOTO_HORIZONTAL")], [thumbnails_result(RAW_A, "X", sizes)])
    )["body"]
    assert body["outputs"][0]["processedKey"] == derivative(RAW_A, best)
    assert body["outputs"][0]["thumbnailKey"] == derivative(RAW_A, "thumbnail")
    # Named after the raw asset's type, whatever type the branch gave its entries.
    assert sorted(body["outputs"][0]["outputs"]) == sorted(f"{s}_photo_horizontal" for s in sizes)


def test_validation_error_codes_and_branch_override() -> None:
    missing = asset(RAW_B, "PHOTO_VERTICAL", error="no such key", errorCode="OBJECT_NOT_FOUND")
    vague = asset(f"{L}/raw/photo/vertical/vertical-02-x.jpg", "PHOTO_VERTICAL", error="bad")
    overridden = asset(RAW_A, "PHOTO_HORIZONTAL", error="suspicious", errorCode="EMPTY_OBJECT")
    branch = {
        "body": {
            "status": "SUCCESS",
            "generatedAssets": [],
            "errors": [
                {
                    "sourceKey": RAW_A,
                    "errorCode": "CORRUPT_IMAGE",
                    "errorMessage": "image file is truncated",
                }
            ],
        }
    }
    body = consolidate(event([missing, vague, overridden], [branch]))["body"]
    assert [(o["rawKey"], o["errorCode"], o["errorMessage"]) for o in body["outputs"]] == [
        (RAW_B, "OBJECT_NOT_FOUND", "no such key"),
        (vague["key"], "VALIDATION_ERROR", "bad"),
        (RAW_A, "CORRUPT_IMAGE", "image file is truncated"),
    ]
    assert body["status"] == "PARTIAL_SUCCESS"
    assert body["failureReason"] == (
        "3 of 3 assets failed: CORRUPT_IMAGE x1, OBJECT_NOT_FOUND x1, VALIDATION_ERROR x1"
    )
    assert body["error"] == {
        "code": "DERIVATIVE_ERRORS_DETECTED",
        "message": "derivative errors detected",
        # strings only: the backend decodes details as map[string]string
        "details": {
            "failedAssets": "3",
            "totalAssets": "3",
            "errorCodes": "CORRUPT_IMAGE=1,OBJECT_NOT_FOUND=1,VALIDATION_ERROR=1",
            "failedRawKeys": json.dumps([RAW_B, vague["key"], RAW_A]),
        },
    }


def test_validation_errors_alone_leave_the_run_succeeded() -> None:
    """Like the Go consolidate: only a branch error makes PARTIAL_SUCCESS; the failed
    assets still carry their codes."""
    missing = asset(RAW_B, "PHOTO_VERTICAL", error="no such key", errorCode="OBJECT_NOT_FOUND")
    body = consolidate(
        event(
            [missing, asset(RAW_A, "PHOTO_HORIZONTAL")],
            [thumbnails_result(RAW_A, "PHOTO_HORIZONTAL")],
        )
    )["body"]
    assert body["status"] == "SUCCEEDED"
    assert body["failureReason"] == "" and body["error"] is None
    assert [o["errorCode"] for o in body["outputs"]] == ["OBJECT_NOT_FOUND", ""]


def test_a_branch_error_for_an_unknown_asset_still_makes_partial_success() -> None:
    stray = {
        "body": {
            "status": "SUCCESS",
            "generatedAssets": [],
            "errors": [{"sourceKey": "elsewhere", "errorCode": "X", "errorMessage": "m"}],
        }
    }
    body = consolidate(event([asset(RAW_A, "PHOTO_HORIZONTAL")], [stray]))["body"]
    assert body["status"] == "PARTIAL_SUCCESS"
    assert body["error"]["details"]["failedAssets"] == "0"
    assert body["outputs"][0]["errorCode"] == ""


def test_mixed_listing_keeps_input_order_and_video_outputs() -> None:
    poster = f"{L}/processed/video/horizontal/thumbnail/horizontal-01-clip.mp4"
    mp4 = f"{L}/processed/video/horizontal/original/horizontal-01-clip.mp4"
    posters = {
        "body": {
            "status": "SUCCESS",
            "generatedAssets": [{"key": poster, "type": "VIDEO_THUMBNAIL", "sourceKey": RAW_V}],
            "errors": [],
        }
    }
    # The transcode branch is a Map: a list with one result per video.
    transcodes = [
        {
            "body": {
                "status": "SUCCESS",
                "generatedAssets": [{"key": mp4, "type": "VIDEO_TRANSCODE", "sourceKey": RAW_V}],
                "errors": [],
                "mediaConvertJobId": "1700000000000-abc",
            }
        }
    ]
    bad_photo_error = [{"sourceKey": RAW_B, "errorCode": "TOO_MANY_PIXELS", "errorMessage": "m"}]
    assets = [
        asset(RAW_V, "VIDEO_HORIZONTAL"),
        asset(RAW_B, "PHOTO_VERTICAL"),
        asset(RAW_A, "PHOTO_HORIZONTAL"),
    ]
    thumbs = thumbnails_result(RAW_A, "PHOTO_HORIZONTAL")
    thumbs["body"]["errors"] = bad_photo_error
    body = consolidate(event(assets, [thumbs, posters, transcodes]))["body"]
    assert [o["rawKey"] for o in body["outputs"]] == [RAW_V, RAW_B, RAW_A]
    video, photo_b, photo_a = body["outputs"]
    assert video["outputs"] == {
        "thumbnail_video_horizontal": poster,
        "original_video_horizontal": mp4,
    }
    assert video["thumbnailKey"] == poster and video["processedKey"] == mp4
    assert photo_b["errorCode"] == "TOO_MANY_PIXELS" and photo_b["processedKey"] == ""
    assert photo_a["errorCode"] == "" and photo_a["processedKey"] == derivative(RAW_A, "large")
    assert body["status"] == "PARTIAL_SUCCESS"
    # The body is plain JSON: it survives a round trip unchanged.
    assert json.loads(json.dumps(body)) == body


def test_a_video_that_could_not_be_transcoded_is_its_own_error() -> None:
    poster = f"{L}/processed/video/horizontal/thumbnail/horizontal-01-clip.mp4"
    posters = {
        "body": {
            "status": "SUCCESS",
            "generatedAssets": [{"key": poster, "type": "VIDEO_THUMBNAIL", "sourceKey": RAW_V}],
            "errors": [],
        }
    }
    failed = [
        {
            "body": {
                "status": "SUCCESS",
                "generatedAssets": [],
                "errors": [
                    {
                        "sourceKey": RAW_V,
                        "errorCode": "VIDEO_TRANSCODE_FAILED",
                        "errorMessage": "the video could not be transcoded: moov atom not found",
                    }
                ],
            }
        }
    ]
    assets = [asset(RAW_V, "VIDEO_HORIZONTAL"), asset(RAW_A, "PHOTO_HORIZONTAL")]
    body = consolidate(
        event(assets, [thumbnails_result(RAW_A, "PHOTO_HORIZONTAL"), posters, failed])
    )["body"]
    video, photo = body["outputs"]
    assert video["errorCode"] == "VIDEO_TRANSCODE_FAILED"
    assert "original_video_horizontal" not in video["outputs"]
    assert photo["errorCode"] == "" and photo["processedKey"] == derivative(RAW_A, "large")
    assert body["status"] == "PARTIAL_SUCCESS"
    assert body["error"]["details"]["errorCodes"] == "VIDEO_TRANSCODE_FAILED=1"


def test_failure_body() -> None:
    state = event([], [])
    body = failure_body(
        state, status="VALIDATION_FAILED", error_code="OBJECT_NOT_FOUND", message="gone"
    )
    assert body == {
        "jobId": 12,
        "listingIdentityId": 4711,
        "executionArn": "arn:aws:states:us-east-1:1:execution:sm:run-1",
        "startedAt": "2025-01-02T03:04:05.678Z",
        "provider": "STEP_FUNCTIONS",
        "status": "VALIDATION_FAILED",
        "failureReason": "raw asset validation failed",
        "error": {"code": "OBJECT_NOT_FOUND", "message": "gone"},
        "outputs": [],
        "traceparent": "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01",
    }
    processing = failure_body(state, status="PROCESSING_FAILED", error_code="E", message="m")
    assert processing["failureReason"] == "derivative processing failed"
    with pytest.raises(ValueError):
        failure_body(state, status="SUCCEEDED", error_code="E", message="m")  # type: ignore[arg-type]


def test_finalization_bodies() -> None:
    state = {"jobId": "9", "listingIdentityId": 4711, "traceparent": "00-aa-bb-01"}
    zip_body = {
        "zipKey": "4711/processed/zip/listing-media.zip",
        "assetsZipped": 3,
        "zipBundles": ["4711/processed/zip/listing-media.zip"],
        "zipSizeBytes": 1000,
        "unzippedSizeBytes": 1200,
    }
    expected = {
        "jobId": "9",
        "status": "SUCCEEDED",
        "provider": "STEP_FUNCTIONS_FINALIZATION",
        "listingIdentityId": "4711",
        "traceparent": "00-aa-bb-01",
        "assetsZipped": 3,
        "zipBundles": ["4711/processed/zip/listing-media.zip"],
        "zipSizeBytes": 1000,
        "unzippedSizeBytes": 1200,
    }
    assert finalization_success_body(state, zip_body) == expected
    assert finalization_success_body(state, {"body": zip_body}) == expected
    assert finalization_failure_body(state, error="ZIP_FAILED", cause="disk full") == {
        "jobId": "9",
        "listingIdentityId": 4711,
        "status": "FINALIZATION_FAILED",
        "traceparent": "00-aa-bb-01",
        "error": {"Error": "ZIP_FAILED", "Cause": "disk full"},
    }


def test_describe_failure() -> None:
    assert describe_failure(PipelineError(ErrorCode.ZIP_FAILED, "boom")) == ("ZIP_FAILED", "boom")
    assert describe_failure(KeyError("x")) == ("KeyError", "'x'")


def test_invalid_video_gets_no_original() -> None:
    """Only a video that passed validation was transcoded; a rejected one has no MP4."""
    bad = asset(RAW_V, "VIDEO_HORIZONTAL", error="not a video", errorCode="UNSUPPORTED_FORMAT")
    [output] = consolidate(event([bad], [{"status": "no_videos_to_process"}]))["body"]["outputs"]
    assert output["outputs"] == {} and output["processedKey"] == ""
    assert output["errorCode"] == "UNSUPPORTED_FORMAT"


def test_a_missing_string_is_empty_in_all_four_bodies() -> None:
    """executionArn, startedAt and traceparent absent from the run's state: "" in every
    body that has them (the backend decodes strings, and a missing key is not one)."""
    state = {"jobId": 12, "listingIdentityId": 4711}
    success = consolidate({**state, "assets": [], "parallelResults": []})["body"]
    failure = failure_body(state, status="PROCESSING_FAILED", error_code="E", message="m")
    for body in (success, failure):
        assert (body["executionArn"], body["startedAt"], body["traceparent"]) == ("", "", "")
    zip_body = {"assetsZipped": 0, "zipBundles": [], "zipSizeBytes": 0, "unzippedSizeBytes": 0}
    assert finalization_success_body(state, zip_body)["traceparent"] == ""
    assert finalization_failure_body(state, error="E", cause="c")["traceparent"] == ""
    # null from a state machine is missing too
    nulls = {**state, "executionArn": None, "startedAt": None}
    assert consolidate(nulls)["body"]["executionArn"] == ""
    assert consolidate(nulls)["body"]["startedAt"] == ""
    failed = failure_body(nulls, status="VALIDATION_FAILED", error_code="E", message="m")
    assert (failed["executionArn"], failed["startedAt"]) == ("", "")


def test_the_source_key_names_the_output_over_the_key() -> None:
    """A validated asset keeps the raw key it came from in sourceKey (its key may be a
    normalised copy); the output and the branches' results are matched by sourceKey."""
    copy = f"{L}/tmp/normalised-IMG_1.jpg"
    validated = {"key": copy, "sourceKey": RAW_A, "type": "PHOTO_HORIZONTAL"}
    body = consolidate(event([validated], [thumbnails_result(RAW_A, "PHOTO_HORIZONTAL")]))
    [out] = body["body"]["outputs"]
    assert out["rawKey"] == RAW_A
    assert out["processedKey"] == derivative(RAW_A, "large")
    # without a sourceKey the key is the raw key
    plain = consolidate(event([{"key": RAW_B, "type": "PHOTO_VERTICAL"}], []))
    assert plain["body"]["outputs"][0]["rawKey"] == RAW_B


def test_an_output_without_a_thumbnail_has_an_empty_thumbnail_key() -> None:
    result = thumbnails_result(RAW_A, "PHOTO_HORIZONTAL", sizes=("small", "medium"))
    [out] = consolidate(event([asset(RAW_A, "PHOTO_HORIZONTAL")], [result]))["body"]["outputs"]
    assert out["thumbnailKey"] == ""
    assert out["processedKey"] == derivative(RAW_A, "medium")
    assert out["outputs"] == {
        "small_photo_horizontal": derivative(RAW_A, "small"),
        "medium_photo_horizontal": derivative(RAW_A, "medium"),
    }
    [nothing] = consolidate(event([asset(RAW_B, "PHOTO_VERTICAL")], []))["body"]["outputs"]
    assert (nothing["thumbnailKey"], nothing["processedKey"], nothing["outputs"]) == ("", "", {})


@pytest.mark.parametrize(
    ("given", "value"),
    [
        (0, 0),
        ("0", 0),
        (4294967295, 4294967295),
        ("4294967295", 4294967295),
        ("0" * 30 + "7", 7),  # leading zeros do not count against the length
        ("000", 0),
        # past int()'s 4300-digit limit: the zeros are dropped before the conversion
        ("0" * 5000 + "1", 1),
        ("0" * 5000, 0),
    ],
)
def test_ids_up_to_the_int_unsigned_maximum_are_accepted(given: object, value: int) -> None:
    assert job_reference({"jobId": given}, "jobId") == given
    assert job_reference_value({"jobId": given}, "jobId") == value


@pytest.mark.parametrize("bad", [4294967296, "4294967296", "14294967295", -1])
def test_ids_past_the_int_unsigned_range_are_refused(bad: object) -> None:
    with pytest.raises(InvalidJobReference) as caught:
        job_reference({"jobId": bad}, "jobId")
    assert caught.value.message == (
        f"jobId must be an integer from 0 to 4294967295, as a number or a string of digits; "
        f"got {bad!r}"
    )
    assert caught.value.code == "VALIDATION_ERROR"


def test_a_long_id_is_shown_cut_short() -> None:
    long_id = "x" * 58  # repr: 60 characters, shown whole
    with pytest.raises(InvalidJobReference) as whole:
        job_reference({"jobId": long_id}, "jobId")
    assert whole.value.message.endswith(f"got {long_id!r}")
    longer = "y" * 59  # repr: 61 characters
    with pytest.raises(InvalidJobReference) as cut:
        job_reference({"jobId": longer}, "jobId")
    assert cut.value.message.endswith("got '" + "y" * 39 + "... (61 characters)")


@pytest.mark.parametrize(
    ("key", "size"),
    [("1/processed/photo/vertical/large/a.jpg", "large"), ("large/a.jpg", "large"), ("a.jpg", "")],
)
def test_derivative_size_is_the_folder_above_the_file(key: str, size: str) -> None:
    assert derivative_size(key) == size


def test_partial_success_body_lists_failures_and_caps_the_keys() -> None:
    raws = [f"{L}/raw/photo/vertical/v-{n:02d}.jpg" for n in range(55)]
    assets = [asset(raw, "PHOTO_VERTICAL") for raw in raws]
    errors = [
        {"sourceKey": raw, "errorCode": "CORRUPT_IMAGE" if n % 2 else "", "errorMessage": ""}
        for n, raw in enumerate(raws[:53])
    ]
    branch = {"body": {"status": "SUCCESS", "generatedAssets": [], "errors": errors}}
    body = consolidate(event(assets, [branch]))["body"]
    assert body["status"] == "PARTIAL_SUCCESS"
    assert body["failureReason"] == (
        "53 of 55 assets failed: CORRUPT_IMAGE x26, VALIDATION_ERROR x27"
    )
    details = body["error"]["details"]
    assert body["error"]["code"] == "DERIVATIVE_ERRORS_DETECTED"
    assert body["error"]["message"] == "derivative errors detected"
    assert details["failedAssets"] == "53" and details["totalAssets"] == "55"
    assert details["errorCodes"] == "CORRUPT_IMAGE=26,VALIDATION_ERROR=27"
    assert json.loads(details["failedRawKeys"]) == raws[:50]
    first, second = body["outputs"][:2]
    assert (first["errorCode"], first["errorMessage"]) == ("VALIDATION_ERROR", "VALIDATION_ERROR")
    assert (second["errorCode"], second["errorMessage"]) == ("CORRUPT_IMAGE", "CORRUPT_IMAGE")
    assert branch_error_count([branch, [branch], None]) == 106


def test_a_validation_error_without_a_code_or_message() -> None:
    coded = asset(RAW_A, "PHOTO_HORIZONTAL", errorCode="OBJECT_NOT_FOUND")
    worded = asset(RAW_B, "PHOTO_VERTICAL", error="unreadable")
    out_a, out_b = consolidate(event([coded, worded], []))["body"]["outputs"]
    assert (out_a["errorCode"], out_a["errorMessage"]) == ("OBJECT_NOT_FOUND", "OBJECT_NOT_FOUND")
    assert (out_b["errorCode"], out_b["errorMessage"]) == ("VALIDATION_ERROR", "unreadable")


def test_a_failure_body_refuses_another_status_by_name() -> None:
    with pytest.raises(ValueError) as caught:
        failure_body({}, status="FAILED", error_code="E", message="m")  # type: ignore[arg-type]
    assert str(caught.value) == (
        "status must be one of ['PROCESSING_FAILED', 'VALIDATION_FAILED'], got 'FAILED'"
    )


def test_a_finalization_zip_body_named_body_that_is_not_an_object_is_the_body() -> None:
    figures = {"assetsZipped": 1, "zipBundles": ("k",), "zipSizeBytes": 2, "unzippedSizeBytes": 3}
    body = finalization_success_body({"jobId": 1, "listingIdentityId": 7}, {**figures, "body": "x"})
    assert body["zipBundles"] == ["k"] and body["listingIdentityId"] == "7"


def test_derivatives_of_an_asset_that_was_not_validated_are_ignored() -> None:
    stray = {
        "body": {
            "status": "SUCCESS",
            "generatedAssets": [
                {"key": derivative(RAW_B, "large"), "sourceKey": RAW_B},
                {"key": derivative(RAW_B, "small")},  # no sourceKey at all
            ],
            "errors": [{"errorCode": "CORRUPT_IMAGE"}],
        }
    }
    body = consolidate(event([asset(RAW_A, "PHOTO_HORIZONTAL")], [stray]))["body"]
    [out] = body["outputs"]
    assert (out["rawKey"], out["processedKey"], out["outputs"]) == (RAW_A, "", {})
    assert body["status"] == "PARTIAL_SUCCESS"  # the branch reported an error


def test_branch_entries_without_a_source_key_go_to_no_asset_whatever_its_key() -> None:
    """A generated asset or an error that names no sourceKey belongs to no asset, not even
    to one whose raw key is odd: here "XXXX", refused by validation as INVALID_KEY."""
    odd = asset("XXXX", "PHOTO", errorCode="INVALID_KEY", error="invalid raw key 'XXXX'")
    keyless = {
        "body": {
            "status": "PARTIAL",
            "generatedAssets": [{"key": "4711/processed/photo/horizontal/large/x.jpg"}],
            "errors": [{"errorCode": "CORRUPT_IMAGE", "errorMessage": "cannot decode"}],
        }
    }
    body = consolidate(event([odd], [keyless]))["body"]
    assert body["outputs"] == [
        {
            "rawKey": "XXXX",
            "processedKey": "",
            "thumbnailKey": "",
            "outputs": {},
            "errorCode": "INVALID_KEY",
            "errorMessage": "invalid raw key 'XXXX'",
        }
    ]


def test_failed_raw_keys_keep_their_non_ascii_characters() -> None:
    """failedRawKeys is JSON text inside a string: a raw key with accents is written as it
    is (UTF-8), not as \\u escapes."""
    raw = f"{L}/raw/photo/vertical/vertical-01-fachada-água.jpg"
    branch = {
        "body": {
            "status": "SUCCESS",
            "generatedAssets": [],
            "errors": [{"sourceKey": raw, "errorCode": "CORRUPT_IMAGE", "errorMessage": "m"}],
        }
    }
    body = consolidate(event([asset(raw, "PHOTO_VERTICAL")], [branch]))["body"]
    assert body["error"]["details"]["failedRawKeys"] == (
        '["4711/raw/photo/vertical/vertical-01-fachada-água.jpg"]'
    )


def test_an_asset_without_a_key_or_a_type_still_gets_an_output() -> None:
    """Missing strings are "" (the backend decodes strings): an asset with no key has the
    raw key "", one with no type names its outputs "<size>_unknown"."""
    keyless, untyped = {"type": "PHOTO_VERTICAL"}, {"key": RAW_A, "sourceKey": RAW_A}
    result = thumbnails_result(RAW_A, "PHOTO_HORIZONTAL", sizes=("large",))
    first, second = consolidate(event([keyless, untyped], [result]))["body"]["outputs"]
    assert (first["rawKey"], first["outputs"], first["processedKey"]) == ("", {}, "")
    assert second["outputs"] == {"large_unknown": derivative(RAW_A, "large")}


def test_a_derivative_without_a_key_is_listed_like_the_go_mapper_does() -> None:
    """Go's MapGeneratedAsset names a derivative by its resolution folder, "original" when
    there is none: one without a key is listed as original_<type> with the key "" and
    never becomes the processedKey."""
    keyless = {"body": {"generatedAssets": [{"sourceKey": RAW_A}], "errors": []}}
    [out] = consolidate(event([asset(RAW_A, "PHOTO_HORIZONTAL")], [keyless]))["body"]["outputs"]
    assert (out["outputs"], out["processedKey"]) == ({"original_photo_horizontal": ""}, "")
