"""Error codes an operator must tell apart (docs/contract.md §9), and the exception that carries them."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    # the generic codes of docs/contract.md §9
    VALIDATION_ERROR = "VALIDATION_ERROR"
    THUMBNAIL_PROCESSING_FAILED = "THUMBNAIL_PROCESSING_FAILED"
    VIDEO_THUMBNAIL_FAILED = "VIDEO_THUMBNAIL_FAILED"
    DERIVATIVE_ERRORS_DETECTED = "DERIVATIVE_ERRORS_DETECTED"
    MISSING_PROCESSED_KEY = "MISSING_PROCESSED_KEY"
    # precise codes added by this project (documented in docs/error-codes.md)
    OBJECT_NOT_FOUND = "OBJECT_NOT_FOUND"
    EMPTY_OBJECT = "EMPTY_OBJECT"
    FILE_TOO_LARGE = "FILE_TOO_LARGE"
    UNSUPPORTED_FORMAT = "UNSUPPORTED_FORMAT"
    INVALID_KEY = "INVALID_KEY"
    CORRUPT_IMAGE = "CORRUPT_IMAGE"
    TOO_MANY_PIXELS = "TOO_MANY_PIXELS"
    MEMORY_BUDGET_EXCEEDED = "MEMORY_BUDGET_EXCEEDED"
    CPU_BUDGET_EXCEEDED = "CPU_BUDGET_EXCEEDED"
    TOO_MANY_SCANS = "TOO_MANY_SCANS"
    EXTREME_ASPECT_RATIO = "EXTREME_ASPECT_RATIO"
    VIDEO_TRANSCODE_FAILED = "VIDEO_TRANSCODE_FAILED"
    ZIP_FAILED = "ZIP_FAILED"
    WORKER_LOST = "WORKER_LOST"


class PipelineError(Exception):
    """A failure of one asset or one step, with the code the callback reports."""

    def __init__(self, code: ErrorCode | str, message: str) -> None:
        super().__init__(message)
        self.code = str(code)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"
