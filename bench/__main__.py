"""Run every benchmark, each in a process of its own, and write the report.

    python -m bench                # full sizes -> BENCHMARKS.md
    python -m bench --smoke        # seconds -> bench/results/BENCHMARKS.smoke.md
    python -m bench --only derivatives,zip

A benchmark that crashes is reported as such (with the tail of its output) and the others
still run; the exit status is 1 when any benchmark crashed, never because a target was
missed (a MISS is a finding for the report, not a broken harness).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import RESULTS_DIR, ROOT, machine_info, result_path
from bench.report import crashed_result, write_report

# key -> (module, timeout of the full run in seconds)
BENCHMARKS: dict[str, tuple[str, int]] = {
    "derivatives": ("bench.derivatives", 900),
    "zip": ("bench.zip", 1200),
    "callback": ("bench.callback", 900),
    "pipeline": ("bench.pipeline", 900),
    "admin": ("bench.admin", 600),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the benchmarks and write the report.")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    parser.add_argument("--only", default="", help="comma-separated: " + ",".join(BENCHMARKS))
    parser.add_argument("--output", type=Path, default=None, help="report path")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: rewrite the report from the last results (after editing findings)",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="report every benchmark: those not run now from their last results in bench/results",
    )
    args = parser.parse_args(argv)

    keys = [k.strip() for k in args.only.split(",") if k.strip()] or list(BENCHMARKS)
    unknown = [k for k in keys if k not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    output = args.output or (
        RESULTS_DIR / "BENCHMARKS.smoke.md" if args.smoke else ROOT / "BENCHMARKS.md"
    )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    run_path = RESULTS_DIR / f"run{'.smoke' if args.smoke else ''}.json"
    if args.report_only:
        run = json.loads(run_path.read_text())
        results = [
            json.loads(result_path(key, args.smoke).read_text())
            for key in keys
            if result_path(key, args.smoke).exists()
        ]
        write_report(
            output,
            results,
            run["info"],
            smoke=args.smoke,
            elapsed_s=run["elapsed_s"],
            when=run.get("when"),
        )
        print(f"report written to {output}")
        return 0

    started = time.time()
    results: list[dict] = []
    crashed = False
    for key in keys:
        module, timeout = BENCHMARKS[key]
        json_path = result_path(key, args.smoke)
        json_path.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", module, "--json", str(json_path)]
        if args.smoke:
            cmd.append("--smoke")
        print(f"\n>>> {' '.join(cmd[1:])}", flush=True)
        log_path = RESULTS_DIR / f"{key}{'.smoke' if args.smoke else ''}.log"
        try:
            with log_path.open("w") as log:
                proc = subprocess.run(
                    cmd,
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=timeout // (4 if args.smoke else 1),
                    check=False,
                )
            status = proc.returncode
        except subprocess.TimeoutExpired:
            status = "timeout"
        tail = log_path.read_text(errors="replace")[-3000:]
        if status == 0 and json_path.exists():
            result = json.loads(json_path.read_text())
            print(tail[-1500:], end="", flush=True)
        else:
            crashed = True
            result = crashed_result(key, status, tail)
            print(f"!!! {key} failed ({status}); log: {log_path}\n{tail}", flush=True)
        results.append(result)

    if args.merge:
        ran = {result["key"]: result for result in results}
        results = []
        for key in BENCHMARKS:
            path = result_path(key, args.smoke)
            if key in ran:
                results.append(ran[key])
            elif path.exists():
                results.append(json.loads(path.read_text()))
    info = machine_info()
    elapsed = time.time() - started
    when = f"{datetime.now(UTC):%Y-%m-%d %H:%M}"
    run_path.write_text(json.dumps({"info": info, "elapsed_s": elapsed, "when": when}))
    write_report(output, results, info, smoke=args.smoke, elapsed_s=elapsed, when=when)
    print(f"\nreport written to {output}")
    _print_summary(results)
    return 1 if crashed else 0


def _print_summary(results: list[dict]) -> None:
    print("\nsummary:")
    for result in results:
        for target in result.get("targets", []):
            print(f"  [{target['verdict']}] {result['key']}: {target['name']}")
        if not result.get("targets"):
            print(f"  [----] {result['key']}: no targets measured")


if __name__ == "__main__":
    sys.exit(main())
