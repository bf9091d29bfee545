"""The harness every benchmark shares: timing, targets, the result file, and the environment.

Absolute times on a shared 2-core machine drift, so a benchmark never judges a time on its
own: it measures the project's code and a reference in the same run, interleaved, and a
target is a ratio of medians (or a bound such as a peak RSS or a query count).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import MySQLdb
import psutil
import redis

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
# MariaDB of the machine; every benchmark that needs a database gets one of its own.
MYSQL_SERVER_URL = os.environ.get("BENCH_MYSQL_URL", "mysql://root@127.0.0.1:3306")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


@dataclass
class Timing:
    """Several runs of one contender; the median is what ratios use."""

    label: str
    runs: list[float] = field(default_factory=list)
    unit: str = "s"

    @property
    def median(self) -> float:
        return statistics.median(self.runs) if self.runs else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "unit": self.unit, "median": self.median, "runs": self.runs}


@dataclass
class Target:
    """One target: ``measured <op> threshold`` (op is "<=" or ">=")."""

    name: str
    measured: float | None
    op: str
    threshold: float
    unit: str = ""
    detail: str = ""

    @property
    def passed(self) -> bool:
        if self.measured is None:
            return False
        if self.op == "<=":
            return self.measured <= self.threshold
        if self.op == ">=":
            return self.measured >= self.threshold
        if self.op == "==":
            return self.measured == self.threshold
        raise ValueError(f"unknown operator {self.op!r}")

    @property
    def verdict(self) -> str:
        if self.measured is None:
            return "N/A"
        return "PASS" if self.passed else "MISS"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed, "verdict": self.verdict}


@dataclass
class BenchResult:
    """What one benchmark reports; ``bench.__main__`` turns a list of these into BENCHMARKS.md."""

    key: str
    title: str
    params: dict[str, Any] = field(default_factory=dict)
    timings: list[Timing] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    load: dict[str, Any] = field(default_factory=dict)
    # Extra tables for the report: {"title": str, "header": [str], "rows": [[...]], "note": str}
    tables: list[dict[str, Any]] = field(default_factory=list)

    def timing(self, label: str, unit: str = "s") -> Timing:
        for timing in self.timings:
            if timing.label == label:
                return timing
        timing = Timing(label, unit=unit)
        self.timings.append(timing)
        return timing

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "params": self.params,
            "timings": [t.as_dict() for t in self.timings],
            "figures": self.figures,
            "targets": [t.as_dict() for t in self.targets],
            "notes": self.notes,
            "load": self.load,
            "tables": self.tables,
        }


def ratio(numerator: float, denominator: float) -> float | None:
    if not denominator or denominator != denominator or numerator != numerator:
        return None
    return numerator / denominator


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def print_result(result: BenchResult) -> None:
    """The console view: medians, figures and each target's verdict."""
    print(f"\n== {result.title}")
    if result.params:
        print("   params:", ", ".join(f"{k}={v}" for k, v in result.params.items()))
    for timing in result.timings:
        runs = ", ".join(_fmt(r) for r in timing.runs)
        print(f"   {timing.label:<48} median {_fmt(timing.median)} {timing.unit}  [{runs}]")
    for name, value in result.figures.items():
        print(f"   {name:<48} {_fmt(value) if isinstance(value, float) else value}")
    for target in result.targets:
        measured = "n/a" if target.measured is None else _fmt(target.measured)
        print(
            f"   [{target.verdict}] {target.name}: {measured}{target.unit} "
            f"(target {target.op} {_fmt(target.threshold)}{target.unit})"
            + (f" - {target.detail}" if target.detail else "")
        )
    for table in result.tables:
        print(f"   -- {table['title']}")
        print("   " + " | ".join(str(h) for h in table["header"]))
        for row in table["rows"]:
            print("   " + " | ".join(_fmt(c) if isinstance(c, float) else str(c) for c in row))
    for note in result.notes:
        print(f"   note: {note}")
    sys.stdout.flush()


def _fmt(value: float) -> str:
    if value != value:
        return "nan"
    if value == 0 or abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks it runs")
    parser.add_argument("--runs", type=int, default=None, help="measured runs per contender")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    return parser


def finish(result: BenchResult, json_path: Path | None) -> None:
    """Print the result and write it as JSON (read back by ``python -m bench``)."""
    print_result(result)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result.as_dict(), indent=2, default=str))


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory and software versions for the report header."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cores": os.cpu_count(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        info["memory_gib"] = round(psutil.virtual_memory().total / 1024**3, 1)
    except ImportError:
        pass
    versions: dict[str, str] = {}
    for module, attribute in (
        ("django", "__version__"),
        ("PIL", "__version__"),
        ("celery", "__version__"),
        ("boto3", "__version__"),
        ("gunicorn", "__version__"),
        ("numpy", "__version__"),
        ("pyvips", "__version__"),
        ("moto", "__version__"),
    ):
        try:
            versions[module] = str(getattr(__import__(module), attribute))
        except Exception:  # noqa: BLE001 - a missing optional package is reported, not fatal
            versions[module] = "not installed"
    versions["Pillow"] = versions.pop("PIL")
    try:
        import pyvips  # noqa: PLC0415 - optional, requirements-bench

        versions["libvips"] = ".".join(str(pyvips.version(i)) for i in range(3))
    except Exception:  # noqa: BLE001
        versions["libvips"] = "not available"
    versions["MariaDB"] = _mysql_version()
    versions["Redis"] = _redis_version()
    info["versions"] = versions
    return info


def _mysql_version() -> str:
    try:
        conn = mysql_connect()
        try:
            cursor = conn.cursor()
            cursor.execute("SELECT VERSION()")
            return str(cursor.fetchone()[0])
        finally:
            conn.close()
    except Exception as exc:  # noqa: BLE001
        return f"unreachable ({exc})"


def _redis_version() -> str:
    try:
        return str(
            redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).info()["redis_version"]
        )
    except Exception as exc:  # noqa: BLE001
        return f"unreachable ({exc})"


def mysql_connect(database: str | None = None) -> Any:
    """A raw MySQLdb connection to the bench server (bulk loads bypass the ORM)."""

    parts = urlparse(MYSQL_SERVER_URL)
    options: dict[str, Any] = {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": parts.username or "root",
        "passwd": parts.password or "",
        "charset": "utf8mb4",
        "autocommit": True,
    }
    if database:
        options["db"] = database
    return MySQLdb.connect(**options)


def bench_database(name: str) -> str:
    """The database a benchmark owns; BENCH_DB_SUFFIX keeps parallel runs (a test, CI) apart."""
    return name + os.environ.get("BENCH_DB_SUFFIX", "")


def drop_database(name: str) -> None:
    conn = mysql_connect()
    try:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


def database_url(name: str) -> str:
    return f"{MYSQL_SERVER_URL.rstrip('/')}/{name}"


def recreate_database(name: str) -> None:
    conn = mysql_connect()
    try:
        cursor = conn.cursor()
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    finally:
        conn.close()


def django_env(database: str, **extra: str) -> dict[str, str]:
    """The environment a Django process of a benchmark runs with (this one or a child)."""
    env = dict(os.environ)
    for name in ("CELERY_BROKER_URL", "DATABASE_TEST_NAME", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)
    env.update(
        DJANGO_SETTINGS_MODULE="toqportal.settings",
        DJANGO_ENV="test",
        DEBUG="false",
        DATABASE_URL=database_url(database),
        ALLOWED_HOSTS="testserver,127.0.0.1,localhost",
        LOG_LEVEL="WARNING",
        **extra,
    )
    return env


def setup_django(database: str, **extra: str) -> None:
    """Configure this process for ``database`` and start Django (once per process)."""
    env = django_env(database, **extra)
    for name in set(os.environ) - set(env):  # what django_env leaves out (a stray broker)
        del os.environ[name]
    os.environ.update(env)
    import django  # noqa: PLC0415 - starts Django once the environment is set

    django.setup()


def migrate() -> None:
    from django.core.management import call_command  # noqa: PLC0415 - Django, once setup_django() ran

    call_command("migrate", verbosity=0, interactive=False)


def result_path(key: str, smoke: bool) -> Path:
    return RESULTS_DIR / f"{key}{'.smoke' if smoke else ''}.json"
