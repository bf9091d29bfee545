"""scripts/deploy_lambdas.sh against a replica of the TOQ account (docs/contract.md §11).

The moto server (over HTTP, Lambda, IAM, Step Functions and S3) is seeded with the Go
system's layout from its Terraform (tests/support/toq_account.py); the script runs as a
subprocess, as an operator runs it, through a recording proxy (tests/support/aws_proxy.py)
that also refuses chosen calls the way AWS does, to fail a deploy midway.
"""

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
from typing import Any

import pytest

from scripts.deploy.iam import Need, RolePolicies, load_role_policies
from tests.fixtures.s3server import REGION, MotoServer
from tests.support.aws_proxy import AwsCall, AwsProxy, Refusal
from tests.support.toq_account import (
    ToqAccount,
    go_zip,
    grant_mediaconvert_sync,
    seed_toq_account,
    serve_code,
    snapshot,
)

# A whole deploy against moto per test (5-20 s each).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts/deploy_lambdas.sh"
MODULES = ("validate", "thumbnails", "video_thumbnails", "consolidate", "zip", "callback")
RULE = "rule/StepFunctionsGetEventsForMediaConvertJobRule"


def sha(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def python_zip(module: str) -> bytes:
    """A stand-in for scripts/build_lambdas.sh's output: the package with the handler
    module (the real build is tests/pipeline/test_lambda_build.py's subject)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name in ("media_jobs/__init__.py", f"media_jobs/pipeline/handlers/{module}.py"):
            archive.writestr(zipfile.ZipInfo(name, (2025, 1, 1, 0, 0, 0)), f"# {module}\n")
    return out.getvalue()


@pytest.fixture
def account(moto_server: MotoServer) -> ToqAccount:
    return seed_toq_account(moto_server, f"t{uuid.uuid4().hex[:8]}")


@pytest.fixture
def zips(tmp_path: Path) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir()
    for module in MODULES:
        (directory / f"{module}.zip").write_bytes(python_zip(module))
    return directory


@pytest.fixture
def proxy(moto_server: MotoServer) -> Any:
    running = AwsProxy(moto_server.endpoint_url).start()
    try:
        yield running
    finally:
        running.stop()


def deploy(
    proxy: AwsProxy, account: ToqAccount, zips: Path, tmp_path: Path, *args: str
) -> subprocess.CompletedProcess:
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MEDIACONVERT"))},
        "AWS_ENDPOINT_URL": proxy.url,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "DEPLOY_ENV": account.env,
        "LAMBDA_OUT_DIR": str(zips),
        "PYTHON": str(ROOT / ".venv/bin/python"),
    }
    if "--backup-dir" not in args and "--restore" not in args:
        args = (*args, "--backup-dir", str(tmp_path / "backup"))
    return subprocess.run(
        [str(SCRIPT), *args], env=environment, capture_output=True, text=True, timeout=300
    )


def is_update_of(name: str, what: str) -> Any:
    def check(call: AwsCall) -> bool:
        return call.method == "PUT" and call.path == f"/2015-03-31/functions/{name}/{what}"

    return check


def uploads(call: AwsCall, data: bytes) -> bool:
    """The call is an UpdateFunctionCode with exactly ``data`` as the zip."""
    try:
        return base64.b64decode(json.loads(call.body)["ZipFile"]) == data
    except (ValueError, KeyError):
        return False


# -- the preflight ------------------------------------------------------------------------------


def test_the_real_accounts_step_functions_role_is_refused_with_what_it_lacks(
    moto_server: MotoServer, account: ToqAccount, zips: Path, proxy: AwsProxy, tmp_path: Path
) -> None:
    """The Terraform gives the state machines' role CreateJob/GetJob and PassRole (enough
    for Go's fire-and-forget createJob), not what createJob.sync uses."""
    before = snapshot(moto_server, account)
    result = deploy(proxy, account, zips, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    message = result.stderr
    assert f"role {account.stepfunctions_role}" in message
    missing = re.search(r"is missing: ([^\n]*)\. Grant it", message)
    assert missing is not None, message
    assert missing.group(1).split("; ") == [
        "mediaconvert:CancelJob on any resource (*)",
        f"events:PutTargets on {account.arn('events', RULE)}",
        f"events:PutRule on {account.arn('events', RULE)}",
        f"events:DescribeRule on {account.arn('events', RULE)}",
    ]
    # the policy to add is printed ready to use
    policy = json.loads(message.split("with policy.json:\n", 1)[1].split("\n(the check", 1)[0])
    assert {tuple(s["Action"]) for s in policy["Statement"]} == {
        ("mediaconvert:CancelJob",),
        ("events:DescribeRule", "events:PutRule", "events:PutTargets"),
    }
    assert "nothing was changed" in message
    assert proxy.mutating_calls() == []
    assert snapshot(moto_server, account) == before


def test_every_problem_is_reported_at_once_before_any_change(
    moto_server: MotoServer, account: ToqAccount, zips: Path, proxy: AwsProxy, tmp_path: Path
) -> None:
    grant_mediaconvert_sync(moto_server, account)
    (zips / "thumbnails.zip").unlink()
    moto_server.client("stepfunctions").start_execution(
        stateMachineArn=account.machines["processing"], input="{}"
    )
    before = snapshot(moto_server, account)
    result = deploy(
        proxy,
        account,
        zips,
        tmp_path,
        # the plain callback function has neither CALLBACK_URL nor CALLBACK_SECRET
        "--name",
        f"callback={account.functions['callback']},zip=listing-media-zipper-{account.env}",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    problems = [line for line in result.stderr.splitlines() if line.startswith("- ")]
    assert len(problems) == 4, result.stderr
    text = "\n".join(problems)
    assert f"listing-media-zipper-{account.env} (zip): ResourceNotFoundException" in text
    assert f"{account.functions['callback']} has no CALLBACK_URL and no CALLBACK_SECRET" in text
    assert "thumbnails.zip is missing" in text
    assert "1 running execution(s)" in text and "--allow-running-executions" in text
    assert proxy.mutating_calls() == []
    assert snapshot(moto_server, account) == before


def test_dry_run_prints_the_plan_and_changes_nothing(
    moto_server: MotoServer, account: ToqAccount, zips: Path, proxy: AwsProxy, tmp_path: Path
) -> None:
    grant_mediaconvert_sync(moto_server, account)
    before = snapshot(moto_server, account)
    result = deploy(proxy, account, zips, tmp_path, "--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for module in MODULES:
        assert f"  function {account.name_of(module)} ({module})" in out
        assert f"handler  bootstrap -> media_jobs.pipeline.handlers.{module}.handler" in out
    assert "runtime  provided.al2 -> python3.12" in out  # video_thumbnails
    assert out.count("runtime  provided.al2023 -> python3.12") == 5
    assert f"+ STATE_MACHINE_ARN={account.machines['processing']}" in out
    assert "+ MEDIA_BUCKET=toq-listing-medias" in out  # video_thumbnails had none
    assert f"state machine listing-media-processing-sm-{account.env}: definition" in out
    assert "dry run: preflight passed, 14 change(s) planned, nothing was changed" in out
    assert proxy.mutating_calls() == []
    assert snapshot(moto_server, account) == before
    assert not (tmp_path / "backup").exists()


# -- a full deploy ----------------------------------------------------------------------------


def test_full_deploy_puts_every_function_on_python_and_updates_both_state_machines(
    moto_server: MotoServer, account: ToqAccount, zips: Path, proxy: AwsProxy, tmp_path: Path
) -> None:
    grant_mediaconvert_sync(moto_server, account)
    before = snapshot(moto_server, account)
    result = deploy(proxy, account, zips, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    after = snapshot(moto_server, account)

    for module in MODULES:
        name = account.name_of(module)
        old, new = before["functions"][name], after["functions"][name]
        assert new["Runtime"] == "python3.12", name
        assert new["Handler"] == f"media_jobs.pipeline.handlers.{module}.handler"
        assert new["CodeSha256"] == sha(python_zip(module))
        # the existing environment is kept; only what the Python handler needs is added
        old_env = (old.get("Environment") or {}).get("Variables", {})
        new_env = (new.get("Environment") or {}).get("Variables", {})
        assert {k: new_env[k] for k in old_env} == old_env
        unchanged = ("Role", "MemorySize", "Timeout", "Layers", "TracingConfig", "Architectures")
        assert {k: new.get(k) for k in unchanged} == {k: old.get(k) for k in unchanged}
    env_of = {
        m: after["functions"][account.name_of(m)].get("Environment", {}).get("Variables", {})
        for m in MODULES
    }
    assert env_of["validate"]["STATE_MACHINE_ARN"] == account.machines["processing"]
    assert env_of["video_thumbnails"] == {
        "FFMPEG_PATH": "/opt/bin/ffmpeg",
        "MEDIA_BUCKET": "toq-listing-medias",
    }
    assert "CALLBACK_SECRET" in env_of["callback"]  # callback-dispatch, untouched
    # the plain callback function is not part of the pipeline: left as it was
    plain = account.functions["callback"]
    assert after["functions"][plain] == before["functions"][plain]

    processing = json.loads(after["machines"]["processing"]["definition"])
    finalization = json.loads(after["machines"]["finalization"]["definition"])
    text = json.dumps([processing, finalization])
    assert not re.search(r"\$\{[A-Za-z]+\}", text)
    assert (
        processing["States"]["ValidateRawAssets"]["Resource"] == account.function_arns["validate"]
    )
    dispatch = account.function_arns["callback_dispatch"]
    for definition in (processing, finalization):
        for state in ("FinalizeAndCallback", "ReportFailure"):
            assert definition["States"][state]["Resource"] == dispatch
    assert account.mediaconvert_role_arn in text and '"stage": "' + account.env in text
    assert after["machines"]["processing"]["roleArn"] == before["machines"]["processing"]["roleArn"]

    # one change at a time, each waited for; functions before definitions
    changes = [c.operation for c in proxy.mutating_calls()]
    assert len(changes) == 14
    assert all(op.startswith("lambda PUT") for op in changes[:12])
    assert changes[12:] == ["AWSStepFunctions.UpdateStateMachine"] * 2
    waits = [c for c in proxy.calls if c.operation.endswith("/configuration") and c.method == "GET"]
    assert len(waits) >= 12
    assert "To go back: scripts/deploy_lambdas.sh" in result.stdout

    again = deploy(proxy, account, zips, tmp_path, "--backup-dir", str(tmp_path / "second"))
    assert again.returncode == 0 and "deploy: nothing to change" in again.stdout

    # the backup brings the Go system back, exactly
    for module in MODULES:
        serve_code(moto_server, account.name_of(module), python_zip(module))
    restored = deploy(proxy, account, zips, tmp_path, "--restore", str(tmp_path / "backup"))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert snapshot(moto_server, account) == before


# -- failures midway ----------------------------------------------------------------------------


def test_a_failure_on_the_fourth_function_leaves_everything_as_before(
    moto_server: MotoServer, account: ToqAccount, zips: Path, proxy: AwsProxy, tmp_path: Path
) -> None:
    grant_mediaconvert_sync(moto_server, account)
    before = snapshot(moto_server, account)
    fourth = account.name_of("consolidate")
    proxy.refuse(
        is_update_of(fourth, "code"),
        Refusal(400, "CodeStorageExceededException", "Code storage limit exceeded."),
    )
    result = deploy(proxy, account, zips, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "CodeStorageExceededException" in result.stderr
    assert "rolled back, everything is as before" in result.stderr
    # the first three were really changed, then put back
    changed = {c.path.split("/")[3] for c in proxy.mutating_calls()}
    assert {account.name_of(m) for m in ("validate", "thumbnails", "video_thumbnails")} <= changed
    assert snapshot(moto_server, account) == before


def test_a_failure_on_a_state_machine_puts_back_the_functions_and_the_other_definition(
    moto_server: MotoServer, account: ToqAccount, zips: Path, proxy: AwsProxy, tmp_path: Path
) -> None:
    grant_mediaconvert_sync(moto_server, account)
    before = snapshot(moto_server, account)
    finalization = account.machines["finalization"]
    proxy.refuse(
        lambda call: (
            call.operation == "AWSStepFunctions.UpdateStateMachine"
            and finalization.encode() in call.body
        ),
        Refusal(400, "InvalidDefinition", "Invalid State Machine Definition"),
    )
    result = deploy(proxy, account, zips, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "InvalidDefinition" in result.stderr
    updates = [c for c in proxy.mutating_calls() if c.operation.startswith("AWSStepFunctions")]
    assert len(updates) == 2  # processing updated, then put back
    assert snapshot(moto_server, account) == before


def test_a_failed_rollback_says_what_differs_and_where_the_backup_is(
    moto_server: MotoServer, account: ToqAccount, zips: Path, proxy: AwsProxy, tmp_path: Path
) -> None:
    grant_mediaconvert_sync(moto_server, account)
    validate = account.name_of("validate")
    old_code = go_zip(validate)
    # the fourth function fails, and the first one's code cannot be put back either
    proxy.refuse(
        is_update_of(account.name_of("consolidate"), "code"),
        Refusal(400, "CodeStorageExceededException", "Code storage limit exceeded."),
    )
    proxy.refuse(
        lambda call: is_update_of(validate, "code")(call) and uploads(call, old_code),
        Refusal(500, "ServiceException", "Lambda was unable to process the request."),
    )
    result = deploy(proxy, account, zips, tmp_path)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "rollback: INCOMPLETE" in result.stderr
    assert f"{validate}: code is" in result.stderr
    assert f"--restore {tmp_path / 'backup'}" in result.stderr
    manifest = json.loads((tmp_path / "backup/manifest.json").read_text())
    assert {f["name"] for f in manifest["functions"]} == {account.name_of(m) for m in MODULES}
    assert (tmp_path / f"backup/{validate}.zip").read_bytes() == old_code


# -- the permission check itself --------------------------------------------------------------


def test_the_permission_check_follows_iam_evaluation() -> None:

    rule = "arn:aws:events:us-east-1:1:rule/StepFunctionsGetEventsForMediaConvertJobRule"
    pass_role = Need(
        "iam:PassRole",
        "arn:aws:iam::1:role/mc",
        context=(("iam:PassedToService", "mediaconvert.amazonaws.com"),),
    )
    policies = RolePolicies(
        "r",
        [
            {"Effect": "Allow", "Action": "events:*", "Resource": "arn:aws:events:*:1:rule/*"},
            {"Effect": "Allow", "NotAction": ["iam:*", "s3:*"], "Resource": "*"},
            {"Effect": "Deny", "Action": "mediaconvert:Cancel?ob", "Resource": "*"},
            {
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": "arn:aws:iam::1:role/*",
                "Condition": {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}},
            },
        ],
    )
    assert policies.allows(Need("EVENTS:PutRule", rule))  # action names ignore case
    assert policies.allows(Need("mediaconvert:CreateJob", "*"))  # through NotAction
    assert not policies.allows(Need("mediaconvert:CancelJob", "*"))  # explicit Deny
    assert not policies.allows(Need("s3:GetObject", "arn:aws:s3:::b/k"))
    assert not policies.allows(pass_role)  # its condition names another service
    policies.statements.append(
        {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::1:role/m?"}
    )
    assert policies.allows(pass_role)
    unknown_condition = RolePolicies(
        "r",
        [
            {
                "Effect": "Allow",
                "Action": "*",
                "Resource": "*",
                "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
            }
        ],
    )
    assert not unknown_condition.allows(Need("lambda:InvokeFunction", "arn:x"))


def test_attached_managed_policies_count(moto_server: MotoServer, account: ToqAccount) -> None:

    iam = moto_server.client("iam")
    policy = iam.create_policy(
        PolicyName=f"events-{account.env}",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "events:*", "Resource": "*"}],
            }
        ),
    )["Policy"]["Arn"]
    need = Need("events:PutTargets", account.arn("events", RULE))
    assert not load_role_policies(iam, account.stepfunctions_role).allows(need)
    iam.attach_role_policy(RoleName=account.stepfunctions_role, PolicyArn=policy)
    assert load_role_policies(iam, account.stepfunctions_role).allows(need)
