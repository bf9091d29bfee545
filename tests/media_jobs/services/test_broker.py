"""services.broker on real brokers - the embedded (folder) broker, and Redis when the run has
one: the depth the dashboard and ``/metrics`` show, and "unknown" at once when the broker
cannot be reached."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from kombu import Connection

from media_jobs.services import queueing
from media_jobs.services.broker import default_queue, queue_depth
from toqportal.celery import app

TASK = "media_jobs.tasks.deliver_callback"


RABBITMQ = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def rabbitmq_queue_exists(name: str) -> bool:
    """Asked of RabbitMQ itself: a passive declare fails on a queue that does not exist."""
    with Connection(RABBITMQ, connect_timeout=3) as connection:
        try:
            connection.default_channel.queue_declare(queue=name, passive=True)
        except connection.channel_errors:
            return False
        return True


@pytest.fixture(params=["filesystem", "redis", "rabbitmq"])
def queues(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """This process's Celery app on a broker of its own, with a default queue of its own:
    yields (default queue, another queue)."""
    tag = uuid.uuid4().hex[:8]
    default, other = f"test-depth-{tag}", f"test-depth-other-{tag}"
    conf = app.conf
    saved = (conf.broker_url, conf.task_default_queue, conf.broker_transport_options)
    client = None
    rabbitmq = request.param == "rabbitmq"
    if rabbitmq:
        try:
            rabbitmq_queue_exists(default)
        except OSError:
            pytest.skip(f"no RabbitMQ at {RABBITMQ}")
        conf.broker_url, conf.broker_transport_options = RABBITMQ, {}
    elif request.param == "redis":
        url = os.environ.get("TEST_REDIS_URL")
        if not url:
            pytest.skip("no Redis (run through scripts/run_tests.py)")
        client = redis.Redis.from_url(url)
        conf.broker_url, conf.broker_transport_options = url, {}
    else:
        folder = tmp_path / "queue"
        folder.mkdir()
        conf.broker_url = "filesystem://"
        conf.broker_transport_options = {
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            "control_folder": str(tmp_path / "control"),
        }
    conf.task_default_queue = default
    try:
        yield default, other
    finally:
        if client is not None:
            client.delete(default, other)
            client.close()
        if rabbitmq:
            with Connection(RABBITMQ) as connection:
                for name in (default, other):
                    connection.default_channel.queue_delete(queue=name)
        conf.broker_url, conf.task_default_queue, conf.broker_transport_options = saved


def test_the_depth_is_the_number_of_messages_waiting(queues: tuple[str, str]) -> None:
    """Without a name the default queue (the one the portal sends to) is counted."""
    default, other = queues
    for n in range(3):
        queueing.enqueue(TASK, n)
    queueing.enqueue(TASK, 9, queue=other)
    assert default_queue() == default
    assert queue_depth() == 3
    assert queue_depth(other) == 1


def test_a_queue_nobody_sent_to_yet_is_empty(queues: tuple[str, str]) -> None:
    assert queue_depth(f"never-used-{uuid.uuid4().hex[:8]}") == 0


@pytest.mark.parametrize("queues", ["rabbitmq"], indirect=True)
def test_asking_the_depth_creates_no_queue_on_rabbitmq(queues: tuple[str, str]) -> None:
    """The dashboard only looks: on RabbitMQ a (non-passive) declare would leave behind a
    queue for every name ever asked about (Redis and the embedded broker make none)."""
    name = f"never-used-{uuid.uuid4().hex[:8]}"
    assert queue_depth(name) == 0
    assert not rabbitmq_queue_exists(name)


def test_an_unreachable_broker_is_unknown_at_once(caplog: pytest.LogCaptureFixture) -> None:
    """One quick second try and no pause: a broker that is down must not hold the dashboard
    (kombu's default would wait 2 s before retrying)."""
    saved = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    try:
        with caplog.at_level(logging.INFO, logger="toq.media.broker"):
            started = time.monotonic()
            assert queue_depth() is None
            elapsed = time.monotonic() - started
    finally:
        app.conf.broker_url = saved
    assert elapsed < 1.0
    (record,) = [r for r in caplog.records if r.name == "toq.media.broker"]
    message = record.getMessage()
    assert message.startswith("queue depth unknown: ") and "Connection refused" in message


@pytest.fixture(
    params=[
        ("redis", "drops-connections"),
        ("redis", "never-answers"),
        ("amqp", "drops-connections"),
        ("amqp", "never-answers"),
    ],
    ids="-".join,
)
def silent_broker(request: pytest.FixtureRequest) -> Iterator[str]:
    """A Redis or RabbitMQ address that never answers: a listening socket nobody accepts
    on. With its backlog full the kernel drops every further connection attempt (a broker
    behind a firewall that drops packets); with room left the connection is made and the
    broker never replies (a hung broker)."""
    scheme, behaviour = request.param
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    filling: list[socket.socket] = []
    if behaviour == "drops-connections":
        server.listen(0)
        for _ in range(3):
            client = socket.socket()
            client.settimeout(0.2)
            with contextlib.suppress(OSError):
                client.connect(("127.0.0.1", port))
            filling.append(client)
    else:
        server.listen(8)
    saved = app.conf.broker_url
    app.conf.broker_url = (
        f"redis://127.0.0.1:{port}/0" if scheme == "redis" else f"amqp://g:g@127.0.0.1:{port}//"
    )
    try:
        yield app.conf.broker_url
    finally:
        app.conf.broker_url = saved
        for client in filling:
            client.close()
        server.close()


def test_a_broker_that_does_not_answer_is_unknown_within_the_timeout(silent_broker: str) -> None:
    """``timeout_s`` bounds each try: the dashboard waits at most two of them, not the
    operating system's connect timeout (minutes) or forever."""
    started = time.monotonic()
    assert queue_depth(timeout_s=0.2) is None
    assert time.monotonic() - started < 2.0
