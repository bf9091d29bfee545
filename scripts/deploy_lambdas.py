"""Deploy the pipeline to AWS: Lambda code, then the two state machine definitions.

Functions are named ``{prefix}{name}-{stage}`` (``listing-media-validate-staging``), state
machines ``listing-media-processing-sm-{stage}`` and ``listing-media-finalization-sm-{stage}``
(or given by ARN). The definitions are templates: every ``${Placeholder}`` is filled from the
functions just updated and the environment, and a placeholder left unfilled stops the deploy
before anything reaches a state machine. boto3 honours ``AWS_ENDPOINT_URL``, so the same
script deploys to a local endpoint (the tests use the moto server).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parents[1]

# handler module -> (function name stem, the definitions' placeholder for its ARN)
FUNCTIONS: dict[str, tuple[str, str]] = {
    "validate": ("validate", "ValidateFunctionArn"),
    "thumbnails": ("thumbnails", "ThumbnailsFunctionArn"),
    "video_thumbnails": ("video-thumbnails", "VideoThumbnailsFunctionArn"),
    "consolidate": ("consolidate", "ConsolidateFunctionArn"),
    "callback": ("callback", "CallbackFunctionArn"),
    "zip": ("zip", "ZipFunctionArn"),
}
STATE_MACHINES: dict[str, tuple[str, str]] = {
    # definition file -> (name template, env var with an explicit ARN)
    "media_processing_pipeline.json": (
        "listing-media-processing-sm-{stage}",
        "PROCESSING_STATE_MACHINE_ARN",
    ),
    "media_finalization_pipeline.json": (
        "listing-media-finalization-sm-{stage}",
        "FINALIZATION_STATE_MACHINE_ARN",
    ),
}
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
UPDATE_TIMEOUT_S = 300


class DeployError(Exception):
    pass


@dataclass(frozen=True)
class Settings:
    stage: str
    prefix: str
    zip_dir: Path
    definitions_dir: Path
    region: str | None
    functions: list[str]
    update_functions: bool
    update_state_machines: bool


def function_name(settings: Settings, module: str) -> str:
    return f"{settings.prefix}{FUNCTIONS[module][0]}-{settings.stage}"


def code_sha256(data: bytes) -> str:
    """Lambda's CodeSha256: base64 of the SHA-256 of the zip."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def wait_until_updated(client: Any, name: str) -> None:
    deadline = time.monotonic() + UPDATE_TIMEOUT_S
    while True:
        config = client.get_function_configuration(FunctionName=name)
        status = config.get("LastUpdateStatus", "Successful")
        if status == "Successful":
            return
        if status == "Failed":
            raise DeployError(f"{name}: update failed: {config.get('LastUpdateStatusReason')}")
        if time.monotonic() > deadline:
            raise DeployError(f"{name}: still {status} after {UPDATE_TIMEOUT_S} s")
        time.sleep(2)


def update_functions(client: Any, settings: Settings) -> dict[str, str]:
    """Upload each zip; returns placeholder -> function ARN."""
    arns: dict[str, str] = {}
    for module in settings.functions:
        name = function_name(settings, module)
        archive = settings.zip_dir / f"{module}.zip"
        if not archive.is_file():
            raise DeployError(f"{archive} is missing: run scripts/build_lambdas.sh first")
        data = archive.read_bytes()
        response = client.update_function_code(FunctionName=name, ZipFile=data)
        if response.get("CodeSha256") != code_sha256(data):
            raise DeployError(f"{name}: Lambda reports a different CodeSha256 than the zip's")
        wait_until_updated(client, name)
        arns[FUNCTIONS[module][1]] = response["FunctionArn"]
        print(f"deploy: {name} <- {archive.name} (sha256 {response['CodeSha256']})")
    return arns


def function_arns(client: Any, settings: Settings) -> dict[str, str]:
    """The ARNs of the deployed functions (when only the state machines are updated)."""
    return {
        placeholder: client.get_function(FunctionName=function_name(settings, module))[
            "Configuration"
        ]["FunctionArn"]
        for module, (_, placeholder) in FUNCTIONS.items()
    }


def fill_placeholders(template: str, values: dict[str, str]) -> str:
    missing = sorted({name for name in PLACEHOLDER.findall(template) if name not in values})
    if missing:
        raise DeployError(f"no value for placeholders: {', '.join(missing)}")
    filled = PLACEHOLDER.sub(lambda match: values[match.group(1)], template)
    json.loads(filled)  # a value must not break the JSON
    return filled


def state_machine_arn(client: Any, settings: Settings, definition_file: str) -> str:
    name_template, env_var = STATE_MACHINES[definition_file]
    if os.environ.get(env_var):
        return os.environ[env_var]
    name = name_template.format(stage=settings.stage)
    for page in client.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == name:
                return machine["stateMachineArn"]
    raise DeployError(f"state machine {name} not found (or set {env_var})")


def render_definitions(settings: Settings, values: dict[str, str]) -> dict[str, str]:
    """Every definition filled, or DeployError before anything is changed."""
    return {
        definition_file: fill_placeholders(
            (settings.definitions_dir / definition_file).read_text(encoding="utf-8"), values
        )
        for definition_file in STATE_MACHINES
    }


def update_state_machines(client: Any, settings: Settings, definitions: dict[str, str]) -> None:
    arns = {name: state_machine_arn(client, settings, name) for name in definitions}
    for definition_file, definition in definitions.items():
        client.update_state_machine(stateMachineArn=arns[definition_file], definition=definition)
        print(f"deploy: {arns[definition_file]} <- {definition_file}")


def parse_args(argv: list[str]) -> Settings:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stage", default=os.environ.get("STAGE", "staging"))
    parser.add_argument(
        "--prefix", default=os.environ.get("LAMBDA_FUNCTION_PREFIX", "listing-media-")
    )
    parser.add_argument(
        "--zip-dir",
        type=Path,
        default=Path(os.environ.get("LAMBDA_OUT_DIR") or ROOT / "aws/lambdas/bin"),
    )
    parser.add_argument("--definitions-dir", type=Path, default=ROOT / "aws/step_functions")
    parser.add_argument(
        "--function",
        action="append",
        choices=sorted(FUNCTIONS),
        help="only this function (repeatable; default: all)",
    )
    parser.add_argument("--skip-functions", action="store_true")
    parser.add_argument("--skip-state-machines", action="store_true")
    args = parser.parse_args(argv)
    return Settings(
        stage=args.stage,
        prefix=args.prefix,
        zip_dir=args.zip_dir,
        definitions_dir=args.definitions_dir,
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        functions=args.function or list(FUNCTIONS),
        update_functions=not args.skip_functions,
        update_state_machines=not args.skip_state_machines,
    )


def environment_values(settings: Settings) -> dict[str, str]:
    values = {"Stage": settings.stage}
    if os.environ.get("MEDIACONVERT_ROLE_ARN"):
        values["MediaConvertRoleArn"] = os.environ["MEDIACONVERT_ROLE_ARN"]
    return values


def deploy(settings: Settings) -> None:
    lambda_client = boto3.client("lambda", region_name=settings.region)
    if settings.update_state_machines:
        # Fail on a missing value before uploading anything (function ARNs are known later).
        stand_ins = {placeholder: "arn:aws:lambda:check" for _, placeholder in FUNCTIONS.values()}
        render_definitions(settings, {**stand_ins, **environment_values(settings)})
    arns = update_functions(lambda_client, settings) if settings.update_functions else {}
    if not settings.update_state_machines:
        return
    values = {**function_arns(lambda_client, settings), **arns, **environment_values(settings)}
    definitions = render_definitions(settings, values)
    update_state_machines(
        boto3.client("stepfunctions", region_name=settings.region), settings, definitions
    )


def main(argv: list[str] | None = None) -> int:
    try:
        deploy(parse_args(sys.argv[1:] if argv is None else argv))
    except DeployError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
