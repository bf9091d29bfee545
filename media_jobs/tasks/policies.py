"""How the Celery engine retries and how long a step may run: the state machines' Retry
blocks (docs/contract.md §4, §5) and the task classes that apply them around every task."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from celery import Task
from celery.exceptions import Retry
from django.conf import settings
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerError

from ..models import (
    STEP_CONSOLIDATE,
    STEP_POSTERS,
    STEP_THUMBNAILS,
    STEP_TRANSCODE,
    STEP_VALIDATE,
    STEP_ZIP,
)
from ..services.dispatch import job_dispatch_failed
from ..services.transient import db_retry
from ..services.workflow import PART_STEPS

logger = logging.getLogger("toq.media.tasks")


def retry_delay_scale() -> float:
    """Multiplies every retry interval; 1 in production, tiny in the tests."""
    return float(settings.PIPELINE_RETRY_DELAY_SCALE)


def thumbnail_chunk_size() -> int:
    """Photos per thumbnails task: small enough to spread a listing over the workers, large
    enough that the task overhead stays negligible next to the decoding."""
    return max(1, int(settings.PIPELINE_THUMBNAIL_CHUNK_SIZE))


@dataclass(frozen=True)
class RetryPolicy:
    """A state machine Retry block: attempts after the first, interval, backoff."""

    max_retries: int
    interval_s: float
    backoff: float

    def countdown(self, retries: int) -> float:
        return self.interval_s * self.backoff**retries * retry_delay_scale()


# docs/contract.md §4/§5: validate 2x 2 s x2; branches 2x 5 s x2; zip 2x 10 s x2. The consolidation is a
# pure function; it retries like the state machine's Lambda errors (2x 2 s x2).
VALIDATE_RETRY = RetryPolicy(2, 2, 2.0)
BRANCH_RETRY = RetryPolicy(2, 5, 2.0)
CONSOLIDATE_RETRY = RetryPolicy(2, 2, 2.0)
ZIP_RETRY = RetryPolicy(2, 10, 2.0)
# The first task of a job, when something outside the pipeline step fails (a locked or lost
# database, the broker while fanning out): 3 retries, 2 s x2, then DISPATCH_FAILED.
FIRST_TASK_RETRY = RetryPolicy(3, 2, 2.0)
TRANSIENT_ERRORS = (OperationalError, InterfaceError, BrokerError, ConnectionError)

_FFMPEG_LIMIT = int(settings.FFMPEG_TIMEOUT_SECONDS)
# (soft, hard) seconds: a step past its soft limit raises inside the task and is retried.
TIME_LIMITS: dict[str, tuple[int, int]] = {
    STEP_VALIDATE: (300, 330),
    STEP_THUMBNAILS: (900, 960),
    STEP_POSTERS: (_FFMPEG_LIMIT + 120, _FFMPEG_LIMIT + 180),
    STEP_TRANSCODE: (_FFMPEG_LIMIT + 300, _FFMPEG_LIMIT + 360),
    STEP_CONSOLIDATE: (300, 330),
    STEP_ZIP: (3 * 3600, 3 * 3600 + 60),
    "deliver": (600, 630),
    "housekeeping": (1800, 1860),
}
PART_LIMITS = (
    max(TIME_LIMITS[s][0] for s in PART_STEPS),
    max(TIME_LIMITS[s][1] for s in PART_STEPS),
)


class ResilientTask(Task):
    """A task whose body runs again on a fresh database connection when its connection
    is killed (``services.transient.db_retry``). Every task here is idempotent - finished
    steps, parts and outputs are skipped - so running the body again resumes it."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return db_retry(
            lambda: super(ResilientTask, self).__call__(*args, **kwargs), what=self.name
        )


class FirstTask(ResilientTask):
    """The first task of a job (``run_processing``, ``run_finalization``). What escapes it -
    after ResilientTask has rerun it on fresh connections - is retried while it looks
    transient (a locked SQLite file, the database, the broker), and otherwise, or when the
    retries run out, the job fails with DISPATCH_FAILED at once: without this the job would
    stay PENDING, silent, until the reconciler."""

    first_step = ""  # the step it runs, for the message (set by @app.task)

    def __call__(self, job_id: int, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(job_id, *args, **kwargs)
        except Retry:
            raise
        except Exception as exc:
            retries = self.request.retries or 0
            if isinstance(exc, TRANSIENT_ERRORS) and retries < FIRST_TASK_RETRY.max_retries:
                countdown = FIRST_TASK_RETRY.countdown(retries)
                logger.warning(
                    "first task of the job failed, retrying in %.1fs: %s: %s",
                    countdown,
                    type(exc).__name__,
                    exc,
                    extra={"job_id": job_id, "step": self.first_step},
                )
                raise self.retry(
                    exc=exc, countdown=countdown, max_retries=FIRST_TASK_RETRY.max_retries
                ) from exc
            logger.exception("first task of the job failed", extra={"job_id": job_id})
            job_dispatch_failed(
                job_id=job_id,
                reason=(
                    f"the job's first step ({self.first_step}) could not run after "
                    f"{retries + 1} attempt(s): {type(exc).__name__}: {exc}"
                ),
            )
            return None
