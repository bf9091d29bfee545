"""Queueing Celery work by task name.

Services never import the task modules (they are entry points, above the services): they
name the task, and :func:`task_named` finds it in Celery's registry. The workflow's own hops
(``media_jobs.tasks``) queue through the same helpers, so every message leaves the same way.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from typing import Any

from celery import Task
from kombu import pools

from toqportal.celery import app

logger = logging.getLogger("toq.media.tasks")

# The first task of each kind of job; ``media_jobs.tasks`` declares its tasks under these.
RUN_PROCESSING = "media_jobs.tasks.run_processing"
RUN_FINALIZATION = "media_jobs.tasks.run_finalization"
# The task that sends a result of the callback outbox.
DELIVER_CALLBACK = "media_jobs.tasks.deliver_callback"

# How long a task waits for a free broker connection of the pool (every one in use).
BROKER_POOL_TIMEOUT_S = 30


def task_named(name: str) -> Task[Any, Any]:
    """The registered task ``name``. Workers import the task modules at start-up (Celery's
    autodiscovery); any other process (web, commands) imports the module the name gives
    on first use, so the task's own options (eager mode, limits) apply as before."""
    if name not in app.tasks:
        importlib.import_module(name.rpartition(".")[0])
    return app.tasks[name]


def enqueue(
    name: str, *args: Any, countdown: float | None = None, queue: str | None = None
) -> None:
    """Queue task ``name(*args)`` on the default queue (or ``queue``) of the broker
    configured *now*."""
    enqueue_each(name, [args], countdown=countdown, queue=queue)


def enqueue_each(
    name: str,
    calls: Iterable[tuple[Any, ...]],
    *,
    countdown: float | None = None,
    queue: str | None = None,
) -> None:
    """Queue task ``name(*args)`` for every ``args`` in ``calls`` over one connection.

    The connection comes from kombu's pools, which are keyed by the broker's address: a
    process whose broker settings change at run time (the worker tests) still sends where
    it is told, and a workflow hop reuses an open connection instead of opening one
    (~1 ms instead of ~7 ms to Redis). kombu empties the pools in a forked child.
    """
    task = task_named(name)
    options: dict[str, Any] = {"queue": queue or app.conf.task_default_queue}
    if countdown:
        options["countdown"] = countdown
    if app.conf.task_always_eager:
        for args in calls:
            task.apply_async(args=args, **options)
        return
    pool = pools.connections[app.connection_for_write()]
    with pool.acquire(block=True, timeout=BROKER_POOL_TIMEOUT_S) as connection:
        for args in calls:
            # celery-types lacks apply_async's connection option (Celery sends on it)
            task.apply_async(  # type: ignore[call-arg]
                args=args,
                connection=connection,
                retry=True,
                retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5},
                **options,
            )


def enqueue_or_leave(name: str, *args: Any, queue: str | None = None) -> None:
    """Queue a follow-up task; when the broker refuses it, log and leave it to the
    watchdog (it queues what a stalled job lacks) or to the callback outbox's drain,
    rather than fail a task whose work is already recorded."""
    try:
        enqueue(name, *args, queue=queue)
    except Exception:
        logger.exception("%s not queued; the watchdog will queue it", name)
