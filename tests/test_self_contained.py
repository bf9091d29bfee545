"""The repository stands alone: no tracked file points at a document outside it.

Rules are cited as ``docs/contract.md §N``; a citation of an outside spec, a sibling folder or
an issue tracker sends a maintainer who cloned only this repository nowhere. The patterns are
assembled from pieces so that this file does not match itself.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "a sibling folder": re.compile(re.escape("../" + "shared")),
    "the outside spec": re.compile(r"\b" + "SP" + r"EC(\s*§|\.md\b)"),
    "an issue number": re.compile(r"\b" + "iss" + r"ue\s*#?\d+", re.IGNORECASE),
    "an issue reference": re.compile(r"\bthe\s+" + "iss" + r"ue('s)?\b", re.IGNORECASE),
    "a tracker": re.compile(r"\bthe\s+" + "tra" + r"cker\b", re.IGNORECASE),
}


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.decode()
    return [ROOT / name for name in listed.split("\0") if name]


def outside_references(text: str) -> list[str]:
    """What in ``text`` points outside the repository, as ``<what>: <matched text>``."""
    return [f"{what}: {m.group(0)!r}" for what, rx in FORBIDDEN.items() for m in rx.finditer(text)]


def test_the_patterns_catch_what_they_are_for() -> None:
    cited = (
        "see "
        + "SP"
        + "EC §6 and ../"
        + "shared/x ("
        + "iss"
        + "ue 6), as the "
        + "iss"
        + "ue asks"
    )
    assert len(outside_references(cited)) == 4
    assert (
        outside_references("see docs/contract.md §6; an issued token; EXTREME_ASPECT_RATIO") == []
    )


def test_no_tracked_file_points_outside_the_repository() -> None:
    files = tracked_text_files()
    assert len(files) > 100  # the listing worked
    found = []
    for path in files:
        if not path.is_file():
            continue  # deleted in the working tree
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        if not any(rx.search(text) for rx in FORBIDDEN.values()):
            continue  # most files: one pass per pattern, no line split
        for line_number, line in enumerate(text.splitlines(), 1):
            found += [
                f"{path.relative_to(ROOT)}:{line_number}: {hit}" for hit in outside_references(line)
            ]
    assert not found, "cite docs/contract.md instead:\n" + "\n".join(found)
