"""A replica of the TOQ account's media pipeline on the moto server, as the Go system's
Terraform (aws/main.tf of projeto-toq/toq_server) lays it out: the seven Lambda functions
on ``provided.al2023`` / ``provided.al2`` with handler ``bootstrap`` and their environment,
memory, timeouts, tracing and the ffmpeg layer; the Lambda, Step Functions and MediaConvert
roles with the Terraform's inline policies; the two state machines calling the Go
functions (the callbacks through ``callback-dispatch``, MediaConvert fire-and-forget).

``{env}`` is a fresh name per test, so tests share one moto server without meeting.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from tests.fixtures.s3server import REGION, MotoServer

ACCOUNT = "123456789012"  # moto's
BUCKET = "toq-listing-medias"
# Where moto says a function's code lives (Code.Location); real Lambda serves it there
# through a presigned URL. moto does not store it, so the replica puts it there.
CODE_BUCKET = f"awslambda-{REGION}-tasks"

# module -> (name template, runtime, memory, timeout, environment, tracing)
GO_FUNCTIONS: dict[str, tuple[str, str, int, int, dict[str, str], str]] = {
    "validate": ("listing-media-validate-{env}", "provided.al2023", 512, 60,
                 {"MEDIA_BUCKET": BUCKET, "ENV": "{env}", "TRACE_HEADER_KEY": "traceparent"}, "Active"),
    "thumbnails": ("listing-media-thumbnails-{env}", "provided.al2023", 2048, 300,
                   {"MEDIA_BUCKET": BUCKET, "ENV": "{env}", "TRACE_HEADER_KEY": "traceparent"}, "Active"),
    "video_thumbnails": ("listing-media-video_thumbnails-{env}", "provided.al2", 1024, 300,
                         {"FFMPEG_PATH": "/opt/bin/ffmpeg"}, "PassThrough"),
    "consolidate": ("listing-media-consolidate-{env}", "provided.al2023", 128, 3, {}, "PassThrough"),
    "callback": ("listing-media-callback-{env}", "provided.al2023", 128, 3,
                 {"ENV": "{env}", "TRACE_HEADER_KEY": "traceparent"}, "PassThrough"),
    "callback_dispatch": ("listing-media-callback-dispatch-{env}", "provided.al2023", 256, 60,
                          {"CALLBACK_SECRET": "toq-media-callback-secret-{env}",
                           "CALLBACK_URL": "https://api.example.test/api/v2/listings/media/callback",
                           "INTERNAL_API_TOKEN": "toq-internal-token-{env}",
                           "ENV": "{env}", "TRACE_HEADER_KEY": "traceparent"}, "Active"),
    "zip": ("listing-media-zip-{env}", "provided.al2023", 3008, 900,
            {"MEDIA_BUCKET": BUCKET, "ENV": "{env}", "TRACE_HEADER_KEY": "traceparent"}, "Active"),
}  # fmt: skip
# the function each handler module of this project replaces
DEPLOYED = {
    "validate": "validate",
    "thumbnails": "thumbnails",
    "video_thumbnails": "video_thumbnails",
    "consolidate": "consolidate",
    "zip": "zip",
    "callback": "callback_dispatch",
}
VOLATILE = {"LastModified", "RevisionId", "ResponseMetadata", "LastUpdateStatus", "State"}


def go_zip(marker: str) -> bytes:
    """A Go function's zip: one ``bootstrap`` executable (fixed timestamp: same bytes)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        entry = zipfile.ZipInfo("bootstrap", (2024, 11, 1, 0, 0, 0))
        entry.external_attr = 0o755 << 16
        archive.writestr(entry, f"\x7fELF go binary of {marker}\n")
    return out.getvalue()


def _assume(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
            ],
        }
    )


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


@dataclass
class ToqAccount:
    env: str
    functions: dict[str, str] = field(default_factory=dict)  # module of GO_FUNCTIONS -> name
    function_arns: dict[str, str] = field(default_factory=dict)
    machines: dict[str, str] = field(default_factory=dict)  # kind -> ARN
    lambda_role: str = ""
    stepfunctions_role: str = ""
    mediaconvert_role_arn: str = ""
    layer_arn: str = ""

    def name_of(self, module: str) -> str:
        """The function this project's ``module`` is deployed to."""
        return self.functions[DEPLOYED[module]]

    def arn(self, kind: str, name: str) -> str:
        return f"arn:aws:{kind}:{REGION}:{ACCOUNT}:{name}"


def _go_definitions(account: ToqAccount) -> dict[str, dict[str, Any]]:
    """Go's two state machines, cut down to their wiring (which function each state calls)."""
    arn = account.function_arns
    callback = arn["callback_dispatch"]
    retry = [{"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 5, "MaxAttempts": 2}]
    catch = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "ReportFailure"}]
    report = {
        "Type": "Task",
        "Resource": callback,
        "Parameters": {"body": {"jobId.$": "$.jobId", "status": "PROCESSING_FAILED"}},
        "Next": "ProcessingFailed",
    }
    processing = {
        "Comment": "TOQ Media Processing Pipeline - Staging",
        "StartAt": "ValidateRawAssets",
        "States": {
            "ValidateRawAssets": {
                "Type": "Task",
                "Resource": arn["validate"],
                "ResultPath": "$.validation",
                "Retry": retry,
                "Catch": [{**catch[0], "Next": "ValidationFailed"}],
                "Next": "ParallelProcessing",
            },
            "ParallelProcessing": {
                "Type": "Parallel",
                "Branches": [
                    {
                        "StartAt": "GenerateThumbnails",
                        "States": {
                            "GenerateThumbnails": {
                                "Type": "Task",
                                "Resource": arn["thumbnails"],
                                "InputPath": "$.validation",
                                "End": True,
                            }
                        },
                    },
                    {
                        "StartAt": "GenerateVideoThumbnails",
                        "States": {
                            "GenerateVideoThumbnails": {
                                "Type": "Task",
                                "Resource": arn["video_thumbnails"],
                                "InputPath": "$.validation",
                                "End": True,
                            }
                        },
                    },
                    {
                        "StartAt": "ProcessVideos",
                        "States": {
                            "ProcessVideos": {
                                "Type": "Task",
                                "Resource": "arn:aws:states:::aws-sdk:mediaconvert:createJob",
                                "Parameters": {
                                    "Role": account.mediaconvert_role_arn,
                                    "Settings": {
                                        "Inputs": [{"FileInput.$": "$.validation.videoInput"}]
                                    },
                                },
                                "End": True,
                            }
                        },
                    },
                ],
                "ResultPath": "$.parallelResults",
                "Catch": catch,
                "Next": "ConsolidateResults",
            },
            "ConsolidateResults": {
                "Type": "Task",
                "Resource": arn["consolidate"],
                "ResultPath": "$.consolidation",
                "Catch": catch,
                "Next": "FinalizeAndCallback",
            },
            "FinalizeAndCallback": {
                "Type": "Task",
                "Resource": callback,
                "Parameters": {"statusCode": 200, "body.$": "$.consolidation.body"},
                "End": True,
            },
            "ValidationFailed": {**report, "Parameters": {"body": {"status": "VALIDATION_FAILED"}}},
            "ReportFailure": report,
            "ProcessingFailed": {"Type": "Fail", "Error": "MediaProcessingFailed"},
        },
    }
    finalization = {
        "Comment": "TOQ Media Finalization Pipeline - Staging",
        "StartAt": "CreateZipBundle",
        "States": {
            "CreateZipBundle": {
                "Type": "Task",
                "Resource": arn["zip"],
                "ResultPath": "$.zipResult",
                "Catch": catch,
                "Next": "FinalizeAndCallback",
            },
            "FinalizeAndCallback": {"Type": "Task", "Resource": callback, "End": True},
            "ReportFailure": {**report, "Next": "FinalizationFailed"},
            "FinalizationFailed": {"Type": "Fail", "Error": "MediaFinalizationFailed"},
        },
    }
    return {"processing": processing, "finalization": finalization}


def seed_toq_account(moto: MotoServer, env: str) -> ToqAccount:
    account = ToqAccount(env)
    iam, lam, sfn, s3 = (moto.client(name) for name in ("iam", "lambda", "stepfunctions", "s3"))
    for module, spec in GO_FUNCTIONS.items():
        account.functions[module] = spec[0].format(env=env)
        account.function_arns[module] = account.arn("lambda", f"function:{spec[0].format(env=env)}")
    processing_arn = account.arn("states", f"stateMachine:listing-media-processing-sm-{env}")
    finalization_arn = account.arn("states", f"stateMachine:listing-media-finalization-sm-{env}")
    mediaconvert_role = f"toq-media-processing-mediaconvert-{env}"

    account.lambda_role = iam.create_role(
        RoleName=f"toq-media-processing-lambda-{env}",
        AssumeRolePolicyDocument=_assume("lambda.amazonaws.com"),
    )["Role"]["Arn"]
    iam.put_role_policy(
        RoleName=f"toq-media-processing-lambda-{env}",
        PolicyName="lambda-logs-kms-s3-sqs",
        PolicyDocument=_policy(
            {"Sid": "Logs", "Effect": "Allow",
             "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
             "Resource": [f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/listing-media-*:*"]},
            {"Sid": "S3Media", "Effect": "Allow",
             "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket",
                        "s3:GetObjectAttributes", "s3:HeadObject"],
             "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]},
            {"Sid": "MediaConvert", "Effect": "Allow",
             "Action": ["mediaconvert:CreateJob", "mediaconvert:GetJob", "mediaconvert:ListJobs",
                        "mediaconvert:DescribeEndpoints"], "Resource": "*"},
        ),
    )  # fmt: skip
    iam.put_role_policy(
        RoleName=f"toq-media-processing-lambda-{env}",
        PolicyName="lambda-start-sfn",
        PolicyDocument=_policy(
            {"Effect": "Allow", "Action": ["states:StartExecution"], "Resource": [processing_arn]}
        ),
    )
    account.mediaconvert_role_arn = iam.create_role(
        RoleName=mediaconvert_role, AssumeRolePolicyDocument=_assume("mediaconvert.amazonaws.com")
    )["Role"]["Arn"]
    account.stepfunctions_role = f"toq-media-processing-stepfunctions-{env}"
    sfn_role_arn = iam.create_role(
        RoleName=account.stepfunctions_role,
        AssumeRolePolicyDocument=_assume("states.amazonaws.com"),
    )["Role"]["Arn"]
    iam.put_role_policy(
        RoleName=account.stepfunctions_role,
        PolicyName="sfn-lambda-mediaconvert-logs",
        PolicyDocument=_policy(
            {"Sid": "InvokeLambdas", "Effect": "Allow",
             "Action": ["lambda:InvokeFunction", "lambda:InvokeAsync"],
             "Resource": sorted(account.function_arns.values())},
            {"Sid": "MediaConvert", "Effect": "Allow",
             "Action": ["mediaconvert:CreateJob", "mediaconvert:GetJob",
                        "mediaconvert:DescribeEndpoints"], "Resource": ["*"]},
            {"Sid": "PassRoleForMediaConvert", "Effect": "Allow", "Action": ["iam:PassRole"],
             "Resource": [f"arn:aws:iam::{ACCOUNT}:role/{mediaconvert_role}"],
             "Condition": {"StringEquals": {"iam:PassedToService": "mediaconvert.amazonaws.com"}}},
            {"Sid": "StartFinalizationWorkflow", "Effect": "Allow",
             "Action": ["states:StartExecution"], "Resource": [finalization_arn]},
            {"Sid": "XRay", "Effect": "Allow",
             "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "Resource": ["*"]},
        ),
    )  # fmt: skip

    account.layer_arn = lam.publish_layer_version(
        LayerName=f"toq-ffmpeg-layer-{env}", Content={"ZipFile": go_zip("ffmpeg")}
    )["LayerVersionArn"]
    try:
        s3.create_bucket(Bucket=CODE_BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    for module, (template, runtime, memory, timeout, environment, tracing) in GO_FUNCTIONS.items():
        name = template.format(env=env)
        code = go_zip(name)
        arguments: dict[str, Any] = {
            "FunctionName": name,
            "Runtime": runtime,
            "Role": account.lambda_role,
            "Handler": "bootstrap",
            "Code": {"ZipFile": code},
            "MemorySize": memory,
            "Timeout": timeout,
            "Architectures": ["x86_64"],
            "TracingConfig": {"Mode": tracing},
        }
        if environment:
            arguments["Environment"] = {
                "Variables": {k: v.format(env=env) for k, v in environment.items()}
            }
        if module == "video_thumbnails":
            arguments["Layers"] = [account.layer_arn]
        if module == "zip":
            arguments["EphemeralStorage"] = {"Size": 2048}
        lam.create_function(**arguments)
        serve_code(moto, name, code)

    definitions = _go_definitions(account)
    for kind, arn in (("processing", processing_arn), ("finalization", finalization_arn)):
        account.machines[kind] = sfn.create_state_machine(
            name=arn.rsplit(":", 1)[-1],
            definition=json.dumps(definitions[kind], indent=2),
            roleArn=sfn_role_arn,
        )["stateMachineArn"]
    return account


def serve_code(moto: MotoServer, name: str, code: bytes) -> None:
    """Put a function's current zip where its ``Code.Location`` points, as real Lambda
    serves it (moto names the place but keeps nothing there)."""
    location = urlparse(moto.client("lambda").get_function(FunctionName=name)["Code"]["Location"])
    moto.client("s3").put_object(Bucket=CODE_BUCKET, Key=location.path.lstrip("/"), Body=code)


def grant_mediaconvert_sync(moto: MotoServer, account: ToqAccount) -> None:
    """What aws/README.md tells the operator to add to the state machines' role before
    the first deploy: the rest of what createJob.sync uses."""
    moto.client("iam").put_role_policy(
        RoleName=account.stepfunctions_role,
        PolicyName="toq-portal-mediaconvert-sync",
        PolicyDocument=_policy(
            {"Effect": "Allow", "Action": ["mediaconvert:CancelJob"], "Resource": "*"},
            {
                "Effect": "Allow",
                "Action": ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                "Resource": account.arn(
                    "events", "rule/StepFunctionsGetEventsForMediaConvertJobRule"
                ),
            },
        ),
    )


def snapshot(moto: MotoServer, account: ToqAccount) -> dict[str, Any]:
    """Everything a deploy may change: each function's configuration (its code sha
    included) and each state machine's definition and role."""
    lam, sfn = moto.client("lambda"), moto.client("stepfunctions")
    functions = {}
    for name in account.functions.values():
        config = lam.get_function_configuration(FunctionName=name)
        functions[name] = {k: v for k, v in config.items() if k not in VOLATILE}
    machines = {}
    for kind, arn in account.machines.items():
        described = sfn.describe_state_machine(stateMachineArn=arn)
        machines[kind] = {"definition": described["definition"], "roleArn": described["roleArn"]}
    return {"functions": functions, "machines": machines}
