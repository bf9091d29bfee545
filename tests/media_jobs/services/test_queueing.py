"""Queueing by task name (media_jobs.services.queueing) on real brokers - the embedded
(folder) broker, and Redis when the run has one: the message that leaves (task name,
arguments, queue, ETA) read back from the broker's own store."""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.signals import before_task_publish, task_prerun
from kombu import pools
from kombu.exceptions import ConnectionLimitExceeded, OperationalError

from media_jobs.services import queueing
from toqportal.celery import app

DELIVER = "media_jobs.tasks.deliver_callback"
PROBE = "tests.media_jobs.services.lazy_tasks.probe"


@dataclass
class Message:
    task: str
    args: list[Any]
    eta: str | None
    routing_key: str


def _message(raw: bytes | str) -> Message:
    message = json.loads(raw)
    args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    return Message(
        task=message["headers"]["task"],
        args=args,
        eta=message["headers"]["eta"],
        routing_key=message["properties"]["delivery_info"]["routing_key"],
    )


@dataclass
class Broker:
    queue: str  # the app's default queue for this test
    other: str  # a second queue, named per call
    client: redis.Redis | None = None  # Redis; else the embedded broker's folder
    folder: Path | None = None

    def messages(self, queue: str) -> list[Message]:
        """The messages waiting in ``queue``, oldest first (on the folder broker, messages
        sent in the same millisecond come in no set order)."""
        if self.client is not None:  # kombu LPUSHes, workers BRPOP
            return [_message(raw) for raw in reversed(self.client.lrange(queue, 0, -1))]
        assert self.folder is not None
        files = sorted(self.folder.glob(f"*.{queue}.msg"), key=lambda f: int(f.name.split("_")[0]))
        return [_message(f.read_bytes()) for f in files]


@pytest.fixture(params=["filesystem", "redis"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    """This process's Celery app sending to a broker of its own: the embedded (folder)
    broker, or the tests' Redis on a default queue of its own."""
    tag = uuid.uuid4().hex[:8]
    found = Broker(f"test-q-{tag}", f"test-other-{tag}")
    conf = app.conf
    saved = (
        conf.broker_url,
        conf.task_default_queue,
        conf.broker_transport_options,
        conf.task_always_eager,
    )
    if request.param == "redis":
        url = os.environ.get("TEST_REDIS_URL")
        if not url:
            pytest.skip("no Redis (run through scripts/run_tests.py)")
        found.client = redis.Redis.from_url(url)
        conf.broker_url, conf.broker_transport_options = url, {}
    else:
        found.folder = tmp_path / "queue"
        found.folder.mkdir()
        conf.broker_url = "filesystem://"
        conf.broker_transport_options = {
            "data_folder_in": str(found.folder),
            "data_folder_out": str(found.folder),
            "control_folder": str(tmp_path / "control"),  # kombu's default: ./control
        }
    conf.task_default_queue, conf.task_always_eager = found.queue, False
    try:
        yield found
    finally:
        if found.client is not None:
            found.client.delete(found.queue, found.other)
            found.client.close()
        (
            conf.broker_url,
            conf.task_default_queue,
            conf.broker_transport_options,
            conf.task_always_eager,
        ) = saved


def test_a_task_leaves_by_name_with_its_arguments_on_the_default_queue(broker: Broker) -> None:
    queueing.enqueue(DELIVER, 41)

    assert broker.messages(broker.queue) == [
        Message(task=DELIVER, args=[41], eta=None, routing_key=broker.queue)
    ]


def test_the_queue_and_countdown_asked_for_reach_the_message(broker: Broker) -> None:
    before = datetime.now().astimezone()
    queueing.enqueue(DELIVER, 7, queue=broker.other, countdown=30)

    assert broker.messages(broker.queue) == []
    (message,) = broker.messages(broker.other)
    assert (message.task, message.args, message.routing_key) == (DELIVER, [7], broker.other)
    assert message.eta is not None
    delay = datetime.fromisoformat(message.eta) - before
    assert timedelta(seconds=29) < delay < timedelta(seconds=40)


def test_each_call_is_one_message_with_the_publish_retry_policy(
    broker: Broker,
) -> None:
    policies: list[dict[str, Any]] = []

    def seen(sender: str, retry_policy: dict[str, Any], **_: Any) -> None:
        policies.append(retry_policy)

    before_task_publish.connect(seen, weak=False)
    try:
        queueing.enqueue_each(DELIVER, [(1,), (2,), (3,)], queue=broker.other)
    finally:
        before_task_publish.disconnect(seen)

    sent = sorted((m.task, m.args) for m in broker.messages(broker.other))
    assert sent == [(DELIVER, [1]), (DELIVER, [2]), (DELIVER, [3])]
    # A broker that blinks gets three more tries, 0.2 s apart and then 0.5 s further apart.
    assert len(policies) == 3
    for policy in policies:
        assert (policy["max_retries"], policy["interval_start"], policy["interval_step"]) == (
            3,
            0.2,
            0.5,
        )


@pytest.fixture
def hanging_up_broker() -> Iterator[list[float]]:
    """The app's broker is a Redis address that accepts every connection and closes it at
    once (a broker restarting): yields the times, from the start, of the connections made."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    started = time.monotonic()
    accepted: list[float] = []

    def hang_up() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:  # the server socket closed: the test is over
                return
            accepted.append(time.monotonic() - started)
            connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    saved = app.conf.broker_url
    app.conf.broker_url = f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    try:
        yield accepted
    finally:
        app.conf.broker_url = saved
        server.close()


def test_a_broker_that_hangs_up_gets_three_more_tries_then_the_error(
    hanging_up_broker: list[float],
) -> None:
    """The publish retry policy in action: four connections in all, the last ~1.9 s after
    the first (0.2 s, then 0.5 s further apart), then the broker's error is raised."""
    with pytest.raises(OperationalError):
        queueing.enqueue_each(DELIVER, [(1,)])
    assert len(hanging_up_broker) == 4
    assert hanging_up_broker[-1] - hanging_up_broker[0] >= 1.8


@pytest.fixture
def busy_pool(broker: Broker) -> Iterator[list[Any]]:
    """Every connection of the process's pool for this broker in use by someone else."""
    pool = pools.connections[app.connection_for_write()]
    assert pool.limit
    held = [pool.acquire(block=False) for _ in range(pool.limit)]
    try:
        yield held
    finally:
        for connection in held:
            connection.release()


def sending_in_a_thread(argument: int) -> tuple[threading.Thread, list[BaseException]]:
    """``enqueue(DELIVER, argument)`` started on its own thread, and the list that will hold
    what it raised (a sender blocked on the pool must not block the test)."""
    errors: list[BaseException] = []

    def send() -> None:
        try:
            queueing.enqueue(DELIVER, argument)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    return sender, errors


def test_a_sender_waits_for_a_connection_of_a_busy_pool(
    broker: Broker, busy_pool: list[Any]
) -> None:
    sender, errors = sending_in_a_thread(5)
    sender.join(1.0)  # it waits for a free connection...
    busy_pool.pop().release()  # ...and sends on the one given back
    sender.join(20)

    assert not sender.is_alive()
    assert errors == []
    assert [m.args for m in broker.messages(broker.queue)] == [[5]]


def test_a_sender_gives_up_when_no_connection_comes_free(
    broker: Broker, busy_pool: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queueing, "BROKER_POOL_TIMEOUT_S", 0.3)
    sender, errors = sending_in_a_thread(6)
    sender.join(20)

    assert not sender.is_alive(), "waited for a connection without end"
    assert [type(e) for e in errors] == [ConnectionLimitExceeded]
    assert broker.messages(broker.queue) == []


def test_a_refused_follow_up_is_logged_for_the_watchdog(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    app.conf.broker_url = "redis://127.0.0.1:1/0"  # nothing listens there

    with caplog.at_level(logging.ERROR, logger="toq.media.tasks"):
        queueing.enqueue_or_leave(DELIVER, 9)  # does not raise

    (record,) = [r for r in caplog.records if r.name == "toq.media.tasks"]
    assert record.levelname == "ERROR"
    assert record.getMessage() == (
        "media_jobs.tasks.deliver_callback not queued; the watchdog will queue it"
    )
    assert record.exc_info is not None


def test_a_task_module_not_imported_yet_is_imported_by_the_name(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, "tests.media_jobs.services.lazy_tasks", raising=False)
    monkeypatch.delitem(app.tasks, PROBE, raising=False)

    assert queueing.task_named(PROBE).name == PROBE
    assert "tests.media_jobs.services.lazy_tasks" in sys.modules

    queueing.enqueue(PROBE, 3)
    assert [(m.task, m.args) for m in broker.messages(broker.queue)] == [(PROBE, [3])]


def test_a_follow_up_leaves_on_the_queue_asked_for(broker: Broker) -> None:
    queueing.enqueue_or_leave(DELIVER, 7, queue=broker.other)

    assert [(m.task, m.args) for m in broker.messages(broker.other)] == [(DELIVER, [7])]
    assert broker.messages(broker.queue) == []


def test_in_eager_mode_every_call_runs_at_once_with_its_arguments() -> None:
    """Without a broker (task_always_eager: tests, a developer's machine) each call runs
    in this process, with its own arguments."""
    ran: list[tuple[str, list[Any]]] = []

    def seen(sender: Any, args: Any, **_: Any) -> None:
        ran.append((sender.name, list(args)))

    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    task_prerun.connect(seen, weak=False)
    try:
        queueing.enqueue_each(PROBE, [(1,), (2,)], countdown=30, queue="elsewhere")
    finally:
        task_prerun.disconnect(seen)
        app.conf.task_always_eager = eager

    assert ran == [(PROBE, [1]), (PROBE, [2])]
