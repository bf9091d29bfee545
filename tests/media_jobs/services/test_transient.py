"""Work retried on a fresh database connection when the server killed the old one."""

from __future__ import annotations

from typing import Any

import MySQLdb
import pytest
from django.db import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    connection,
    transaction,
)

from media_jobs.models import MediaProcessingJob
from media_jobs.services.transient import close_connections, db_retry, is_transient_db_error
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
        # mysqlclient's "(0, '')": a call on the connection failed without an error code
        # (the connection object was broken under us, e.g. used from two threads)
        (InterfaceError(0, ""), True),
        (OperationalError(), False),  # no code, no message: nothing says it is transient
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


def test_retries_back_off_doubling_to_10s_scaled_until_past_the_budget(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """0.5 s doubling to 10 s, times PIPELINE_RETRY_DELAY_SCALE; a failure exactly at the
    budget is still retried, the first one past it is raised."""
    settings.PIPELINE_RETRY_DELAY_SCALE = 0.5
    slept: list[float] = []
    clock = iter([100.0, 110.0, 120.0, 130.0, 140.0, 150.0, 160.0, 170.0, 180.0])
    calls = 0

    def work() -> None:
        nonlocal calls
        calls += 1
        raise OperationalError(2013, "Lost connection")

    with pytest.raises(OperationalError), caplog.at_level("WARNING", "toq.media.transient"):
        db_retry(work, what="t", budget_s=70, sleep=slept.append, clock=lambda: next(clock))
    assert slept == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert calls == 9
    first, *_, gave_up = [r for r in caplog.records if r.name == "toq.media.transient"]
    assert first.getMessage() == (
        "t: database connection lost ((2013, 'Lost connection')); retrying on a fresh connection"
    )
    assert gave_up.getMessage() == (
        "t: database still unavailable after 80s; giving up: (2013, 'Lost connection')"
    )


@pytest.mark.django_db(transaction=True)
def test_a_connection_that_fails_to_close_is_forgotten_and_the_next_query_reconnects() -> None:
    """Closing a connection the driver already lost fails too ("server has gone away");
    the connection is dropped all the same and the next query opens a new one."""
    if connection.vendor != "mysql":
        pytest.skip("needs the MySQLdb driver")
    job = JobFactory()
    connection.ensure_connection()
    connection.connection.close()  # the driver's side is gone; Django still holds it
    close_connections()
    assert MediaProcessingJob.objects.get(pk=job.pk).pk == job.pk
