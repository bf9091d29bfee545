"""``make mutation`` keeps every verdict in mutation/results.json, per function with the hash
of its source, so a new checkout (empty ``mutants/``) only runs what changed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import mutation  # noqa: E402

MODULE = "media_jobs/pipeline/keys.py"
PREFIX = "media_jobs.pipeline.keys."


def write_meta(mutants: Path, codes: dict[str, int | None], hashes: dict[str, str]) -> None:
    meta = mutants / (MODULE + ".meta")
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(
        json.dumps(
            {
                "exit_code_by_key": {PREFIX + name: code for name, code in codes.items()},
                "hash_by_function_name": hashes,
            }
        )
    )


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(mutation, "MUTANTS", tmp_path / "mutants")
    monkeypatch.setattr(mutation, "RESULTS", tmp_path / "results.json")
    return tmp_path


def test_verdicts_survive_a_new_checkout_for_unchanged_functions_only(places: Path) -> None:
    write_meta(
        places / "mutants",
        {"x_a__mutmut_1": 1, "x_a__mutmut_2": 0, "x_b__mutmut_1": 1, "x_c__mutmut_1": 33},
        {"x_a": "aaa", "x_b": "bbb", "x_c": "ccc"},
    )
    mutation.store_results([MODULE])
    stored = json.loads((places / "results.json").read_text())
    assert stored[MODULE]["x_a"] == {"hash": "aaa", "codes": {"1": 1, "2": 0}}

    # a new checkout: mutmut knows no verdict; x_b's source has changed since
    write_meta(
        places / "mutants",
        {
            "x_a__mutmut_1": None,
            "x_a__mutmut_2": None,
            "x_b__mutmut_1": None,
            "x_c__mutmut_1": None,
        },
        {"x_a": "aaa", "x_b": "changed", "x_c": "ccc"},
    )
    codes = mutation.results_of(MODULE)
    assert codes == {
        PREFIX + "x_a__mutmut_1": 1,
        PREFIX + "x_a__mutmut_2": 0,
        PREFIX + "x_b__mutmut_1": None,  # changed: run again
        PREFIX + "x_c__mutmut_1": None,  # "no tests" is asked again
    }
    chosen = mutation.chosen_mutants(MODULE, rerun="none", sample=1)
    assert chosen == [PREFIX + "x_b__mutmut_1", PREFIX + "x_c__mutmut_1"]
    # after new tests: the survivors again, and what has no verdict yet
    assert mutation.chosen_mutants(MODULE, rerun="survivors", sample=1) == [
        PREFIX + "x_a__mutmut_2",
        PREFIX + "x_b__mutmut_1",
        PREFIX + "x_c__mutmut_1",
    ]

    mutation.store_results([MODULE])
    stored = json.loads((places / "results.json").read_text())
    assert "x_b" not in stored[MODULE]  # its old verdict went with its old source


def test_scores_leave_out_equivalents_and_count_what_was_not_run(places: Path) -> None:
    write_meta(
        places / "mutants",
        {"x_a__mutmut_1": 1, "x_a__mutmut_2": 0, "x_a__mutmut_3": 0, "x_a__mutmut_4": None},
        {"x_a": "aaa"},
    )
    equivalent = {PREFIX + "x_a__mutmut_3": "same behaviour"}
    (score,) = mutation.read_scores([MODULE], equivalent)
    assert dict(score.counts) == {"killed": 1, "survived": 1, "equivalent": 1, "not run": 1}
    assert score.score == 50.0
    assert score.survivors == [PREFIX + "x_a__mutmut_2"]


def test_an_equivalent_is_judged_in_one_version_of_its_function(
    places: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listed = places / "equivalent.txt"
    monkeypatch.setattr(mutation, "EQUIVALENT", listed)
    listed.write_text(
        "# a comment stays\n"
        f"{PREFIX}x_a__mutmut_3  the same either way\n"
        f"{PREFIX}x_b__mutmut_1  hash=old  judged in x_b's earlier source\n"
    )
    write_meta(
        places / "mutants", {"x_a__mutmut_3": 0, "x_b__mutmut_1": 0}, {"x_a": "aaa", "x_b": "new"}
    )

    equivalent, changed = mutation.equivalent_mutants(stamp=True)

    assert equivalent == {PREFIX + "x_a__mutmut_3": "the same either way"}
    # x_b changed since: its mutant 1 may now be another mutation, so it counts again
    assert changed == {PREFIX + "x_b__mutmut_1": "judged in x_b's earlier source"}
    assert listed.read_text().splitlines() == [
        "# a comment stays",
        f"{PREFIX}x_a__mutmut_3  hash=aaa  the same either way",
        f"{PREFIX}x_b__mutmut_1  hash=old  judged in x_b's earlier source",
    ]
    # once stamped, a later change of x_a makes its entry stale too
    write_meta(places / "mutants", {"x_a__mutmut_3": 0}, {"x_a": "edited", "x_b": "new"})
    assert mutation.equivalent_mutants()[1] == {
        PREFIX + "x_a__mutmut_3": "the same either way",
        PREFIX + "x_b__mutmut_1": "judged in x_b's earlier source",
    }


def test_a_new_checkout_generates_first_and_runs_only_what_has_no_verdict(
    places: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the mutant names, ``module.*`` would run every mutant of a module again; the
    stored verdicts can only pick the unjudged ones once mutmut has named the mutants."""
    (places / "results.json").write_text(
        json.dumps({MODULE: {"x_a": {"hash": "aaa", "codes": {"1": 1, "2": 0}}}})
    )
    generated = []

    def generate(env: dict[str, str], children: int) -> None:
        generated.append(children)
        write_meta(
            places / "mutants",
            {"x_a__mutmut_1": None, "x_a__mutmut_2": None, "x_b__mutmut_1": None},
            {"x_a": "aaa", "x_b": "bbb"},
        )

    runs: list[list[str]] = []

    class Mutmut:
        """Records the command instead of running mutmut."""

        def __init__(self, cmd: list[str], **kwargs: object) -> None:
            runs.append(cmd)

        def __enter__(self) -> Mutmut:
            return self

        def __exit__(self, *exc_info: object) -> None:
            return None

        def wait(self, timeout: float) -> int:
            return 0

    monkeypatch.setattr(mutation, "generate_mutants", generate)
    monkeypatch.setattr(mutation.subprocess, "Popen", Mutmut)
    run = dict(env={}, budget_s=60, sample=1, per_module=0)

    mutation.run_mutants([MODULE], max_children=3, rerun="none", **run)
    assert generated == [3]
    assert [cmd[-1:] for cmd in runs] == [[PREFIX + "x_b__mutmut_1"]]

    # generated already: the survivor goes first, in a run of its own
    runs.clear()
    mutation.run_mutants([MODULE], max_children=3, rerun="survivors", **run)
    assert generated == [3]
    assert [cmd[-1:] for cmd in runs] == [[PREFIX + "x_a__mutmut_2"], [PREFIX + "x_b__mutmut_1"]]
