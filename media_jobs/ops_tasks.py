"""Celery tasks behind ``--enqueue`` of the operations commands, and the per-item runner the
commands use inline - so a batch run on a worker does exactly what an inline run does.

Workers import this module through ``app.autodiscover_tasks(related_name="ops_tasks")`` in
``toqportal/celery.py``. Tasks take ids or keys, and every item function is idempotent, so a
batch redelivered after a worker died only finds its finished items ``skipped``.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from celery import shared_task
from django.db import transaction

from .exceptions import ApplicationError
from .pipeline.errors import PipelineError
from .services.backfill import ItemResult, asset_backfill_derivatives, failed, job_requeue
from .services.raw_import import raw_asset_import
from .services.storage_audit import listing_verify, listing_zip_rebuild
from .services.transient import db_retry
from .tasks import clean_old_jobs, reconcile_stuck_jobs

logger = logging.getLogger("toq.operations")

ItemRunner = Callable[[Any, dict[str, Any], bool], ItemResult]


def _backfill(ref: Any, params: dict[str, Any], dry_run: bool) -> ItemResult:
    return asset_backfill_derivatives(
        asset_id=int(ref),
        force=bool(params.get("force")),
        missing_only=bool(params.get("missing_only")),
        dry_run=dry_run,
    )


def _requeue(ref: Any, params: dict[str, Any], dry_run: bool) -> ItemResult:
    return job_requeue(
        job_id=int(ref),
        include_superseded=bool(params.get("include_superseded")),
        dry_run=dry_run,
    )


def _rebuild_zip(ref: Any, params: dict[str, Any], dry_run: bool) -> ItemResult:
    return listing_zip_rebuild(
        listing_identity_id=int(ref), force=bool(params.get("force")), dry_run=dry_run
    )


def _import_raw(ref: Any, params: dict[str, Any], dry_run: bool) -> ItemResult:
    return raw_asset_import(raw_key=str(ref), dry_run=dry_run)


def _verify(ref: Any, params: dict[str, Any], dry_run: bool) -> ItemResult:
    return listing_verify(listing_identity_id=int(ref), dry_run=dry_run)


# operation name (the command's name) -> what one item does
OPERATIONS: dict[str, ItemRunner] = {
    "backfill_derivatives": _backfill,
    "requeue_jobs": _requeue,
    "rebuild_zips": _rebuild_zip,
    "import_raw_assets": _import_raw,
    "verify_storage": _verify,
}


def run_item(operation: str, ref: Any, params: dict[str, Any], *, dry_run: bool) -> ItemResult:
    """One item; any error becomes a ``failed`` result, so one item never stops the others.
    A lost database connection is not an item's error: the item runs again on a fresh one
    (items are idempotent)."""
    try:
        return db_retry(
            lambda: OPERATIONS[operation](ref, params, dry_run), what=f"{operation} {ref}"
        )
    except ApplicationError as exc:
        return failed(f"{ref}: {exc.message}", error=type(exc).__name__)
    except PipelineError as exc:
        return failed(f"{ref}: {exc.code}: {exc.message}", error_code=str(exc.code))
    except Exception as exc:
        logger.exception("operation %s failed on %r", operation, ref, extra={"step": operation})
        return failed(f"{ref}: {type(exc).__name__}: {exc}", error=type(exc).__name__)


@shared_task(name="media_jobs.ops.run_batch", acks_late=True)
def operation_run_batch(operation: str, refs: list[Any], params: dict[str, Any]) -> dict[str, Any]:
    """A batch of an operation on a worker. Items are idempotent, so a redelivered batch
    (after a worker was killed) only finds the finished items ``skipped``."""
    counts: Counter[str] = Counter()
    items = []
    for ref in refs:
        result = run_item(operation, ref, params, dry_run=False)
        counts[result.outcome] += 1
        counts.update(result.tags)
        items.append(result.as_json(ref))
        log = logger.warning if result.outcome == "failed" else logger.info
        log("%s %s: %s", operation, result.outcome, result.detail, extra={"step": operation})
    summary = {"operation": operation, "selected": len(refs), **counts}
    logger.info("%s batch finished: %s", operation, dict(counts), extra={"step": operation})
    return {**summary, "items": items}


def _send_on_commit(task: Any, args: list[Any]) -> str:
    """Queue ``task`` once the caller's transaction commits; its id is known right away."""
    task_id = str(uuid.uuid4())
    transaction.on_commit(lambda: task.apply_async(args=args, task_id=task_id))
    return task_id


def operation_enqueue(*, operation: str, refs: list[Any], params: dict[str, Any]) -> str:
    """Queue one batch of ``operation`` for the workers; returns the Celery task id."""
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}")
    return _send_on_commit(operation_run_batch, [operation, list(refs), dict(params)])


def reconcile_enqueue(*, timeout_seconds: int, limit: int | None) -> str:
    return _send_on_commit(reconcile_stuck_jobs, [timeout_seconds, limit])


def clean_enqueue(*, completed_before: datetime, limit: int, batch_size: int) -> str:
    return _send_on_commit(clean_old_jobs, [completed_before.isoformat(), limit, batch_size])
