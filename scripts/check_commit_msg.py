#!/usr/bin/env python
"""Commit messages as CONTRIBUTING.md asks: a subject under 72 characters, then a blank line
before any body (the why and the measurements go there, not in the subject).

    scripts/check_commit_msg.py .git/COMMIT_EDITMSG   # one message (pre-commit's commit-msg hook)
    scripts/check_commit_msg.py --since 04fa5f2        # every commit after that one (make lint)

The history before the rule was checked keeps its long subjects; ``make lint`` checks the
commits after ``CHECKED_SINCE``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

MAX_SUBJECT = 72
# The last commit before subjects were checked: every later one must pass.
CHECKED_SINCE = "04fa5f2"


def problems(message: str) -> list[str]:
    """What is wrong with one commit message (git's comment lines ignored)."""
    lines = [line for line in message.splitlines() if not line.startswith("#")]
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        return ["the message is empty"]
    found = []
    subject = lines[0]
    if len(subject) >= MAX_SUBJECT:
        found.append(f"subject is {len(subject)} characters (under {MAX_SUBJECT}): {subject!r}")
    if len(lines) > 1 and lines[1].strip():
        found.append("the subject must be followed by a blank line before the body")
    return found


def messages_since(commit: str) -> list[tuple[str, str]]:
    """(short hash, message) of each commit after ``commit`` on HEAD, merges left out."""
    known = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True)
    if known.returncode != 0:
        # a shallow clone without the baseline: nothing to compare against
        print(f"commit subjects: {commit} is not in this clone; not checked", file=sys.stderr)
        return []
    out = subprocess.run(
        ["git", "log", "--no-merges", "--format=%h%x00%B%x01", f"{commit}..HEAD"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    pairs = []
    for record in out.split("\x01"):
        record = record.strip("\n")
        if record:
            short, _, body = record.partition("\x00")
            pairs.append((short, body))
    return pairs


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("message_file", nargs="?", help="a commit message file")
    parser.add_argument("--since", help="check every commit after this one")
    args = parser.parse_args(argv)
    if args.message_file:
        checked = [("this commit", Path(args.message_file).read_text())]
    else:
        checked = messages_since(args.since or CHECKED_SINCE)
    failed = 0
    for name, message in checked:
        for problem in problems(message):
            print(f"{name}: {problem}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
