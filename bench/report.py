"""BENCHMARKS.md from the benchmarks' JSON results: machine, versions, load, every target."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

FINDINGS = Path(__file__).with_name("findings.md")


def crashed_result(key: str, status: object, log_tail: str) -> dict[str, Any]:
    return {
        "key": key,
        "title": f"{key} (did not complete)",
        "params": {},
        "timings": [],
        "figures": {},
        "targets": [],
        "notes": [
            f"the benchmark process ended with {status}; last output:\n\n```\n"
            + log_tail[-1500:]
            + "\n```"
        ],
        "load": {},
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value == 0 or abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


def _target_row(result: dict[str, Any], target: dict[str, Any]) -> str:
    measured = _fmt(target["measured"]) + (target["unit"] if target["measured"] is not None else "")
    wanted = f"{target['op']} {_fmt(target['threshold'])}{target['unit']}"
    detail = f" ({target['detail']})" if target.get("detail") else ""
    return (
        f"| {result['title'].split(' (')[0]} | {target['name']}{detail} | {measured} | {wanted} "
        f"| **{target['verdict']}** |"
    )


def write_report(
    path: Path,
    results: list[dict[str, Any]],
    info: dict[str, Any],
    *,
    smoke: bool,
    elapsed_s: float,
    when: str | None = None,
) -> None:
    lines: list[str] = ["# Benchmarks", ""]
    if smoke:
        lines += [
            "> Smoke run (tiny sizes): checks the harness works; the ratios mean nothing.",
            "",
        ]
    lines += [
        "Produced by `make bench` (`python -m bench`); every figure below is from one run on "
        f"{when or f'{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M}'} UTC, which took {elapsed_s / 60:.1f} min. "
        "Each benchmark compares the project's code with a reference measured in the same run "
        "(medians of several runs, contenders interleaved), because absolute times on a shared "
        "machine drift. Timing assertions never go into the test suite.",
        "",
        "## Machine",
        "",
        f"- CPU: {info.get('cpu', 'unknown')}, {info.get('cores')} cores; memory "
        f"{info.get('memory_gib', '?')} GiB; {info.get('platform')}",
        "- Versions: Python "
        + info.get("python", "?")
        + ", "
        + ", ".join(f"{name} {version}" for name, version in info.get("versions", {}).items()),
        "- Load average (1, 5, 15 min) before/after each benchmark is listed with it: the "
        "machine is shared, so read the ratios, not the absolute times.",
        "",
        "## Targets",
        "",
        "| benchmark | target | measured | wanted | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for result in results:
        if not result.get("targets"):
            lines.append(f"| {result['title']} | (no figures) | n/a | n/a | **N/A** |")
        for target in result.get("targets", []):
            lines.append(_target_row(result, target))
    lines.append("")
    for result in results:
        lines += _section(result)
    if FINDINGS.exists() and not smoke:
        lines += ["", FINDINGS.read_text().rstrip(), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n")


def _section(result: dict[str, Any]) -> list[str]:
    lines = [f"## {result['title']}", ""]
    if result.get("params"):
        lines += [
            "Parameters: " + ", ".join(f"{k} = {_fmt(v)}" for k, v in result["params"].items()),
            "",
        ]
    load = result.get("load") or {}
    if load:
        lines += [
            "Load average: " + "; ".join(f"{k} {v}" for k, v in load.items()),
            "",
        ]
    if result.get("timings"):
        lines += ["| contender | median | runs |", "| --- | --- | --- |"]
        for timing in result["timings"]:
            runs = ", ".join(_fmt(r) for r in timing["runs"])
            lines.append(
                f"| {timing['label']} | {_fmt(timing['median'])} {timing['unit']} | {runs} |"
            )
        lines.append("")
    if result.get("figures"):
        lines += ["| figure | value |", "| --- | --- |"]
        lines += [f"| {name} | {_fmt(value)} |" for name, value in result["figures"].items()]
        lines.append("")
    for target in result.get("targets", []):
        lines.append(
            f"- **{target['verdict']}** {target['name']}: {_fmt(target['measured'])}"
            f"{target['unit'] if target['measured'] is not None else ''} "
            f"(target {target['op']} {_fmt(target['threshold'])}{target['unit']})"
        )
    if result.get("targets"):
        lines.append("")
    for table in result.get("tables", []):
        lines += [f"**{table['title']}**", ""]
        lines.append("| " + " | ".join(str(h) for h in table["header"]) + " |")
        lines.append("|" + " --- |" * len(table["header"]))
        lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in table["rows"]]
        lines.append("")
        if table.get("note"):
            lines += [table["note"], ""]
    for note in result.get("notes", []):
        lines += [f"Note: {note}", ""]
    return lines
