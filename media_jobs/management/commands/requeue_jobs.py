"""``manage.py requeue_jobs``: retry finished jobs with the admin's retry service."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.core.management.base import CommandParser
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ...errorcodes import is_error_code
from ...models import TERMINAL_JOB_STATUSES, JobStatus
from ...selectors.operations import jobs_for_requeue
from ..base import (
    JOB_PROVIDERS,
    JOB_STATUSES,
    KIND_ALIASES,
    OperationCommand,
    add_listing_argument,
    check_range,
    choice_list,
    duration,
    id_list,
    queryset_batches,
    usage_error,
)


class Command(OperationCommand):
    help_text = _(
        "Retry finished jobs selected by status, kind, age, error code and listing, through "
        "the same service as the admin's Retry (a new job per retried job, dispatched to the "
        "configured engine). A job that already has a newer job of the same listing and kind "
        "is skipped, so running the command twice retries nothing twice."
    )
    operation = "requeue_jobs"
    item_label = "job"

    def add_selection_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--status",
            dest="statuses",
            action="extend",
            type=choice_list(gettext("status"), JOB_STATUSES),
            default=[],
            metavar="STATUS[,STATUS...]",
            help=gettext(
                "Finished statuses to retry (FAILED, PARTIAL_SUCCESS, SUCCEEDED). Default FAILED."
            ),
        )
        parser.add_argument(
            "--kind",
            dest="providers",
            action="extend",
            type=choice_list(gettext("kind"), JOB_PROVIDERS, KIND_ALIASES),
            default=[],
            metavar="KIND[,KIND...]",
            help=gettext("processing, finalization (zip), mediaconvert, or a provider name."),
        )
        parser.add_argument(
            "--older-than",
            type=duration,
            help=gettext("Created at least this long ago (30m, 2h, 7d)."),
        )
        parser.add_argument(
            "--newer-than",
            type=duration,
            help=gettext("Created at most this long ago (30m, 2h, 7d)."),
        )
        parser.add_argument(
            "--error-code",
            help=(
                gettext(
                    "Only jobs that ended with this code, their own or one of their assets' "
                    "(e.g. ZIP_FAILED, CORRUPT_IMAGE): the admin's error-code filter."
                )
            ),
        )
        add_listing_argument(parser, gettext("Only these listings (repeat or comma-separate)."))
        parser.add_argument(
            "--job",
            dest="job_ids",
            action="extend",
            type=id_list(gettext("job id")),
            default=[],
            metavar="ID[,ID...]",
            help=gettext("Only these jobs."),
        )
        parser.add_argument(
            "--include-superseded",
            action="store_true",
            help=gettext(
                "Also retry jobs that already have a newer job of the same listing and kind."
            ),
        )

    def build_params(self, options: dict[str, Any]) -> dict[str, Any]:
        statuses = options["statuses"] or [JobStatus.FAILED.value]
        unfinished = sorted(set(statuses) - set(TERMINAL_JOB_STATUSES))
        if unfinished:
            raise usage_error(
                gettext(
                    "--status %(statuses)s: only finished jobs can be retried (use "
                    "reconcile_stuck_jobs for jobs stuck PENDING or RUNNING)"
                )
                % {"statuses": ",".join(unfinished)}
            )
        code = options["error_code"]
        if code is not None and not is_error_code(code):
            raise usage_error(
                gettext("--error-code %(code)r: letters, digits, '_', '.', ':' or '-' only")
                % {"code": code}
            )
        now = timezone.now()
        options["created_before"] = now - options["older_than"] if options["older_than"] else None
        options["created_after"] = now - options["newer_than"] if options["newer_than"] else None
        check_range(
            options["created_after"], options["created_before"], "--newer-than/--older-than"
        )
        options["statuses"] = statuses
        return {"include_superseded": options["include_superseded"]}

    def _jobs(self, options: dict[str, Any]) -> Any:
        return jobs_for_requeue(
            statuses=options["statuses"],
            providers=options["providers"],
            created_before=options["created_before"],
            created_after=options["created_after"],
            error_code=options["error_code"],
            listing_ids=options["listing_ids"],
            job_ids=options["job_ids"],
            include_superseded=options["include_superseded"],
        )

    def select(self, options: dict[str, Any], batch_size: int) -> Iterator[list[Any]]:
        yield from queryset_batches(self._jobs(options), batch_size)

    def count(self, options: dict[str, Any]) -> int | None:
        return self._jobs(options).count()
