"""The sharp contender (bench/sharp/render.mjs) driven from Python: one long-lived node child.

sharp is what AWS's Serverless Image Handler runs (libvips 8.18 + mozjpeg + SIMD); it is
installed by scripts/setup.sh (``npm ci`` in bench/sharp) when node is present. The child
times its own pipeline (encoded bytes in memory -> four JPEGs in memory), so neither the
process start nor this pipe is in its figures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

SHARP_DIR = Path(__file__).with_name("sharp")
SCRIPT = SHARP_DIR / "render.mjs"


def unavailable_reason() -> str | None:
    """Why sharp cannot run here (None when it can): the report says it instead of a time."""
    if shutil.which("node") is None:
        return "node is not installed (scripts/setup.sh installs sharp when node is present)"
    if not (SHARP_DIR / "node_modules" / "sharp").is_dir():
        return "sharp is not installed: run scripts/setup.sh (npm ci in bench/sharp)"
    return None


class SharpRenderer:
    """``render(path)`` -> the child's answer: seconds, stages, outputs (see render.mjs)."""

    def __init__(self) -> None:
        env = dict(os.environ, UV_THREADPOOL_SIZE="1")  # one libuv worker: one thread
        self._proc = subprocess.Popen(
            ["node", str(SCRIPT)],
            cwd=SHARP_DIR,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        hello = self._read()
        self.versions: dict[str, Any] = hello.get("versions", {})

    def _read(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            stderr = self._proc.stderr.read() if self._proc.stderr else ""
            raise RuntimeError(f"the sharp child stopped: {stderr[-2000:]}")
        return json.loads(line)

    def render(self, path: Path, out_dir: Path | None = None) -> dict[str, Any]:
        assert self._proc.stdin is not None
        request = {"input": str(path), "outDir": str(out_dir) if out_dir else None}
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def __enter__(self) -> SharpRenderer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
