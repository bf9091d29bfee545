"""Surviving a dropped database connection: retry the work on a fresh connection.

A worker holds its connection for the length of a task. When the server kills it (KILL,
``wait_timeout`` during a 15-minute transcode, a failover, a proxy's idle timeout) the next
query fails with "server has gone away" or "lost connection", and Django keeps the dead
connection until the task ends. :func:`db_retry` closes it and runs the work again on a new
one, with backoff, for up to ``PIPELINE_DB_RETRY_SECONDS``. The work must be idempotent and
must not run inside the caller's transaction (a transaction cannot survive its connection):
the tasks wrap whole steps and their result writes, which are written to be repeated.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connections

logger = logging.getLogger("toq.media.transient")

T = TypeVar("T")

# MySQL/MariaDB client and server codes that mean "the connection is gone or the server is
# not there right now"; the same statement on a new connection may well succeed.
CONNECTION_LOST_CODES = frozenset(
    {
        1053,  # server shutdown in progress
        1205,  # lock wait timeout (the transaction was rolled back; retry it whole)
        1213,  # deadlock (same)
        1927,  # connection was killed (MariaDB)
        2002,  # cannot connect through the socket
        2003,  # cannot connect to the server (down, failing over)
        2006,  # server has gone away
        2013,  # lost connection during query
        2055,  # lost connection at a reading/writing stage
        4031,  # disconnected by the server because of inactivity (MySQL 8 wait_timeout)
    }
)
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 10.0


def is_transient_db_error(exc: BaseException) -> bool:
    """True for an error that a fresh connection may cure: a lost/killed connection, a
    server that is restarting, a deadlock. Constraint violations and SQL errors are not."""
    if isinstance(exc, InterfaceError):
        return True  # "(0, '')": the connection object was already closed under us
    if isinstance(exc, OperationalError):
        code = exc.args[0] if exc.args else None
        if isinstance(code, int):
            return code in CONNECTION_LOST_CODES
        return "database is locked" in str(exc)  # SQLite's busy timeout
    return False


def close_connections() -> None:
    """Drop every connection of this thread; the next query opens a new one."""
    for connection in connections.all(initialized_only=True):
        try:
            connection.close()
        except DatabaseError:
            # Closing a dead connection can fail too; Django forgets it either way.
            connection.connection = None


def _in_transaction() -> bool:
    return any(c.in_atomic_block for c in connections.all(initialized_only=True))


def db_retry(
    work: Callable[[], T],
    *,
    what: str,
    budget_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run ``work``; when it fails with a transient database error, close the connections
    and run it again (backoff 0.5 s doubling to 10 s, scaled by PIPELINE_RETRY_DELAY_SCALE)
    until ``budget_s`` (default PIPELINE_DB_RETRY_SECONDS) has passed since the first
    failure. Inside a transaction the error is raised at once: only the code that opened
    the transaction can run it again."""
    budget = settings.PIPELINE_DB_RETRY_SECONDS if budget_s is None else budget_s
    scale = float(settings.PIPELINE_RETRY_DELAY_SCALE)
    first_failure: float | None = None
    delay = FIRST_DELAY_S
    attempt = 0
    while True:
        try:
            return work()
        except (OperationalError, InterfaceError) as exc:
            if not is_transient_db_error(exc) or _in_transaction():
                raise
            now = clock()
            first_failure = first_failure if first_failure is not None else now
            attempt += 1
            if now - first_failure > budget:
                logger.error(
                    "%s: database still unavailable after %.0fs; giving up: %s",
                    what,
                    now - first_failure,
                    exc,
                    extra={"attempts": attempt},
                )
                raise
            logger.warning(
                "%s: database connection lost (%s); retrying on a fresh connection",
                what,
                exc,
                extra={"attempts": attempt},
            )
            close_connections()
            sleep(delay * scale)
            delay = min(delay * 2, MAX_DELAY_S)
