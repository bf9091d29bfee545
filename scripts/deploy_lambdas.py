"""Deploy the pipeline into the TOQ account, in place of the Go functions, all or nothing.

    scripts/deploy_lambdas.sh --dry-run          # check everything, print the plan, change nothing
    scripts/deploy_lambdas.sh                    # check, then deploy; a failure puts everything back
    scripts/deploy_lambdas.sh --restore DIR      # put back what a deploy saved in DIR

Functions and state machines are found by the names of the account's Terraform
(aws/README.md), with ``{env}`` = ``--env`` (default ``staging``); every name can be
overridden. Each function gets its zip from aws/lambdas/bin/<module>.zip, runtime
python3.12, its Python handler, and the environment the Python handler needs (existing
values kept), one update at a time, each waited for. Both definitions are then filled with
the functions' ARNs and the MediaConvert role. boto3 honours ``AWS_ENDPOINT_URL``: the tests
deploy to a local AWS endpoint seeded with a replica of the account.

Exit status: 0 done (or dry run / nothing to change), 1 refused by the preflight or failed
and rolled back (nothing changed), 2 bad arguments or an unreadable backup, 3 failed and the
rollback could not put everything back (the message says what differs and where the backup
is).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy.account import (
    Clients,
    DeployError,
    apply,
    differences_from_before,
    preflight,
    restore_targets,
    steps_for,
    write_backup,
)
from deploy.layout import DEFAULT_BUCKET, MODULES, Names, parse_overrides

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--env",
        "--stage",
        dest="env",
        default=os.environ.get("DEPLOY_ENV") or os.environ.get("STAGE") or "staging",
        help="fills {env} in every name (default: DEPLOY_ENV, STAGE, or staging)",
    )
    parser.add_argument("--dry-run", action="store_true", help="preflight and plan only")
    parser.add_argument(
        "--name",
        action="append",
        default=[os.environ["DEPLOY_FUNCTION_NAMES"]]
        if os.environ.get("DEPLOY_FUNCTION_NAMES")
        else [],
        metavar="MODULE=FUNCTION",
        help=f"function name for a module ({', '.join(MODULES)}); repeatable or "
        "comma-separated; env DEPLOY_FUNCTION_NAMES",
    )
    parser.add_argument(
        "--state-machine",
        action="append",
        default=[],
        metavar="KIND=NAME_OR_ARN",
        help="processing=... / finalization=... (or PROCESSING_/FINALIZATION_STATE_MACHINE_ARN)",
    )
    parser.add_argument(
        "--mediaconvert-role",
        default=os.environ.get("MEDIACONVERT_ROLE_ARN"),
        help="role MediaConvert jobs run as (default toq-media-processing-mediaconvert-{env})",
    )
    parser.add_argument(
        "--media-bucket",
        default=os.environ.get("MEDIA_BUCKET") or DEFAULT_BUCKET,
        help="MEDIA_BUCKET given to the functions that lack it",
    )
    parser.add_argument(
        "--function",
        action="append",
        choices=MODULES,
        help="only this function's code and configuration (repeatable; default: all)",
    )
    parser.add_argument("--skip-functions", action="store_true")
    parser.add_argument("--skip-state-machines", action="store_true")
    parser.add_argument(
        "--allow-running-executions",
        action="store_true",
        help="deploy even while executions are running (they may meet mixed code)",
    )
    parser.add_argument(
        "--zip-dir",
        type=Path,
        default=Path(os.environ.get("LAMBDA_OUT_DIR") or ROOT / "aws/lambdas/bin"),
    )
    parser.add_argument("--definitions-dir", type=Path, default=ROOT / "aws/step_functions")
    parser.add_argument(
        "--backup-dir",
        type=Path,
        help="where the previous code, configuration and definitions are saved "
        "(default var/deploy-backups/<env>-<UTC time>)",
    )
    parser.add_argument("--restore", type=Path, metavar="DIR", help="put back a saved state")
    return parser.parse_args(argv)


def clients_for(region: str | None) -> Clients:
    session = boto3.session.Session(region_name=region)
    local = bool(os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_LAMBDA"))
    return Clients(
        lambda_=session.client("lambda"),
        iam=session.client("iam"),
        sfn=session.client("stepfunctions"),
        s3=session.client("s3"),
        local_endpoint=local,
    )


def run(args: argparse.Namespace) -> int:
    names = Names.resolve(
        args.env,
        parse_overrides(args.name, "--name"),
        parse_overrides(args.state_machine, "--state-machine"),
        args.mediaconvert_role,
    )
    clients = clients_for(os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
    common = {
        "definitions_dir": args.definitions_dir,
        "bucket": args.media_bucket,
        "allow_running": args.allow_running_executions,
    }
    if args.restore:
        manifest, targets = restore_targets(args.restore)
        plan = preflight(
            clients,
            names,
            zips=None,
            modules=list(MODULES),
            update_functions=True,
            update_machines=True,
            check_permissions=False,
            targets_override=targets,
            definitions_override={m["kind"]: m["definition"] for m in manifest["stateMachines"]},
            **common,
        )
    else:
        modules = list(args.function or MODULES)
        zips = {
            module: (args.zip_dir / f"{module}.zip").read_bytes()
            for module in modules
            if (args.zip_dir / f"{module}.zip").is_file()
        }
        plan = preflight(
            clients,
            names,
            zips=zips,
            modules=modules,
            update_functions=not args.skip_functions,
            update_machines=not args.skip_state_machines,
            **common,
        )
    for line in plan.describe():
        print(line)
    if plan.problems:
        print(f"preflight: {len(plan.problems)} problem(s); nothing was changed:", file=sys.stderr)
        for problem in plan.problems:
            print(f"- {problem}", file=sys.stderr)
        return 1
    steps = steps_for(clients, plan)
    if args.dry_run:
        print(f"dry run: preflight passed, {len(steps)} change(s) planned, nothing was changed")
        return 0
    if not steps:
        print("deploy: nothing to change")
        return 0
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    backup = args.backup_dir or ROOT / "var/deploy-backups" / f"{args.env}-{stamp}"
    write_backup(backup, plan)
    print(f"deploy: the previous state is saved in {backup}")
    outcome = apply(steps, print)
    if outcome.failed is None:
        print(
            f"deploy: done, {len(outcome.done)} change(s). To go back: "
            f"scripts/deploy_lambdas.sh --env {args.env} --restore {backup}"
        )
        return 0
    left = differences_from_before(clients, plan)
    if outcome.undo_errors or left:
        print("rollback: INCOMPLETE; the account differs from before:", file=sys.stderr)
        for line in [*outcome.undo_errors, *left]:
            print(f"- {line}", file=sys.stderr)
        print(
            f"rollback: the previous state is in {backup}; retry with "
            f"scripts/deploy_lambdas.sh --env {args.env} --restore {backup}",
            file=sys.stderr,
        )
        return 3
    print(
        f"deploy: failed at {outcome.failed.description}: {outcome.error}; rolled back, "
        "everything is as before",
        file=sys.stderr,
    )
    return 1


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        return run(args)
    except (DeployError, ValueError, OSError) as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
