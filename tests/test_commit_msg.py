"""The commit-message check of `make lint` and the pre-commit commit-msg hook."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from check_commit_msg import problems  # noqa: E402


def test_a_short_subject_with_a_body_after_a_blank_line_passes() -> None:
    message = "Admin: one helper builds the rows\n\nWhy: two copies disagreed.\n# a comment\n"
    assert problems(message) == []


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ("x" * 72 + "\n", "subject is 72 characters (under 72)"),
        ("Fix the sender\nbecause it retried\n", "followed by a blank line"),
        ("# only git's comments\n\n", "the message is empty"),
    ],
)
def test_long_subjects_glued_bodies_and_empty_messages_fail(message: str, problem: str) -> None:
    found = problems(message)
    assert len(found) == 1
    assert problem in found[0]


def test_the_hook_exits_non_zero_on_a_long_subject(tmp_path: Path) -> None:
    message = tmp_path / "COMMIT_EDITMSG"
    message.write_text("y" * 80 + "\n")
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts/check_commit_msg.py"), str(message)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    assert "subject is 80 characters" in run.stderr
    message.write_text("Short and clear\n")
    assert (
        subprocess.run(
            [sys.executable, str(ROOT / "scripts/check_commit_msg.py"), str(message)]
        ).returncode
        == 0
    )
