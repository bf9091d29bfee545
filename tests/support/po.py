"""A small reader of gettext PO files: enough for the catalogue tests (no third-party parser)."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Entry:
    msgid: str
    context: str | None = None
    plural: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)

    @property
    def key(self) -> tuple[str | None, str, str | None]:
        return (self.context, self.msgid, self.plural)

    @property
    def translated(self) -> bool:
        return bool(self.msgstr) and all(text.strip() for text in self.msgstr.values())


def read_po(path: Path) -> list[Entry]:
    """The entries of ``path`` (the header, msgid "", left out)."""
    entries: list[Entry] = []
    flags: set[str] = set()
    context: str | None = None
    current: Entry | None = None
    target: tuple[str, int] | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line:
            current, target, context, flags = None, None, None, set()
        elif line.startswith("#,"):
            flags = {flag.strip() for flag in line[2:].split(",")}
        elif line.startswith("#"):
            continue
        elif line.startswith("msgctxt "):
            context = ast.literal_eval(line[8:])
            target = ("context", 0)
        elif line.startswith("msgid "):
            current = Entry(ast.literal_eval(line[6:]), context=context, flags=flags)
            entries.append(current)
            target = ("msgid", 0)
        elif line.startswith("msgid_plural ") and current is not None:
            current.plural = ast.literal_eval(line[13:])
            target = ("plural", 0)
        elif line.startswith("msgstr") and current is not None:
            head, _, value = line.partition(" ")
            index = int(head[7:-1]) if head.startswith("msgstr[") else 0
            current.msgstr[index] = ast.literal_eval(value)
            target = ("msgstr", index)
        elif line.startswith('"') and target is not None:
            text = ast.literal_eval(line)
            kind, index = target
            if kind == "context":
                context = (context or "") + text
            elif current is not None and kind == "msgid":
                current.msgid += text
            elif current is not None and kind == "plural":
                current.plural = (current.plural or "") + text
            elif current is not None:
                current.msgstr[index] += text
    return [entry for entry in entries if entry.msgid or entry.context]
