"""Failing a job by decision: an operator's "mark failed", the reconciler's timeout, a
dispatch that could not start. The pipeline's own failures arrive as callbacks
(``callbacks.callback_apply``); these are the portal's.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils.translation import gettext

from ..errorcodes import MARKED_FAILED
from ..exceptions import ApplicationError, JobStateError
from ..models import STEP_MARK_FAILED, EventKind, JobStatus, MediaProcessingJob
from .callbacks import job_fail_processing_assets, job_failure_figures
from .events import event_record
from .job_errors import entries_of_last_error, job_errors_record
from .jobs import format_last_error, job_complete

logger = logging.getLogger("toq.media.retry")

MARKED_FAILED_CODE = MARKED_FAILED


@transaction.atomic
def job_mark_failed(
    *,
    job: MediaProcessingJob,
    reason: str,
    actor: str | None = None,
    code: str = MARKED_FAILED_CODE,
) -> MediaProcessingJob:
    """A stuck PENDING/RUNNING job becomes FAILED with ``code=<code> | <reason>``; its
    PROCESSING assets become FAILED too (processing jobs only), and the job's timeline
    records who did it. A pipeline result that arrives later is still applied when it is a
    success (the callback receiver's "late success")."""
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError(gettext("say why the job is marked failed (reason is empty)"))
    job = MediaProcessingJob.objects.select_for_update().get(pk=job.pk)
    if job.is_terminal:
        raise JobStateError(
            gettext(
                "job %(job)s is already %(status)s; only a PENDING or RUNNING job can be "
                "marked failed"
            )
            % {"job": job.pk, "status": job.status}
        )
    job = job_complete(
        job=job,
        status=JobStatus.FAILED,
        error_line=format_last_error(code=code, message=reason),
    )
    failed_assets = 0
    if not job.is_finalization:
        failed_assets = job_fail_processing_assets(job=job, code=code, message=reason)
        job.payload = {
            **(job.payload if isinstance(job.payload, dict) else {}),
            **job_failure_figures(job=job, assets_failed=failed_assets),
        }
        job.save(update_fields=["payload"])
    job_errors_record(job=job, entries=entries_of_last_error(job.last_error, assets=failed_assets))
    event_record(
        job=job,
        step=STEP_MARK_FAILED,
        kind=EventKind.FAILED,
        detail={"code": code, "reason": reason, "actor": actor, "assetsFailed": failed_assets},
    )
    logger.warning(
        "job marked failed",
        extra={
            "job_id": job.pk,
            "listing_identity_id": job.listing_identity_id,
            "error_code": code,
            "reason": reason,
            "actor": actor,
            "assets_failed": failed_assets,
        },
    )
    return job
