"""Render one photo in a fresh child process and measure what it cost.

The thumbnails step's ``render_derivatives`` runs in a child (``python -c``) so that its
memory is its own: the child reads the photo, resets its peak-RSS mark to its current RSS
(``/proc/self/clear_refs``, "5"), renders, and reports the peak RSS above that point
(``VmHWM``) and the CPU seconds of every thread of the process. A decode that blew up
would show here as it would in a worker - without taking the test process with it.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from media_jobs.pipeline.decode_budget import DecodeLimits

ROOT = Path(__file__).resolve().parent.parent.parent
# Generous: a run that needs this long has blown its CPU budget many times over.
CHILD_TIMEOUT_S = 300

_CHILD = r"""
import base64, gc, io, json, sys, time
from media_jobs.pipeline.decode_budget import DecodeLimits
from media_jobs.pipeline.errors import PipelineError
from media_jobs.pipeline.thumbnails import render_derivatives


def status(name):
    for line in open("/proc/self/status"):
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(name)


path, limits = sys.argv[1], DecodeLimits(**json.loads(sys.argv[2]))
data = open(path, "rb").read()
source = io.BytesIO(data)
gc.collect()
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")  # VmHWM := VmRSS
cpu = time.process_time()
result = {"code": None, "message": "", "derivatives": []}
try:
    for d in render_derivatives(source, limits=limits):
        encoded = base64.b64encode(d.data).decode()
        result["derivatives"].append([d.size, d.width, d.height, encoded])
except PipelineError as error:
    result["code"], result["message"] = error.code, error.message
result["cpu_seconds"] = time.process_time() - cpu
result["peak_bytes"] = status("VmHWM") - before
result["baseline_bytes"] = before
print(json.dumps(result))
"""


@dataclass(frozen=True)
class DecodeRun:
    code: str | None  # None when the derivatives were made
    message: str
    derivatives: dict[str, tuple[int, int, bytes]]  # size -> (width, height, JPEG)
    peak_bytes: int  # peak RSS above the child's RSS just before rendering
    baseline_bytes: int  # the child's RSS just before rendering (the photo included)
    cpu_seconds: float

    def describe(self) -> str:
        shown = {k: v for k, v in asdict(self).items() if k != "derivatives"}
        shown["derivatives"] = {size: (w, h) for size, (w, h, _) in self.derivatives.items()}
        return json.dumps(shown)


def decode_in_child(data: bytes, limits: DecodeLimits, workdir: Path) -> DecodeRun:
    """Render ``data`` in a child process under ``limits``; see the module docstring."""
    source = workdir / "photo.bin"
    source.write_bytes(data)
    limits_json = json.dumps(asdict(limits))
    completed = subprocess.run(
        [sys.executable, "-c", _CHILD, str(source), limits_json],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    if completed.returncode != 0:
        raise AssertionError(
            f"the render child died with {completed.returncode}:\n{completed.stderr[-3000:]}"
        )
    raw = json.loads(completed.stdout.strip().splitlines()[-1])
    return DecodeRun(
        code=raw["code"],
        message=raw["message"],
        derivatives={
            size: (width, height, base64.b64decode(encoded))
            for size, width, height, encoded in raw["derivatives"]
        },
        peak_bytes=raw["peak_bytes"],
        baseline_bytes=raw["baseline_bytes"],
        cpu_seconds=raw["cpu_seconds"],
    )
