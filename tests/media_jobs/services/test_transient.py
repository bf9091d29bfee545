"""Work retried on a fresh database connection when the server killed the old one."""

from __future__ import annotations

from typing import Any

import MySQLdb
import pytest
from django.db import IntegrityError, OperationalError, connection, transaction

from media_jobs.models import MediaProcessingJob
from media_jobs.services.transient import db_retry, is_transient_db_error
from tests.factories import JobFactory


def kill_this_connection() -> None:
    """KILL this process's Django connection from a second connection, as an operator's
    KILL, wait_timeout or a failover would."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT CONNECTION_ID()")
        (own_id,) = cursor.fetchone()
    params = connection.get_connection_params()
    admin = MySQLdb.connect(
        host=params.get("host", "127.0.0.1"),
        port=params.get("port", 3306),
        user=params.get("user", "root"),
        passwd=params.get("password", ""),
    )
    try:
        admin.cursor().execute(f"KILL CONNECTION {int(own_id)}")
    finally:
        admin.close()


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (OperationalError(2006, "MySQL server has gone away"), True),
        (OperationalError(2013, "Lost connection to server during query"), True),
        (OperationalError(1927, "Connection was killed"), True),
        (OperationalError(4031, "disconnected by the server because of inactivity"), True),
        (OperationalError(1213, "Deadlock found"), True),
        (OperationalError(1054, "Unknown column"), False),
        (OperationalError("database is locked"), True),
        (IntegrityError(1062, "Duplicate entry"), False),
    ],
)
def test_transient_errors_are_told_apart(exc: Exception, transient: bool) -> None:
    assert is_transient_db_error(exc) is transient


@pytest.mark.django_db(transaction=True)
def test_a_killed_connection_is_replaced_and_the_work_done(
    caplog: pytest.LogCaptureFixture,
) -> None:
    if connection.vendor != "mysql":
        pytest.skip("KILL CONNECTION needs MariaDB/MySQL")
    job = JobFactory()
    kill_this_connection()
    with pytest.raises(OperationalError):  # Django keeps the dead connection ...
        MediaProcessingJob.objects.filter(pk=job.pk).update(retry_count=1)
    with caplog.at_level("WARNING", "toq.media.transient"):
        updated = db_retry(  # ... db_retry opens a new one
            lambda: MediaProcessingJob.objects.filter(pk=job.pk).update(retry_count=2),
            what="test write",
            sleep=lambda _: None,
        )
    assert updated == 1
    assert MediaProcessingJob.objects.get(pk=job.pk).retry_count == 2
    # One retry, logged with its attempt number for the log pipeline (extra "attempts").
    (lost,) = [r for r in caplog.records if r.name == "toq.media.transient"]
    assert lost.levelname == "WARNING"
    assert lost.getMessage().startswith("test write: database connection lost (")
    assert lost.getMessage().endswith("); retrying on a fresh connection")
    assert lost.__dict__.get("attempts") == 1


def test_other_errors_and_open_transactions_are_not_retried(db: Any) -> None:
    calls: list[int] = []

    def fails(exc: Exception) -> Any:
        def work() -> None:
            calls.append(1)
            raise exc

        return work

    with pytest.raises(OperationalError):
        db_retry(fails(OperationalError(1054, "Unknown column")), what="t", sleep=lambda _: None)
    assert len(calls) == 1
    calls.clear()
    with transaction.atomic(), pytest.raises(OperationalError):
        db_retry(fails(OperationalError(2006, "gone")), what="t", sleep=lambda _: None)
    assert len(calls) == 1  # a transaction cannot survive its connection: raised at once


def test_gives_up_when_the_database_stays_away(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.PIPELINE_RETRY_DELAY_SCALE = 1.0
    slept: list[float] = []
    clock = iter(range(0, 1000, 7))
    calls = 0

    def work() -> None:
        nonlocal calls
        calls += 1
        raise OperationalError(2003, "Can't connect to MySQL server")

    with pytest.raises(OperationalError), caplog.at_level("WARNING", "toq.media.transient"):
        db_retry(work, what="t", budget_s=30, sleep=slept.append, clock=lambda: float(next(clock)))
    retried = [r for r in caplog.records if r.levelname == "WARNING"]
    assert [r.__dict__.get("attempts") for r in retried] == [1, 2, 3, 4, 5]
    (gave_up,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert gave_up.__dict__.get("attempts") == 6
    assert gave_up.getMessage() == (
        "t: database still unavailable after 35s; giving up: "
        '(2003, "Can\'t connect to MySQL server")'
    )
    assert calls == 6  # failures at 0, 7, 14, 21, 28 retried; at 35 past the 30 s budget
    assert slept == [0.5, 1.0, 2.0, 4.0, 8.0]
