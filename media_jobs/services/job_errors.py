"""The error codes a job ended with (``media_job_errors``), kept with its outcome.

A failed or partially successful job has its own code (the ``code=`` of its ``last_error``
line) and, when some of its assets failed, their codes too: a ``PARTIAL_SUCCESS`` job is
``DERIVATIVE_ERRORS_DETECTED`` for the job and ``CORRUPT_IMAGE`` for the photo that could not
be decoded. Both kinds are rows here, one per (scope, code, normalized message), so the
portal finds and counts jobs by any code through an index.

Written where the outcome is decided, in the same transaction: the callback receiver
(``callbacks.callback_apply``) and ``failures.job_mark_failed`` (operators, the reconciler, a
failed dispatch). A success replaces the rows with none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errorcodes import normalize_error_message, parse_last_error
from ..models import ErrorScope, MediaJobError, MediaProcessingJob

SAMPLE_MAX = MediaJobError._meta.get_field("sample").max_length or 300
CODE_MAX = MediaJobError._meta.get_field("code").max_length or 100


@dataclass(frozen=True)
class JobErrorEntry:
    """One code of a job's outcome: scope ("job" or "asset"), code, one message as it was,
    and how many assets failed with it."""

    scope: str
    code: str
    sample: str = ""
    assets: int = 0

    @property
    def message(self) -> str:
        return normalize_error_message(self.sample)


def entries_of_last_error(text: str | None, *, assets: int = 0) -> list[JobErrorEntry]:
    """The job's own code of every ``last_error`` line (``assets`` on the first), and the
    per-asset codes a line counts (their messages are not in last_error)."""
    entries: list[JobErrorEntry] = []
    for number, line in enumerate(parse_last_error(text)):
        entries.append(
            JobErrorEntry(
                ErrorScope.JOB, line.code or "", line.message, assets if number == 0 else 0
            )
        )
        entries += [
            JobErrorEntry(ErrorScope.ASSET, code, "", count)
            for code, count in line.asset_codes.items()
        ]
    return entries


def entries_of_outputs(outputs: Any) -> list[JobErrorEntry]:
    """One entry per asset that failed in a callback's ``outputs`` (docs/contract.md §6)."""
    if not isinstance(outputs, list):
        return []
    entries = []
    for output in outputs:
        if not isinstance(output, Mapping):
            continue
        code, message = output.get("errorCode"), output.get("errorMessage")
        if code or message:
            entries.append(
                JobErrorEntry(ErrorScope.ASSET, str(code or ""), str(message or code), 1)
            )
    return entries


def merged_entries(entries: Iterable[JobErrorEntry]) -> dict[tuple[str, str, str], JobErrorEntry]:
    """The entries merged per (scope, code, normalized message), their assets added up."""
    merged: dict[tuple[str, str, str], JobErrorEntry] = {}
    for entry in entries:
        key = (entry.scope, entry.code[:CODE_MAX], entry.message)
        known = merged.get(key)
        merged[key] = (
            entry
            if known is None
            else JobErrorEntry(key[0], key[1], known.sample, known.assets + entry.assets)
        )
    return merged


def error_rows(
    *, model: Any, job: Any, merged: dict[tuple[str, str, str], JobErrorEntry]
) -> list[Any]:
    """Unsaved rows of ``model`` (MediaJobError, or migration 0004's historical model)."""
    return [
        model(
            job_id=job.pk,
            listing_identity_id=job.listing_identity_id,
            scope=scope,
            code=code,
            message=message,
            sample=entry.sample[:SAMPLE_MAX],
            assets=entry.assets,
            job_created_at=job.created_at,
            job_completed_at=job.completed_at,
        )
        for (scope, code, message), entry in merged.items()
    ]


def job_errors_record(
    *, job: MediaProcessingJob, entries: Iterable[JobErrorEntry], replace: bool = True
) -> list[MediaJobError]:
    """Keep ``entries`` as the job's error codes, merged per (scope, code, message) with
    their assets added up. ``replace`` (a new outcome): the job's earlier codes go;
    otherwise they stay (the reconciler's failure, then the pipeline's own). Call it inside
    the transaction that records the outcome."""
    merged = merged_entries(entries)
    existing = MediaJobError.objects.filter(job_id=job.pk)
    if replace:
        existing.delete()
    else:
        for key in existing.values_list("scope", "code", "message"):
            merged.pop(key, None)
    rows = error_rows(model=MediaJobError, job=job, merged=merged)
    return MediaJobError.objects.bulk_create(rows)  # no query for an empty list


def job_errors_backfill(*, jobs: Iterable[MediaProcessingJob]) -> int:
    """Rows for jobs that failed before the table existed (or were written by another
    system): from their ``last_error`` alone. Returns how many rows were written."""
    written = 0
    for job in jobs:
        written += len(job_errors_record(job=job, entries=entries_of_last_error(job.last_error)))
    return written
