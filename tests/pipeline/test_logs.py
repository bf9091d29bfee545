"""The JSON log line (docs/contract.md §10): its exact text, the order and fallbacks of its
fields, and what never gets into it. Records are made with ``logging.makeLogRecord`` (a
fixed creation time gives a fixed line) or logged through a real logger."""

from __future__ import annotations

import io
import json
import logging
from decimal import Decimal
from typing import Any

from media_jobs.pipeline.logs import JsonFormatter, current_log_context, log_context

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def only_line(stream: io.StringIO) -> dict[str, Any]:
    [line] = stream.getvalue().splitlines()
    return json.loads(line)


def test_a_line_is_compact_utf8_json_with_a_millisecond_utc_timestamp() -> None:
    record = logging.makeLogRecord(
        {
            "name": "toq.pipeline.zip",
            "levelname": "INFO",
            "msg": "zipped %s for Café Größe",
            "args": ("3 assets",),
            "created": 1_700_000_000.123456,
        }
    )
    assert JsonFormatter().format(record) == (
        '{"ts":"2023-11-14T22:13:20.123Z","level":"INFO","logger":"toq.pipeline.zip",'
        '"message":"zipped 3 assets for Café Größe"}'
    )


def test_context_fields_come_first_in_their_order_then_the_other_extras(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_log
    with log_context(traceparent=TRACE, job_id=12):
        logger.info("x", extra={"zeta": 1, "error_code": "ZIP_FAILED", "step": "zip", "alpha": "a"})
    line = only_line(stream)
    assert list(line) == [
        "ts",
        "level",
        "logger",
        "message",
        "job_id",
        "step",
        "traceparent",
        "error_code",
        "zeta",
        "alpha",
    ]
    assert (line["job_id"], line["traceparent"], line["zeta"]) == (12, TRACE, 1)


def test_context_fields_that_are_not_json_are_written_as_text(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    """A job id kept as a Decimal, a NaN duration: still searchable, and the line still
    valid JSON (NaN is not)."""
    logger, stream = json_log
    logger.info("x", extra={"job_id": Decimal("41"), "duration_ms": float("nan")})
    line = only_line(stream)
    assert (line["job_id"], line["duration_ms"]) == ("41", "nan")


def test_other_extras_that_are_not_json_are_left_out(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_log
    logger.info("x", extra={"ratio": float("inf"), "request": object(), "kept": [1, "a"]})
    raw = stream.getvalue()
    assert "Infinity" not in raw
    line = json.loads(raw)
    assert "ratio" not in line and "request" not in line and line["kept"] == [1, "a"]


def test_unset_context_fields_and_private_attributes_are_not_written(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    """A context field given as None is absent (not ``null``); attributes starting with an
    underscore are a library's private state on the record, not log fields."""
    logger, stream = json_log
    logger.info("x", extra={"error_code": None, "job_id": None, "_private": "secret"})
    assert list(only_line(stream)) == ["ts", "level", "logger", "message"]


def test_the_context_cannot_overwrite_the_fixed_fields(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_log
    with log_context(level="DEBUG", logger="spoofed", message="spoofed", ts="0", step="zip"):
        logger.warning("real")
    line = only_line(stream)
    assert {k: line[k] for k in ("level", "logger", "message", "step")} == {
        "level": "WARNING",
        "logger": logger.name,
        "message": "real",
        "step": "zip",
    }
    assert line["ts"] != "0"


def test_exc_info_outside_an_exception_writes_no_exception_type(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_log
    logger.error("no exception here", exc_info=True)
    line = only_line(stream)
    assert "exc_type" not in line and line["exc"] == "NoneType: None"


def test_an_exception_already_formatted_on_the_record_is_written() -> None:
    """A record that arrives with its traceback as text only (``exc_text``, as records
    passed between processes do) keeps it."""
    record = logging.makeLogRecord(
        {"msg": "failed", "exc_text": "Traceback (most recent call last):\nZipError: x"}
    )
    line = json.loads(JsonFormatter().format(record))
    assert line["exc"] == "Traceback (most recent call last):\nZipError: x"
    assert "exc_type" not in line


def test_stack_info_is_written_as_stack(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = json_log
    logger.info("where am I", stack_info=True)
    line = only_line(stream)
    assert line["stack"].startswith("Stack (most recent call last):\n")
    assert "test_stack_info_is_written_as_stack" in line["stack"]


def test_current_log_context_is_a_copy_of_the_fields_in_force() -> None:
    assert current_log_context() == {}
    with log_context(job_id=1, step=None), log_context(step="zip"):
        fields = current_log_context()
        assert fields == {"job_id": 1, "step": "zip"}
        fields["job_id"] = 2
        assert current_log_context() == {"job_id": 1, "step": "zip"}
    assert current_log_context() == {}


def test_a_line_never_breaks_on_a_fixed_field_that_is_not_text() -> None:
    """A record rebuilt from another process's fields (``makeLogRecord``) may carry a
    logger name that is not a string: it is written as text rather than losing the line."""
    record = logging.makeLogRecord({"name": Decimal("7"), "msg": "m", "created": 0.0})
    assert json.loads(JsonFormatter().format(record))["logger"] == "7"
