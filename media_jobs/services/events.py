"""The step timeline (``media_job_events``): what happened to a job, step by step.

The Celery engine writes an event at every step, the callback receiver at every callback,
operator actions (retry, mark failed, reprocess) when they act. The admin's job page reads
it; the Celery engine also keeps each step's result here (``detail["result"]``), so a
redelivered task or the consolidation step finds the results of the steps before it.
"""

from __future__ import annotations

import json
from typing import Any

from ..models import EventKind, MediaJobEvent, MediaProcessingJob

MAX_STEP_LENGTH = MediaJobEvent._meta.get_field("step").max_length or 64
# duration_ms is an unsigned INT column.
MAX_DURATION_MS = 2**32 - 1


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON a JSON column accepts: datetimes and other objects become
    strings, lone surrogates (legal in JSON escapes, refused by MariaDB's JSON check)
    become "?"."""
    if value is None:
        return None
    text = json.dumps(value, default=str, ensure_ascii=False)
    return json.loads(text.encode(errors="replace").decode())


def event_record(
    *,
    job: MediaProcessingJob,
    step: str,
    kind: str,
    duration_ms: int | float | None = None,
    detail: dict[str, Any] | None = None,
) -> MediaJobEvent:
    """Append one event to the job's timeline.

    Not atomic on its own: inside a service's transaction it commits (or rolls back) with the
    change it describes, which is the point of recording it there.
    """
    if kind not in EventKind.values:
        raise ValueError(f"unknown event kind {kind!r}; expected one of {EventKind.values}")
    if duration_ms is not None:
        duration_ms = max(0, min(int(round(duration_ms)), MAX_DURATION_MS))
    return MediaJobEvent.objects.create(
        job_id=job.pk,
        step=step[:MAX_STEP_LENGTH],
        kind=kind,
        duration_ms=duration_ms,
        detail=json_safe(detail),
    )
