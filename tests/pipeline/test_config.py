"""The pipeline configuration a Lambda function reads from its environment: the variable
names the deployment sets (aws/README.md, README.md) and the defaults of an unset one."""

from __future__ import annotations

import dataclasses

import pytest

from media_jobs.pipeline.config import PipelineConfig
from media_jobs.pipeline.handlers._runtime import pipeline_config


def test_the_defaults_of_an_empty_environment() -> None:
    assert dataclasses.asdict(PipelineConfig.from_env({})) == {
        "bucket": "toq-listing-medias",
        "storage_backend": "local",
        "local_root": "var/media",
        "s3_endpoint_url": None,
        "region": None,
        "max_file_bytes": 5_368_709_120,
        "max_image_pixels": 180_000_000,
        "decode_memory_bytes": 335_544_320,
        "decode_cpu_seconds": 10.0,
        "max_jpeg_scans": 100,
        "ffmpeg_path": "ffmpeg",
        "ffprobe_path": "ffprobe",
        "ffmpeg_timeout_s": 900,
        "callback_url": None,
        "callback_secret": None,
        "callback_timeout_s": 10,
        "state_machine_arn": None,
        "finalization_state_machine_arn": None,
    }


def test_empty_variables_count_as_unset() -> None:
    names = (
        "MEDIA_LOCAL_ROOT",
        "MEDIA_DECODE_MEMORY_BYTES",
        "MEDIA_MAX_JPEG_SCANS",
        "FFPROBE_PATH",
        "FFMPEG_TIMEOUT_SECONDS",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    )
    config = PipelineConfig.from_env(dict.fromkeys(names, ""))
    assert (
        config.local_root,
        config.decode_memory_bytes,
        config.max_jpeg_scans,
        config.ffprobe_path,
        config.ffmpeg_timeout_s,
        config.region,
    ) == ("var/media", 335_544_320, 100, "ffprobe", 900, None)


def test_a_functions_environment_sets_every_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a handler's ``pipeline_config()`` reads from the environment the deployment gave
    its function, one variable per field."""
    environment = {
        "AWS_LAMBDA_FUNCTION_NAME": "listing-media-thumbnails",
        "MEDIA_BUCKET": "toq-listing-medias-staging",
        "MEDIA_STORAGE_BACKEND": "s3",
        "MEDIA_LOCAL_ROOT": "/tmp/media",
        "AWS_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9999",
        "AWS_REGION": "eu-west-3",
        "AWS_DEFAULT_REGION": "us-east-1",
        "MEDIA_MAX_FILE_BYTES": "1048576",
        "MEDIA_MAX_IMAGE_PIXELS": "50000000",
        "MEDIA_DECODE_MEMORY_BYTES": "268435456",
        "MEDIA_DECODE_CPU_SECONDS": "2.5",
        "MEDIA_MAX_JPEG_SCANS": "12",
        "FFMPEG_PATH": "/opt/bin/ffmpeg",
        "FFPROBE_PATH": "/opt/bin/ffprobe",
        "FFMPEG_TIMEOUT_SECONDS": "120",
        "CALLBACK_URL": "https://api.example.test/media/callback",
        "CALLBACK_SECRET": "s3cret",
        "CALLBACK_TIMEOUT_SECONDS": "4",
        "STATE_MACHINE_ARN": "arn:aws:states:eu-west-3:123456789012:stateMachine:processing",
        "FINALIZATION_STATE_MACHINE_ARN": (
            "arn:aws:states:eu-west-3:123456789012:stateMachine:finalization"
        ),
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert dataclasses.asdict(pipeline_config()) == {
        "bucket": "toq-listing-medias-staging",
        "storage_backend": "s3",
        "local_root": "/tmp/media",
        "s3_endpoint_url": "http://127.0.0.1:9000",
        "region": "eu-west-3",
        "max_file_bytes": 1_048_576,
        "max_image_pixels": 50_000_000,
        "decode_memory_bytes": 268_435_456,
        "decode_cpu_seconds": 2.5,
        "max_jpeg_scans": 12,
        "ffmpeg_path": "/opt/bin/ffmpeg",
        "ffprobe_path": "/opt/bin/ffprobe",
        "ffmpeg_timeout_s": 120,
        "callback_url": "https://api.example.test/media/callback",
        "callback_secret": "s3cret",
        "callback_timeout_s": 4,
        "state_machine_arn": "arn:aws:states:eu-west-3:123456789012:stateMachine:processing",
        "finalization_state_machine_arn": (
            "arn:aws:states:eu-west-3:123456789012:stateMachine:finalization"
        ),
    }


@pytest.mark.parametrize(
    ("environment", "region"),
    [
        ({"AWS_REGION": "eu-west-3"}, "eu-west-3"),
        ({"AWS_DEFAULT_REGION": "ap-south-1"}, "ap-south-1"),
        ({"AWS_REGION": "eu-west-3", "AWS_DEFAULT_REGION": "ap-south-1"}, "eu-west-3"),
    ],
)
def test_the_region_is_aws_region_else_aws_default_region(
    environment: dict[str, str], region: str
) -> None:
    assert PipelineConfig.from_env(environment).region == region


def test_a_number_that_is_not_one_names_its_variable() -> None:
    with pytest.raises(ValueError, match="^FFMPEG_TIMEOUT_SECONDS must be an integer, got '2m'$"):
        PipelineConfig.from_env({"FFMPEG_TIMEOUT_SECONDS": "2m"})


EVERY_VARIABLE = (
    "AWS_LAMBDA_FUNCTION_NAME",
    "MEDIA_BUCKET",
    "MEDIA_STORAGE_BACKEND",
    "MEDIA_LOCAL_ROOT",
    "AWS_S3_ENDPOINT_URL",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "MEDIA_MAX_FILE_BYTES",
    "MEDIA_MAX_IMAGE_PIXELS",
    "MEDIA_DECODE_MEMORY_BYTES",
    "MEDIA_DECODE_CPU_SECONDS",
    "MEDIA_MAX_JPEG_SCANS",
    "FFMPEG_PATH",
    "FFPROBE_PATH",
    "FFMPEG_TIMEOUT_SECONDS",
    "CALLBACK_URL",
    "CALLBACK_SECRET",
    "CALLBACK_TIMEOUT_SECONDS",
    "STATE_MACHINE_ARN",
    "FINALIZATION_STATE_MACHINE_ARN",
)


def test_every_empty_variable_counts_as_unset() -> None:
    """A deployment template that writes ``NAME=`` means "not set": the default applies,
    and an optional setting stays None rather than an empty string."""
    empty = PipelineConfig.from_env(dict.fromkeys(EVERY_VARIABLE, ""))
    assert empty == PipelineConfig.from_env({})
    assert (empty.s3_endpoint_url, empty.callback_url, empty.callback_secret) == (None,) * 3
    assert (empty.state_machine_arn, empty.finalization_state_machine_arn) == (None, None)


@pytest.mark.parametrize(
    ("environment", "bucket", "backend"),
    [
        ({}, "toq-listing-medias", "local"),
        ({"MEDIA_BUCKET": "toq-listing-medias-dev"}, "toq-listing-medias-dev", "s3"),
        ({"AWS_LAMBDA_FUNCTION_NAME": "listing-media-zip"}, "toq-listing-medias", "s3"),
        (
            {"AWS_LAMBDA_FUNCTION_NAME": "listing-media-zip", "MEDIA_STORAGE_BACKEND": "local"},
            "toq-listing-medias",
            "local",
        ),
    ],
)
def test_a_bucket_or_a_lambda_means_s3(
    environment: dict[str, str], bucket: str, backend: str
) -> None:
    """Without MEDIA_STORAGE_BACKEND, storage is S3 when a bucket is named or on Lambda (a
    function deployed without MEDIA_BUCKET uses the default bucket, never its local disk);
    else the local disk. MEDIA_STORAGE_BACKEND, when set, decides."""
    config = PipelineConfig.from_env(environment)
    assert (config.bucket, config.storage_backend) == (bucket, backend)


@pytest.mark.parametrize(
    ("environment", "endpoint"),
    [
        ({"AWS_S3_ENDPOINT_URL": "http://127.0.0.1:9000"}, "http://127.0.0.1:9000"),
        ({"AWS_ENDPOINT_URL": "http://127.0.0.1:9999"}, "http://127.0.0.1:9999"),
        (
            {"AWS_S3_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_ENDPOINT_URL": "http://x:1"},
            "http://127.0.0.1:9000",
        ),
    ],
)
def test_the_s3_endpoint_is_aws_s3_endpoint_url_else_aws_endpoint_url(
    environment: dict[str, str], endpoint: str
) -> None:
    assert PipelineConfig.from_env(environment).s3_endpoint_url == endpoint


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        (
            {"MEDIA_DECODE_CPU_SECONDS": "ten"},
            "MEDIA_DECODE_CPU_SECONDS must be a number, got 'ten'",
        ),
        ({"MEDIA_MAX_JPEG_SCANS": "2.5"}, "MEDIA_MAX_JPEG_SCANS must be an integer, got '2.5'"),
        (
            {"MEDIA_MAX_FILE_BYTES": "5GiB"},
            "MEDIA_MAX_FILE_BYTES must be an integer, got '5GiB'",
        ),
    ],
)
def test_a_bad_number_names_its_variable_and_the_kind_expected(
    environment: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError) as raised:
        PipelineConfig.from_env(environment)
    assert str(raised.value) == message


def test_numbers_are_read_as_their_kind() -> None:
    """Integer settings are ints, the CPU budget a float even when written as an integer."""
    config = PipelineConfig.from_env(
        {"MEDIA_DECODE_CPU_SECONDS": "3", "CALLBACK_TIMEOUT_SECONDS": "7"}
    )
    assert (config.decode_cpu_seconds, type(config.decode_cpu_seconds)) == (3.0, float)
    assert (config.callback_timeout_s, type(config.callback_timeout_s)) == (7, int)
