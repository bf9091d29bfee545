"""The Lambda handlers called directly (as the Lambda runtime would), the SQS entry point
against the moto server's Step Functions, and the JSON logs they write."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest

from media_jobs import sample_media
from media_jobs.pipeline.callback import SIGNATURE_HEADER, CallbackFailed, verify_signature
from media_jobs.pipeline.errors import PipelineError
from media_jobs.pipeline.handlers import (
    _runtime,
    callback,
    consolidate,
    thumbnails,
    validate,
    video_thumbnails,
    video_transcode,
)
from media_jobs.pipeline.handlers import zip as zip_step
from media_jobs.pipeline.handlers._runtime import StepFailed, error_class
from media_jobs.pipeline.logs import (
    JsonFormatter,
    configure_json_logging,
    log_context,
    step_timer,
)
from tests.fixtures.s3server import REGION, MotoServer
from tests.support.asl import LambdaContext
from tests.support.callback_receiver import CallbackReceiver, PlannedResponse

SECRET = "handler-test-secret"
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
L = 4711
PHOTO = f"{L}/raw/photo/horizontal/horizontal-01-IMG_0001.jpg"
VIDEO = f"{L}/raw/video/vertical/vertical-01-tour.mp4"
MISSING = f"{L}/raw/photo/vertical/vertical-09-gone.jpg"


@pytest.fixture
def lambda_env(
    monkeypatch: pytest.MonkeyPatch,
    moto_server: MotoServer,
    s3_bucket: str,
    receiver: CallbackReceiver,
) -> str:
    for name, value in {
        "MEDIA_BUCKET": s3_bucket,
        "MEDIA_STORAGE_BACKEND": "s3",
        "AWS_S3_ENDPOINT_URL": moto_server.endpoint_url,
        "AWS_REGION": REGION,
        "CALLBACK_URL": receiver.url,
        "CALLBACK_SECRET": SECRET,
    }.items():
        monkeypatch.setenv(name, value)
    return s3_bucket


def ctx(name: str) -> LambdaContext:
    return LambdaContext(function_name=name)


def put(moto_server: MotoServer, bucket: str, key: str, data: bytes) -> None:
    moto_server.client("s3").put_object(Bucket=bucket, Key=key, Body=data)


def exists(moto_server: MotoServer, bucket: str, key: str) -> bool:
    listing = moto_server.client("s3").list_objects_v2(Bucket=bucket, Prefix=key)
    return any(obj["Key"] == key for obj in listing.get("Contents", []))


def roundtrip(value: Any) -> Any:
    """Lambda returns JSON: a handler's result must survive the trip unchanged."""
    return json.loads(json.dumps(value))


@pytest.fixture
def pipeline_log() -> Iterator[io.StringIO]:
    """The JSON lines the pipeline's loggers write (formatted as they are emitted, so the
    job context of ``log_context`` is in them), at INFO as a Lambda logs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("toq.pipeline")
    saved_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(saved_level)


def test_validate_gives_each_video_its_mediaconvert_paths(
    lambda_env: str, moto_server: MotoServer
) -> None:
    bucket = lambda_env
    put(moto_server, bucket, PHOTO, sample_media.jpeg_bytes(320, 240))
    put(moto_server, bucket, VIDEO, sample_media.mp4_bytes(0.5, 240, 320))
    event = {"jobId": 1, "listingIdentityId": L, "assets": [PHOTO, VIDEO, MISSING]}
    result = validate.handler(event, ctx("validate"))
    assert roundtrip(result) == result
    assert [a["key"] for a in result["assets"]] == [PHOTO, VIDEO, MISSING]
    assert result["assets"][2]["errorCode"] == "OBJECT_NOT_FOUND"
    [video] = result["videoAssets"]
    assert video["videoInput"] == f"s3://{bucket}/{VIDEO}"
    assert video["videoOutputPath"] == f"s3://{bucket}/{L}/processed/video/vertical/original/"
    assert (result["videoInput"], result["videoOutputPath"]) == (
        video["videoInput"],
        video["videoOutputPath"],
    )
    assert result["hasImages"] and result["hasVideos"]


def test_branch_handlers_write_outputs(lambda_env: str, moto_server: MotoServer) -> None:
    bucket = lambda_env
    put(moto_server, bucket, PHOTO, sample_media.jpeg_bytes(320, 240))
    put(moto_server, bucket, VIDEO, sample_media.mp4_bytes(0.5, 240, 320))
    validation = validate.handler(
        {"jobId": 2, "listingIdentityId": L, "assets": [PHOTO, VIDEO], "traceparent": TRACE},
        ctx("validate"),
    )

    photos = thumbnails.handler(validation, ctx("thumbnails"))
    assert photos["body"]["errors"] == []
    assert sorted(a["key"].split("/")[-2] for a in photos["body"]["generatedAssets"]) == [
        "large",
        "medium",
        "small",
        "thumbnail",
    ]
    posters = video_thumbnails.handler(validation, ctx("video_thumbnails"))
    poster = f"{L}/processed/video/vertical/thumbnail/vertical-01-tour.mp4"
    assert posters["body"]["generatedAssets"] == [
        {"key": poster, "type": "VIDEO_THUMBNAIL", "sourceKey": VIDEO}
    ]
    for generated in photos["body"]["generatedAssets"] + posters["body"]["generatedAssets"]:
        assert exists(moto_server, bucket, generated["key"])

    transcoded = video_transcode.handler(validation, ctx("video_transcode"))
    mp4 = f"{L}/processed/video/vertical/original/vertical-01-tour.mp4"
    assert transcoded["body"]["generatedAssets"] == [
        {"key": mp4, "type": "VIDEO_TRANSCODE", "sourceKey": VIDEO}
    ]
    assert exists(moto_server, bucket, mp4)
    # the key the state machine's Map reports for MediaConvert's output
    assert validation["videoAssets"][0]["transcodeKey"] == mp4


def test_video_transcode_answers_like_mediaconvert(
    lambda_env: str, moto_server: MotoServer, pipeline_log: io.StringIO
) -> None:
    bucket = lambda_env
    put(moto_server, bucket, VIDEO, sample_media.mp4_bytes(0.5, 320, 240))
    job = {
        "Role": "arn:aws:iam::123456789012:role/mc",
        "UserMetadata": {"jobId": "3", "listingIdentityId": str(L), "traceparent": TRACE},
        "Settings": {
            "Inputs": [{"FileInput": f"s3://{bucket}/{VIDEO}"}],
            "OutputGroups": [
                {
                    "OutputGroupSettings": {
                        "Type": "FILE_GROUP_SETTINGS",
                        "FileGroupSettings": {
                            "Destination": f"s3://{bucket}/{L}/processed/video/vertical/original/"
                        },
                    }
                }
            ],
        },
    }
    result = video_transcode.handler(job, ctx("mediaconvert"))
    assert result["Job"]["Status"] == "COMPLETE"
    # shaped like a MediaConvert job id (13 digits, a suffix), marked as ffmpeg's
    assert re.fullmatch(r"[0-9]{13}-ffmpeg", result["Job"]["Id"])
    assert result["Job"]["UserMetadata"] == job["UserMetadata"]
    # .sync answers with the job as created: its role and settings, as sent
    assert result["Job"]["Role"] == "arn:aws:iam::123456789012:role/mc"
    assert result["Job"]["Settings"]["Inputs"] == [{"FileInput": f"s3://{bucket}/{VIDEO}"}]
    assert result["Job"]["Settings"]["OutputGroups"] == job["Settings"]["OutputGroups"]
    assert "body" not in result
    mp4 = f"{L}/processed/video/vertical/original/vertical-01-tour.mp4"
    s3 = moto_server.client("s3")
    raw_etag = s3.head_object(Bucket=bucket, Key=VIDEO)["ETag"].strip('"')
    assert s3.head_object(Bucket=bucket, Key=mp4)["Metadata"] == {"source-etag": raw_etag}

    # The state's Retry runs the same job again: the output made from this very source
    # is kept, not transcoded a second time.
    skipped = f"transcode already present for this source, skipped: {mp4}"
    assert skipped not in [line["message"] for line in lines(pipeline_log)]
    video_transcode.handler(job, ctx("mediaconvert"))
    assert skipped in [line["message"] for line in lines(pipeline_log)]

    job["Settings"]["Inputs"][0]["FileInput"] = f"s3://another-bucket/{VIDEO}"
    with pytest.raises(StepFailed) as caught:
        video_transcode.handler(job, ctx("mediaconvert"))
    assert type(caught.value).__name__ == "VIDEO_TRANSCODE_FAILED"
    # the failure names the input the job was given, for the run's error report
    assert str(caught.value) == (
        f"input 's3://another-bucket/{VIDEO}' is not an object of bucket '{bucket}'"
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "the job has no input"),
        ({"Inputs": []}, "the job has no input"),
        ({"Inputs": [{}]}, "input None is not an object of bucket '{bucket}'"),
        (
            {"Inputs": [{"FileInput": "s3://{bucket}/"}]},
            "input 's3://{bucket}/' is not an object of bucket '{bucket}'",
        ),
        (
            {"Inputs": [{"FileInput": "https://{bucket}/" + VIDEO}]},
            "input 'https://{bucket}/" + VIDEO + "' is not an object of bucket '{bucket}'",
        ),
        (  # an object of the bucket, but not a raw key (docs/contract.md §2)
            {"Inputs": [{"FileInput": "s3://{bucket}/Xmas-tour.mp4"}]},
            "invalid raw key 'Xmas-tour.mp4': no 'raw/' folder",
        ),
    ],
)
def test_a_mediaconvert_job_without_an_object_of_the_bucket_to_transcode_fails(
    lambda_env: str, settings: dict[str, Any], message: str
) -> None:
    """Like MediaConvert, the job fails at once (VIDEO_TRANSCODE_FAILED, naming the input)
    when it names no input, one that is not an object of the pipeline's bucket, or an
    object that is not a raw video."""
    bucket = lambda_env
    job = json.loads(json.dumps(settings).replace("{bucket}", bucket))
    with pytest.raises(StepFailed) as caught:
        video_transcode.handler({"Role": "r", "Settings": job}, ctx("mediaconvert"))
    assert type(caught.value).__name__ == "VIDEO_TRANSCODE_FAILED"
    assert str(caught.value) == message.replace("{bucket}", bucket)


def test_a_mediaconvert_job_without_settings_has_no_input(lambda_env: str) -> None:
    config = _runtime.pipeline_config()
    storage = _runtime.storage_for(config)
    with pytest.raises(PipelineError) as caught:
        video_transcode.run_media_convert_job({"Role": "r"}, storage=storage, config=config)
    assert (caught.value.code, caught.value.message) == (
        "VIDEO_TRANSCODE_FAILED",
        "the job has no input",
    )


def test_zip_handler(lambda_env: str, moto_server: MotoServer) -> None:
    bucket = lambda_env
    put(moto_server, bucket, PHOTO, sample_media.jpeg_bytes(320, 240))
    event = {"jobId": 4, "listingIdentityId": L, "assets": [{"key": PHOTO, "type": "PHOTO"}]}
    body = zip_step.handler(event, ctx("zip"))["body"]
    assert body["zipKey"] == f"{L}/processed/zip/listing-media.zip"
    assert body["zipBundles"] == [body["zipKey"]] and body["assetsZipped"] == 1
    assert exists(moto_server, bucket, body["zipKey"])


PHOTO_GONE = f"{L}/raw/photo/vertical/vertical-02-IMG_0002.jpg"
VIDEO_GONE = f"{L}/raw/video/horizontal/horizontal-02-walk.mp4"


def validated_then_one_gone(moto_server: MotoServer, bucket: str, gone: str) -> dict[str, Any]:
    """A run's validation result (PHOTO and VIDEO valid, ``gone`` too), after which ``gone``
    was deleted: the branch then reports one output set and one error."""
    put(moto_server, bucket, PHOTO, sample_media.jpeg_bytes(320, 240))
    put(moto_server, bucket, VIDEO, sample_media.mp4_bytes(0.5, 240, 320))
    if gone == PHOTO_GONE:
        put(moto_server, bucket, gone, sample_media.jpeg_bytes(240, 320))
    else:
        put(moto_server, bucket, gone, sample_media.mp4_bytes(0.5, 320, 240))
    validation = validate.handler(
        {"jobId": 31, "listingIdentityId": L, "assets": [PHOTO, VIDEO, gone], "traceparent": TRACE},
        ctx("validate"),
    )
    moto_server.client("s3").delete_object(Bucket=bucket, Key=gone)
    return validation


def invoke_step(
    step: str, moto_server: MotoServer, bucket: str, context: LambdaContext
) -> tuple[tuple[Any, Any], dict[str, Any]]:
    """Call ``step``'s handler as the state machine would (a real event over real media on
    the moto server); return the job id and listing the event names, and the figures its
    ``<step> finished`` line must carry."""
    if step == "validate":
        put(moto_server, bucket, PHOTO, sample_media.jpeg_bytes(320, 240))
        put(moto_server, bucket, VIDEO, sample_media.mp4_bytes(0.5, 240, 320))
        event = {
            "jobId": 30,
            "listingIdentityId": L,
            "assets": [PHOTO, VIDEO, MISSING],
            "traceparent": TRACE,
        }
        validate.handler(event, context)
        return (30, L), {"assets": 3, "images": 1, "videos": 1, "failed": 1}
    if step == "thumbnails":
        validation = validated_then_one_gone(moto_server, bucket, PHOTO_GONE)
        thumbnails.handler(validation, context)
        return (31, L), {"generated": 4, "errors": 1}
    if step == "video_thumbnails":
        validation = validated_then_one_gone(moto_server, bucket, VIDEO_GONE)
        video_thumbnails.handler(validation, context)
        return (31, L), {"generated": 1, "errors": 1}
    if step == "video_transcode":
        validation = validated_then_one_gone(moto_server, bucket, VIDEO_GONE)
        video_transcode.handler(validation, context)
        return (31, L), {"transcoded": 1, "errors": 1}
    if step == "mediaconvert":  # the createJob form: the job is in its UserMetadata
        put(moto_server, bucket, VIDEO, sample_media.mp4_bytes(0.5, 240, 320))
        job = {
            "Role": "arn:aws:iam::123456789012:role/mc",
            "UserMetadata": {"jobId": "32", "listingIdentityId": str(L), "traceparent": TRACE},
            "Settings": {"Inputs": [{"FileInput": f"s3://{bucket}/{VIDEO}"}]},
        }
        video_transcode.handler(job, context)
        return ("32", str(L)), {"transcoded": 1}
    if step == "zip":
        put(moto_server, bucket, PHOTO, sample_media.jpeg_bytes(320, 240))
        event = {
            "jobId": 33,
            "listingIdentityId": L,
            "assets": [{"key": PHOTO, "type": "PHOTO"}],
            "traceparent": TRACE,
        }
        zip_step.handler(event, context)
        zip_key = f"{L}/processed/zip/listing-media.zip"
        size = moto_server.client("s3").head_object(Bucket=bucket, Key=zip_key)["ContentLength"]
        assert size > 0
        return (33, L), {"assets_zipped": 1, "zip_size_bytes": size}
    if step == "consolidate":
        consolidate.handler(
            {
                "jobId": 34,
                "listingIdentityId": L,
                "executionArn": "arn:run",
                "startedAt": "2025-01-01T00:00:00.000Z",
                "assets": [{"key": PHOTO, "type": "PHOTO_HORIZONTAL", "sourceKey": PHOTO}],
                "parallelResults": [{"status": "no_videos_to_process"}],
                "traceparent": TRACE,
            },
            context,
        )
        return (34, L), {"status": "SUCCEEDED", "outputs": 1}
    assert step == "callback"  # FinalizeAndCallback: the job is in the callback's body
    body = {"jobId": 35, "listingIdentityId": L, "status": "SUCCEEDED", "traceparent": TRACE}
    answer = callback.handler({"statusCode": 200, "body": body}, context)
    assert answer == {"delivered": True, "statusCode": 200, "latencyMs": answer["latencyMs"]}
    assert isinstance(answer["latencyMs"], float) and answer["latencyMs"] >= 0
    return (35, L), {"status_code": 200, "latency_ms": answer["latencyMs"]}


STEPS = [
    "validate",
    "thumbnails",
    "video_thumbnails",
    "video_transcode",
    "mediaconvert",
    "zip",
    "consolidate",
    "callback",
]


@pytest.mark.parametrize("step", STEPS)
def test_handlers_log_their_step_with_the_request_job_and_figures(
    step: str, lambda_env: str, moto_server: MotoServer, pipeline_log: io.StringIO
) -> None:
    """An operator finds a Lambda run by step and request id, follows it by job, listing
    and traceparent (wherever the event keeps them: top level, a callback's ``body``, a
    MediaConvert job's ``UserMetadata``), and reads its figures on the ``finished`` line."""
    context = ctx(step)
    (job_id, listing), figures = invoke_step(step, moto_server, lambda_env, context)
    logged = "video_transcode" if step == "mediaconvert" else step
    step_lines = [
        line
        for line in lines(pipeline_log)
        if line["logger"] == "toq.pipeline.handlers"
        and line.get("request_id") == context.aws_request_id
    ]
    started, finished = step_lines
    assert (started["message"], finished["message"]) == (f"{logged} started", f"{logged} finished")
    for line in (started, finished):
        assert line["step"] == logged
        assert (line["job_id"], line["listing_identity_id"], line["traceparent"]) == (
            job_id,
            listing,
            TRACE,
        )
    assert {key: finished[key] for key in figures} == figures
    assert finished["duration_ms"] >= 0


def test_pipeline_errors_leave_handlers_named_by_code(lambda_env: str) -> None:
    """The Lambda runtime reports ``type(exc).__name__``: the state machine sees the code."""
    with pytest.raises(StepFailed) as caught:
        zip_step.handler(
            {"jobId": 5, "listingIdentityId": L, "assets": [{"key": MISSING}]}, ctx("zip")
        )
    assert type(caught.value).__name__ == "OBJECT_NOT_FOUND"
    assert MISSING in str(caught.value)
    assert isinstance(caught.value.__cause__, PipelineError)

    with pytest.raises(StepFailed) as caught:
        consolidate.handler({"jobId": "abc", "listingIdentityId": L}, ctx("consolidate"))
    assert type(caught.value).__name__ == "VALIDATION_ERROR"
    assert error_class("VALIDATION_ERROR") is type(caught.value)  # one class per code


def test_consolidate_handler(lambda_env: str) -> None:
    result = consolidate.handler(
        {
            "jobId": "6",
            "listingIdentityId": str(L),
            "executionArn": "arn:run",
            "startedAt": "2025-01-01T00:00:00.000Z",
            "assets": [{"key": PHOTO, "type": "PHOTO_HORIZONTAL", "sourceKey": PHOTO}],
            "parallelResults": [{"status": "no_videos_to_process"}],
            "traceparent": TRACE,
        },
        ctx("consolidate"),
    )
    assert roundtrip(result) == result
    assert result["body"]["status"] == "SUCCEEDED"
    assert result["body"]["outputs"][0]["rawKey"] == PHOTO


def test_callback_handler_signs_and_raises_on_failure(
    lambda_env: str, receiver: CallbackReceiver
) -> None:
    body = {"jobId": 7, "listingIdentityId": L, "status": "SUCCEEDED", "traceparent": TRACE}
    answer = callback.handler({"statusCode": 200, "body": body}, ctx("callback"))
    assert answer["delivered"] is True and answer["statusCode"] == 200
    [received] = receiver.received
    assert received.json() == body
    assert verify_signature(received.body, SECRET, received.headers[SIGNATURE_HEADER])

    receiver.plan(PlannedResponse(status=502))
    with pytest.raises(CallbackFailed):
        callback.handler({"body": body}, ctx("callback"))


def test_callback_handler_without_configuration_fails(
    lambda_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CALLBACK_SECRET")
    with pytest.raises(ValueError, match="CALLBACK_SECRET"):
        callback.handler({"body": {"jobId": 1}}, ctx("callback"))
    monkeypatch.delenv("CALLBACK_URL")
    with pytest.raises(ValueError) as refused:
        callback.handler({"body": {"jobId": 1}}, ctx("callback"))
    assert str(refused.value) == "callback URL is not configured (CALLBACK_URL)"


def test_callback_handler_waits_callback_timeout_seconds(
    lambda_env: str, receiver: CallbackReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend slower than CALLBACK_TIMEOUT_SECONDS fails the attempt (the state's Retry
    sends it again) rather than holding the function up to the 10 s default."""
    monkeypatch.setenv("CALLBACK_TIMEOUT_SECONDS", "1")
    receiver.plan(PlannedResponse(delay_s=1.6))
    body = {"jobId": 8, "listingIdentityId": L, "status": "SUCCEEDED"}
    with pytest.raises(CallbackFailed) as caught:
        callback.handler({"statusCode": 200, "body": body}, ctx("callback"))
    assert "read timeout=1)" in (caught.value.attempt.error or "")


# ------------------------------------------------------------------ SQS -> StartExecution


@pytest.fixture
def state_machine_arn(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> str:
    sfn = moto_server.client("stepfunctions")
    arn = sfn.create_state_machine(
        name=f"listing-media-processing-sm-{uuid.uuid4().hex[:8]}",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        roleArn="arn:aws:iam::123456789012:role/toq-states",
    )["stateMachineArn"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("STATE_MACHINE_ARN", arn)
    return arn


def sqs_record(body: Any, message_id: str | None = None) -> dict[str, Any]:
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": "handle",
        "body": body if isinstance(body, str) else json.dumps(body),
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:toq-media-jobs",
        "awsRegion": REGION,
    }


@pytest.mark.parametrize(
    ("event", "from_sqs"),
    [
        ({"Records": [{"eventSource": "aws:sqs"}, {"eventSource": "aws:sqs"}]}, True),
        ({"Records": [{"eventSource": "aws:sqs"}, {"eventSource": "aws:s3"}]}, False),
        ({"Records": [{"eventSource": "aws:s3"}]}, False),
        ({"Records": []}, False),
        ({"jobId": 1, "listingIdentityId": L, "assets": [PHOTO]}, False),
        ([{"eventSource": "aws:sqs"}], False),
    ],
)
def test_only_an_event_of_sqs_records_starts_executions(event: Any, from_sqs: bool) -> None:
    """The one function serves two callers: an event whose records all come from SQS
    starts executions; anything else (the state machine's input) is validated."""
    assert validate.is_sqs_event(event) is from_sqs


def test_sqs_messages_start_executions(moto_server: MotoServer, state_machine_arn: str) -> None:
    plain = sqs_record({"jobId": 41, "listingIdentityId": L, "assets": [PHOTO, VIDEO], "retry": 0})
    typed = sqs_record(
        {
            "jobId": "42",
            "listingIdentityId": str(L),
            "assets": [{"key": PHOTO, "type": "PHOTO_HORIZONTAL"}],
            "retry": 1,
            "traceparent": TRACE,
        }
    )
    broken = sqs_record("{not json")
    event = {"Records": [plain, typed, broken]}
    summary = validate.handler(event, ctx("validate"))
    assert summary["count"] == 2
    assert [r["messageId"] for r in summary["rejected"]] == [broken["messageId"]]

    sfn = moto_server.client("stepfunctions")
    executions = sfn.list_executions(stateMachineArn=state_machine_arn)["executions"]
    by_name = {e["name"]: e["executionArn"] for e in executions}
    assert set(by_name) == {f"job-41-{plain['messageId']}", f"job-42-{typed['messageId']}"}
    first = json.loads(
        sfn.describe_execution(executionArn=by_name[f"job-41-{plain['messageId']}"])["input"]
    )
    assert first == {
        "jobId": 41,
        "listingIdentityId": L,
        "assets": [{"key": PHOTO, "type": "PHOTO"}, {"key": VIDEO, "type": "VIDEO"}],
        "retry": 0,
        "traceparent": first["traceparent"],
    }
    assert first["traceparent"].startswith("00-") and len(first["traceparent"]) == 55
    second = json.loads(
        sfn.describe_execution(executionArn=by_name[f"job-42-{typed['messageId']}"])["input"]
    )
    assert second == {
        "jobId": "42",
        "listingIdentityId": str(L),
        "assets": [{"key": PHOTO, "type": "PHOTO_HORIZONTAL"}],
        "retry": 1,
        "traceparent": TRACE,
    }

    assert summary["started"] == [
        {
            "jobId": 41,
            "name": f"job-41-{plain['messageId']}",
            "executionArn": by_name[f"job-41-{plain['messageId']}"],
        },
        {
            "jobId": "42",
            "name": f"job-42-{typed['messageId']}",
            "executionArn": by_name[f"job-42-{typed['messageId']}"],
        },
    ]

    # A redelivered batch starts nothing new.
    validate.handler({"Records": [plain, typed]}, ctx("validate"))
    again = sfn.list_executions(stateMachineArn=state_machine_arn)["executions"]
    assert len(again) == 2

    # Redelivered after its execution ended (ExecutionAlreadyExists): still reported as
    # started, without an ARN, and not redelivered again.
    sfn.stop_execution(executionArn=by_name[f"job-41-{plain['messageId']}"])
    late = validate.handler({"Records": [plain]}, ctx("validate"))
    assert late == {
        "started": [{"jobId": 41, "name": f"job-41-{plain['messageId']}"}],
        "rejected": [],
        "count": 1,
    }
    assert len(sfn.list_executions(stateMachineArn=state_machine_arn)["executions"]) == 2


def test_sqs_started_executions_are_logged_with_their_job(
    moto_server: MotoServer, state_machine_arn: str, pipeline_log: io.StringIO
) -> None:
    """``execution started`` with the execution ARN, the job and its traceparent: what an
    operator searches to go from a queue message to its execution."""
    record = sqs_record(
        {"jobId": 44, "listingIdentityId": L, "assets": [PHOTO], "traceparent": TRACE}
    )
    summary = validate.handler({"Records": [record]}, ctx("validate"))
    [started] = summary["started"]
    [line] = [line for line in lines(pipeline_log) if line["message"] == "execution started"]
    assert line["execution_arn"] == started["executionArn"]
    assert (line["job_id"], line["listing_identity_id"]) == (44, L)
    assert line["traceparent"] == TRACE and line["step"] == "start_execution"


def test_sqs_executions_start_in_the_pipelines_region(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state machine lives in the pipeline's region (``AWS_REGION``), which the SDK's
    own default (``AWS_DEFAULT_REGION``, us-east-1 in these tests) need not be: a shell
    or container exporting both for different purposes still starts the right execution."""
    sfn = boto3.client(
        "stepfunctions",
        endpoint_url=moto_server.endpoint_url,
        region_name="eu-west-3",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    arn = sfn.create_state_machine(
        name=f"listing-media-processing-sm-{uuid.uuid4().hex[:8]}",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        roleArn="arn:aws:iam::123456789012:role/toq-states",
    )["stateMachineArn"]
    assert arn.startswith("arn:aws:states:eu-west-3:")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    monkeypatch.setenv("STATE_MACHINE_ARN", arn)
    record = sqs_record({"jobId": 45, "listingIdentityId": L, "assets": [PHOTO]})
    summary = validate.handler({"Records": [record]}, ctx("validate"))
    assert summary["count"] == 1
    [execution] = sfn.list_executions(stateMachineArn=arn)["executions"]
    assert execution["name"] == f"job-45-{record['messageId']}"


def test_sqs_start_failure_raises_for_redelivery(
    moto_server: MotoServer, state_machine_arn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATE_MACHINE_ARN", state_machine_arn + "-deleted")
    record = sqs_record({"jobId": 43, "listingIdentityId": L, "assets": [PHOTO]})
    with pytest.raises(validate.StartExecutionFailed, match=record["messageId"]):
        validate.handler({"Records": [record]}, ctx("validate"))


def test_execution_names_keep_only_the_characters_step_functions_allows() -> None:
    """Step Functions names allow letters, digits, ``-`` and ``_`` and at most 80 characters:
    each other character becomes one ``-``, and a long name is cut at 80."""
    assert validate.execution_name("7", "msg.1/2 x") == "job-7-msg-1-2-x"
    assert validate.execution_name(8, "a" * 100) == "job-8-" + "a" * 74


def test_sqs_without_a_state_machine_configured_fails_loudly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STATE_MACHINE_ARN", raising=False)
    record = sqs_record({"jobId": 47, "listingIdentityId": L, "assets": [PHOTO]})
    with pytest.raises(ValueError) as raised:
        validate.handler({"Records": [record]}, ctx("validate"))
    assert str(raised.value) == "STATE_MACHINE_ARN is not configured"


def test_sqs_execution_input_is_compact_json(
    moto_server: MotoServer, state_machine_arn: str
) -> None:
    """The execution input is written without blanks: it counts against Step Functions'
    payload limit, and a redelivery must send the very same string (idempotent start)."""
    record = sqs_record(
        {"jobId": 48, "listingIdentityId": L, "assets": [PHOTO], "traceparent": TRACE}
    )
    [started] = validate.handler({"Records": [record]}, ctx("validate"))["started"]
    sfn = moto_server.client("stepfunctions")
    stored = sfn.describe_execution(executionArn=started["executionArn"])["input"]
    assert stored == (
        '{"jobId":48,"listingIdentityId":4711,'
        '"assets":[{"key":"4711/raw/photo/horizontal/horizontal-01-IMG_0001.jpg","type":"PHOTO"}],'
        '"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}'
    )


def test_sqs_an_invalid_message_is_rejected_and_the_batch_goes_on(
    moto_server: MotoServer, state_machine_arn: str, pipeline_log: io.StringIO
) -> None:
    """A malformed message, wherever it is in the batch, is reported (message id and
    reason, also logged) and the messages after it still start their executions."""
    broken = sqs_record([1, 2])
    good = sqs_record({"jobId": 49, "listingIdentityId": L, "assets": [PHOTO]})
    summary = validate.handler({"Records": [broken, good]}, ctx("validate"))
    assert summary["rejected"] == [
        {
            "messageId": broken["messageId"],
            "error": "VALIDATION_ERROR: the message must be a JSON object",
        }
    ]
    assert [s["name"] for s in summary["started"]] == [f"job-49-{good['messageId']}"]
    assert summary["count"] == 1
    [line] = [line for line in lines(pipeline_log) if line["level"] == "ERROR"]
    assert line["message"] == (
        f"invalid queue message {broken['messageId']}: "
        "VALIDATION_ERROR: the message must be a JSON object"
    )


def test_sqs_a_record_without_message_id_is_reported_with_an_empty_id(
    moto_server: MotoServer, state_machine_arn: str
) -> None:
    record = sqs_record({"listingIdentityId": L, "assets": [PHOTO]})
    del record["messageId"]
    summary = validate.handler({"Records": [record]}, ctx("validate"))
    assert [r["messageId"] for r in summary["rejected"]] == [""]
    assert summary["started"] == [] and summary["count"] == 0


def test_sqs_an_already_started_execution_does_not_stop_the_batch(
    moto_server: MotoServer, state_machine_arn: str, pipeline_log: io.StringIO
) -> None:
    """A redelivered message whose execution has ended (ExecutionAlreadyExists) is logged
    as already started, and the next message of the batch still starts its own."""
    old = sqs_record({"jobId": 50, "listingIdentityId": L, "assets": [PHOTO]})
    [first] = validate.handler({"Records": [old]}, ctx("validate"))["started"]
    sfn = moto_server.client("stepfunctions")
    sfn.stop_execution(executionArn=first["executionArn"])
    new = sqs_record({"jobId": 51, "listingIdentityId": L, "assets": [PHOTO]})
    summary = validate.handler({"Records": [old, new]}, ctx("validate"))
    assert [s["name"] for s in summary["started"]] == [
        f"job-50-{old['messageId']}",
        f"job-51-{new['messageId']}",
    ]
    assert len(sfn.list_executions(stateMachineArn=state_machine_arn)["executions"]) == 2
    assert (
        f"execution job-50-{old['messageId']} already started for message {old['messageId']}"
        in [line["message"] for line in lines(pipeline_log)]
    )


def test_sqs_every_failed_start_is_reported_and_logged(
    moto_server: MotoServer,
    state_machine_arn: str,
    monkeypatch: pytest.MonkeyPatch,
    pipeline_log: io.StringIO,
) -> None:
    """Each message whose start failed is named in the error (message id, the AWS error's
    class, its text; ``; ``-separated) so SQS redelivers them, and logged with its
    traceback."""
    monkeypatch.setenv("STATE_MACHINE_ARN", state_machine_arn + "-deleted")
    one = sqs_record({"jobId": 52, "listingIdentityId": L, "assets": [PHOTO]})
    two = sqs_record({"jobId": 53, "listingIdentityId": L, "assets": [PHOTO]})
    with pytest.raises(validate.StartExecutionFailed) as raised:
        validate.handler({"Records": [one, two]}, ctx("validate"))
    first, second = str(raised.value).split("; ")
    assert first.startswith(f"{one['messageId']}: StateMachineDoesNotExist: An error occurred")
    assert second.startswith(f"{two['messageId']}: StateMachineDoesNotExist: An error occurred")
    failed = [line for line in lines(pipeline_log) if line["level"] == "ERROR"]
    assert [line["message"] for line in failed] == [
        f"could not start execution job-52-{one['messageId']}",
        f"could not start execution job-53-{two['messageId']}",
    ]
    assert all(line["exc_type"] == "StateMachineDoesNotExist" for line in failed)


# ------------------------------------------------------------------ JSON logs


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_formatter_fields(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = json_log
    with log_context(job_id=9, listing_identity_id=L, traceparent=TRACE, unused=None):
        logger.info("hello %s", "world", extra={"step": "zip", "count": 3, "request": object()})
    logger.warning("outside", extra={"error_code": "ZIP_FAILED"})
    first, second = lines(stream)
    assert list(first)[:4] == ["ts", "level", "logger", "message"]
    assert first["ts"].endswith("Z") and first["level"] == "INFO"
    assert first["logger"] == logger.name and first["message"] == "hello world"
    assert (first["job_id"], first["listing_identity_id"], first["traceparent"]) == (9, L, TRACE)
    assert first["step"] == "zip" and first["count"] == 3
    assert "request" not in first and "unused" not in first
    assert second == {
        "ts": second["ts"],
        "level": "WARNING",
        "logger": logger.name,
        "message": "outside",
        "error_code": "ZIP_FAILED",
    }


def test_step_timer_logs_duration_and_failure(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_log
    with step_timer(logger, "thumbnails", job_id=10) as summary:
        summary["generated"] = 4
    with pytest.raises(PipelineError), step_timer(logger, "zip", job_id=10):
        raise PipelineError("ZIP_FAILED", "disk full")
    started, finished, zip_started, failed = lines(stream)
    assert started["message"] == "thumbnails started" and started["step"] == "thumbnails"
    assert finished["message"] == "thumbnails finished" and finished["generated"] == 4
    assert finished["duration_ms"] >= 0 and finished["job_id"] == 10
    assert zip_started["step"] == "zip"
    assert failed["level"] == "ERROR" and failed["error_code"] == "ZIP_FAILED"
    assert failed["error"] == "ZIP_FAILED: disk full" and failed["duration_ms"] >= 0
    assert failed["exc_type"] == "PipelineError" and "Traceback" in failed["exc"]


@contextmanager
def root_logging_restored() -> Iterator[logging.Logger]:
    """The root logger: after the block, its handlers, their formatters and its level are as
    before (the code under test configures the process's logging)."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_formatters = [handler.formatter for handler in saved_handlers]
    try:
        yield root
    finally:
        for handler in list(root.handlers):
            if handler not in saved_handlers:
                root.removeHandler(handler)
        for handler, formatter in zip(saved_handlers, saved_formatters, strict=True):
            handler.setFormatter(formatter)
        root.setLevel(saved_level)


@contextmanager
def bare_root_logger() -> Iterator[logging.Logger]:
    """The root logger without any handler (as in a process nothing has configured yet);
    afterwards its handlers, their formatters and its level are as before."""
    root = logging.getLogger()
    saved_handlers = list(root.handlers)
    with root_logging_restored():
        for handler in saved_handlers:
            root.removeHandler(handler)
        try:
            yield root
        finally:
            for handler in saved_handlers:
                root.addHandler(handler)


@contextmanager
def new_lambda_container(monkeypatch: pytest.MonkeyPatch, log_level: str) -> Iterator[io.StringIO]:
    """A fresh container of the zip function: the runtime's handler on the root logger
    (writing to the stream yielded), LOG_LEVEL set, the project's logging not set up yet."""
    stream = io.StringIO()
    monkeypatch.setattr(_runtime, "_logging_ready", False)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "listing-media-zip")
    monkeypatch.setenv("LOG_LEVEL", log_level)
    with root_logging_restored() as root:
        root.addHandler(logging.StreamHandler(stream))  # the one the Lambda runtime installs
        yield stream


def test_configure_json_logging_on_a_stream() -> None:
    stream = io.StringIO()
    with root_logging_restored():
        configure_json_logging("DEBUG", stream=stream)
        logging.getLogger("toq.test.configured").debug("configured", extra={"step": "x"})
    [line] = [json.loads(x) for x in stream.getvalue().splitlines() if '"configured"' in x]
    assert (line["level"], line["step"]) == ("DEBUG", "x")


def test_a_lambda_logs_at_its_log_level_whatever_its_case(monkeypatch: pytest.MonkeyPatch) -> None:
    """``LOG_LEVEL=debug``, as a deployment may well write it, turns a function's debug lines
    on (JSON, on the handler the Lambda runtime installed) rather than failing its first
    invocation."""
    with new_lambda_container(monkeypatch, "debug") as stream:
        _runtime.setup_logging()
        logging.getLogger("toq.pipeline.handlers").debug("a debug line", extra={"step": "zip"})
    [line] = lines(stream)
    assert (line["level"], line["message"], line["step"]) == ("DEBUG", "a debug line", "zip")


def test_a_container_sets_its_logging_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Logging is configured on a container's first invocation only: a warm invocation
    leaves the level and the handlers as the first one set them."""
    with new_lambda_container(monkeypatch, "DEBUG") as stream:
        _runtime.setup_logging()  # the first invocation
        monkeypatch.setenv("LOG_LEVEL", "ERROR")
        _runtime.setup_logging()  # a warm one: nothing is configured again
        logging.getLogger("toq.pipeline.handlers").info("warm", extra={"step": "zip"})
    [line] = lines(stream)
    assert (line["level"], line["message"]) == ("INFO", "warm")


def test_json_logging_defaults_to_info() -> None:
    stream = io.StringIO()
    with root_logging_restored():
        configure_json_logging(stream=stream)
        logger = logging.getLogger("toq.test.default_level")
        logger.debug("hidden")
        logger.info("shown")
    assert [line["message"] for line in lines(stream)] == ["shown"]


def test_json_logging_takes_a_numeric_level() -> None:
    """``logging.WARNING`` works as well as ``"WARNING"``."""
    stream = io.StringIO()
    with root_logging_restored():
        configure_json_logging(logging.WARNING, stream=stream)
        logger = logging.getLogger("toq.test.numeric_level")
        logger.info("hidden")
        logger.warning("shown")
    assert [(line["level"], line["message"]) for line in lines(stream)] == [("WARNING", "shown")]


def test_json_logging_reuses_the_runtimes_handler_without_adding_one() -> None:
    """The Lambda runtime's handler gets the JSON formatter; no second handler is added,
    which would write every line twice."""
    stream = io.StringIO()
    runtime_handler = logging.StreamHandler(stream)
    with bare_root_logger() as root:
        root.addHandler(runtime_handler)
        configure_json_logging("INFO")
        assert root.handlers == [runtime_handler]
        logging.getLogger("toq.test.runtime").info("once")
    [line] = lines(stream)
    assert line["message"] == "once"


def test_json_logging_without_any_handler_writes_to_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with bare_root_logger() as root:
        configure_json_logging("INFO")
        [handler] = root.handlers
        logging.getLogger("toq.test.stderr").info("to stderr")
        handler.flush()
    [line] = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert (line["level"], line["message"]) == ("INFO", "to stderr")


def test_a_lambda_without_log_level_logs_at_info(monkeypatch: pytest.MonkeyPatch) -> None:
    with new_lambda_container(monkeypatch, "") as stream:
        monkeypatch.delenv("LOG_LEVEL")
        _runtime.setup_logging()
        logger = logging.getLogger("toq.pipeline.handlers")
        logger.debug("hidden")
        logger.info("shown")
    assert [line["message"] for line in lines(stream)] == ["shown"]


def test_handlers_outside_lambda_leave_configured_logging_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Called in a process whose logging is already set up (Django, a test run), a handler
    neither replaces its formatters nor changes its level."""
    monkeypatch.setattr(_runtime, "_logging_ready", False)
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    stream = io.StringIO()
    plain = logging.Formatter("%(levelname)s %(message)s")
    with bare_root_logger() as root:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(plain)
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
        _runtime.setup_logging()
        assert (root.handlers, handler.formatter, root.level) == ([handler], plain, logging.WARNING)


def test_handlers_outside_lambda_set_up_json_logs_when_nothing_did(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_runtime, "_logging_ready", False)
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    with bare_root_logger():
        _runtime.setup_logging()
        logger = logging.getLogger("toq.pipeline.handlers")
        logger.info("hidden")
        logger.warning("shown")
    [line] = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert (line["level"], line["message"]) == ("WARNING", "shown")


@pytest.mark.parametrize(
    ("event", "fields"),
    [
        (
            {"jobId": 1, "listingIdentityId": L, "traceparent": TRACE, "assets": []},
            {"job_id": 1, "listing_identity_id": L, "traceparent": TRACE},
        ),
        (  # FinalizeAndCallback: the job is in the callback's body
            {"statusCode": 200, "body": {"jobId": 2, "listingIdentityId": L, "traceparent": TRACE}},
            {"job_id": 2, "listing_identity_id": L, "traceparent": TRACE},
        ),
        (  # a MediaConvert job: in its UserMetadata
            {"Role": "r", "UserMetadata": {"jobId": "3", "listingIdentityId": "9"}},
            {"job_id": "3", "listing_identity_id": "9", "traceparent": None},
        ),
        (  # a body that is not an object is not where the job is
            {"jobId": 4, "listingIdentityId": L, "body": "text", "traceparent": ""},
            {"job_id": 4, "listing_identity_id": L, "traceparent": None},
        ),
        ({}, {"job_id": None, "listing_identity_id": None, "traceparent": None}),
        (["not", "an", "object"], {}),
    ],
)
def test_the_job_fields_of_a_log_line_come_from_where_the_event_keeps_them(
    event: Any, fields: dict[str, Any]
) -> None:
    """An empty traceparent is no traceparent (left out of the lines, not logged as "")."""
    assert _runtime.job_fields(event) == fields
