"""The Celery engine: docs/contract.md §4 and §5 as tasks, with the state machines' semantics.

Processing workflow of a job (``run_processing`` is what dispatch queues)::

    run_processing ── validate ──┬─ processing_part "thumbnails:0..n"   (chunks of photos)
                                 ├─ processing_part "video_thumbnails:i" (one per video)
                                 └─ processing_part "video_transcode:i"  (one per video)
                                         │ each part, once all parts have a result
                                         ▼
                 consolidate_processing ── callback_apply + outbox ── deliver_callback

Finalization: ``run_finalization`` ── zip ── callback_apply + outbox ── deliver_callback.

Fan-in without chords: every step stores its result in the job's timeline
(``media_job_events``, ``detail["result"]``), and a part that finishes checks, after its
own commit, whether every part of the workflow has a result; if so it queues the
consolidation. The last part to commit always sees all the others (READ COMMITTED), two
parts may both queue it, and the consolidation is idempotent (a finished job is left
alone; the same body applied twice is a replay). Redelivery after a killed worker
(``acks_late`` + ``reject_on_worker_lost``) re-runs a step; steps skip what is already
done: the validate result is reused, a part with a result is not run again, and the photo
and video steps skip outputs whose ``source-etag`` matches the raw object's etag.

Nothing is lost when the infrastructure misbehaves (docs/workers.md "Reliability"):

- every task runs on a fresh database connection when its own is killed (``ResilientTask``,
  ``services.transient``), and the writes it repeats are idempotent;
- each work step holds a lease with a heartbeat (``services.attempts``): a duplicate copy
  stands down, a redelivered one takes over, and a step whose worker died 3 times fails
  with WORKER_LOST;
- beat's watchdog (``services.watchdog``) queues again what a lost broker message or a
  dead worker left undone, minutes later, long before the reconciler's hour;
- results reach the backend through the callback outbox (``services.outbox``), retried for
  CALLBACK_OUTBOX_TTL_SECONDS.

Tasks take ids; they call the pipeline (Django-free) and the services, nothing else
decides a status. Results reach job state through ``services.callbacks.callback_apply``,
the HTTP receiver's own function, so both engines change state identically.

The package: ``policies`` (retry blocks, time limits, the task classes), ``planning`` (pure:
parts, their inputs, the merge), ``steps`` (the plumbing around every step and the fan-in
state), and the tasks: ``processing``, ``finalization``, ``housekeeping``. Task names stay
``media_jobs.tasks.<function>`` whatever module defines them; workers import this package
(Celery's autodiscovery), which registers them all.
"""

from .finalization import run_finalization
from .housekeeping import (
    clean_old_jobs,
    deliver_callback,
    reconcile_stuck_jobs,
    send_pending_callbacks,
    watch_stalled_jobs,
)
from .planning import merge_parallel_results, plan_parts
from .policies import FirstTask, ResilientTask
from .processing import consolidate_processing, processing_part, run_processing

__all__ = [
    "FirstTask",
    "ResilientTask",
    "clean_old_jobs",
    "consolidate_processing",
    "deliver_callback",
    "merge_parallel_results",
    "plan_parts",
    "processing_part",
    "reconcile_stuck_jobs",
    "run_finalization",
    "run_processing",
    "send_pending_callbacks",
    "watch_stalled_jobs",
]
