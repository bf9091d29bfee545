"""Contract tests: both state machine definitions, run by the ASL interpreter with the real
Lambda handlers against the S3 test server, reporting to a local signed-callback receiver.

Expected callback bodies are written out from the keys the test uploaded, not computed by
the code under test; a second assertion checks that the Python body builders (used by the
Celery engine) give exactly what the state machine's Parameters built.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from media_jobs import sample_media
from media_jobs.pipeline.callback import SIGNATURE_HEADER, verify_signature
from media_jobs.pipeline.consolidate import (
    failure_body,
    finalization_failure_body,
    finalization_success_body,
)
from tests.fixtures.s3server import MotoServer
from tests.support.asl import (
    DefinitionError,
    StateMachine,
    StatesError,
    check_definition,
    evaluate_template,
)
from tests.support.callback_receiver import CallbackReceiver, PlannedResponse
from tests.support.go_callback import decode_callback
from tests.support.state_machines import (
    FINALIZATION,
    MEDIACONVERT,
    PROCESSING,
    RESOURCES,
    ROOT,
    set_lambda_environment,
)

SECRET = "contract-test-secret"
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
LISTING = 4711
SIZES = ("thumbnail", "small", "medium", "large")

PHOTO_H = f"{LISTING}/raw/photo/horizontal/horizontal-01-IMG_0001.jpg"
PHOTO_V = f"{LISTING}/raw/photo/vertical/2024-05-06/vertical-01-IMG 0002.jpg"
VIDEO_H = f"{LISTING}/raw/video/horizontal/horizontal-01-clip.mp4"
CORRUPT = f"{LISTING}/raw/photo/horizontal/horizontal-02-broken.jpg"
MISSING = f"{LISTING}/raw/photo/horizontal/horizontal-03-never-uploaded.jpg"


@pytest.fixture
def receiver(toq_backend: CallbackReceiver) -> CallbackReceiver:
    """Every callback these runs send must bind in the TOQ backend's request type (the
    receiver answers 400 like the backend otherwise, and the callback state retries)."""
    return toq_backend


@pytest.fixture
def lambda_env(
    monkeypatch: pytest.MonkeyPatch,
    moto_server: MotoServer,
    s3_bucket: str,
    receiver: CallbackReceiver,
) -> str:
    """The environment a deployed function would have, pointing at the test servers."""
    set_lambda_environment(
        monkeypatch,
        endpoint_url=moto_server.endpoint_url,
        bucket=s3_bucket,
        callback_url=receiver.url,
        callback_secret=SECRET,
        CALLBACK_TIMEOUT_SECONDS="5",
    )
    return s3_bucket


def upload(moto_server: MotoServer, bucket: str, key: str, data: bytes) -> None:
    moto_server.client("s3").put_object(Bucket=bucket, Key=key, Body=data)


def object_size(moto_server: MotoServer, bucket: str, key: str) -> int:
    return moto_server.client("s3").head_object(Bucket=bucket, Key=key)["ContentLength"]


def processed(raw_key: str, size: str, ext: str = "jpg") -> str:
    """The derivative key, spelled out for the keys used here (no shared code)."""
    listing, rest = raw_key.split("/raw/")
    parts = [p for p in rest.split("/") if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", p)]
    stem = parts[-1].rsplit(".", 1)[0]
    return f"{listing}/processed/{'/'.join(parts[:-1])}/{size}/{stem}.{ext}"


def photo_output(raw_key: str, kind: str) -> dict[str, Any]:
    return {
        "rawKey": raw_key,
        "processedKey": processed(raw_key, "large"),
        "thumbnailKey": processed(raw_key, "thumbnail"),
        "outputs": {f"{size}_{kind}": processed(raw_key, size) for size in SIZES},
        "errorCode": "",
        "errorMessage": "",
    }


def the_callback(receiver: CallbackReceiver) -> dict[str, Any]:
    """The one callback received, after checking its signature like the receiver does and
    that the TOQ backend binds it (same job and listing ids)."""
    assert receiver.rejected == []
    assert len(receiver.received) == 1, [r.body for r in receiver.received]
    received = receiver.received[0]
    assert received.headers["Content-Type"] == "application/json"
    assert verify_signature(received.body, SECRET, received.headers[SIGNATURE_HEADER])
    sent = received.json()
    bound = decode_callback(received.body)
    assert (bound.job_id, bound.listing_identity_id) == (
        int(sent["jobId"]),
        int(sent["listingIdentityId"]),
    )
    return sent


def processing_machine() -> StateMachine:
    return StateMachine(PROCESSING, RESOURCES, name="listing-media-processing-sm-test")


def finalization_machine() -> StateMachine:
    return StateMachine(FINALIZATION, RESOURCES, name="listing-media-finalization-sm-test")


# ------------------------------------------------------------------ processing


def test_photos_and_video_succeed(
    lambda_env: str, moto_server: MotoServer, receiver: CallbackReceiver
) -> None:
    bucket = lambda_env
    upload(moto_server, bucket, PHOTO_H, sample_media.jpeg_bytes(640, 480, seed=1))
    upload(moto_server, bucket, PHOTO_V, sample_media.jpeg_bytes(480, 640, orientation=6))
    upload(moto_server, bucket, VIDEO_H, sample_media.mp4_bytes(1.0, 320, 240))
    execution = processing_machine().start_execution(
        {
            "jobId": 101,
            "listingIdentityId": LISTING,
            "assets": [
                {"key": PHOTO_H, "type": "PHOTO_HORIZONTAL"},
                {"key": VIDEO_H, "type": "VIDEO_HORIZONTAL"},
                {"key": PHOTO_V, "type": "PHOTO_VERTICAL"},
            ],
            "traceparent": TRACE,
        }
    )
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    # The poster is named like the transcode (the backend's URL rule), a JPEG all the same.
    poster = processed(VIDEO_H, "thumbnail", "mp4")
    transcode = processed(VIDEO_H, "original", "mp4")
    assert the_callback(receiver) == {
        "jobId": 101,
        "listingIdentityId": LISTING,
        "executionArn": execution.arn,
        "startedAt": execution.start_time,
        "provider": "STEP_FUNCTIONS",
        "status": "SUCCEEDED",
        "failureReason": "",
        "error": None,
        "outputs": [
            photo_output(PHOTO_H, "photo_horizontal"),
            {
                "rawKey": VIDEO_H,
                "processedKey": transcode,
                "thumbnailKey": poster,
                "outputs": {
                    "thumbnail_video_horizontal": poster,
                    "original_video_horizontal": transcode,
                },
                "errorCode": "",
                "errorMessage": "",
            },
            photo_output(PHOTO_V, "photo_vertical"),
        ],
        "traceparent": TRACE,
    }
    entered = execution.states_entered()
    assert {"GenerateThumbnails", "GenerateVideoThumbnails", "TranscodeVideo"} <= set(entered)
    assert "NoVideosToThumbnail" not in entered and "NoVideosToProcess" not in entered
    assert entered[-1] == "FinalizeAndCallback"
    # Every derivative, the poster and the transcode exist in the bucket.
    for raw, kind in ((PHOTO_H, "photo"), (PHOTO_V, "photo")):
        for size in SIZES:
            assert object_size(moto_server, bucket, processed(raw, size)) > 0, (kind, size)
    s3 = moto_server.client("s3")
    assert s3.head_object(Bucket=bucket, Key=poster)["ContentType"] == "image/jpeg"
    assert s3.head_object(Bucket=bucket, Key=transcode)["ContentType"] == "video/mp4"
    # MediaConvert was asked for that destination, per video (not only the first).
    [job] = [e["input"] for e in execution.events("TaskScheduled", "TranscodeVideo")]
    assert job["Settings"]["Inputs"][0]["FileInput"] == f"s3://{bucket}/{VIDEO_H}"
    destination = job["Settings"]["OutputGroups"][0]["OutputGroupSettings"]["FileGroupSettings"]
    assert destination["Destination"] == f"s3://{bucket}/{transcode.rsplit('/', 1)[0]}/"
    assert job["UserMetadata"]["jobId"] == "101"
    assert execution.output["callback"]["statusCode"] == 200


def test_two_videos_are_each_transcoded(
    lambda_env: str, moto_server: MotoServer, receiver: CallbackReceiver
) -> None:
    bucket = lambda_env
    second = f"{LISTING}/raw/video/vertical/vertical-01-tour.mp4"
    upload(moto_server, bucket, VIDEO_H, sample_media.mp4_bytes(0.5, 320, 240))
    upload(moto_server, bucket, second, sample_media.mp4_bytes(0.5, 240, 320))
    execution = processing_machine().start_execution(
        {
            "jobId": "102",
            "listingIdentityId": str(LISTING),
            "assets": [VIDEO_H, second],  # plain keys: type from the key
            "traceparent": TRACE,
        }
    )
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert len(execution.events("TaskScheduled", "TranscodeVideo")) == 2
    for raw in (VIDEO_H, second):
        assert object_size(moto_server, bucket, processed(raw, "original", "mp4")) > 0
    body = the_callback(receiver)
    assert (body["jobId"], body["listingIdentityId"], body["status"]) == (
        "102",
        str(LISTING),
        "SUCCEEDED",
    )
    assert [o["thumbnailKey"] for o in body["outputs"]] == [
        processed(VIDEO_H, "thumbnail", "mp4"),
        processed(second, "thumbnail", "mp4"),
    ]
    # plain keys have the coarse type VIDEO: the outputs are named after it
    assert sorted(body["outputs"][1]["outputs"]) == ["original_video", "thumbnail_video"]


def test_corrupt_and_missing_photos_give_partial_success(
    lambda_env: str, moto_server: MotoServer, receiver: CallbackReceiver
) -> None:
    bucket = lambda_env
    upload(moto_server, bucket, PHOTO_H, sample_media.jpeg_bytes(640, 480, seed=2))
    upload(moto_server, bucket, CORRUPT, sample_media.truncated_jpeg_bytes())
    execution = processing_machine().start_execution(
        {
            "jobId": 103,
            "listingIdentityId": LISTING,
            "assets": [
                {"key": CORRUPT, "type": "PHOTO_HORIZONTAL"},
                {"key": PHOTO_H, "type": "PHOTO_HORIZONTAL"},
                {"key": MISSING, "type": "PHOTO_HORIZONTAL"},
            ],
            "traceparent": TRACE,
        }
    )
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    body = the_callback(receiver)
    corrupt, good, missing = body.pop("outputs")
    assert good == photo_output(PHOTO_H, "photo_horizontal")
    assert (corrupt["rawKey"], corrupt["errorCode"]) == (CORRUPT, "CORRUPT_IMAGE")
    assert corrupt["errorMessage"] and corrupt["processedKey"] == ""
    assert (missing["rawKey"], missing["errorCode"]) == (MISSING, "OBJECT_NOT_FOUND")
    assert missing["processedKey"] == "" and missing["outputs"] == {}
    assert body == {
        "jobId": 103,
        "listingIdentityId": LISTING,
        "executionArn": execution.arn,
        "startedAt": execution.start_time,
        "provider": "STEP_FUNCTIONS",
        "status": "PARTIAL_SUCCESS",
        "failureReason": "2 of 3 assets failed: CORRUPT_IMAGE x1, OBJECT_NOT_FOUND x1",
        "error": {
            "code": "DERIVATIVE_ERRORS_DETECTED",
            "message": "derivative errors detected",
            "details": {
                "failedAssets": "2",
                "totalAssets": "3",
                "errorCodes": "CORRUPT_IMAGE=1,OBJECT_NOT_FOUND=1",
                "failedRawKeys": json.dumps([CORRUPT, MISSING]),
            },
        },
        "traceparent": TRACE,
    }
    entered = execution.states_entered()
    assert "NoVideosToThumbnail" in entered and "NoVideosToProcess" in entered
    assert "TranscodeVideo" not in entered


def test_validation_raising_reports_validation_failed(
    lambda_env: str,
    moto_server: MotoServer,
    receiver: CallbackReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEDIA_BUCKET", "toq-no-such-bucket")
    execution = processing_machine().start_execution(
        {
            "jobId": 104,
            "listingIdentityId": LISTING,
            "assets": [{"key": PHOTO_H, "type": "PHOTO_HORIZONTAL"}],
            "traceparent": TRACE,
        }
    )
    assert execution.status == "FAILED"
    assert execution.error == "VALIDATION_FAILED"
    retries = execution.events("RetryScheduled", "ValidateRawAssets")
    assert [(r["attempt"], r["wait_seconds"]) for r in retries] == [(1, 2), (2, 4.0)]
    body = the_callback(receiver)
    cause = json.loads(body["error"]["message"])
    assert cause["errorType"] == "ClientError"
    assert "HeadBucket" in cause["errorMessage"] and "404" in cause["errorMessage"]
    assert body == {
        "jobId": 104,
        "listingIdentityId": LISTING,
        "executionArn": execution.arn,
        "startedAt": execution.start_time,
        "provider": "STEP_FUNCTIONS",
        "status": "VALIDATION_FAILED",
        "failureReason": "raw asset validation failed",
        "error": {"code": "ClientError", "message": body["error"]["message"]},
        "outputs": [],
        "traceparent": TRACE,
    }
    # The Celery engine's builder gives the same body for the same failure.
    state = {
        "jobId": 104,
        "listingIdentityId": LISTING,
        "traceparent": TRACE,
        "executionArn": execution.arn,
        "startedAt": execution.start_time,
    }
    assert body == failure_body(
        state,
        status="VALIDATION_FAILED",
        error_code="ClientError",
        message=body["error"]["message"],
    )
    assert execution.states_entered()[-2:] == ["ValidationFailed", "ValidationFailedEnd"]


def test_a_corrupt_video_is_an_error_of_that_video_only(
    lambda_env: str, moto_server: MotoServer, receiver: CallbackReceiver
) -> None:
    """A video that validates (MP4 magic) but cannot be framed or transcoded: the Catch
    inside the per-video iteration makes it that video's error; the photo is reported
    PROCESSED and the run is PARTIAL_SUCCESS, not PROCESSING_FAILED."""
    bucket = lambda_env
    upload(moto_server, bucket, VIDEO_H, sample_media.mp4_bytes(1.0, 320, 240)[:4096])
    upload(moto_server, bucket, PHOTO_H, sample_media.jpeg_bytes(320, 240, seed=6))
    execution = processing_machine().start_execution(
        {
            "jobId": 105,
            "listingIdentityId": LISTING,
            "assets": [
                {"key": VIDEO_H, "type": "VIDEO_HORIZONTAL"},
                {"key": PHOTO_H, "type": "PHOTO_HORIZONTAL"},
            ],
        }
    )
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert "VideoTranscodeFailed" in execution.states_entered()
    body = the_callback(receiver)
    video, photo = body.pop("outputs")
    assert photo == photo_output(PHOTO_H, "photo_horizontal")
    # The poster branch and the transcode both reported it; the last branch's code wins,
    # as in the Go consolidate.
    assert (video["rawKey"], video["errorCode"]) == (VIDEO_H, "VIDEO_TRANSCODE_FAILED")
    assert video["errorMessage"].startswith("the video could not be transcoded: ")
    assert video["processedKey"] == "" and video["outputs"] == {}
    assert body == {
        "jobId": 105,
        "listingIdentityId": LISTING,
        "executionArn": execution.arn,
        "startedAt": execution.start_time,
        "provider": "STEP_FUNCTIONS",
        "status": "PARTIAL_SUCCESS",
        "failureReason": "1 of 2 assets failed: VIDEO_TRANSCODE_FAILED x1",
        "error": {
            "code": "DERIVATIVE_ERRORS_DETECTED",
            "message": "derivative errors detected",
            "details": {
                "failedAssets": "1",
                "totalAssets": "2",
                "errorCodes": "VIDEO_TRANSCODE_FAILED=1",
                "failedRawKeys": json.dumps([VIDEO_H]),
            },
        },
        # started without traceparent: the defaults state makes it "" instead of failing
        "traceparent": "",
    }


@pytest.mark.parametrize(
    ("error", "fails_the_run", "retries"),
    [
        ("MediaConvert.ForbiddenException", True, 0),
        ("States.Permissions", True, 0),
        ("MediaConvert.InternalServerErrorException", True, 3),
        ("MediaConvert.TooManyRequestsException", True, 3),
        ("States.TaskFailed", False, 0),  # the job ended in ERROR: this video's problem
        ("MediaConvert.BadRequestException", False, 0),
        ("States.Timeout", False, 0),  # ran past TimeoutSeconds
    ],
)
def test_mediaconvert_errors_split_between_the_video_and_the_run(
    lambda_env: str,
    moto_server: MotoServer,
    receiver: CallbackReceiver,
    error: str,
    fails_the_run: bool,
    retries: int,
) -> None:
    """Infrastructure (MediaConvert refusing the role, unavailable after the retries)
    leaves the iteration with its own name and the run reports PROCESSING_FAILED; anything
    else the job reports is that video's VIDEO_TRANSCODE_FAILED and the photo is kept."""
    bucket = lambda_env
    upload(moto_server, bucket, VIDEO_H, sample_media.mp4_bytes(0.5, 320, 240))
    upload(moto_server, bucket, PHOTO_H, sample_media.jpeg_bytes(320, 240, seed=7))

    def mediaconvert(event: Any, context: Any) -> Any:
        raise StatesError(error, f"{error}: as MediaConvert reports it")

    machine = StateMachine(PROCESSING, {**RESOURCES, MEDIACONVERT: mediaconvert}, name="mc")
    execution = machine.start_execution(
        {"jobId": 107, "listingIdentityId": LISTING, "assets": [PHOTO_H, VIDEO_H]}
    )
    assert len(execution.events("RetryScheduled", "TranscodeVideo")) == retries
    body = the_callback(receiver)
    if fails_the_run:
        assert execution.status == "FAILED" and execution.error == "PROCESSING_FAILED"
        assert "TranscodeUnavailable" in execution.states_entered()
        assert (body["status"], body["outputs"]) == ("PROCESSING_FAILED", [])
        assert body["error"] == {"code": error, "message": f"{error}: as MediaConvert reports it"}
        return
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert body["status"] == "PARTIAL_SUCCESS"
    photo, video = body["outputs"]
    assert photo["errorCode"] == "" and photo["processedKey"]
    assert video["errorCode"] == "VIDEO_TRANSCODE_FAILED"
    assert video["errorMessage"] == (
        f"the video could not be transcoded: {error}: as MediaConvert reports it"
    )
    # the poster was made: it stays recorded, the video is failed all the same
    assert video["thumbnailKey"] == processed(VIDEO_H, "thumbnail", "mp4")


def test_callback_is_retried_until_accepted(
    lambda_env: str, moto_server: MotoServer, receiver: CallbackReceiver
) -> None:
    upload(moto_server, lambda_env, PHOTO_H, sample_media.jpeg_bytes(320, 240))
    receiver.plan(PlannedResponse(status=503), PlannedResponse(status=500))
    execution = processing_machine().start_execution(
        {"jobId": 106, "listingIdentityId": LISTING, "assets": [PHOTO_H], "traceparent": TRACE}
    )
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    retries = execution.events("RetryScheduled", "FinalizeAndCallback")
    assert [(r["error"], r["wait_seconds"]) for r in retries] == [
        ("CallbackFailed", 5),
        ("CallbackFailed", 10.0),
    ]
    bodies = [r.body for r in receiver.received]
    assert len(bodies) == 3 and len(set(bodies)) == 1
    assert json.loads(bodies[0])["status"] == "SUCCEEDED"


# ------------------------------------------------------------------ finalization


def test_finalization_succeeds(
    lambda_env: str, moto_server: MotoServer, receiver: CallbackReceiver
) -> None:
    bucket = lambda_env
    files = {
        PHOTO_H: sample_media.jpeg_bytes(320, 240, seed=3),
        processed(PHOTO_V, "large"): sample_media.jpeg_bytes(240, 320, seed=4),
    }
    for key, data in files.items():
        upload(moto_server, bucket, key, data)
    execution = finalization_machine().start_execution(
        {
            "jobId": 201,
            "listingIdentityId": LISTING,
            "assets": [{"key": key, "type": "PHOTO_HORIZONTAL"} for key in files],
            "traceparent": TRACE,
        }
    )
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    zip_key = f"{LISTING}/processed/zip/listing-media.zip"
    body = the_callback(receiver)
    assert body == {
        "jobId": 201,
        "status": "SUCCEEDED",
        "provider": "STEP_FUNCTIONS_FINALIZATION",
        "listingIdentityId": "4711",
        "traceparent": TRACE,
        "assetsZipped": 2,
        "zipBundles": [zip_key],
        "zipSizeBytes": object_size(moto_server, bucket, zip_key),
        "unzippedSizeBytes": sum(len(data) for data in files.values()),
    }
    zip_result = execution.output["zipResult"]
    assert body == finalization_success_body(execution.input, zip_result["body"])


def test_finalization_zip_failure_reports_finalization_failed(
    lambda_env: str, moto_server: MotoServer, receiver: CallbackReceiver
) -> None:
    bucket = lambda_env
    upload(moto_server, bucket, PHOTO_H, sample_media.jpeg_bytes(320, 240, seed=5))
    execution = finalization_machine().start_execution(
        {
            "jobId": "202",
            "listingIdentityId": "4711",
            "assets": [{"key": PHOTO_H, "type": "PHOTO_HORIZONTAL"}, {"key": MISSING}],
            "traceparent": TRACE,
        }
    )
    assert execution.status == "FAILED" and execution.error == "FINALIZATION_FAILED"
    retries = execution.events("RetryScheduled", "CreateZipBundle")
    assert [r["wait_seconds"] for r in retries] == [10, 20.0]
    body = the_callback(receiver)
    cause = body["error"]["Cause"]
    assert MISSING in json.loads(cause)["errorMessage"]
    assert body == {
        "jobId": "202",
        "listingIdentityId": "4711",
        "status": "FINALIZATION_FAILED",
        "traceparent": TRACE,
        "error": {"Error": "OBJECT_NOT_FOUND", "Cause": cause},
    }
    assert body == finalization_failure_body(execution.input, error="OBJECT_NOT_FOUND", cause=cause)
    listing = moto_server.client("s3").list_objects_v2(
        Bucket=bucket, Prefix=f"{LISTING}/processed/"
    )
    assert listing.get("KeyCount", 0) == 0  # no partial ZIP left behind


# ------------------------------------------------------------------ definitions


PLACEHOLDER = re.compile(r"\$\{([A-Za-z]+)\}")


def test_definitions_are_well_formed_and_documented() -> None:
    readme = (ROOT / "aws/README.md").read_text()
    for definition in (PROCESSING, FINALIZATION):
        check_definition(definition)
        placeholders = set(PLACEHOLDER.findall(json.dumps(definition)))
        assert placeholders, "the definitions are templates"
        for name in placeholders:
            assert f"${{{name}}}" in readme, f"{name} is not documented in aws/README.md"


def _find_state(definition: Any, name: str) -> dict[str, Any]:
    if isinstance(definition, dict):
        if name in definition.get("States", {}):
            return definition["States"][name]
        for value in definition.values():
            found = _find_state(value, name)
            if found:
                return found
    if isinstance(definition, list):
        for value in definition:
            found = _find_state(value, name)
            if found:
                return found
    return {}


@pytest.mark.parametrize(
    ("definition", "state", "attempts", "interval", "backoff"),
    [
        (PROCESSING, "ValidateRawAssets", 2, 2, 2.0),
        (PROCESSING, "GenerateThumbnails", 2, 5, 2.0),
        (PROCESSING, "GenerateVideoThumbnails", 2, 5, 2.0),
        (PROCESSING, "FinalizeAndCallback", 3, 5, 2.0),
        (PROCESSING, "ValidationFailed", 3, 5, 2.0),
        (PROCESSING, "ReportFailure", 3, 5, 2.0),
        (FINALIZATION, "CreateZipBundle", 2, 10, 2.0),
        (FINALIZATION, "FinalizeAndCallback", 3, 5, 2.0),
        (FINALIZATION, "ReportFailure", 3, 5, 2.0),
    ],
)
def test_retry_policies_follow_the_spec(
    definition: dict, state: str, attempts: int, interval: int, backoff: float
) -> None:
    [retrier] = _find_state(definition, state)["Retry"]
    assert retrier == {
        "ErrorEquals": ["States.ALL"],
        "IntervalSeconds": interval,
        "MaxAttempts": attempts,
        "BackoffRate": backoff,
    }


def test_mediaconvert_job_settings() -> None:
    task = _find_state(PROCESSING, "TranscodeVideo")
    assert task["Resource"] == MEDIACONVERT
    settings = task["Parameters"]["Settings"]
    output = settings["OutputGroups"][0]["Outputs"][0]
    video = output["VideoDescription"]
    assert output["ContainerSettings"]["Container"] == "MP4"
    assert (video["Width"], video["Height"]) == (1920, 1080)
    assert video["CodecSettings"]["Codec"] == "H_264"
    assert video["CodecSettings"]["H264Settings"]["RateControlMode"] == "QVBR"
    assert task["Parameters"]["Role"] == "${MediaConvertRoleArn}"


# ------------------------------------------------------------------ the interpreter itself


def test_interpreter_intrinsics_and_paths() -> None:
    data = {"n": 4711, "s": "x", "a": {"b": [1, {"c": True}]}}
    context = {"Execution": {"Id": "arn:x"}}
    assert evaluate_template(
        {
            "f.$": "States.Format('{}-{}', $.n, $.s)",
            "m.$": "States.JsonMerge($.a, States.StringToJson('\\{\"z\": 1\\}'), false)",
            "j.$": "States.JsonToString($.a)",
            "c.$": "$.a.b[1].c",
            "e.$": "$$.Execution.Id",
            "k": {"nested.$": "$.s"},
        },
        data,
        context,
    ) == {
        "f": "4711-x",
        "m": {"b": [1, {"c": True}], "z": 1},
        "j": '{"b":[1,{"c":true}]}',
        "c": True,
        "e": "arn:x",
        "k": {"nested": "x"},
    }
    with pytest.raises(StatesError) as caught:
        evaluate_template({"x.$": "$.missing"}, data, context)
    assert caught.value.error == "States.Runtime"


def test_interpreter_runtime_errors_are_not_caught() -> None:
    definition = {
        "StartAt": "Broken",
        "States": {
            "Broken": {
                "Type": "Task",
                "Resource": "noop",
                "Parameters": {"x.$": "$.missing"},
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Succeed"},
        },
    }
    execution = StateMachine(definition, {"noop": lambda event, context: event}).start_execution({})
    assert (execution.status, execution.error) == ("FAILED", "States.Runtime")
    assert "Caught" not in execution.states_entered()


def test_interpreter_refuses_unknown_features() -> None:
    with pytest.raises(DefinitionError):
        check_definition({"StartAt": "W", "States": {"W": {"Type": "Wait", "End": True}}})
    with pytest.raises(DefinitionError):
        check_definition({"StartAt": "P", "States": {"P": {"Type": "Pass", "Next": "Nowhere"}}})
