"""Structured JSON logs (docs/contract.md §10), shared by Lambda, Celery and Django.

One JSON object per line, so CloudWatch Logs Insights and any log shipper can filter on
``job_id``, ``listing_identity_id``, ``step`` or ``traceparent`` without parsing text.
Context set with :func:`log_context` reaches every logger (including library code that
knows nothing about jobs) because the formatter reads it from a context variable.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TextIO

# Extras that always come first, in this order, right after the four fixed fields.
CONTEXT_FIELDS = (
    "job_id",
    "listing_identity_id",
    "step",
    "traceparent",
    "duration_ms",
    "error_code",
)

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

_context: ContextVar[Mapping[str, Any]] = ContextVar(
    "toq_log_context", default=MappingProxyType({})
)


def current_log_context() -> dict[str, Any]:
    return dict(_context.get())


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Attach fields (job_id, listing_identity_id, traceparent, ...) to every record logged
    inside the block, in this thread or task. ``None`` values are ignored."""
    merged = {**_context.get(), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def _json_value(value: Any) -> tuple[bool, Any]:
    """(True, value) when ``value`` survives json.dumps unchanged in meaning."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False, None
    return True, value


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", <context>, <extras>}`` on one line.

    Extras that are not JSON-serialisable (a Django request object, say) are left out
    rather than breaking the line; the known context fields fall back to ``str()``.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        extras = dict(_context.get())
        extras.update(
            (key, value)
            for key, value in record.__dict__.items()
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_")
        )
        for key in CONTEXT_FIELDS:
            if key in extras and extras[key] is not None:
                ok, value = _json_value(extras[key])
                entry[key] = value if ok else str(extras[key])
        for key, value in extras.items():
            if key in entry or key in CONTEXT_FIELDS:
                continue
            ok, value = _json_value(value)
            if ok:
                entry[key] = value
        if record.exc_info:
            exc_type = record.exc_info[0]
            if exc_type is not None:
                entry["exc_type"] = exc_type.__name__
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str)


def configure_json_logging(
    level: int | str = logging.INFO, *, stream: TextIO | None = None
) -> None:
    """Make the root logger emit JSON lines.

    Existing root handlers (the Lambda runtime installs one) keep their destination and get
    the JSON formatter; without any, a stream handler to stderr is added. Safe to call on
    every invocation.
    """
    root = logging.getLogger()
    root.setLevel(level.upper() if isinstance(level, str) else level)
    if stream is not None or not root.handlers:
        root.addHandler(logging.StreamHandler(stream or sys.stderr))
    for handler in root.handlers:
        if not isinstance(handler.formatter, JsonFormatter):
            handler.setFormatter(JsonFormatter())


@contextmanager
def step_timer(logger: logging.Logger, step: str, **context: Any) -> Iterator[dict[str, Any]]:
    """Log ``<step> started`` / ``<step> finished`` with duration_ms, or ``<step> failed``
    with the error, and re-raise. Yields a dict whose items are added to the final line
    (counts, keys): ``with step_timer(log, "zip", job_id=7) as summary: summary["n"] = 3``.
    """
    summary: dict[str, Any] = {}
    with log_context(step=step, **context):
        logger.info("%s started", step)
        started = time.perf_counter()
        try:
            yield summary
        except BaseException as exc:
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            logger.error(
                "%s failed: %s",
                step,
                exc,
                exc_info=True,
                extra={
                    **summary,
                    "duration_ms": duration_ms,
                    "error_code": getattr(exc, "code", None) or type(exc).__name__,
                    "error": str(exc),
                },
            )
            raise
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        logger.info("%s finished", step, extra={**summary, "duration_ms": duration_ms})
