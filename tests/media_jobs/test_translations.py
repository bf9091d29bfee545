"""The pt-BR catalogue: complete (nothing untranslated or fuzzy) and in step with the code
(``makemessages`` run on a copy of the sources finds no msgid the catalogue lacks)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.support.po import Entry, read_po

ROOT = Path(settings.BASE_DIR)
CATALOGUE = ROOT / "locale" / "pt_BR" / "LC_MESSAGES" / "django.po"
# What makemessages reads: the app, the templates, the project package (and manage.py).
SOURCES = ("media_jobs", "templates", "toqportal", "manage.py")
PLACEHOLDER = re.compile(r"%\([a-z_]+\)[sdr]|\{\}")


def _describe(entries: list[Entry]) -> str:
    return "\n".join(f"  {entry.msgid!r}" for entry in entries[:30])


def test_every_pt_br_entry_is_translated_and_not_fuzzy():
    entries = read_po(CATALOGUE)
    assert len(entries) > 400  # the portal's strings, not an empty file
    untranslated = [entry for entry in entries if not entry.translated]
    fuzzy = [entry for entry in entries if "fuzzy" in entry.flags]
    assert not untranslated, f"untranslated in {CATALOGUE}:\n{_describe(untranslated)}"
    assert not fuzzy, f"fuzzy in {CATALOGUE}:\n{_describe(fuzzy)}"


def test_pt_br_translations_keep_every_placeholder():
    """A translation that drops or renames %(name)s or {} breaks the page that formats it."""
    broken = [
        entry
        for entry in read_po(CATALOGUE)
        if sorted(PLACEHOLDER.findall(entry.plural or entry.msgid))
        != sorted(PLACEHOLDER.findall(entry.msgstr.get(len(entry.msgstr) - 1, "")))
    ]
    assert not broken, f"placeholders differ:\n{_describe(broken)}"


@pytest.mark.skipif(shutil.which("xgettext") is None, reason="gettext is not installed")
def test_catalogue_has_every_msgid_of_the_code(tmp_path):
    """makemessages into a copy of the sources: the fresh extraction and the committed
    catalogue hold the same msgids (a new string wrapped in the code but not added to the
    catalogue, or a catalogue entry the code no longer has, fails here)."""
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, tmp_path / name)
    (tmp_path / "locale").mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "makemessages",
            "-l",
            "pt_BR",
            "--no-wrap",
            "--no-location",
            "--no-obsolete",
        ],
        cwd=tmp_path,
        env={**os.environ, "DJANGO_ENV": "test"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    extracted = {entry.key for entry in read_po(tmp_path / "locale/pt_BR/LC_MESSAGES/django.po")}
    committed = {entry.key for entry in read_po(CATALOGUE)}
    missing = sorted(extracted - committed, key=str)
    stale = sorted(committed - extracted, key=str)
    assert not missing, (
        "msgids in the code but not in the catalogue (run makemessages, then translate):\n"
        + "\n".join(f"  {key}" for key in missing[:30])
    )
    assert not stale, "catalogue entries the code no longer has:\n" + "\n".join(
        f"  {key}" for key in stale[:30]
    )
