"""The conventions every operations command shares (media_jobs/management/base.py):
one-line errors with exit status 2 through Django's real command runner and a real
``manage.py`` process, exit status 1 when an item failed, progress on stderr (a tqdm bar on
a terminal, plain lines otherwise), and --json on a clean stdout."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError, OutputWrapper

from media_jobs.management.base import Progress, Summary, duration, until_moment
from media_jobs.pipeline.storage import Storage

from .conftest import put_photo, run_cli

ROOT = Path(__file__).resolve().parents[2]
LISTING = 7901
COMMANDS = [
    "backfill_derivatives",
    "requeue_jobs",
    "rebuild_zips",
    "import_raw_assets",
    "verify_storage",
    "reconcile_stuck_jobs",
    "clean_old_jobs",
]


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_the_common_options(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_cli(name, "--help", capsys=capsys)

    assert run.code == 0
    for option in ("--dry-run", "--batch-size", "--limit", "--json", "--enqueue"):
        assert option in run.stdout


@pytest.mark.parametrize(
    "name, args",
    [
        ("requeue_jobs", ["--status", "BOGUS"]),
        ("backfill_derivatives", ["--listing", "abc"]),
        ("verify_storage", ["--batch-size", "many"]),
        ("clean_old_jobs", ["--unknown-flag"]),
    ],
)
def test_parse_errors_are_one_line_with_exit_status_2(
    name: str, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_cli(name, *args, capsys=capsys)

    assert run.code == 2
    assert run.stdout == ""
    [line] = run.stderr.strip().splitlines()
    assert line.startswith(f"manage.py {name}: error: ")
    assert "usage:" not in run.stderr and "Traceback" not in run.stderr


@pytest.mark.django_db(transaction=True)
def test_inverted_dates_are_one_line_with_exit_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    run = run_cli(
        "backfill_derivatives", "--since", "2024-05-01", "--until", "2024-04-01", capsys=capsys
    )

    assert run.code == 2
    [line] = run.stderr.strip().splitlines()
    assert line.startswith("CommandError: --since/--until: the range is empty or inverted")


@pytest.mark.django_db(transaction=True)
def test_a_failed_item_gives_exit_status_1(
    storage: Storage, capsys: pytest.CaptureFixture[str]
) -> None:
    put_photo(storage, f"{LISTING}/raw/misc/horizontal-01-a.jpg", size=(32, 24))
    put_photo(storage, f"{LISTING}/raw/photo/horizontal/horizontal-01-a.jpg", size=(32, 24))

    run = run_cli("import_raw_assets", "--listing", str(LISTING), capsys=capsys)

    assert run.code == 1
    assert "import_raw_assets: selected=2 done=1 skipped=0 failed=1" in run.stdout
    assert "FAILED " in run.stderr and "'misc'" in run.stderr
    assert "CommandError: 1 of 2 raw objects failed" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_real_manage_py_process_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    env = {**os.environ, "DJANGO_ENV": "test", "DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3"}
    result = subprocess.run(
        [sys.executable, "manage.py", "requeue_jobs", "--listing", "12", "--status", "RUNNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "CommandError: --status RUNNING: only finished jobs can be retried "
        "(use reconcile_stuck_jobs for jobs stuck PENDING or RUNNING)"
    ]


@pytest.mark.django_db
def test_progress_is_plain_lines_on_stderr_and_json_stays_clean(storage: Storage) -> None:
    for sequence in range(1, 4):
        put_photo(
            storage, f"{LISTING}/raw/photo/vertical/vertical-0{sequence}-p.jpg", size=(32, 24)
        )
    out, err = io.StringIO(), io.StringIO()

    call_command(
        "import_raw_assets",
        "--listing",
        str(LISTING),
        "--json",
        "--batch-size",
        "1",
        stdout=out,
        stderr=err,
    )

    summary = json.loads(out.getvalue())  # nothing but the JSON document on stdout
    assert (summary["selected"], summary["done"]) == (3, 3)
    assert err.getvalue().startswith("progress import_raw_assets: 1 (selected=1 done=1")
    assert "\r" not in err.getvalue()


@pytest.mark.django_db
def test_progress_is_a_tqdm_bar_on_a_terminal(storage: Storage) -> None:
    for sequence in range(1, 4):
        put_photo(
            storage, f"{LISTING}/raw/photo/vertical/vertical-0{sequence}-p.jpg", size=(32, 24)
        )
    out, terminal = io.StringIO(), Terminal()

    call_command("import_raw_assets", "--listing", str(LISTING), stdout=out, stderr=terminal)
    call_command(
        "verify_storage", "--listing", f"{LISTING},{LISTING + 1}", stdout=out, stderr=terminal
    )

    bar = terminal.getvalue()
    assert "\r" in bar and "2/2" in bar and " listing" in bar  # verify_storage knows its total
    assert "3 raw object" in bar and "done=3" in bar
    assert "progress " not in bar  # no plain lines on a terminal
    assert "import_raw_assets: selected=3 done=3 skipped=0 failed=0" in out.getvalue()


def test_plain_progress_lines_are_throttled() -> None:
    stream = io.StringIO()

    summary = Summary("demo", dry_run=False, enqueue=False)
    progress = Progress(
        stderr=OutputWrapper(stream),
        summary=summary,
        total=None,
        unit="item",
        enabled=True,
        interval=3600,
    )
    for _ in range(5):
        summary.counts["done"] += 1
        progress.batch_done()

    assert stream.getvalue().splitlines() == [
        "progress demo: 1 (selected=1 done=1 skipped=0 failed=0)"
    ]


def test_argument_types() -> None:
    assert duration("90").total_seconds() == 90
    assert duration("2h").total_seconds() == 7200
    assert duration("7d").days == 7
    # a plain --until date includes that whole day
    assert until_moment("2024-04-01").isoformat().startswith("2024-04-02T00:00:00")


@pytest.mark.django_db
def test_call_command_raises_command_error_with_the_exit_status() -> None:
    with pytest.raises(CommandError) as raised:
        call_command("requeue_jobs", "--status", "BOGUS")

    assert raised.value.returncode == 2


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_bucket_aborts_with_one_line(
    s3_settings: object, capsys: pytest.CaptureFixture[str]
) -> None:
    s3_settings.MEDIA_BUCKET = "toq-no-such-bucket"  # type: ignore[attr-defined]

    run = run_cli("import_raw_assets", "--all", capsys=capsys)

    assert run.code == 1
    assert "import_raw_assets: selected=0 done=0 skipped=0 failed=0 (interrupted)" in run.stdout
    errors = [line for line in run.stderr.splitlines() if line.startswith("CommandError")]
    assert len(errors) == 1 and "aborted after 0 raw objects" in errors[0]
    assert "run the command again to resume" in errors[0]
