"""The project's Celery worker with request counters, for benchmark 4 (bench only).

Counts, per process, what one worker asks of the shared services: SQL statements by verb
(INSERT/UPDATE/DELETE are the writes), S3 requests by operation, task messages published and
run. Each process rewrites ``$BENCH_COUNTS_DIR/<pid>.json`` after every task, so the
figures survive however the pool's processes end. The counting is a few dict increments
per request: the worker is otherwise the project's own (``celery -A toqportal worker``).

    python -m bench.pipeline_worker -A toqportal worker --concurrency 1 ...
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

COUNTS: Counter[str] = Counter()
WRITE_VERBS = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def _count_sql(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    verb = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "?"
    COUNTS[f"sql {verb if verb in (*WRITE_VERBS, 'SELECT') else 'other'}"] += 1
    return execute(sql, params, many, context)


def dump() -> None:
    folder = os.environ.get("BENCH_COUNTS_DIR")
    if folder:
        path = Path(folder) / f"{os.getpid()}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(COUNTS))
        tmp.replace(path)


def install() -> None:
    """Hooks for SQL (every connection), S3 (botocore) and Celery messages."""
    import botocore.endpoint  # noqa: PLC0415 - Django and Celery, once the worker's environment is set
    from celery.signals import before_task_publish, task_postrun, task_prerun  # noqa: PLC0415 - Django and Celery, once the worker's environment is set
    from django.db.backends.signals import connection_created  # noqa: PLC0415 - Django and Celery, once the worker's environment is set

    def on_connection(sender: Any, connection: Any, **kwargs: Any) -> None:
        if _count_sql not in connection.execute_wrappers:
            connection.execute_wrappers.append(_count_sql)

    connection_created.connect(on_connection, weak=False)

    make_request = botocore.endpoint.Endpoint.make_request

    def counted(self: Any, operation_model: Any, request_dict: Any) -> Any:
        COUNTS[f"s3 {operation_model.name}"] += 1
        return make_request(self, operation_model, request_dict)

    botocore.endpoint.Endpoint.make_request = counted  # type: ignore[method-assign]

    def published(sender: Any = None, **kwargs: Any) -> None:
        COUNTS["messages published"] += 1

    def started(sender: Any = None, **kwargs: Any) -> None:
        COUNTS["tasks run"] += 1

    def finished(sender: Any = None, **kwargs: Any) -> None:
        dump()

    before_task_publish.connect(published, weak=False)
    task_prerun.connect(started, weak=False)
    task_postrun.connect(finished, weak=False)


def read_counts(folder: Path) -> Counter[str]:
    """The sum over every process that wrote its counts into ``folder``."""
    total: Counter[str] = Counter()
    for path in folder.glob("*.json"):
        total.update(json.loads(path.read_text()))
    return total


def main() -> None:
    install()
    from celery.__main__ import main as celery_main  # noqa: PLC0415 - Django and Celery, once the worker's environment is set

    sys.argv = ["celery", *sys.argv[1:]]
    celery_main()


if __name__ == "__main__":
    main()
