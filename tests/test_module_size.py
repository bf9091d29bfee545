"""One idea per module: a module of media_jobs longer than LIMIT lines says at its top why
(a paragraph starting "Long on purpose:" in its docstring)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "media_jobs"
LIMIT = 400
MARK = "Long on purpose:"


def test_every_long_module_says_why() -> None:
    unexplained = []
    for path in sorted(ROOT.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        source = path.read_text(encoding="utf-8")
        lines = source.count("\n")
        if lines <= LIMIT:
            continue
        docstring = ast.get_docstring(ast.parse(source)) or ""
        if MARK not in docstring:
            unexplained.append(f"{path.relative_to(ROOT.parent)} ({lines} lines)")
    assert not unexplained, (
        f"modules over {LIMIT} lines without a '{MARK}' reason in their docstring "
        f"(split them, or say why they are one idea): {unexplained}"
    )
