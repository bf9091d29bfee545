"""scripts/deploy_lambdas.sh against the moto server (Lambda, Step Functions, IAM over HTTP)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import subprocess
import uuid
import zipfile
from pathlib import Path

import pytest

from tests.fixtures.s3server import REGION, MotoServer

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts/deploy_lambdas.sh"
FUNCTIONS = {
    "validate": "validate",
    "thumbnails": "thumbnails",
    "video_thumbnails": "video-thumbnails",
    "consolidate": "consolidate",
    "callback": "callback",
    "zip": "zip",
}
MEDIACONVERT_ROLE = "arn:aws:iam::123456789012:role/toq-mediaconvert"


def tiny_zip(marker: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        # fixed timestamp: the same marker gives the same bytes (and CodeSha256)
        entry = zipfile.ZipInfo("media_jobs/__init__.py", (2025, 1, 1, 0, 0, 0))
        archive.writestr(entry, f"# {marker}\n")
    return out.getvalue()


@pytest.fixture
def deployed_stage(moto_server: MotoServer, tmp_path: Path) -> dict:
    """Functions and state machines as they exist before a deploy, in a fresh stage."""
    stage = f"t{uuid.uuid4().hex[:8]}"
    iam = moto_server.client("iam")
    role = iam.create_role(
        RoleName=f"toq-lambda-{stage}",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    lambda_client = moto_server.client("lambda")
    for module, stem in FUNCTIONS.items():
        lambda_client.create_function(
            FunctionName=f"listing-media-{stem}-{stage}",
            Runtime="python3.12",
            Role=role,
            Handler=f"media_jobs.pipeline.handlers.{module}.handler",
            Code={"ZipFile": tiny_zip("old")},
        )
    sfn = moto_server.client("stepfunctions")
    machines = {}
    for kind in ("processing", "finalization"):
        machines[kind] = sfn.create_state_machine(
            name=f"listing-media-{kind}-sm-{stage}",
            definition=json.dumps({"StartAt": "Old", "States": {"Old": {"Type": "Succeed"}}}),
            roleArn=role,
        )["stateMachineArn"]
    zip_dir = tmp_path / "bin"
    zip_dir.mkdir()
    new_zips = {}
    for module in FUNCTIONS:
        data = tiny_zip(f"new {module}")
        (zip_dir / f"{module}.zip").write_bytes(data)
        new_zips[module] = data
    return {"stage": stage, "machines": machines, "zip_dir": zip_dir, "zips": new_zips}


def run_deploy(moto_server: MotoServer, stage: dict, **env: str) -> subprocess.CompletedProcess:
    """The script in a subprocess; the MediaConvert role only when given."""
    inherited = {k: v for k, v in os.environ.items() if k != "MEDIACONVERT_ROLE_ARN"}
    environment = {
        **inherited,
        "AWS_ENDPOINT_URL": moto_server.endpoint_url,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "STAGE": stage["stage"],
        "LAMBDA_OUT_DIR": str(stage["zip_dir"]),
        "PYTHON": str(ROOT / ".venv/bin/python"),
        **env,
    }
    return subprocess.run(
        [str(SCRIPT)], env=environment, capture_output=True, text=True, timeout=120
    )


def test_deploy_updates_code_and_fills_definitions(
    moto_server: MotoServer, deployed_stage: dict
) -> None:
    result = run_deploy(moto_server, deployed_stage, MEDIACONVERT_ROLE_ARN=MEDIACONVERT_ROLE)
    assert result.returncode == 0, result.stderr
    stage = deployed_stage["stage"]
    lambda_client = moto_server.client("lambda")
    arns = {}
    for module, stem in FUNCTIONS.items():
        config = lambda_client.get_function(FunctionName=f"listing-media-{stem}-{stage}")[
            "Configuration"
        ]
        expected_sha = base64.b64encode(
            hashlib.sha256(deployed_stage["zips"][module]).digest()
        ).decode()
        assert config["CodeSha256"] == expected_sha, module
        arns[module] = config["FunctionArn"]

    sfn = moto_server.client("stepfunctions")
    processing = json.loads(
        sfn.describe_state_machine(stateMachineArn=deployed_stage["machines"]["processing"])[
            "definition"
        ]
    )
    finalization = json.loads(
        sfn.describe_state_machine(stateMachineArn=deployed_stage["machines"]["finalization"])[
            "definition"
        ]
    )
    for definition in (processing, finalization):
        assert not re.search(r"\$\{[A-Za-z]+\}", json.dumps(definition))
    states = processing["States"]
    assert states["ValidateRawAssets"]["Resource"] == arns["validate"]
    assert states["ConsolidateResults"]["Resource"] == arns["consolidate"]
    assert states["FinalizeAndCallback"]["Resource"] == arns["callback"]
    branches = states["ParallelProcessing"]["Branches"]
    assert branches[0]["States"]["GenerateThumbnails"]["Resource"] == arns["thumbnails"]
    video_states = branches[1]["States"]
    assert video_states["GenerateVideoThumbnails"]["Resource"] == arns["video_thumbnails"]
    transcode = branches[2]["States"]["TranscodeVideos"]["ItemProcessor"]["States"]
    job = transcode["TranscodeVideo"]["Parameters"]
    assert job["Role"] == MEDIACONVERT_ROLE
    assert job["UserMetadata"]["stage"] == stage
    assert finalization["States"]["CreateZipBundle"]["Resource"] == arns["zip"]
    assert finalization["States"]["ReportFailure"]["Resource"] == arns["callback"]
    assert f"deploy: listing-media-zip-{stage}" in result.stdout


def test_missing_placeholder_value_stops_before_any_change(
    moto_server: MotoServer, deployed_stage: dict
) -> None:
    result = run_deploy(moto_server, deployed_stage)
    assert result.returncode == 1
    assert "MediaConvertRoleArn" in result.stderr
    config = moto_server.client("lambda").get_function(
        FunctionName=f"listing-media-validate-{deployed_stage['stage']}"
    )["Configuration"]
    old_sha = base64.b64encode(hashlib.sha256(tiny_zip("old")).digest()).decode()
    assert config["CodeSha256"] == old_sha
    definition = moto_server.client("stepfunctions").describe_state_machine(
        stateMachineArn=deployed_stage["machines"]["processing"]
    )["definition"]
    assert json.loads(definition)["StartAt"] == "Old"
