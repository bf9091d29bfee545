#!/usr/bin/env python
"""``make mutation``: mutation testing of ``media_jobs/pipeline/`` and ``media_jobs/services/``.

mutmut (configured in pyproject.toml) mutates ``media_jobs/pipeline`` and
``media_jobs/services``; each mutant runs only the tests that call its function, with a
CPU-time limit, several mutants at once (each takes a MariaDB test database of its own,
tests.support.mutation_run). The score per module and every surviving
mutant's diff go to ``mutation/report.md``. Equivalent mutants - no test can tell them
apart from the original - are marked ``# pragma: no mutate`` in the code or listed in
``mutation/equivalent.txt`` (``mutant-name  reason``; the script adds the hash of the
function's source, so a changed function's entries are looked at again) and left out of the
score.

Every verdict is also kept in ``mutation/results.json`` (committed), per function with the
hash mutmut gives its source: a new checkout, whose ``mutants/`` is empty, starts from the
verdicts of the functions that have not changed since, and a run only runs the rest.

    .venv/bin/python scripts/mutation.py                      # every module
    .venv/bin/python scripts/mutation.py media_jobs/pipeline/keys.py --fresh
    .venv/bin/python scripts/mutation.py --report-only        # rewrite the report
    .venv/bin/python scripts/mutation.py --try NAME [NAME...] [-- tests/pipeline/test_keys.py]

``--try`` is the quick check that a new test kills a survivor: it copies the current tests into
``mutants/`` and runs pytest there with each named mutant switched on (mutmut's
``MUTANT_UNDER_TEST``), without a whole mutmut run (safe beside one: it takes its own
database slot). The mutants are those of the last generation: a changed source file needs a
mutmut run first.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from mutmut.mutation.diff_apply import get_diff_for_mutant  # noqa: E402
from run_tests import DEFAULT_DB, probe_mysql, probe_redis  # noqa: E402

PACKAGES = ("media_jobs/pipeline", "media_jobs/services")
REPORT = ROOT / "mutation" / "report.md"
EQUIVALENT = ROOT / "mutation" / "equivalent.txt"
RESULTS = ROOT / "mutation" / "results.json"
MUTANTS = ROOT / "mutants"
MUTATION_REDIS = os.environ.get("MUTATION_REDIS_URL", "redis://127.0.0.1:6379/14")
# mutmut's exit codes of a mutant run (mutmut.stats.status_by_exit_code)
KILLED = {1, 3}
TIMEOUT = {24, -24, 36, 152, 255}
SURVIVED = {0}
NO_TESTS = {5, 33}


def modules_of(paths: list[str]) -> list[str]:
    """The .py files to mutate: the given files, or every module of PACKAGES."""
    if paths:
        return [str(Path(p)) for p in paths]
    found = []
    for package in PACKAGES:
        found += sorted(str(p.relative_to(ROOT)) for p in (ROOT / package).rglob("*.py"))
    return [m for m in found if "def " in (ROOT / m).read_text()]


def dotted(module: str) -> str:
    return module.removesuffix(".py").replace("/", ".")


def test_environment() -> dict[str, str]:
    """What ``make test`` sets: MariaDB when it answers, its own test database."""
    env = dict(os.environ, DJANGO_ENV="test")
    env.setdefault("DATABASE_TEST_NAME", "test_mutation")
    db_url = os.environ.get("DATABASE_URL") or DEFAULT_DB
    if db_url.startswith(("mysql://", "mariadb://")) and probe_mysql(db_url):
        env["DATABASE_URL"] = db_url
    else:
        env.pop("DATABASE_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    # the Redis broker tests count too (a queue of their own each, so concurrent mutants
    # can share one database; the worker tests, which would not, are not selected)
    if probe_redis(MUTATION_REDIS):
        env["TEST_REDIS_URL"] = MUTATION_REDIS
    else:
        env.pop("TEST_REDIS_URL", None)
    # made sample media (clips, the 400-megapixel PNG) kept for every mutant of the run, not
    # made again in each mutant's pytest session: that was half the time of a decoder mutant
    env["SAMPLE_MEDIA_DIR"] = str(MUTANTS / "sample-media")
    (MUTANTS / "sample-media").mkdir(parents=True, exist_ok=True)
    return env


def _meta(module: str) -> dict:
    meta = MUTANTS / (module + ".meta")
    return json.loads(meta.read_text()) if meta.exists() else {}


def _split(name: str) -> tuple[str, int]:
    """``media_jobs.x.mod.x_func__mutmut_12`` -> (``x_func``, 12)."""
    qualified, _, number = name.rpartition("__mutmut_")
    return qualified.rpartition(".")[2], int(number)


def stored_results() -> dict[str, dict[str, dict]]:
    """module -> function -> {"hash": source hash, "codes": {number: exit code}}."""
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def results_of(module: str, stored: dict | None = None) -> dict[str, int | None]:
    """mutant name -> exit code (None: not run yet): mutmut's .meta file, completed by the
    stored verdicts of functions whose source has not changed since."""
    meta = _meta(module)
    codes: dict[str, int | None] = dict(meta.get("exit_code_by_key", {}))
    kept = (stored if stored is not None else stored_results()).get(module, {})
    hashes = meta.get("hash_by_function_name", {})
    for name, code in codes.items():
        if code is None:
            function, number = _split(name)
            entry = kept.get(function)
            kept_code = entry["codes"].get(str(number)) if entry else None
            # "no tests" depends on the test selection, and costs nothing to ask again
            if entry and kept_code not in NO_TESTS and entry["hash"] == hashes.get(function):
                codes[name] = kept_code
    return codes


def store_results(modules: list[str]) -> None:
    """Merge the verdicts in mutants/ into mutation/results.json; a function whose source
    changed loses its old verdicts."""
    stored = stored_results()
    for module in modules:
        meta = _meta(module)
        if not meta:
            continue
        hashes = meta.get("hash_by_function_name", {})
        merged: dict[str, dict] = {}
        for name, code in results_of(module, stored).items():
            function, number = _split(name)
            entry = merged.setdefault(function, {"hash": hashes.get(function), "codes": {}})
            if code is not None:
                entry["codes"][str(number)] = code
        stored[module] = {f: e for f, e in sorted(merged.items()) if e["codes"]}
    # one line per function: reviewable diffs, ~11,000 verdicts in a few hundred lines
    lines = ["{"]
    modules_kept = [m for m in sorted(stored) if stored[m]]
    for i, module in enumerate(modules_kept):
        lines.append(f" {json.dumps(module)}: {{")
        functions = stored[module]
        for j, function in enumerate(sorted(functions)):
            entry = functions[function]
            codes = {k: entry["codes"][k] for k in sorted(entry["codes"], key=int)}
            body = json.dumps({"hash": entry["hash"], "codes": codes}, separators=(",", ":"))
            lines.append(
                f"  {json.dumps(function)}: {body}" + ("," if j < len(functions) - 1 else "")
            )
        lines.append(" }" + ("," if i < len(modules_kept) - 1 else ""))
    lines.append("}")
    RESULTS.write_text("\n".join(lines) + "\n")


def chosen_mutants(module: str, *, rerun: str, sample: int, per_module: int = 0) -> list[str]:
    """The mutants to run: the ones not run yet (``rerun="none"``), those, the survivors and
    the timeouts (``"survivors"``: after new tests) or all (``"all"``); every ``sample``-th of them, or
    about ``per_module`` spread over the module (a first look at a large module)."""
    results = results_of(module)
    if per_module:
        sample = max(1, round(len(results) / per_module))
    names = []
    for name, code in results.items():
        if rerun == "survivors":
            # timeouts too: on a busy machine a slow mutant can time out without looping
            wanted = code is None or code in SURVIVED | NO_TESTS | TIMEOUT
        else:
            # "no tests" may have changed with the test selection: asked again, for nothing
            wanted = code is None or code in NO_TESTS or rerun == "all"
        if wanted:
            names.append(name)
    names.sort(key=lambda n: (n.rsplit("__mutmut_", 1)[0], int(n.rsplit("_", 1)[1])))
    return names[::sample]


GENERATE = """
import os
from mutmut.__main__ import (copy_also_copy_files, copy_src_dir, create_mutants,
    set_mutant_under_test, setup_source_paths, store_lines_covered_by_tests)
set_mutant_under_test("mutant_generation")
os.makedirs("mutants", exist_ok=True)
copy_src_dir(); copy_also_copy_files(); setup_source_paths(); store_lines_covered_by_tests()
print("[mutation]", create_mutants(int(os.environ["MUTATION_CHILDREN"])), flush=True)
"""


def generate_mutants(env: dict[str, str], children: int = 2) -> None:
    """mutmut's generation step alone (~20 s): in a new checkout, whose ``mutants/`` is empty,
    the mutant names must exist before the stored verdicts can say which are left to run -
    otherwise ``module.*`` would run every mutant again."""
    print("[mutation] generating the mutants", flush=True)
    run_env = dict(env, MUTATION_CHILDREN=str(children))
    subprocess.run([sys.executable, "-c", GENERATE], cwd=ROOT, env=run_env, check=True)


def run_mutants(
    modules: list[str],
    *,
    env: dict[str, str],
    max_children: int,
    budget_s: int,
    rerun: str,
    sample: int,
    per_module: int,
) -> None:
    """One mutmut run over the chosen mutants of ``modules`` (one run: mutmut's clean-test
    and forced-fail passes are paid once); stopped after ``budget_s``, keeping what ran."""
    if any(not (MUTANTS / (module + ".meta")).exists() for module in modules):
        generate_mutants(env, max_children)
    names: list[str] = []
    again: list[str] = []  # survivors and timeouts first: they tell whether new tests work
    for module in modules:
        codes = results_of(module)
        if not codes:
            # a module without mutants (nothing mutmut would change): its run makes the meta
            names.append(f"{dotted(module)}.*")
            continue
        chosen = chosen_mutants(module, rerun=rerun, sample=sample, per_module=per_module)
        print(f"[mutation] {module}: {len(chosen)} mutant(s) to run", flush=True)
        again += [name for name in chosen if codes[name] is not None]
        names += [name for name in chosen if codes[name] is None]
    if not names and not again:
        print("[mutation] nothing to run", flush=True)
        return
    started = time.monotonic()
    # mutmut orders the mutants of one run by their tests' time: two runs keep ours
    for batch in (again, names):
        left = budget_s - (time.monotonic() - started)
        if batch and left > 0:
            cmd = [str(ROOT / ".venv/bin/mutmut"), "run", "--max-children", str(max_children)]
            with subprocess.Popen(
                [*cmd, *batch], cwd=ROOT, env=env, start_new_session=True
            ) as proc:
                try:
                    proc.wait(timeout=left)
                except subprocess.TimeoutExpired:
                    print(f"[mutation] budget of {budget_s}s spent; stopping", flush=True)
                    os.killpg(proc.pid, 15)
                    proc.wait(timeout=60)
    print(f"[mutation] {time.monotonic() - started:.0f}s", flush=True)


def show_survivors(modules: list[str]) -> None:
    """Print the survivors of ``modules`` with their diffs (reads only: safe beside a run)."""
    equivalent, _ = equivalent_mutants()
    for score in read_scores(modules, equivalent):
        c = score.counts
        print(f"## {score.module}: {dict(c)}")
        for name in score.survivors:
            print(f"\n{name}\n{mutant_diff(name, score.module)}")


def try_mutants(names: list[str], pytest_args: list[str], env: dict[str, str]) -> int:
    """Run each named mutant against ``pytest_args`` (default: mutmut's test selection);
    print killed or survived per mutant; exit code 1 when any survived.

    Like mutmut's fork server: this process collects the tests once (imports, Django), then
    forks a process per mutant, which takes its own database slot and switches its mutant on.
    """
    mutmut = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    shutil.copytree(ROOT / "tests", MUTANTS / "tests", dirs_exist_ok=True)
    selection = pytest_args or mutmut["pytest_add_cli_args_test_selection"]
    args = ["-x", "-q", "--tb=line", *mutmut["pytest_add_cli_args"], *selection]
    os.chdir(MUTANTS)
    os.environ.update(env, MUTANT_UNDER_TEST="")
    sys.path.insert(0, str(MUTANTS))
    import pytest  # noqa: PLC0415 - after the path: the tests import the mutated code

    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        pytest.main(["--collect-only", "-qqq", *args])
    survived = []
    for name in names:
        with tempfile.TemporaryFile("w+") as output:
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                os.dup2(output.fileno(), 1)
                os.dup2(output.fileno(), 2)
                os.environ["MUTANT_UNDER_TEST"] = name
                os._exit(int(pytest.main(args)))
            code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            output.seek(0)
            shown = output.read()[-500:]
        if code in SURVIVED:
            survived.append(name)
        # only a failed test kills here: mutmut also counts pytest's internal error (3),
        # which a broken test or plugin gives too
        verdict = "killed" if code == 1 else "SURVIVED" if code in SURVIVED else None
        print(f"[mutation] {name}: {verdict or f'exit code {code}: {shown}'}", flush=True)
    return 1 if survived else 0


def function_hash(name: str) -> str | None:
    """The source hash mutmut gave the function of mutant ``name`` when it made its mutants."""
    module = name.rpartition(".")[0].replace(".", "/") + ".py"
    function, _ = _split(name)
    hashes = _meta(module).get("hash_by_function_name", {})
    return hashes.get(function) or stored_results().get(module, {}).get(function, {}).get("hash")


def equivalent_mutants(*, stamp: bool = False) -> tuple[dict[str, str], dict[str, str]]:
    """(equivalent, stale): name -> reason from mutation/equivalent.txt.

    A line is ``name  hash=<source hash>  reason``; the hash is that of the function the
    mutant was judged in. ``stamp`` writes it into lines that have none yet (a person adds
    just ``name  reason``). A listed mutant whose function changed since is *stale*: the
    same name may now be another mutation, so it counts again until it is looked at anew.
    """
    if not EQUIVALENT.exists():
        return {}, {}
    equivalent: dict[str, str] = {}
    stale: dict[str, str] = {}
    lines = EQUIVALENT.read_text().splitlines()
    for i, line in enumerate(lines):
        if not line.strip() or line.startswith("#"):
            continue
        name, _, rest = line.strip().partition(" ")
        judged, _, reason = rest.strip().partition(" ")
        if not judged.startswith("hash="):
            judged, reason = "", rest
        reason = reason.strip()
        current = function_hash(name)
        if stamp and not judged and current:
            judged = f"hash={current}"
            lines[i] = f"{name}  {judged}  {reason}"
        if judged and current and judged != f"hash={current}":
            stale[name] = reason
        else:
            equivalent[name] = reason
    if stamp:
        EQUIVALENT.write_text("\n".join(lines) + "\n")
    return equivalent, stale


@dataclass
class ModuleScore:
    module: str
    counts: Counter = field(default_factory=Counter)
    survivors: list[str] = field(default_factory=list)

    @property
    def scored(self) -> int:
        return sum(self.counts[k] for k in ("killed", "timeout", "survived", "no tests"))

    @property
    def score(self) -> float | None:
        killed = self.counts["killed"] + self.counts["timeout"]
        return 100.0 * killed / self.scored if self.scored else None


def read_scores(modules: list[str], equivalent: dict[str, str]) -> list[ModuleScore]:
    stored = stored_results()
    scores = []
    for module in modules:
        score = ModuleScore(module)
        for name, code in sorted(results_of(module, stored).items()):
            if code is None:
                score.counts["not run"] += 1
            elif name in equivalent:
                score.counts["equivalent"] += 1
            elif code in KILLED:
                score.counts["killed"] += 1
            elif code in TIMEOUT:
                score.counts["timeout"] += 1
            elif code in SURVIVED:
                score.counts["survived"] += 1
                score.survivors.append(name)
            elif code in NO_TESTS:
                score.counts["no tests"] += 1
                score.survivors.append(name)
        scores.append(score)
    return scores


def _names(meta: Path) -> list[str]:
    return list(json.loads(meta.read_text())["exit_code_by_key"])


def mutant_diff(name: str, module: str) -> str:
    try:
        return get_diff_for_mutant(name, path=module).strip()
    except Exception as exc:  # noqa: BLE001 - a diff that cannot be shown is still listed
        return f"(no diff: {exc})"


def write_report(
    scores: list[ModuleScore], equivalent: dict[str, str], changed: dict[str, str]
) -> None:
    lines = [
        "# Mutation testing report",
        "",
        "Written by `make mutation` (scripts/mutation.py, mutmut) from the verdicts in",
        "`mutants/` and `mutation/results.json`. Score = killed (timeouts included) /",
        "(mutants run - equivalent); a mutant no selected test runs counts as surviving.",
        "A module with mutants *not run* was sampled (`--sample N`): its score is that of the",
        "mutants run. Equivalent mutants are listed in `mutation/equivalent.txt` with the",
        "reason, or marked `# pragma: no mutate` in the code. How the score got here:",
        "`mutation/history.md`.",
        "",
        f"Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| module | mutants | run | killed | timeout | survived | no tests | equivalent "
        "| not run | score |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    total: Counter = Counter()
    for s in [*scores, ModuleScore("all modules", total)]:
        c = s.counts
        if s.module != "all modules":
            total.update(c)
        shown = "-" if s.score is None else f"{s.score:.1f} %"
        run = sum(c.values()) - c["not run"]
        lines.append(
            f"| `{s.module}` | {sum(c.values())} | {run} | {c['killed']} | {c['timeout']} | "
            f"{c['survived']} | {c['no tests']} | {c['equivalent']} | {c['not run']} | {shown} |"
        )
    known = {name for meta in MUTANTS.rglob("*.meta") for name in _names(meta)}
    gone = sorted(set(equivalent) - known)
    if gone or changed:
        lines += ["", "## Listed as equivalent, but gone or changed since (check them again)", ""]
        lines += [f"- `{name}`" for name in sorted({*gone, *changed})]
    if equivalent:
        lines += ["", "## Equivalent mutants (left out of the score)", ""]
        lines += [f"- `{name}`: {reason}" for name, reason in sorted(equivalent.items())]
    lines += ["", "## Surviving mutants", ""]
    for s in scores:
        if not s.survivors:
            continue
        lines += [f"### `{s.module}` ({len(s.survivors)})", ""]
        for name in s.survivors:
            lines += [f"- `{name}`", "", "```diff", mutant_diff(name, s.module), "```", ""]
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text("\n".join(lines) + "\n")
    print(f"[mutation] wrote {REPORT.relative_to(ROOT)}", flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="module paths (default: every module)")
    parser.add_argument("--fresh", action="store_true", help="drop mutants/ first")
    # more mutants than cores: much of a mutant's time is waiting (sockets, threads, and a
    # hanging mutant's timeout: 8 at once ran ~1 mutant/s where 2 ran ~0.4, on two cores)
    parser.add_argument("--max-children", type=int, default=8)
    parser.add_argument("--budget", type=int, default=4 * 3600, help="seconds for the whole run")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument(
        "--survivors", action="store_true", help="print the given modules' survivors and stop"
    )
    parser.add_argument(
        "--try",
        dest="try_names",
        nargs="+",
        metavar="NAME",
        help="run these mutants against the tests after --, or mutmut's selection",
    )
    parser.add_argument(
        "--rerun",
        choices=("none", "survivors", "all"),
        default="none",
        help="none: mutants without a result; survivors: those and the survivors; all: every one",
    )
    parser.add_argument("--sample", type=int, default=1, help="run every N-th mutant only")
    parser.add_argument(
        "--per-module", type=int, default=0, help="run about N mutants of each module"
    )
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    pytest_args = argv[cut + 1 :]
    os.chdir(ROOT)
    if args.try_names:
        return try_mutants(args.try_names, pytest_args, test_environment())
    modules = modules_of(args.modules)
    if args.survivors:
        show_survivors(modules)
        return 0
    if not args.report_only:
        if args.fresh and MUTANTS.exists():
            shutil.rmtree(MUTANTS)
        run_mutants(
            modules,
            env=test_environment(),
            max_children=args.max_children,
            budget_s=args.budget,
            rerun=args.rerun,
            sample=args.sample,
            per_module=args.per_module,
        )
    reported = modules_of([])
    store_results(reported)
    equivalent, changed = equivalent_mutants(stamp=True)
    scores = read_scores(reported, equivalent)
    write_report(scores, equivalent, changed)
    for s in scores:
        if s.scored:
            print(f"[mutation] {s.module}: {s.score:.1f} % of {s.scored}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
