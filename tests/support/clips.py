"""Clips the tests make with ffmpeg itself (beyond sample_media's test pattern)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from media_jobs import sample_media


def ffmpeg(*args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True, timeout=120
    )


def made_by_ffmpeg(out: Path, *args: str) -> bytes:
    """What ``ffmpeg args... out`` writes; made once per test run (sample_media.kept). Paths
    in out's folder are named by their file names: they hold the same bytes in every worker."""

    def make() -> bytes:
        ffmpeg(*args, str(out))
        return out.read_bytes()

    folder = str(out.parent)
    named = [arg.replace(folder, "clips") for arg in (*args, str(out))]
    return sample_media.kept(" ".join(["ffmpeg", *named]), make)
