"""``manage.py clean_old_jobs``: the cleaner of docs/contract.md §8, by hand."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import CommandParser
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ...ops_tasks import clean_enqueue
from ...services.housekeeping import jobs_clean
from ..base import OperationCommand, Progress, Summary, duration, since_moment, usage_error


class Command(OperationCommand):
    help_text = _(
        "Delete finished jobs completed before a cutoff (and their timeline events), in "
        "batches, at most --limit per run - what Celery beat runs daily."
    )
    item_label = "job"
    default_batch_size = 500

    def add_selection_arguments(self, parser: CommandParser) -> None:
        cutoff = parser.add_mutually_exclusive_group()
        cutoff.add_argument(
            "--older-than",
            type=duration,
            help=gettext(
                "Completed longer ago than this (e.g. 90d). Default CLEANER_RETENTION_DAYS "
                "(%(days)s days)."
            )
            % {"days": settings.CLEANER_RETENTION_DAYS},
        )
        cutoff.add_argument(
            "--before",
            type=since_moment,
            help=gettext("Completed before this date or time instead."),
        )

    def build_params(self, options: dict[str, Any]) -> dict[str, Any]:
        now = timezone.now()
        if options["before"] is not None:
            cutoff = options["before"]
            if cutoff > now:
                raise usage_error(
                    gettext("--before %(cutoff)s is in the future") % {"cutoff": cutoff.isoformat()}
                )
        else:
            age = options["older_than"]
            if age is None:
                age = timedelta(days=settings.CLEANER_RETENTION_DAYS)
            cutoff = now - age
        if options["limit"] is None:
            options["limit"] = settings.CLEANER_MAX_PER_RUN
        # Fixed once, so the batches never chase a moving cutoff.
        return {"completed_before": cutoff.isoformat()}

    def run(
        self, options: dict[str, Any], params: dict[str, Any], summary: Summary, progress: Progress
    ) -> None:

        cutoff = datetime.fromisoformat(params["completed_before"])
        limit = options["limit"]
        batch_size = options["batch_size"]
        summary.extra["completed_before"] = cutoff.isoformat()
        if summary.enqueue:
            summary.tasks.append(
                clean_enqueue(completed_before=cutoff, limit=limit, batch_size=batch_size)
            )
            return
        if summary.dry_run:
            count = jobs_clean(
                completed_before=cutoff, limit=limit, batch_size=batch_size, dry_run=True
            )
            summary.counts["done"] += count
            summary.limit_reached = count >= limit
            self._line(
                progress,
                gettext("would delete %(count)s jobs completed before %(cutoff)s")
                % {"count": count, "cutoff": cutoff.isoformat()},
            )
            return
        while True:
            size = min(batch_size, limit - summary.worked())
            if size <= 0:
                summary.limit_reached = True
                return
            deleted = jobs_clean(completed_before=cutoff, limit=size, batch_size=size)
            summary.counts["done"] += deleted
            progress.batch_done()
            if deleted < size:
                return

    def _line(self, progress: Progress, line: str) -> None:
        if not self.as_json and self.verbosity >= 1:
            progress.write(self.stdout, line)
