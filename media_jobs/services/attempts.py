"""Step attempts: which copy of a task runs a step now, and whether it is still alive.

A work step (validation, a parallel part, the ZIP) begins with a ``started`` event that is
its lease: it names the Celery task id and the worker, and a heartbeat thread refreshes its
``heartbeatAt`` every WATCHDOG_HEARTBEAT_SECONDS while the step runs. An attempt is *open*
until a ``succeeded``, ``failed`` or ``retried`` event of the same step (and part) follows
it, and *alive* while it is open and its heartbeat is younger than WATCHDOG_STALL_SECONDS.

``attempt_start`` decides, under the job row's lock, what a task that is about to run a
step does:

- another task id holds an alive attempt: this copy is a duplicate (the watchdog queued
  again a part that was only waiting in a busy queue) and stands down - a slow step is
  never run twice;
- the open attempt carries this task's own id: the broker delivered this very message
  again. When the attempt's process still runs on this machine, the message only came
  back because the step outlasted Redis's visibility timeout, and this copy stands down;
  otherwise its worker died (or lost its connection: RabbitMQ then cancels it), and this
  copy takes over;
- the open attempt's heartbeat stopped: its worker died; this copy takes over.

Every attempt taken over counts as lost. After LOST_ATTEMPTS_LIMIT lost attempts the step
fails with WORKER_LOST, so an input that kills its worker (out of memory, a hard time
limit) ends the job with a clear code instead of killing workers until the reconciler.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.db import DatabaseError, connections, transaction
from django.utils import timezone

from ..models import EventKind, MediaJobEvent, MediaProcessingJob
from .events import event_record
from .transient import close_connections

logger = logging.getLogger("toq.media.attempts")

LOST_ATTEMPTS_LIMIT = 3
# A heartbeat that failed (the database is away) is tried again this often.
HEARTBEAT_RETRY_S = 2.0
ENDING_KINDS = (EventKind.SUCCEEDED, EventKind.FAILED, EventKind.RETRIED)


@dataclass(frozen=True)
class Attempt:
    """This task's attempt at a step: its ``started`` event and the lost ones before it."""

    event_id: int
    detail: dict[str, Any]
    lost_before: int


@dataclass(frozen=True)
class Busy:
    """Another copy of the task is running the step and alive."""

    task_id: str
    worker: str


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def iso_now() -> str:
    return timezone.now().isoformat(timespec="milliseconds")


def _parse(moment: Any) -> datetime | None:
    if not isinstance(moment, str):
        return None
    try:
        parsed = datetime.fromisoformat(moment)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else timezone.make_aware(parsed)


def last_seen(at: datetime, heartbeat_at: Any) -> datetime:
    """When an attempt was last known alive: its heartbeat, or its start without one."""
    heartbeat = _parse(heartbeat_at)
    return max(at, heartbeat) if heartbeat else at


def running_here(worker: str) -> bool:
    """True when ``worker`` (``host:pid``) is another process on this machine that is
    still alive: the attempt it holds may still be running."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, run by another user
    return not _zombie(int(pid))


def _zombie(pid: int) -> bool:
    """A killed process nobody has reaped yet still answers kill(pid, 0) (Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return _exited(stat)


def _exited(stat: str) -> bool:
    """Whether a /proc/<pid>/stat line is in state Z (zombie) or X (dead, seen only for the
    instant of its reaping). The state follows the name, in parentheses, after its last ")"."""
    return stat.rpartition(")")[2].split()[:1] in (["Z"], ["X"])


def _attempt_rows(
    job_id: int, step: str, workflow_id: str, part: str | None
) -> list[Mapping[str, Any]]:
    rows = MediaJobEvent.objects.filter(
        job_id=job_id,
        step=step,
        kind__in=(EventKind.STARTED, *ENDING_KINDS),
        detail__workflowId=workflow_id,
    )
    if part is not None:
        rows = rows.filter(detail__part=part)
    # Key transforms only: a part's succeeded event carries its whole result.
    return list(
        rows.order_by("id").values(
            "kind", "at", "detail__taskId", "detail__worker", "detail__heartbeatAt"
        )
    )


def attempt_start(
    *,
    job: MediaProcessingJob,
    step: str,
    workflow_id: str,
    part: str | None,
    task_id: str,
    stall_seconds: float,
) -> Attempt | Busy:
    """Take the step for this task (a ``started`` event) or report the alive copy that
    holds it; see the module docstring for the rule."""
    with transaction.atomic():
        # Claims of one job are serialised, so two copies cannot both see "nobody".
        MediaProcessingJob.objects.select_for_update().filter(pk=job.pk).values("id").first()
        now = timezone.now()
        lost = 0
        open_row: Mapping[str, Any] | None = None
        for row in _attempt_rows(job.pk, step, workflow_id, part):
            if row["kind"] == EventKind.STARTED:
                if open_row is not None:
                    lost += 1
                open_row = row
            else:
                open_row = None
        if open_row is not None:
            seen = last_seen(open_row["at"], open_row["detail__heartbeatAt"])
            holder = str(open_row["detail__taskId"] or "")
            worker = str(open_row["detail__worker"] or "")
            alive = now - seen < timedelta(seconds=stall_seconds)
            if alive and (holder != task_id or running_here(worker)):
                return Busy(task_id=holder, worker=worker)
            lost += 1
        detail: dict[str, Any] = {"workflowId": workflow_id}
        if part is not None:
            detail["part"] = part
        detail.update(taskId=task_id, worker=worker_name(), heartbeatAt=now.isoformat())
        if lost:
            detail["lostAttempts"] = lost
        event = event_record(job=job, step=step, kind=EventKind.STARTED, detail=detail)
    return Attempt(event_id=event.pk, detail=detail, lost_before=lost)


def _beat(attempt: Attempt, interval_s: float, stop: threading.Event) -> None:
    """The heartbeat thread: refresh the attempt's ``heartbeatAt`` until told to stop."""
    wait = interval_s
    try:
        while not stop.wait(wait):
            try:
                MediaJobEvent.objects.filter(pk=attempt.event_id).update(
                    detail={**attempt.detail, "heartbeatAt": iso_now()}
                )
                wait = interval_s
            except DatabaseError as exc:
                # The database is away; beat again soon so that, when it is back, the
                # watchdog finds this step alive before it finds it stalled.
                logger.warning("heartbeat not written: %s", exc)
                close_connections()
                wait = min(interval_s, HEARTBEAT_RETRY_S)
    finally:
        connections.close_all()  # this thread's own connection


@contextmanager
def attempt_heartbeat(attempt: Attempt, *, interval_s: float) -> Iterator[None]:
    """Keep the attempt alive (a thread writing its heartbeat) while the block runs."""
    stop = threading.Event()
    thread = threading.Thread(
        target=_beat,
        args=(attempt, interval_s, stop),
        name=f"heartbeat-{attempt.event_id}",
        daemon=True,
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval_s + 5)
