"""Deploy into the existing account, all or nothing (docs/contract.md §11).

``preflight`` only reads: it inspects every function, role and state machine the deploy
will touch, downloads the current code of each function it will change (so it can be put
back), checks the roles' permissions and renders both definitions. It returns a ``Plan``
with every problem found, not only the first. ``apply`` then changes one thing at a time,
waiting for each Lambda update to finish, and records each change in a journal; when a
step fails, ``rollback`` undoes the journal in reverse (code, runtime, handler,
environment, definitions), so the live pipeline is never left half Go, half Python.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests

from .iam import Need, RolePolicies, load_role_policies, policy_statements_for, role_name_of
from .layout import (
    ARCHITECTURE,
    DEFAULT_FFMPEG_PATH,
    FUNCTIONS,
    MEDIACONVERT_SYNC_RULE,
    RUNTIME,
    STATE_MACHINES,
    FunctionSpec,
    MachineSpec,
    Names,
)

PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
SECRET_NAMES = re.compile(r"SECRET|TOKEN|PASSWORD|KEY", re.IGNORECASE)
_S3_VIRTUAL_HOST = re.compile(r"^(?P<bucket>[^.]+)\.s3[.-](?:[a-z0-9-]+\.)?amazonaws\.com$")


class DeployError(Exception):
    pass


def code_sha256(data: bytes) -> str:
    """Lambda's CodeSha256: base64 of the SHA-256 of the zip."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def definition_sha(definition: str) -> str:
    return hashlib.sha256(definition.encode("utf-8")).hexdigest()[:12]


def shown(name: str, value: str) -> str:
    return "****" if SECRET_NAMES.search(name) else value


@dataclass
class Clients:
    lambda_: Any
    iam: Any
    sfn: Any
    s3: Any
    local_endpoint: bool = False


@dataclass
class FunctionState:
    """What a function is now (the part a deploy changes and a rollback restores)."""

    name: str
    arn: str
    runtime: str
    handler: str
    environment: dict[str, str] | None
    code_sha: str
    role: str
    package_type: str
    architectures: list[str]
    state: str
    last_update_status: str

    @classmethod
    def of(cls, config: dict[str, Any]) -> FunctionState:
        return cls(
            name=config["FunctionName"],
            arn=config["FunctionArn"],
            runtime=config.get("Runtime", ""),
            handler=config.get("Handler", ""),
            environment=(config.get("Environment") or {}).get("Variables"),
            code_sha=config["CodeSha256"],
            role=config["Role"],
            package_type=config.get("PackageType", "Zip"),
            architectures=list(config.get("Architectures") or ["x86_64"]),
            state=config.get("State", "Active"),
            last_update_status=config.get("LastUpdateStatus", "Successful"),
        )


@dataclass
class FunctionTarget:
    spec: FunctionSpec
    current: FunctionState
    code: bytes | None  # None: leave the code as it is
    runtime: str
    handler: str
    environment: dict[str, str] | None  # None: leave the environment as it is
    previous_code: bytes | None = None  # the current zip, downloaded (None: unchanged code)

    @property
    def code_changes(self) -> bool:
        return self.code is not None and code_sha256(self.code) != self.current.code_sha

    @property
    def config_changes(self) -> bool:
        return (
            self.runtime != self.current.runtime
            or self.handler != self.current.handler
            or (
                self.environment is not None
                and self.environment != (self.current.environment or {})
            )
        )


@dataclass
class MachineState:
    spec: MachineSpec
    arn: str
    name: str
    definition: str
    role_arn: str


@dataclass
class MachineTarget:
    current: MachineState
    definition: str

    @property
    def changes(self) -> bool:
        return self.definition != self.current.definition


@dataclass
class Plan:
    env: str
    region: str
    account: str
    functions: list[FunctionTarget] = field(default_factory=list)
    machines: list[MachineTarget] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> list[str]:
        lines = [f"deploy plan: env {self.env}, region {self.region}, account {self.account}"]
        for target in self.functions:
            current = target.current
            lines.append(f"  function {current.name} ({target.spec.module})")
            if target.runtime != current.runtime:
                lines.append(f"    runtime  {current.runtime} -> {target.runtime}")
            if target.handler != current.handler:
                lines.append(f"    handler  {current.handler} -> {target.handler}")
            if target.code_changes:
                assert target.code is not None
                lines.append(
                    f"    code     {current.code_sha} -> {code_sha256(target.code)} "
                    f"({len(target.code)} bytes)"
                )
            if target.environment is not None:
                before = current.environment or {}
                for key in sorted(target.environment):
                    if before.get(key) != target.environment[key]:
                        lines.append(f"    env      + {key}={shown(key, target.environment[key])}")
            if not (target.code_changes or target.config_changes):
                lines.append("    unchanged")
        for machine in self.machines:
            current = machine.current
            state = (
                f"{definition_sha(current.definition)} -> {definition_sha(machine.definition)}"
                if machine.changes
                else "unchanged"
            )
            lines.append(f"  state machine {current.name}: definition {state}")
        lines += [f"  warning: {warning}" for warning in self.warnings]
        return lines


# -- reading the account ----------------------------------------------------------------------


def _error_code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)


def download_code(clients: Clients, location: str, expected_sha: str) -> bytes:
    """The zip behind ``get_function``'s ``Code.Location`` (a presigned S3 URL), checked
    against the function's CodeSha256. Against a local endpoint the same object is read
    with the S3 API (the URL names AWS's own host)."""
    url = urlparse(location)
    match = _S3_VIRTUAL_HOST.match(url.hostname or "")
    if clients.local_endpoint and match:
        response = clients.s3.get_object(Bucket=match["bucket"], Key=url.path.lstrip("/"))
        data = response["Body"].read()
    else:
        response = requests.get(location, timeout=120)
        response.raise_for_status()
        data = response.content
    if code_sha256(data) != expected_sha:
        raise DeployError(
            f"the downloaded code's sha256 is {code_sha256(data)}, not {expected_sha}"
        )
    return data


def find_state_machine(clients: Clients, spec: MachineSpec, name_or_arn: str) -> str:
    if name_or_arn.startswith("arn:"):
        return name_or_arn
    if os.environ.get(spec.arn_variable):
        return os.environ[spec.arn_variable]
    for page in clients.sfn.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == name_or_arn:
                return machine["stateMachineArn"]
    raise DeployError(f"state machine {name_or_arn} not found (or set {spec.arn_variable})")


def fill_placeholders(template: str, values: dict[str, str]) -> str:
    missing = sorted({name for name in PLACEHOLDER.findall(template) if name not in values})
    if missing:
        raise DeployError(f"no value for placeholders: {', '.join(missing)}")
    filled = PLACEHOLDER.sub(lambda match: values[match.group(1)], template)
    json.loads(filled)  # a value must not break the JSON
    return filled


def _zip_problem(module: str, data: bytes) -> str | None:
    try:
        names = set(zipfile.ZipFile(io.BytesIO(data)).namelist())
    except zipfile.BadZipFile as exc:
        return f"{module}.zip is not a zip: {exc}"
    handler = f"media_jobs/pipeline/handlers/{module}.py"
    if handler not in names:
        return f"{module}.zip has no {handler}: rebuild it with scripts/build_lambdas.sh"
    if any(name.startswith("django/") for name in names):
        return f"{module}.zip contains Django: rebuild it with scripts/build_lambdas.sh"
    return None


def _environment_for(
    spec: FunctionSpec, current: dict[str, str] | None, bucket: str, processing_arn: str
) -> dict[str, str] | None:
    """The current environment plus what the Python handler needs and the Go one had
    as defaults; existing values are kept. None when nothing is added."""
    environment = dict(current or {})
    if spec.needs_bucket and not environment.get("MEDIA_BUCKET"):
        environment["MEDIA_BUCKET"] = bucket
    if spec.needs_ffmpeg and not environment.get("FFMPEG_PATH"):
        environment["FFMPEG_PATH"] = DEFAULT_FFMPEG_PATH
    if spec.starts_executions and not environment.get("STATE_MACHINE_ARN") and processing_arn:
        environment["STATE_MACHINE_ARN"] = processing_arn
    return environment if environment != (current or {}) else None


def _arn_parts(arn: str) -> tuple[str, str, str]:
    """(partition, region, account) of an ARN."""
    parts = arn.split(":")
    return parts[1], parts[3], parts[4]


def stepfunctions_needs(
    function_arns: dict[str, str],
    mediaconvert_role_arn: str,
    partition: str,
    region: str,
    account: str,
) -> list[Need]:
    """What the state machines' role must be allowed: invoking the six functions, and what
    the ``mediaconvert:createJob.sync`` integration uses."""
    needs = [
        Need("lambda:InvokeFunction", arn, why=f"the state machines call {name}")
        for name, arn in function_arns.items()
    ]
    needs += [
        Need(action, "*", why="the createJob.sync MediaConvert task")
        for action in ("mediaconvert:CreateJob", "mediaconvert:GetJob", "mediaconvert:CancelJob")
    ]
    needs.append(
        Need(
            "iam:PassRole",
            mediaconvert_role_arn,
            context=(("iam:PassedToService", "mediaconvert.amazonaws.com"),),
            why="MediaConvert jobs run as that role",
        )
    )
    rule = f"arn:{partition}:events:{region}:{account}:rule/{MEDIACONVERT_SYNC_RULE}"
    needs += [
        Need(action, rule, why="createJob.sync waits for the job through this EventBridge rule")
        for action in ("events:PutTargets", "events:PutRule", "events:DescribeRule")
    ]
    return needs


def lambda_needs(
    spec: FunctionSpec, bucket: str, processing_arn: str, partition: str
) -> list[Need]:
    needs: list[Need] = []
    if spec.needs_bucket:
        objects = f"arn:{partition}:s3:::{bucket}/*"
        needs += [Need("s3:GetObject", objects), Need("s3:PutObject", objects)]
        # without ListBucket a missing object answers 403, not 404
        needs.append(Need("s3:ListBucket", f"arn:{partition}:s3:::{bucket}"))
    if spec.starts_executions and processing_arn:
        needs.append(Need("states:StartExecution", processing_arn))
    return needs


def _missing_message(role: str, used_by: str, missing: list[Need]) -> str:
    listed = "; ".join(need.describe() for need in missing)
    policy = json.dumps(
        {"Version": "2012-10-17", "Statement": policy_statements_for(missing)}, indent=2
    )
    return (
        f"role {role} ({used_by}) is missing: {listed}. Grant it, e.g.:\n"
        f"  aws iam put-role-policy --role-name {role} --policy-name toq-portal-deploy "
        f"--policy-document file://policy.json\nwith policy.json:\n{policy}\n"
        "(the check reads the role's inline and attached policies; permission boundaries "
        "and SCPs are not evaluated)"
    )


def preflight(
    clients: Clients,
    names: Names,
    *,
    zips: dict[str, bytes] | None,
    definitions_dir: Path,
    bucket: str,
    modules: list[str],
    update_functions: bool,
    update_machines: bool,
    allow_running: bool,
    check_permissions: bool = True,
    targets_override: Callable[[FunctionSpec, FunctionState], FunctionTarget | None] | None = None,
    definitions_override: dict[str, str] | None = None,
) -> Plan:
    """Everything the deploy will touch, read and checked; nothing changed."""
    problems: list[str] = []
    warnings: list[str] = []

    # functions
    states: dict[str, FunctionState] = {}
    locations: dict[str, str] = {}
    for spec in FUNCTIONS:
        name = names.functions[spec.module]
        try:
            response = clients.lambda_.get_function(FunctionName=name)
        except Exception as exc:  # noqa: BLE001 - reported, the deploy stops before changes
            problems.append(f"function {name} ({spec.module}): {_error_code(exc)}: {exc}")
            continue
        state = FunctionState.of(response["Configuration"])
        states[spec.module] = state
        locations[spec.module] = (response.get("Code") or {}).get("Location", "")
        if spec.module not in modules or not update_functions:
            continue
        if state.package_type != "Zip":
            problems.append(f"function {name}: package type {state.package_type}, not Zip")
        if state.architectures != [ARCHITECTURE]:
            problems.append(
                f"function {name}: architectures {state.architectures}; the zips are built "
                f"for {ARCHITECTURE}"
            )
        if state.state != "Active" or state.last_update_status not in ("Successful", ""):
            problems.append(
                f"function {name}: state {state.state}, last update {state.last_update_status}:"
                " wait until it is Active and Successful"
            )
        if spec.needs_callback_target:
            environment = state.environment or {}
            absent = [v for v in ("CALLBACK_URL", "CALLBACK_SECRET") if not environment.get(v)]
            if absent:
                problems.append(
                    f"function {name} has no {' and no '.join(absent)}: it is not the function "
                    "the callbacks go through (override with --name callback=<function>)"
                )
    anchor = next(iter(states.values()), None)
    partition, region, account = _arn_parts(anchor.arn) if anchor else ("aws", "?", "?")
    plan = Plan(names.env, region, account, problems=problems, warnings=warnings)

    # state machines
    machines: dict[str, MachineState] = {}
    for spec in STATE_MACHINES:
        name = names.machines[spec.kind]
        try:
            arn = find_state_machine(clients, spec, name)
            described = clients.sfn.describe_state_machine(stateMachineArn=arn)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"state machine {name} ({spec.kind}): {_error_code(exc)}: {exc}")
            continue
        if described.get("status", "ACTIVE") != "ACTIVE":
            problems.append(f"state machine {described['name']}: status {described['status']}")
        machines[spec.kind] = MachineState(
            spec, arn, described["name"], described["definition"], described["roleArn"]
        )
        running = clients.sfn.list_executions(
            stateMachineArn=arn, statusFilter="RUNNING", maxResults=20
        )["executions"]
        if running and not allow_running:
            problems.append(
                f"state machine {described['name']} has {len(running)}"
                f"{'+' if len(running) == 20 else ''} running execution(s) (e.g. "
                f"{running[0]['executionArn']}): they would meet functions half Go, half "
                "Python; wait for them or pass --allow-running-executions"
            )
    processing_arn = machines["processing"].arn if "processing" in machines else ""

    # the MediaConvert role
    mediaconvert_role_arn = ""
    if update_machines:
        try:
            role = clients.iam.get_role(RoleName=role_name_of(names.mediaconvert_role))["Role"]
            mediaconvert_role_arn = role["Arn"]
            trust = json.dumps(role.get("AssumeRolePolicyDocument") or {})
            if "mediaconvert.amazonaws.com" not in trust:
                problems.append(
                    f"role {role['RoleName']} does not trust mediaconvert.amazonaws.com: "
                    "MediaConvert could not assume it"
                )
        except Exception as exc:  # noqa: BLE001
            problems.append(
                f"MediaConvert role {names.mediaconvert_role}: {_error_code(exc)}: {exc}"
            )

    # what changes
    for spec in FUNCTIONS:
        state = states.get(spec.module)
        if state is None or spec.module not in modules or not update_functions:
            continue
        if targets_override is not None:
            target = targets_override(spec, state)
        else:
            code = (zips or {}).get(spec.module)
            if code is None:
                problems.append(f"{spec.module}.zip is missing: run scripts/build_lambdas.sh")
                continue
            problem = _zip_problem(spec.module, code)
            if problem:
                problems.append(problem)
                continue
            target = FunctionTarget(
                spec,
                state,
                code,
                RUNTIME,
                spec.handler,
                _environment_for(spec, state.environment, bucket, processing_arn),
            )
        if target is None:
            continue
        if target.code_changes:
            try:
                target.previous_code = download_code(
                    clients, locations[spec.module], state.code_sha
                )
            except Exception as exc:  # noqa: BLE001
                problems.append(
                    f"function {state.name}: cannot save its current code, so a rollback would "
                    f"be impossible: {exc}"
                )
        plan.functions.append(target)

    if definitions_override is not None:
        for kind, definition in definitions_override.items():
            if kind in machines:
                plan.machines.append(MachineTarget(machines[kind], definition))
    elif update_machines and len(machines) == len(STATE_MACHINES) and len(states) == len(FUNCTIONS):
        values = {spec.placeholder: states[spec.module].arn for spec in FUNCTIONS}
        values.update(Stage=names.env, MediaConvertRoleArn=mediaconvert_role_arn or "arn:unknown")
        for spec in STATE_MACHINES:
            template = (definitions_dir / spec.definition_file).read_text(encoding="utf-8")
            try:
                definition = fill_placeholders(template, values)
            except DeployError as exc:
                problems.append(f"{spec.definition_file}: {exc}")
                continue
            plan.machines.append(MachineTarget(machines[spec.kind], definition))

    if check_permissions and anchor is not None:
        _check_permissions(
            clients, plan, names, states, machines, mediaconvert_role_arn, bucket,
            processing_arn, partition, update_machines,
        )  # fmt: skip
    return plan


def _check_permissions(
    clients: Clients,
    plan: Plan,
    names: Names,
    states: dict[str, FunctionState],
    machines: dict[str, MachineState],
    mediaconvert_role_arn: str,
    bucket: str,
    processing_arn: str,
    partition: str,
    update_machines: bool,
) -> None:
    # the functions' execution roles (usually one, shared)
    by_role: dict[str, tuple[list[str], list[Need]]] = {}
    for spec in FUNCTIONS:
        state = states.get(spec.module)
        if state is None:
            continue
        users, needs = by_role.setdefault(state.role, ([], []))
        users.append(state.name)
        needs += [
            n for n in lambda_needs(spec, bucket, processing_arn, partition) if n not in needs
        ]
    for role, (users, needs) in by_role.items():
        policies = _check_role(clients, plan, role, f"used by {', '.join(users)}", needs)
        if policies is None:
            continue
        zip_user = states.get("zip")
        if zip_user and zip_user.role == role:
            abort = Need("s3:AbortMultipartUpload", f"arn:{partition}:s3:::{bucket}/*")
            if not policies.allows(abort):
                plan.warnings.append(
                    f"role {policies.role_name} may not s3:AbortMultipartUpload: a failed ZIP "
                    "leaves its incomplete upload for the bucket's lifecycle rule to remove"
                )
    if not update_machines or not mediaconvert_role_arn:
        return
    function_arns = {state.name: state.arn for state in states.values()}
    region, account = plan.region, plan.account
    needs = stepfunctions_needs(function_arns, mediaconvert_role_arn, partition, region, account)
    for role_arn in sorted({machine.role_arn for machine in machines.values()}):
        users = ", ".join(m.name for m in machines.values() if m.role_arn == role_arn)
        _check_role(clients, plan, role_arn, f"the role of {users}", needs)


def _check_role(
    clients: Clients, plan: Plan, role: str, used_by: str, needs: list[Need]
) -> RolePolicies | None:
    """Adds a problem when the role is unreadable or lacks any of ``needs``."""
    try:
        policies = load_role_policies(clients.iam, role)
    except Exception as exc:  # noqa: BLE001 - reported, the deploy stops before changes
        plan.problems.append(f"role {role} ({used_by}): {_error_code(exc)}: {exc}")
        return None
    missing = policies.missing(needs)
    if missing:
        plan.problems.append(_missing_message(policies.role_name, used_by, missing))
    return policies


# -- changing the account ---------------------------------------------------------------------


@dataclass
class Step:
    description: str
    do: Callable[[], None]
    undo: Callable[[], None]


def wait_updated(clients: Clients, name: str) -> None:
    """Until the function's last update is Successful (Lambda refuses a second update
    while one is in progress); a Failed update raises."""
    waiter = clients.lambda_.get_waiter("function_updated")
    waiter.wait(FunctionName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 300})


def _update_code(clients: Clients, name: str, data: bytes) -> None:
    wait_updated(clients, name)
    response = clients.lambda_.update_function_code(FunctionName=name, ZipFile=data)
    if response.get("CodeSha256") != code_sha256(data):
        raise DeployError(f"{name}: Lambda reports CodeSha256 {response.get('CodeSha256')}")
    wait_updated(clients, name)


def _update_config(
    clients: Clients, name: str, runtime: str, handler: str, environment: dict[str, str] | None
) -> None:
    wait_updated(clients, name)
    arguments: dict[str, Any] = {"FunctionName": name, "Runtime": runtime, "Handler": handler}
    if environment is not None:
        arguments["Environment"] = {"Variables": environment}
    clients.lambda_.update_function_configuration(**arguments)
    wait_updated(clients, name)


def steps_for(clients: Clients, plan: Plan) -> list[Step]:
    steps: list[Step] = []
    for target in plan.functions:
        current, name = target.current, target.current.name
        if target.code_changes:
            assert target.code is not None and target.previous_code is not None
            new, old = target.code, target.previous_code
            steps.append(
                Step(
                    f"{name}: code {current.code_sha} -> {code_sha256(new)}",
                    lambda name=name, new=new: _update_code(clients, name, new),
                    lambda name=name, old=old: _update_code(clients, name, old),
                )
            )
        if target.config_changes:
            old_environment = (
                (current.environment or {}) if target.environment is not None else None
            )
            steps.append(
                Step(
                    f"{name}: runtime {target.runtime}, handler {target.handler}"
                    + (", environment" if target.environment is not None else ""),
                    lambda name=name, t=target: _update_config(
                        clients, name, t.runtime, t.handler, t.environment
                    ),
                    lambda name=name, c=current, env=old_environment: _update_config(
                        clients, name, c.runtime, c.handler, env
                    ),
                )
            )
    for machine in plan.machines:
        if not machine.changes:
            continue
        arn, new, old = machine.current.arn, machine.definition, machine.current.definition
        steps.append(
            Step(
                f"{machine.current.name}: definition {definition_sha(old)} -> {definition_sha(new)}",
                lambda arn=arn, new=new: clients.sfn.update_state_machine(
                    stateMachineArn=arn, definition=new
                ),
                lambda arn=arn, old=old: clients.sfn.update_state_machine(
                    stateMachineArn=arn, definition=old
                ),
            )
        )
    return steps


@dataclass
class Outcome:
    done: list[Step]
    failed: Step | None = None
    error: str = ""
    undo_errors: list[str] = field(default_factory=list)

    @property
    def rolled_back(self) -> bool:
        return self.failed is not None and not self.undo_errors


def apply(steps: list[Step], log: Callable[[str], None]) -> Outcome:
    """Run the steps in order; on the first failure undo what was done, newest first."""
    done: list[Step] = []
    for step in steps:
        log(f"deploy: {step.description}")
        try:
            step.do()
        except Exception as exc:  # noqa: BLE001 - every failure triggers the rollback
            outcome = Outcome(done, step, f"{_error_code(exc)}: {exc}")
            log(f"deploy: FAILED: {step.description}: {outcome.error}")
            # the failed step may have half-happened (the code uploaded, the wait failed)
            for undo in [step, *reversed(done)]:
                log(f"rollback: {undo.description}")
                try:
                    undo.undo()
                except Exception as undo_exc:  # noqa: BLE001
                    if undo is step:
                        continue  # it never happened: nothing to put back
                    outcome.undo_errors.append(
                        f"{undo.description}: {_error_code(undo_exc)}: {undo_exc}"
                    )
            return outcome
        done.append(step)
    return Outcome(done)


def differences_from_before(clients: Clients, plan: Plan) -> list[str]:
    """What is not as ``preflight`` found it (after a rollback: what it could not undo)."""
    found: list[str] = []
    for target in plan.functions:
        before = target.current
        now = FunctionState.of(clients.lambda_.get_function_configuration(FunctionName=before.name))
        for what, old, new in (
            ("code", before.code_sha, now.code_sha),
            ("runtime", before.runtime, now.runtime),
            ("handler", before.handler, now.handler),
        ):
            if old != new:
                found.append(f"{before.name}: {what} is {new}, was {old}")
        old_env, new_env = before.environment or {}, now.environment or {}
        changed = sorted(k for k in set(old_env) | set(new_env) if old_env.get(k) != new_env.get(k))
        if changed:
            found.append(f"{before.name}: environment differs in {', '.join(changed)}")
    for machine in plan.machines:
        now_definition = clients.sfn.describe_state_machine(stateMachineArn=machine.current.arn)[
            "definition"
        ]
        if now_definition != machine.current.definition:
            found.append(f"{machine.current.name}: definition {definition_sha(now_definition)}")
    return found


# -- backups -----------------------------------------------------------------------------------


def write_backup(directory: Path, plan: Plan) -> None:
    """The state before the deploy: every changed function's zip and configuration, and
    both definitions (``--restore`` puts them back). Readable by the owner only: the
    environments may hold secrets."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    manifest: dict[str, Any] = {"env": plan.env, "region": plan.region, "account": plan.account}
    functions = []
    for target in plan.functions:
        current = target.current
        entry: dict[str, Any] = {
            "module": target.spec.module,
            "name": current.name,
            "runtime": current.runtime,
            "handler": current.handler,
            "codeSha256": current.code_sha,
        }
        if target.environment is not None:
            entry["environment"] = current.environment or {}
        if target.previous_code is not None:
            entry["zip"] = f"{current.name}.zip"
            path = directory / entry["zip"]
            path.write_bytes(target.previous_code)
            path.chmod(0o600)
        functions.append(entry)
    manifest["functions"] = functions
    manifest["stateMachines"] = [
        {"kind": m.current.spec.kind, "arn": m.current.arn, "definition": m.current.definition}
        for m in plan.machines
    ]
    path = directory / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    path.chmod(0o600)


def restore_targets(
    directory: Path,
) -> tuple[dict[str, Any], Callable[[FunctionSpec, FunctionState], FunctionTarget | None]]:
    """Targets that put back what ``write_backup`` saved."""
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    saved = {entry["module"]: entry for entry in manifest["functions"]}

    def target(spec: FunctionSpec, state: FunctionState) -> FunctionTarget | None:
        entry = saved.get(spec.module)
        if entry is None:
            return None
        if entry["name"] != state.name:
            raise DeployError(f"backup of {entry['name']} does not match function {state.name}")
        code = None
        if "zip" in entry:
            code = (directory / entry["zip"]).read_bytes()
            if code_sha256(code) != entry["codeSha256"]:
                raise DeployError(f"{entry['zip']} does not have the saved sha256")
        return FunctionTarget(
            spec, state, code, entry["runtime"], entry["handler"], entry.get("environment")
        )

    return manifest, target
