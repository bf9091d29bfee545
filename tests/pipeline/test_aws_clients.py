"""boto3 clients are shared per service, settings and AWS environment, and the service models
are read once per process (media_jobs/pipeline/aws.py), against the moto server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from media_jobs.pipeline import aws
from media_jobs.pipeline.aws import ClientOptions, shared_client
from tests.fixtures.s3server import MotoServer


@pytest.fixture
def model_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The paths of the JSON files the shared loader reads from disk from now on."""
    reads: list[str] = []
    files = aws._MODELS.file_loader
    load = files.load_file

    def counted(path: str) -> Any:
        reads.append(path)
        return load(path)

    monkeypatch.setattr(files, "load_file", counted)
    yield reads


def test_a_client_is_shared_until_its_settings_or_environment_change(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = ClientOptions(endpoint_url=moto_server.endpoint_url, region="sa-east-1")
    first = shared_client("stepfunctions", options)
    assert first.list_state_machines()["stateMachines"] is not None  # it works
    assert first.meta.region_name == "sa-east-1"
    assert shared_client("stepfunctions", ClientOptions(**vars(options))) is first
    assert (
        shared_client("stepfunctions", ClientOptions(endpoint_url=options.endpoint_url))
        is not first
    )
    assert shared_client("s3", options) is not first

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "rotated")
    rotated = shared_client("stepfunctions", options)
    assert rotated is not first
    assert rotated._request_signer._credentials.secret_key == "rotated"

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    moved = shared_client("stepfunctions", ClientOptions(region="sa-east-1"))
    assert moved.meta.endpoint_url == "http://127.0.0.1:9"


def test_the_settings_reach_botocore() -> None:
    client = shared_client(
        "s3",
        ClientOptions(
            endpoint_url="http://127.0.0.1:9",
            max_retries=2,
            connect_timeout_s=1.5,
            read_timeout_s=7,
        ),
    )
    config = client.meta.config
    # botocore counts the first request too: two retries are three attempts
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}
    assert (config.connect_timeout, config.read_timeout) == (1.5, 7)
    # Presigned S3 URLs are SigV4 (botocore alone presigns SigV2, which the portal's own
    # presigner, media_jobs/pipeline/presign.py, derived from botocore's, would not match)
    url = client.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"})
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url and "AWSAccessKeyId" not in url
    default = shared_client("sqs", ClientOptions(region="us-east-1")).meta.config
    assert "total_max_attempts" not in (default.retries or {})  # botocore's own default
    assert default.signature_version != "s3v4"


def test_the_models_are_read_once_per_process(model_reads: list[str]) -> None:
    """A new botocore session per client would read the service model, the endpoints and the
    partitions again (~200 ms of CPU for S3); the shared loader reads each once."""
    unique = ClientOptions(endpoint_url=f"http://{uuid.uuid4().hex[:8]}.invalid")
    shared_client("sns", unique)
    assert any("sns" in path for path in model_reads)  # the counter sees reads
    model_reads.clear()
    for read_timeout_s in (3.0, 4.0):
        shared_client(
            "sns", ClientOptions(endpoint_url=unique.endpoint_url, read_timeout_s=read_timeout_s)
        )
    assert model_reads == []
