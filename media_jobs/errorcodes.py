"""Error codes: the one parser of ``last_error`` and the one catalogue of what each code means.

``last_error`` holds one line per failure (``services.jobs.format_last_error``)::

    code=X | message | failureReason | meta={...}

:func:`parse_last_error` is the only code that reads it: the admin (filter, error groups,
dashboard), the commands (``requeue_jobs --error-code``) and ``/metrics`` all go through it,
so a code means the same everywhere. A code is letters, digits, ``_ . : -`` (Step Functions
sends ``States.TaskFailed``), at most 100 characters, ending where the field, line or text
ends: ``code=ZIP`` is not ``code=ZIP_FAILED``.

:data:`CATALOGUE` says, per code, where it comes from, what it means and what to do. The job
page shows it and ``manage.py error_codes`` writes docs/error-codes.md from it (a test checks
that the file is what the command writes).

Long on purpose: most of it is the catalogue (one entry per code, with its
translated "what to do"), kept beside the one parser so a new code is declared once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from .pipeline.errors import ErrorCode

CODE_PATTERN = r"[A-Za-z0-9_.:\-]{1,100}"
_CODE = re.compile(CODE_PATTERN)
# "1 of 3 assets failed: CORRUPT_IMAGE x1, OBJECT_NOT_FOUND x2" (pipeline.consolidate)
_ASSET_COUNT = re.compile(rf"(?<![A-Za-z0-9_.:\-])({CODE_PATTERN}) x(\d+)\b")
FIELD_SEPARATOR = " | "
META_PREFIX = "meta="

# Job-level codes the services write (the pipeline's own codes are pipeline.errors.ErrorCode).
DISPATCH_FAILED = "DISPATCH_FAILED"
MARKED_FAILED = "MARKED_FAILED"
RECONCILER_TIMEOUT = "RECONCILER_TIMEOUT"


def is_error_code(value: Any) -> bool:
    """True for a well-formed code (what a filter or ``--error-code`` may ask for)."""
    return isinstance(value, str) and _CODE.fullmatch(value) is not None


@dataclass(frozen=True)
class ErrorLine:
    """One line of ``last_error``: its code (None when the line has none), message,
    failureReason, raw meta text, and the per-asset codes it counts (``{code: assets}``)."""

    code: str | None
    message: str = ""
    failure_reason: str = ""
    meta: str = ""
    asset_codes: dict[str, int] = field(default_factory=dict)


def _asset_codes(failure_reason: str, meta: str) -> dict[str, int]:
    """The per-asset codes of a DERIVATIVE_ERRORS_DETECTED line: meta's ``errorCodes`` (a
    ``CODE=n,...`` string, or a JSON object of counts from older bodies), else the ``CODE xN`` list of the
    failureReason - the meta is often cut off where only the line's head was read."""
    try:
        details = json.loads(meta) if meta else None
    except ValueError:
        details = None
    counts = details.get("errorCodes") if isinstance(details, dict) else None
    if isinstance(counts, str):
        # The callback's details are a string map: "CORRUPT_IMAGE=1,OBJECT_NOT_FOUND=2".
        counts = dict(pair.partition("=")[::2] for pair in counts.split(",") if "=" in pair)
    if isinstance(counts, dict):
        found = {}
        for code, count in counts.items():
            try:
                number = int(count)
            except (TypeError, ValueError):
                continue
            if is_error_code(code) and number > 0:
                found[code] = number
        if found:
            return found
    return {code: int(count) for code, count in _ASSET_COUNT.findall(failure_reason)}


def parse_error_line(line: str) -> ErrorLine:
    parts = line.strip().split(FIELD_SEPARATOR)
    code = None
    if parts and parts[0].startswith("code=") and is_error_code(parts[0][len("code=") :]):
        code = parts.pop(0)[len("code=") :]
    meta = ""
    if parts and parts[-1].startswith(META_PREFIX):
        meta = parts.pop()[len(META_PREFIX) :]
    message = parts[0] if parts else ""
    failure_reason = FIELD_SEPARATOR.join(parts[1:])
    return ErrorLine(code, message, failure_reason, meta, _asset_codes(failure_reason, meta))


def parse_last_error(text: str | None) -> list[ErrorLine]:
    """Every non-empty line of ``last_error``, oldest first."""
    return [parse_error_line(line) for line in (text or "").splitlines() if line.strip()]


def error_code_of(text: str | None) -> str | None:
    """The code of the first line (the job's own code), or None."""
    lines = parse_last_error((text or "").split("\n", 1)[0])
    return lines[0].code if lines else None


def error_codes_of(text: str | None) -> list[str]:
    """Every code ``text`` names, in order, without repeats: each line's own code, then the
    codes of the assets it counts."""
    codes: list[str] = []
    for line in parse_last_error(text):
        for code in (line.code, *line.asset_codes):
            if code and code not in codes:
                codes.append(code)
    return codes


# -- messages ---------------------------------------------------------------------------------

# What varies from one job to the next, each masked as a whole token (never inside a word:
# ffmpeg's "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d5c8a0b2c0]" keeps its format names).
_QUOTED = re.compile(r"(?<!\w)(?:'[^'\n]*'|\"[^\"\n]*\")(?!\w)")
_UUID = re.compile(
    r"(?<![\w-])[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![\w-])"
)
_ADDRESS = re.compile(r"(?<!\w)0x[0-9a-fA-F]+(?!\w)")
_HEX = re.compile(r"(?<!\w)[0-9a-fA-F]{12,}(?!\w)")
_URL = re.compile(r"(?<!\w)[a-z][a-z0-9+.-]*://[^\s'\"<>]*[^\s'\"<>.,;:)\]]", re.IGNORECASE)
_TEMP_PATH = re.compile(r"(?<![\w/])/(?:tmp|var/tmp|var/folders|dev/shm)/[^\s:,;)\]'\"]*")
_PATH = re.compile(r"(?<![\w/])/?(?:[\w.@%+=~-]+/)+[\w.@%+=~-]*")
_DIMENSIONS = re.compile(r"(?<![\w.])\d+x\d+(?![\w.])")
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:[.,]\d+)?(?![\w]|[.,]\d)")
_SPACES = re.compile(r"\s+")
MESSAGE_MAX = 200


def normalize_error_message(message: str | None) -> str:
    """The message with what varies per job masked, so equal failures group together:
    quoted values, URLs, ids, hex addresses and digests, temporary paths, object keys and
    numbers
    - each only as a whole token."""
    text = _QUOTED.sub("'…'", message or "")
    text = _URL.sub("<url>", text)
    text = _UUID.sub("<id>", text)
    text = _ADDRESS.sub("<addr>", text)
    text = _HEX.sub("<hex>", text)
    text = _TEMP_PATH.sub("<tmp>", text)
    text = _PATH.sub("<key>", text)
    text = _DIMENSIONS.sub("#x#", text)
    text = _NUMBER.sub("#", text)
    return _SPACES.sub(" ", text).strip()[:MESSAGE_MAX]


# -- the catalogue ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeInfo:
    code: str
    scope: str  # "asset": one asset failed with it; "job": the whole job
    steps: str
    meaning: str | Promise
    what_to_do: str | Promise


def _info(code: str, scope: str, steps: str, meaning: Promise, what_to_do: Promise) -> CodeInfo:
    return CodeInfo(code, scope, steps, meaning, what_to_do)


CATALOGUE: dict[str, CodeInfo] = {
    info.code: info
    for info in (
        _info(
            ErrorCode.VALIDATION_ERROR,
            "asset",
            "validate",
            _("generic validation failure (no more precise code known)"),
            _("Read the message; fix the asset and retry the job."),
        ),
        _info(
            ErrorCode.OBJECT_NOT_FOUND,
            "asset",
            "validate, thumbnails, zip",
            _("the raw object is not in the bucket"),
            _(
                "Ask for the file to be uploaded again, or run `import_raw_assets` / "
                "`verify_storage` to find what drifted; then retry."
            ),
        ),
        _info(
            ErrorCode.EMPTY_OBJECT,
            "asset",
            "validate",
            _("the raw object has 0 bytes"),
            _("Ask for the file to be uploaded again, then retry."),
        ),
        _info(
            ErrorCode.FILE_TOO_LARGE,
            "asset",
            "validate",
            _("larger than `MEDIA_MAX_FILE_BYTES`"),
            _("Ask for a smaller file, or raise `MEDIA_MAX_FILE_BYTES`; then retry."),
        ),
        _info(
            ErrorCode.UNSUPPORTED_FORMAT,
            "asset",
            "validate, thumbnails",
            _(
                "the first bytes are not a supported image (JPEG, PNG, GIF, WebP, TIFF, "
                "HEIC/HEIF/AVIF) or video (MP4, MOV, M4V, WebM/MKV, AVI)"
            ),
            _("Ask for the file in a supported format, then retry."),
        ),
        _info(
            ErrorCode.INVALID_KEY,
            "asset",
            "validate, thumbnails, zip",
            _(
                "the key (or a key the steps would write from it) breaks the key rules "
                "(docs/contract.md §2) or cannot be held by the storage: no `raw/` segment, "
                "`..` or empty segments, a leading `/`, a control character, not UTF-8, over "
                "1024 bytes; on local storage also a NUL, the reserved `.toq-tmp-` prefix, or "
                "a name over 255 bytes (250 for the file itself, which has a `.json` sidecar)"
            ),
            _("Fix the asset's `s3_key_raw` (the backend owns it; rename the upload), then retry."),
        ),
        _info(
            ErrorCode.CORRUPT_IMAGE,
            "asset",
            "thumbnails",
            _(
                "the image is truncated or cannot be decoded (a PNG whose image data ends "
                "before the rows its header declares is truncated too)"
            ),
            _("Ask for the original to be uploaded again; retrying the same file fails again."),
        ),
        _info(
            ErrorCode.TOO_MANY_PIXELS,
            "asset",
            "thumbnails",
            _(
                "width × height over `MEDIA_MAX_IMAGE_PIXELS` (default 180 MP: admits 100 MP "
                "camera originals, refuses decompression bombs)"
            ),
            _("Check the file; raise the limit only for a trusted source, then retry."),
        ),
        _info(
            ErrorCode.MEMORY_BUDGET_EXCEEDED,
            "asset",
            "thumbnails",
            _(
                "decoding and reducing the photo would take more than "
                "`MEDIA_DECODE_MEMORY_BYTES` (default 320 MiB), estimated from the header "
                "before decoding; the message gives the estimate. A JPEG shrinks on load (any "
                "baseline camera JPEG up to the pixel limit fits); PNG, TIFF, WebP, GIF and "
                "HEIC decode at full size (a 13300 × 13300 RGBA PNG needs ~780 MiB, a 48 MP "
                "HEIC ~410 MiB)"
            ),
            _(
                "Ask for a JPEG or a smaller image; raise the budget only on workers with the "
                "memory (keep ~200 MiB for the worker itself), then retry."
            ),
        ),
        _info(
            ErrorCode.TOO_MANY_SCANS,
            "asset",
            "thumbnails",
            _(
                "a JPEG with more scans than `MEDIA_MAX_JPEG_SCANS` (default 100; cameras write "
                "1, progressive encoders about 10): each scan is a pass over the whole image"
            ),
            _("Ask for a re-export (any editor writes a normal JPEG), then retry."),
        ),
        _info(
            ErrorCode.CPU_BUDGET_EXCEEDED,
            "asset",
            "thumbnails",
            _(
                "decoding the photo used more than `MEDIA_DECODE_CPU_SECONDS` (default 10 s) "
                "of CPU and was stopped"
            ),
            _("Check the file; raise the budget only for a trusted source, then retry."),
        ),
        _info(
            ErrorCode.EXTREME_ASPECT_RATIO,
            "asset",
            "thumbnails",
            _(
                "a derivative would be taller (or wider) than JPEG's 65,500 px limit (a strip "
                "1,200 px wide and over 54 times as tall)"
            ),
            _("Ask for a cropped image, then retry."),
        ),
        _info(
            ErrorCode.THUMBNAIL_PROCESSING_FAILED,
            "asset",
            "thumbnails",
            _("any other failure making the four JPEG derivatives"),
            _("Read the message; retry (a passing storage or memory problem goes away)."),
        ),
        _info(
            ErrorCode.VIDEO_THUMBNAIL_FAILED,
            "asset",
            "video poster frames",
            _("ffmpeg could not extract a poster frame"),
            _("Check that the video plays; ask for it to be uploaded again, then retry."),
        ),
        _info(
            ErrorCode.VIDEO_TRANSCODE_FAILED,
            "asset",
            "video transcode",
            _(
                "this video could not be transcoded (ffmpeg on Celery, the MediaConvert job on "
                "AWS: corrupt, unsupported, or over an hour); an error of this video only, the "
                "job is `PARTIAL_SUCCESS`"
            ),
            _("Check that the video plays; ask for it to be uploaded again, then reprocess it."),
        ),
        _info(
            ErrorCode.MISSING_PROCESSED_KEY,
            "asset",
            "callback receiver",
            _("an output without error had no processedKey"),
            _("Look at the callback body on the job page: the pipeline sent an empty result."),
        ),
        _info(
            ErrorCode.DERIVATIVE_ERRORS_DETECTED,
            "job",
            "consolidate",
            _(
                "a processing step reported an asset error; the job is `PARTIAL_SUCCESS`. "
                "`error.details` (strings) has `failedAssets`, `totalAssets`, `errorCodes` "
                "(`CODE=n,...`) and `failedRawKeys` (a JSON list, at most 50). Validation "
                "errors alone leave the job `SUCCEEDED`"
            ),
            _("See the assets' own codes on the job page; each says what to do."),
        ),
        _info(
            ErrorCode.ZIP_FAILED,
            "job",
            "zip",
            _("the listing ZIP could not be written; the previous ZIP is intact"),
            _("Read the last error; retry the finalization."),
        ),
        _info(
            ErrorCode.WORKER_LOST,
            "job",
            "any Celery step",
            _(
                "the step's worker died 3 times while running it (killed, out of memory, past "
                "its hard time limit); the job fails instead of killing workers until the "
                "reconciler"
            ),
            _(
                "Read the step's `started` events (worker, lost attempts); check the input and "
                "the worker's memory, then retry."
            ),
        ),
        _info(
            DISPATCH_FAILED,
            "job",
            "dispatch, first task",
            _(
                "the job could not be started: the broker refused it, or its first task could "
                "not run (a locked or unreachable database); the job failed at once"
            ),
            _("Check the broker and the database (the message says which), then retry."),
        ),
        _info(
            MARKED_FAILED,
            "job",
            "operator",
            _("an operator marked the stuck job failed (the reason follows)"),
            _("Retry it once whatever kept it stuck is fixed."),
        ),
        _info(
            RECONCILER_TIMEOUT,
            "job",
            "reconciler",
            _(
                "no result arrived within `RECONCILER_TIMEOUT_SECONDS`; the job and its "
                "PROCESSING assets were failed (a late success is still applied)"
            ),
            _("Check that the workers (or Step Functions) run, then retry."),
        ),
    )
}
OTHER_JOB_CODES = _(
    "A step that fails as a whole (after its retries) reports the exception's name as the "
    "job's code, e.g. `ClientError` (storage unreachable), `FileNotFoundError` (ffmpeg missing "
    "on a worker), `MediaConvert.ForbiddenException` (the state machine's role may not pass "
    "the MediaConvert role), in a `VALIDATION_FAILED` or `PROCESSING_FAILED` callback."
)
UNKNOWN_CODE_ADVICE = _(
    "Read the message and the step timeline, then retry: the code is not a documented one "
    "(often the name of an exception a worker raised)."
)


def code_info(code: str | None) -> CodeInfo | None:
    return CATALOGUE.get(code or "")


def what_to_do(code: str | None) -> str | Promise:
    """What an operator does about ``code``: the catalogue's advice, or the generic one."""
    info = code_info(code)
    return info.what_to_do if info else UNKNOWN_CODE_ADVICE


DOC_HEADER = """# Error codes

<!-- Written by `manage.py error_codes` from media_jobs/errorcodes.py; edit that, not this. -->

Every failed asset carries one code (in the callback's `outputs[].errorCode`, in
`media_assets.metadata.errorCode`, and in the admin's error groups); a failed job carries one in
`last_error` (`code=X | message | failureReason | meta={...}`). The codes of
[the contract §9](contract.md#9-error-codes) are the generic ones; the pipeline reports the
precise code whenever it knows it, so an operator can tell "the photographer uploaded a PDF"
from "the object never arrived" without opening logs.

The portal counts both kinds: the jobs list's error-code filter, the error groups, the
dashboard's top errors and `/metrics` find a `PARTIAL_SUCCESS` job under its own
`DERIVATIVE_ERRORS_DETECTED` and under each code of its failed assets. The job page shows the
"what to do" below next to every code.
"""


def markdown(infos: Iterable[CodeInfo] | None = None) -> str:
    """docs/error-codes.md: the header and one table row per code (asset codes first)."""
    rows = sorted(infos or CATALOGUE.values(), key=lambda i: (i.scope != "asset", i.code))
    lines = [
        DOC_HEADER,
        "| code | scope | step | meaning | what to do |",
        "| --- | --- | --- | --- | --- |",
    ]
    for info in rows:
        lines.append(
            f"| `{info.code}` | {info.scope} | {info.steps} | {info.meaning} | {info.what_to_do} |"
        )
    lines.append("")
    lines.append(f"**Any other code**: {UNKNOWN_CODE_ADVICE}")
    lines.append("")
    lines.append(str(OTHER_JOB_CODES))
    return "\n".join(lines) + "\n"
