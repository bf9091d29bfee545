"""Step attempts: a duplicate copy stands down while the step is alive, a redelivered or
orphaned one takes over, lost attempts are counted, and the heartbeat keeps a step alive."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from media_jobs.models import EventKind, JobStatus, MediaJobEvent
from media_jobs.services import attempts
from media_jobs.services.attempts import Attempt, Busy, attempt_heartbeat, attempt_start
from media_jobs.services.events import event_record
from tests.factories import JobFactory

STALL = 60.0


def start(job: Any, task_id: str, part: str | None = "thumbnails:0") -> Attempt | Busy:
    return attempt_start(
        job=job,
        step="thumbnails",
        workflow_id="wf-1",
        part=part,
        task_id=task_id,
        stall_seconds=STALL,
    )


def age(attempt: Attempt, seconds: float) -> None:
    """Make the attempt look as if its worker stopped beating ``seconds`` ago."""
    past = timezone.now() - timedelta(seconds=seconds)
    MediaJobEvent.objects.filter(pk=attempt.event_id).update(
        at=past, detail={**attempt.detail, "heartbeatAt": past.isoformat()}
    )


@pytest.mark.django_db
def test_a_duplicate_stands_down_while_the_step_is_alive() -> None:
    job = JobFactory(status=JobStatus.RUNNING)
    first = start(job, "task-a")
    assert isinstance(first, Attempt) and first.lost_before == 0
    assert first.detail["taskId"] == "task-a" and first.detail["worker"]
    duplicate = start(job, "task-b")
    assert isinstance(duplicate, Busy) and duplicate.task_id == "task-a"
    # Another part of the same job is not affected.
    assert isinstance(start(job, "task-c", part="thumbnails:1"), Attempt)
    assert MediaJobEvent.objects.filter(job_id=job.pk, kind=EventKind.STARTED).count() == 2


@pytest.mark.django_db
def test_a_redelivered_message_takes_over_its_own_attempt() -> None:
    job = JobFactory(status=JobStatus.RUNNING)
    start(job, "task-a")
    again = start(job, "task-a")  # the broker redelivered it: its worker is gone
    assert isinstance(again, Attempt) and again.lost_before == 1
    assert again.detail["lostAttempts"] == 1


@pytest.mark.django_db
def test_a_message_back_from_redis_while_its_step_still_runs_stands_down() -> None:
    """Redis hands an unacknowledged message out again after its visibility timeout even
    when the step still runs: the process that holds it is alive on this machine."""
    job = JobFactory(status=JobStatus.RUNNING)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        first = start(job, "task-a")
        assert isinstance(first, Attempt)
        MediaJobEvent.objects.filter(pk=first.event_id).update(
            detail={**first.detail, "worker": f"{socket.gethostname()}:{holder.pid}"}
        )
        again = start(job, "task-a")
        assert isinstance(again, Busy) and again.worker.endswith(f":{holder.pid}")
        # Its pool process was killed (and nobody reaped it yet): the copy takes over.
        holder.kill()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{holder.pid}/stat").read_text().split(")")[-1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        taken = start(job, "task-a")
        assert isinstance(taken, Attempt) and taken.lost_before == 1
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.django_db
def test_a_redelivered_message_whose_worker_is_on_another_machine_takes_over() -> None:
    """A pid names a process of its own machine only: that a process of the same number
    runs here says nothing about the worker on another machine."""
    job = JobFactory(status=JobStatus.RUNNING)
    namesake = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        first = start(job, "task-a")
        assert isinstance(first, Attempt)
        MediaJobEvent.objects.filter(pk=first.event_id).update(
            detail={**first.detail, "worker": f"worker-2.elsewhere:{namesake.pid}"}
        )
        again = start(job, "task-a")
        assert isinstance(again, Attempt) and again.lost_before == 1
    finally:
        namesake.kill()
        namesake.wait()


RUNNING_HERE_WITHOUT_PROC = """
import socket, sys
import django
django.setup()
from media_jobs.services.attempts import running_here
host = socket.gethostname()
print(running_here(f"{host}:{sys.argv[1]}"), running_here(f"{host}:{sys.argv[2]}"))
"""


def test_without_proc_a_process_that_answers_counts_as_alive(tmp_path: Path) -> None:
    """Where /proc cannot be read (another system, a hidden /proc), kill(pid, 0) alone
    decides: a process that answers is alive. Checked in a mount namespace whose /proc is
    an empty tmpfs."""
    hide_proc = ["unshare", "--mount", "sh", "-c", 'mount -t tmpfs none /proc && exec "$@"', "-"]
    probe = subprocess.run([*hide_proc, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no mount namespace here: {probe.stderr.decode().strip()}")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        result = subprocess.run(
            [
                *hide_proc,
                sys.executable,
                "-c",
                RUNNING_HERE_WITHOUT_PROC,
                str(holder.pid),
                str(gone.pid),
            ],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[3],
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "toqportal.settings"},
            timeout=60,
        )
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False"]


@pytest.mark.django_db
def test_an_attempt_whose_heartbeat_stopped_is_taken_over_and_counted() -> None:
    job = JobFactory(status=JobStatus.RUNNING)
    lost = 0
    for number in range(4):
        attempt = start(job, f"watchdog-copy-{number}")
        assert isinstance(attempt, Attempt) and attempt.lost_before == lost
        age(attempt, STALL + 1)
        lost += 1
    assert lost == 4


@pytest.mark.django_db
def test_an_ended_attempt_is_not_lost() -> None:
    job = JobFactory(status=JobStatus.RUNNING)
    first = start(job, "task-a")
    assert isinstance(first, Attempt)
    event_record(job=job, step="thumbnails", kind=EventKind.RETRIED, detail=first.detail)
    retry = start(job, "task-a")  # Celery's retry keeps the task id
    assert isinstance(retry, Attempt) and retry.lost_before == 0


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_refreshes_the_attempt_while_the_step_runs() -> None:
    job = JobFactory(status=JobStatus.RUNNING)
    attempt = start(job, "task-a")
    assert isinstance(attempt, Attempt)
    age(attempt, STALL + 1)
    with attempt_heartbeat(attempt, interval_s=0.1):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            beat = MediaJobEvent.objects.get(pk=attempt.event_id).detail["heartbeatAt"]
            if timezone.now() - timezone.datetime.fromisoformat(beat) < timedelta(seconds=5):
                break
            time.sleep(0.05)
    # Alive again: a duplicate stands down.
    assert isinstance(start(job, "task-b"), Busy)


@pytest.mark.django_db
def test_a_heartbeat_exactly_the_stall_time_old_is_stalled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Alive means a heartbeat *younger* than the stall time (the module docstring)."""
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    monkeypatch.setattr(attempts.timezone, "now", lambda: now)
    job = JobFactory(status=JobStatus.RUNNING)
    first = start(job, "task-a")
    assert isinstance(first, Attempt)
    age(first, STALL)  # the last beat exactly 60 s before "now"

    taken = start(job, "task-b")

    assert isinstance(taken, Attempt) and taken.lost_before == 1


def _waiting_statements() -> int:
    """Statements of other connections to this test database still in progress: the
    second copy's, waiting for the job row the first copy holds."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
            " WHERE DB = DATABASE() AND ID <> CONNECTION_ID() AND INFO IS NOT NULL"
        )
        return int(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True)
def test_two_copies_claiming_at_once_are_serialised_by_the_job_row() -> None:
    job = JobFactory(status=JobStatus.RUNNING)
    found: list[Attempt | Busy] = []

    def second_copy() -> None:
        try:
            found.append(start(job, "task-b"))
        finally:
            connections.close_all()

    with transaction.atomic():
        first = start(job, "task-a")  # its claim is not committed yet
        copy = threading.Thread(target=second_copy, daemon=True)
        copy.start()
        # The second copy waits for the job row until the first claim commits.
        deadline = time.monotonic() + 10
        while copy.is_alive() and not _waiting_statements():
            assert time.monotonic() < deadline, "the second copy neither waited nor ended"
            time.sleep(0.02)
    copy.join(10)

    assert isinstance(first, Attempt)
    assert found == [Busy(task_id="task-a", worker=first.detail["worker"])]
    assert MediaJobEvent.objects.filter(job_id=job.pk, kind=EventKind.STARTED).count() == 1


def _heartbeat(attempt: Attempt) -> str:
    return str(MediaJobEvent.objects.get(pk=attempt.event_id).detail["heartbeatAt"])


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_beats_again_and_again() -> None:
    job = JobFactory(status=JobStatus.RUNNING)
    attempt = start(job, "task-a")
    assert isinstance(attempt, Attempt)
    seen = {_heartbeat(attempt)}
    with attempt_heartbeat(attempt, interval_s=0.05):
        deadline = time.monotonic() + 10
        while len(seen) < 4 and time.monotonic() < deadline:
            seen.add(_heartbeat(attempt))
            time.sleep(0.02)
    assert len(seen) >= 4  # the start's own and three beats


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_beats_on_after_its_connection_is_killed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = JobFactory(status=JobStatus.RUNNING)
    attempt = start(job, "task-a")
    assert isinstance(attempt, Attempt)
    started = _heartbeat(attempt)
    with caplog.at_level(logging.WARNING, logger="toq.media.attempts"):
        with attempt_heartbeat(attempt, interval_s=0.2):
            deadline = time.monotonic() + 10
            while _heartbeat(attempt) == started:
                assert time.monotonic() < deadline, "no first beat"
                time.sleep(0.02)
            # The heartbeat thread's own connection (the only other one on this database)
            # is killed, as a database restart would.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT ID FROM information_schema.PROCESSLIST"
                    " WHERE DB = DATABASE() AND ID <> CONNECTION_ID()"
                )
                others = [row[0] for row in cursor.fetchall()]
                assert others
                for other in others:
                    cursor.execute(f"KILL CONNECTION {int(other)}")
            killed_at = timezone.now().isoformat(timespec="milliseconds")
            while not (
                [r for r in caplog.records if r.name == "toq.media.attempts"]
                and _heartbeat(attempt) > killed_at
            ):
                assert time.monotonic() < deadline, "the heartbeat stopped for good"
                time.sleep(0.05)
    (record,) = [r for r in caplog.records if r.name == "toq.media.attempts"]
    assert record.levelname == "WARNING"
    # names the error (the driver's code and message: gone away, lost, killed)
    assert re.fullmatch(r"heartbeat not written: \(\d+, '.*'\)", record.getMessage())


def test_a_worker_process_that_is_gone_holds_nothing() -> None:
    """The redelivered copy takes over when the pid its attempt names no longer exists."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert attempts.running_here(f"{socket.gethostname()}:{gone.pid}") is False
    # Nothing to read in /proc for it either: not taken for a zombie (the same answer as
    # where /proc cannot be read at all, see the namespace test above).
    assert attempts._zombie(gone.pid) is False


def test_an_unreaped_process_is_exited_in_state_z_or_x() -> None:
    """A child that has exited but is not reaped yet is a zombie (Z) in /proc; the kernel's
    other exited state, X (dead), lasts only while it is reaped, so its line is made from the
    zombie's own by changing the state letter alone."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        stat_path = Path(f"/proc/{child.pid}/stat")
        deadline = time.monotonic() + 10
        while (stat := stat_path.read_text()).rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child never became a zombie"
            time.sleep(0.02)
        assert attempts._zombie(child.pid) is True
        name, _, rest = stat.rpartition(")")
        for state, exited in (("Z", True), ("X", True), ("R", False), ("S", False)):
            line = f"{name}) {state} {rest.split(maxsplit=1)[1]}"
            assert attempts._exited(line) is exited, line
    finally:
        child.wait()


def test_a_live_process_whose_name_looks_like_a_state_is_alive() -> None:
    """/proc/<pid>/stat puts the process name in parentheses and the name may hold ")":
    the state is read after the last ")", so ``x) Z y`` is not a zombie."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "open('/proc/self/comm', 'w').write('x) Z y')\n"
            "print('named', flush=True)\n"
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "named\n"
        assert Path(f"/proc/{holder.pid}/stat").read_text().startswith(f"{holder.pid} (x) Z y) ")
        assert attempts.running_here(f"{socket.gethostname()}:{holder.pid}") is True
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize(
    ("heartbeat", "seen"),
    [
        # a heartbeat without an offset is in the portal's time zone (America/Sao_Paulo)
        ("2030-01-01T12:00:00", datetime(2030, 1, 1, 15, 0, tzinfo=UTC)),
        ("2030-01-01T12:00:00+00:00", datetime(2030, 1, 1, 12, 0, tzinfo=UTC)),
        ("not a time", datetime(2029, 1, 1, tzinfo=UTC)),
        (None, datetime(2029, 1, 1, tzinfo=UTC)),
    ],
)
def test_an_attempt_was_last_seen_at_its_heartbeat_or_its_start(
    heartbeat: Any, seen: datetime, settings: Any
) -> None:
    settings.TIME_ZONE = "America/Sao_Paulo"
    assert attempts.last_seen(datetime(2029, 1, 1, tzinfo=UTC), heartbeat) == seen


@pytest.mark.django_db
def test_the_started_event_names_workflow_part_task_worker_and_heartbeat() -> None:
    """What the watchdog and the next copy read: the exact detail of the lease; a step
    without parts (validation) has no ``part``, and ``lostAttempts`` only once one was
    lost."""
    job = JobFactory(status=JobStatus.RUNNING)
    attempt = start(job, "task-a", part=None)
    assert isinstance(attempt, Attempt)
    event = MediaJobEvent.objects.get(pk=attempt.event_id)
    assert (event.step, event.kind) == ("thumbnails", "started")
    heartbeat = event.detail.pop("heartbeatAt")
    assert event.detail == {
        "workflowId": "wf-1",
        "taskId": "task-a",
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }
    assert abs(datetime.fromisoformat(heartbeat) - timezone.now()) < timedelta(seconds=5)
    # The whole step is one attempt: another copy stands down, a dead one is taken over.
    assert start(job, "task-b", part=None) == Busy(
        task_id="task-a", worker=attempt.detail["worker"]
    )
    age(attempt, STALL + 1)
    taken = start(job, "task-b", part=None)
    assert isinstance(taken, Attempt)
    assert MediaJobEvent.objects.get(pk=taken.event_id).detail["lostAttempts"] == 1


@pytest.mark.django_db
def test_only_this_jobs_attempts_at_this_step_in_this_workflow_count() -> None:
    """The dispatch record (a ``started`` event of the same workflow), another step, an
    earlier workflow and another job - even one given the same workflow id - hold
    nothing: the first copy takes the step and has lost nothing."""
    job = JobFactory(status=JobStatus.RUNNING)
    event_record(job=job, step="dispatch", kind=EventKind.STARTED, detail={"workflowId": "wf-1"})
    other_step = attempt_start(
        job=job, step="zip", workflow_id="wf-1", part=None, task_id="t-zip", stall_seconds=STALL
    )
    earlier = attempt_start(
        job=job,
        step="thumbnails",
        workflow_id="wf-0",
        part=None,
        task_id="t-0",
        stall_seconds=STALL,
    )
    other_job = start(JobFactory(status=JobStatus.RUNNING), "t-other", part=None)
    assert all(isinstance(a, Attempt) for a in (other_step, earlier, other_job))
    taken = start(job, "task-a", part=None)
    assert isinstance(taken, Attempt) and taken.lost_before == 0


@pytest.mark.django_db
def test_a_note_on_the_step_does_not_end_its_attempt() -> None:
    job = JobFactory(status=JobStatus.RUNNING)
    first = start(job, "task-a")
    assert isinstance(first, Attempt)
    event_record(job=job, step="thumbnails", kind=EventKind.NOTE, detail=first.detail)
    assert start(job, "task-b") == Busy(task_id="task-a", worker=first.detail["worker"])


@pytest.mark.django_db
def test_an_alive_attempt_that_names_no_task_or_worker_is_busy_with_empty_names() -> None:
    """A ``started`` event without taskId/worker (written before attempts named them) is
    still an alive attempt; the copy stands down and reports empty names, not "None"."""
    job = JobFactory(status=JobStatus.RUNNING)
    event_record(
        job=job,
        step="thumbnails",
        kind=EventKind.STARTED,
        detail={"workflowId": "wf-1", "part": "thumbnails:0"},
    )
    assert start(job, "task-a") == Busy(task_id="", worker="")
