"""``manage.py reconcile_stuck_jobs``: the reconciler of docs/contract.md §8, by hand."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import CommandParser
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ...ops_tasks import reconcile_enqueue
from ...services.backfill import done
from ...services.housekeeping import jobs_reconcile
from ..base import OperationCommand, Progress, Summary, duration, usage_error


class Command(OperationCommand):
    help_text = _(
        "Mark jobs PENDING or RUNNING for longer than the timeout FAILED ('reconciler marked "
        "failed after <timeout> without callback') and their listing's PROCESSING assets "
        "FAILED - what Celery beat runs every RECONCILER_INTERVAL_SECONDS."
    )
    item_label = "job"

    def add_selection_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--timeout",
            type=duration,
            help=gettext(
                "Stuck after this long (90, 30m, 2h). Default RECONCILER_TIMEOUT_SECONDS "
                "(%(seconds)s s)."
            )
            % {"seconds": settings.RECONCILER_TIMEOUT_SECONDS},
        )

    def build_params(self, options: dict[str, Any]) -> dict[str, Any]:
        timeout = options["timeout"]
        if timeout is None:
            timeout = timedelta(seconds=settings.RECONCILER_TIMEOUT_SECONDS)
        if timeout.total_seconds() < 1:
            raise usage_error(gettext("--timeout must be at least 1 second"))
        return {"timeout_seconds": int(timeout.total_seconds())}

    def run(
        self, options: dict[str, Any], params: dict[str, Any], summary: Summary, progress: Progress
    ) -> None:

        timeout_seconds = params["timeout_seconds"]
        limit = options["limit"]
        summary.extra["timeout_seconds"] = timeout_seconds
        if summary.enqueue:
            summary.tasks.append(reconcile_enqueue(timeout_seconds=timeout_seconds, limit=limit))
            return
        if summary.dry_run:
            for job_id in jobs_reconcile(
                timeout_seconds=timeout_seconds, limit=limit, dry_run=True
            ):
                self._record(summary, progress, job_id, f"job #{job_id}: would be marked FAILED")
            progress.batch_done()
            summary.limit_reached = limit is not None and summary.worked() >= limit
            return
        # Batches: each call fails at most batch-size jobs, which then no longer match.
        while True:
            remaining = None if limit is None else limit - summary.worked()
            size = (
                options["batch_size"]
                if remaining is None
                else min(options["batch_size"], remaining)
            )
            if size <= 0:
                summary.limit_reached = True
                return
            job_ids = jobs_reconcile(timeout_seconds=timeout_seconds, limit=size)
            for job_id in job_ids:
                self._record(summary, progress, job_id, f"job #{job_id}: marked FAILED")
            progress.batch_done()
            if len(job_ids) < size:
                return

    def _record(self, summary: Summary, progress: Progress, job_id: int, detail: str) -> None:
        result = done(detail)
        summary.add(job_id, result)
        progress.item_done()
        self.item_line(progress, job_id, result, summary.dry_run)
