"""``python -m bench --smoke`` still runs every benchmark and writes its results table.

The benchmarks' numbers are never asserted (timings do not belong in the suite); this
only guards the harness against rot: every benchmark completes and reports its targets.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from bench.common import drop_database
from bench.sharp_client import unavailable_reason

ROOT = Path(__file__).resolve().parents[2]
TITLES = {
    "derivatives": "1. Derivatives",
    "zip": "2. ZIP",
    "callback": "3. Callback receiver",
    "pipeline": "4. Pipeline efficiency",
    "admin": "5. Admin job page",
}


# Minutes: every benchmark at smoke size, with MariaDB, Redis and workers.
pytestmark = pytest.mark.slow


def _benchmarks() -> list[str]:
    """The database and worker benchmarks need MariaDB and Redis (what make test picks)."""
    keys = ["derivatives", "zip"]
    if os.environ.get("DATABASE_URL", "").startswith(("mysql://", "mariadb://")):
        keys += ["callback", "admin"]
        if os.environ.get("TEST_REDIS_URL"):
            keys.append("pipeline")
    return keys


def test_bench_smoke_writes_a_results_table(tmp_path: Path) -> None:
    pytest.importorskip(
        "pyvips", reason="bench dependencies: pip install -r requirements-bench.txt"
    )
    pytest.importorskip("numpy", reason="bench dependencies: pip install -r requirements-bench.txt")
    keys = _benchmarks()
    report = tmp_path / "BENCHMARKS.smoke.md"
    suffix = f"_t{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, BENCH_DB_SUFFIX=suffix)
    if os.environ.get("DATABASE_URL"):
        env["BENCH_MYSQL_URL"] = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
    if os.environ.get("TEST_REDIS_URL"):
        env["BENCH_REDIS_URL"] = os.environ["TEST_REDIS_URL"]
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench",
                "--smoke",
                "--only",
                ",".join(keys),
                "--output",
                str(report),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,  # a ceiling for a loaded machine; ~2 min on a quiet one
        )
    finally:
        if "admin" in keys:
            _drop_databases(suffix)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    text = report.read_text()
    assert "| benchmark | target | measured | wanted | verdict |" in text
    assert "did not complete" not in text
    for key in keys:
        title = TITLES[key]
        rows = [line for line in text.splitlines() if line.startswith(f"| {title}")]
        assert rows, f"no target rows for {key}"
        verdicts = ["**PASS**", "**MISS**"]
        if key == "derivatives" and unavailable_reason() is not None:
            verdicts.append("**N/A**")  # no node here: sharp is reported as not run
        assert all(any(v in row for v in verdicts) for row in rows), rows


def _drop_databases(suffix: str) -> None:

    for name in ("bench_admin_smoke", "bench_callback", "bench_pipeline"):
        drop_database(name + suffix)
