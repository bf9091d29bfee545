"""Celery: an embedded filesystem broker by default (a real worker process, no server needed);
``redis://`` or ``amqp://`` in production."""

from __future__ import annotations

import json

from celery.schedules import crontab

from .env import ConfigError, env, typed, var_path

_embedded = env.str("CELERY_BROKER_URL", default="") in ("", "filesystem://")
CELERY_BROKER_URL = "filesystem://" if _embedded else env.str("CELERY_BROKER_URL")
if CELERY_BROKER_URL.split("://", 1)[0] not in {"filesystem", "redis", "rediss", "amqp", "pyamqp"}:
    raise ConfigError(
        f"CELERY_BROKER_URL: unsupported scheme in {CELERY_BROKER_URL!r}; "
        "use redis://host:6379/0 or amqp://user:pass@host:5672// (empty = embedded)"
    )

if _embedded:
    _queue_dir = str(var_path("celery", "queue"))
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": _queue_dir,
        "data_folder_out": _queue_dir,
        "processed_folder": str(var_path("celery", "processed")),
        # broadcast/control messages (inspect, pidbox replies); kombu defaults to ./control
        "control_folder": str(var_path("celery", "control")),
        "store_processed": False,
        # Kombu polls the folder every second by default: a second per workflow hop.
        "polling_interval": 0.2,
    }
    _default_backend = f"file://{var_path('celery', 'results')}"
elif CELERY_BROKER_URL.startswith("redis"):
    # A killed worker's unacknowledged task comes back after this many seconds. It must be
    # longer than the longest task (the ZIP's 3 h limit), or a running task is handed to a
    # second worker; the watchdog, not this timeout, recovers a dead worker's work within
    # minutes (docs/workers.md "Brokers").
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": typed("CELERY_VISIBILITY_TIMEOUT_SECONDS", int, 11400)
    }
    _default_backend = CELERY_BROKER_URL
else:
    # RabbitMQ: publisher confirms, so a message the broker did not store raises in the
    # sender instead of vanishing.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
    _default_backend = "rpc://"
# A JSON object merged over the transport options (the worker tests' key prefix, for one).
_overrides = env.str("CELERY_BROKER_TRANSPORT_OPTIONS_JSON", default="")
if _overrides:
    try:
        CELERY_BROKER_TRANSPORT_OPTIONS = {
            **CELERY_BROKER_TRANSPORT_OPTIONS,
            **json.loads(_overrides),
        }
    except (ValueError, TypeError):
        raise ConfigError("CELERY_BROKER_TRANSPORT_OPTIONS_JSON: not a JSON object") from None
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=_default_backend)

# One queue for the pipeline; tests give each run its own so parallel runs never share tasks.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="media")
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Task logs go through Django's LOGGING (JSON lines with job_id, step, traceparent).
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# RabbitMQ redelivers the unacknowledged task of a lost connection at once, so the copy
# still running here must stop (else two run). Redis keeps it until the visibility
# timeout (or loses it in a restart without persistence): there the running copy finishes.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = CELERY_BROKER_URL.startswith("amqp")
# RabbitMQ queue type: "classic" (durable; a single node) or "quorum" (replicated; a
# cluster). Quorum queues need a topic exchange for the countdowns of step retries
# (Celery's native delayed delivery).
CELERY_TASK_DEFAULT_QUEUE_TYPE = env.str("CELERY_TASK_DEFAULT_QUEUE_TYPE", default="classic")
if CELERY_TASK_DEFAULT_QUEUE_TYPE not in {"classic", "quorum"}:
    raise ConfigError(
        "CELERY_TASK_DEFAULT_QUEUE_TYPE: must be classic or quorum, "
        f"got {CELERY_TASK_DEFAULT_QUEUE_TYPE!r}"
    )
CELERY_TASK_CREATE_MISSING_QUEUE_TYPE = CELERY_TASK_DEFAULT_QUEUE_TYPE
if CELERY_TASK_DEFAULT_QUEUE_TYPE == "quorum":
    CELERY_TASK_DEFAULT_EXCHANGE_TYPE = "topic"
    CELERY_TASK_CREATE_MISSING_QUEUE_EXCHANGE_TYPE = "topic"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BEAT_SCHEDULE_FILENAME = str(var_path("celery") / "beat-schedule")

# Housekeeping (docs/contract.md §8)
RECONCILER_TIMEOUT_SECONDS = typed("RECONCILER_TIMEOUT_SECONDS", int, 3600)
RECONCILER_INTERVAL_SECONDS = typed("RECONCILER_INTERVAL_SECONDS", int, 300)
CLEANER_RETENTION_DAYS = typed("CLEANER_RETENTION_DAYS", int, 90)
CLEANER_MAX_PER_RUN = typed("CLEANER_MAX_PER_RUN", int, 5000)

# Pipeline knobs: photos per thumbnails task, and a factor on every retry interval (1 in
# production; the worker tests shrink it).
PIPELINE_THUMBNAIL_CHUNK_SIZE = typed("PIPELINE_THUMBNAIL_CHUNK_SIZE", int, 8)
PIPELINE_RETRY_DELAY_SCALE = typed("PIPELINE_RETRY_DELAY_SCALE", float, 1.0)
# How long a task keeps retrying its database work on fresh connections (a killed
# connection, a failover) before it gives up and leaves the job to the watchdog.
PIPELINE_DB_RETRY_SECONDS = typed("PIPELINE_DB_RETRY_SECONDS", float, 120.0)

# Watchdog (docs/workers.md "The watchdog"): a running step writes a heartbeat every
# WATCHDOG_HEARTBEAT_SECONDS; a Celery job with no event and no heartbeat for
# WATCHDOG_STALL_SECONDS has lost its work (broker restarted, worker gone), and the watchdog
# (beat, every WATCHDOG_INTERVAL_SECONDS) queues only what is missing.
WATCHDOG_INTERVAL_SECONDS = typed("WATCHDOG_INTERVAL_SECONDS", float, 60.0)
WATCHDOG_STALL_SECONDS = typed("WATCHDOG_STALL_SECONDS", float, 120.0)
WATCHDOG_HEARTBEAT_SECONDS = typed("WATCHDOG_HEARTBEAT_SECONDS", float, 20.0)
if WATCHDOG_HEARTBEAT_SECONDS <= 0 or WATCHDOG_STALL_SECONDS < 3 * WATCHDOG_HEARTBEAT_SECONDS:
    raise ConfigError(
        "WATCHDOG_STALL_SECONDS: must be at least 3 x WATCHDOG_HEARTBEAT_SECONDS (got "
        f"{WATCHDOG_STALL_SECONDS} and {WATCHDOG_HEARTBEAT_SECONDS}), or a slow step that "
        "misses one heartbeat would be run twice"
    )

# Callback outbox: undelivered results are sent again by beat every
# CALLBACK_OUTBOX_INTERVAL_SECONDS (backoff and retry period: toqportal/settings/security.py).
CALLBACK_OUTBOX_INTERVAL_SECONDS = typed("CALLBACK_OUTBOX_INTERVAL_SECONDS", float, 30.0)

# Engine for new jobs: "celery" or "stepfunctions".
MEDIA_PIPELINE_ENGINE = env.str("MEDIA_PIPELINE_ENGINE", default="celery")
if MEDIA_PIPELINE_ENGINE not in {"celery", "stepfunctions"}:
    raise ConfigError(
        f"MEDIA_PIPELINE_ENGINE: must be celery or stepfunctions, got {MEDIA_PIPELINE_ENGINE!r}"
    )
PROCESSING_STATE_MACHINE_ARN = env.str("PROCESSING_STATE_MACHINE_ARN", default="")
FINALIZATION_STATE_MACHINE_ARN = env.str("FINALIZATION_STATE_MACHINE_ARN", default="")
AWS_ENDPOINT_URL = env.str("AWS_ENDPOINT_URL", default="") or None

# Beat's tasks and the callback sends on a queue of their own when set: a small worker for it
# (`celery -A toqportal worker -Q <name> -c 1`) keeps the watchdog and the callbacks running
# while every pipeline worker is busy with long transcodes. Empty: the pipeline's queue.
CELERY_HOUSEKEEPING_QUEUE = env.str("CELERY_HOUSEKEEPING_QUEUE", default="")


def _beat_entry(task: str, schedule: object, expires_s: float | None = None) -> dict:
    """A schedule entry; a frequent pass that waited in the queue longer than its
    interval expires (the next one is already on its way) instead of piling up."""
    options: dict[str, object] = {}
    if expires_s:
        options["expires"] = expires_s
    if CELERY_HOUSEKEEPING_QUEUE:
        options["queue"] = CELERY_HOUSEKEEPING_QUEUE
    return {"task": task, "schedule": schedule, "options": options}


# docs/contract.md §8: the reconciler every few minutes, the cleaner once a day (03:17 UTC); the
# watchdog and the callback outbox every minute or less.
CELERY_BEAT_SCHEDULE = {
    "reconcile stuck media jobs": _beat_entry(
        "media_jobs.tasks.reconcile_stuck_jobs",
        float(RECONCILER_INTERVAL_SECONDS),
        float(RECONCILER_INTERVAL_SECONDS),
    ),
    "watch stalled media jobs": _beat_entry(
        "media_jobs.tasks.watch_stalled_jobs", WATCHDOG_INTERVAL_SECONDS, WATCHDOG_INTERVAL_SECONDS
    ),
    "send undelivered callbacks": _beat_entry(
        "media_jobs.tasks.send_pending_callbacks",
        CALLBACK_OUTBOX_INTERVAL_SECONDS,
        CALLBACK_OUTBOX_INTERVAL_SECONDS,
    ),
    "clean old media jobs": _beat_entry(
        "media_jobs.tasks.clean_old_jobs", crontab(hour=3, minute=17)
    ),
}
