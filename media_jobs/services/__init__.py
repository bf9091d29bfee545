"""Business rules as ``<entity>_<action>`` functions; everything else calls these."""

from ..exceptions import ApplicationError, ConflictError, JobStateError, NotFoundError
from .jobs import (
    format_last_error,
    job_append_error,
    job_apply_zip_figures,
    job_complete,
    job_mark_running,
    job_start,
)

__all__ = [
    "ApplicationError",
    "ConflictError",
    "JobStateError",
    "NotFoundError",
    "format_last_error",
    "job_append_error",
    "job_apply_zip_figures",
    "job_complete",
    "job_mark_running",
    "job_start",
]
