"""What the Celery broker can tell: how many messages wait in a queue.

One implementation for the dashboard and the ``/metrics`` gauge: a passive queue declare
through the Celery app's own connection, which works the same on Redis, the filesystem
broker and RabbitMQ.
"""

from __future__ import annotations

import logging

from toqportal.celery import app

logger = logging.getLogger("toq.media.broker")


def queue_depth(queue: str | None = None, *, timeout_s: float = 2.0) -> int | None:
    """Messages waiting in ``queue`` (the default queue), or None when the broker cannot be
    asked within ``timeout_s``. A queue that does not exist yet is empty."""
    name = queue or app.conf.task_default_queue
    # kombu's Redis transport ignores connect_timeout: its sockets take their timeouts
    # from the transport options (without them a broker that drops packets holds a view
    # for the operating system's connect timeout, minutes)
    timeouts = {"socket_connect_timeout": timeout_s, "socket_timeout": timeout_s}
    try:
        with app.connection_for_read(
            connect_timeout=timeout_s, transport_options=timeouts
        ) as connection:
            # one quick second try, no pause: kombu's default 2 s pause before it would
            # hold the dashboard and /metrics 2 s on every view while the broker is down
            connection.ensure_connection(max_retries=1, interval_start=0)
            channel = connection.default_channel
            try:
                # kombu's StdChannel declares no queue_declare; every transport's channel has it
                declared = channel.queue_declare(queue=name, passive=True)  # type: ignore[attr-defined]
                return int(declared.message_count)
            except connection.channel_errors:
                return 0
    except Exception as exc:  # noqa: BLE001 - an unreachable broker means "unknown"
        logger.info("queue depth unknown: %s", exc)
        return None


def default_queue() -> str:
    """The queue the portal sends to (and the depth above counts by default)."""
    return str(app.conf.task_default_queue)
