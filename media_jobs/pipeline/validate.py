"""Step 1 of the processing workflow (docs/contract.md §4): normalize the input, validate raw objects.

A problem with one asset (missing, empty, too large, bad key, wrong format) is recorded on
that asset with a precise ``errorCode`` and the asset is kept: the callback must report
every asset. Only failures of the step itself (storage unreachable, wrong bucket) raise,
which is what sends the state machine to ValidationFailed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from media_jobs.pipeline.config import PipelineConfig
from media_jobs.pipeline.consolidate import job_reference
from media_jobs.pipeline.errors import ErrorCode, PipelineError
from media_jobs.pipeline.keys import (
    IMAGE_SIZES,
    coarse_type_from_key,
    derivative_key,
    is_video_type,
    poster_key,
    split_raw_key,
    transcode_folder,
    transcode_key,
)
from media_jobs.pipeline.sniff import SNIFF_BYTES, is_image_format, is_video_format, sniff
from media_jobs.pipeline.storage import InvalidKey, ObjectNotFound, Storage
from media_jobs.pipeline.types import AssetRef, ProcessingInput, ValidatedAsset, ValidationResult

logger = logging.getLogger("toq.pipeline.validate")


def step_log_fields(event: Mapping[str, Any], step: str, **fields: Any) -> dict[str, Any]:
    """``extra=`` for step logs: the job's ids and trace, without absent values."""
    base = {
        "job_id": event.get("jobId"),
        "listing_identity_id": event.get("listingIdentityId"),
        "step": step,
        "traceparent": event.get("traceparent"),
        **fields,
    }
    return {name: value for name, value in base.items() if value is not None}


def _asset_ref(entry: Any) -> AssetRef:
    if isinstance(entry, str) and entry:
        return {"key": entry, "type": coarse_type_from_key(entry)}
    if isinstance(entry, Mapping) and isinstance(entry.get("key"), str) and entry["key"]:
        asset_type = entry.get("type")
        if not isinstance(asset_type, str) or not asset_type:
            asset_type = coarse_type_from_key(entry["key"])
        return {"key": entry["key"], "type": asset_type}
    raise PipelineError(
        ErrorCode.VALIDATION_ERROR, f"an asset must be a key or {{key, type}}, got {entry!r}"
    )


def normalize_processing_input(message: Mapping[str, Any]) -> ProcessingInput:
    """The state machine input from a queue message.

    ``assets`` may be plain keys (type VIDEO when the key contains ``/video/``, else PHOTO)
    or ``{key, type}`` objects; ids are kept as given (number or numeric string); every
    other member (``retry``, ``traceparent``, ...) passes through unchanged.
    """
    if not isinstance(message, Mapping):
        raise PipelineError(ErrorCode.VALIDATION_ERROR, "the message must be a JSON object")
    job_reference(message, "jobId")
    job_reference(message, "listingIdentityId")
    assets = message.get("assets") or []
    if not isinstance(assets, list):
        raise PipelineError(ErrorCode.VALIDATION_ERROR, "assets must be a list")
    normalized = dict(message)
    normalized["assets"] = [_asset_ref(entry) for entry in assets]
    return cast(ProcessingInput, normalized)


def _fail(asset: ValidatedAsset, code: ErrorCode, message: str) -> ValidatedAsset:
    asset["errorCode"] = str(code)
    asset["error"] = message
    return asset


def output_keys(raw_key: str, asset_type: str) -> list[str]:
    """The keys the processing steps will write for this asset (docs/contract.md §2)."""
    if is_video_type(asset_type):
        return [poster_key(raw_key), transcode_key(raw_key)]
    return [derivative_key(raw_key, size) for size in IMAGE_SIZES]


def check_asset_keys(key: str, asset_type: str, storage: Storage) -> None:
    """PipelineError(INVALID_KEY) unless the raw key and every key derived from it follow
    docs/contract.md §2 and are keys this storage can hold: a key the adapter refuses is that asset's
    problem, found here rather than as a failed write in a later step."""
    try:
        split_raw_key(key)
        for checked in [key, *output_keys(key, asset_type)]:
            storage.check_key(checked)
    except InvalidKey as error:
        raise PipelineError(ErrorCode.INVALID_KEY, str(error)) from None


def validate_asset(ref: AssetRef, *, storage: Storage, config: PipelineConfig) -> ValidatedAsset:
    """One asset: key rules, HEAD (size, etag), size limits, then the magic number."""
    key = ref["key"]
    asset: ValidatedAsset = {"key": key, "type": ref["type"], "sourceKey": key}
    try:
        check_asset_keys(key, ref["type"], storage)
    except PipelineError as error:
        return _fail(asset, ErrorCode.INVALID_KEY, error.message)
    try:
        info = storage.head(key)
    except ObjectNotFound:
        return _fail(asset, ErrorCode.OBJECT_NOT_FOUND, f"raw object {key!r} does not exist")
    asset["size"] = info.size
    asset["etag"] = info.etag
    if info.size == 0:
        return _fail(asset, ErrorCode.EMPTY_OBJECT, f"raw object {key!r} is empty (0 bytes)")
    if info.size > config.max_file_bytes:
        return _fail(
            asset,
            ErrorCode.FILE_TOO_LARGE,
            f"raw object {key!r} has {info.size} bytes, over the limit of {config.max_file_bytes}",
        )
    try:
        head = storage.read_range(key, 0, SNIFF_BYTES)
    except ObjectNotFound:
        return _fail(asset, ErrorCode.OBJECT_NOT_FOUND, f"raw object {key!r} disappeared")
    found = sniff(head)
    video = is_video_type(ref["type"])
    if video and not is_video_format(found):
        what = f"a {found} file" if found else "not a known media format"
        return _fail(asset, ErrorCode.UNSUPPORTED_FORMAT, f"{key!r} should be a video: {what}")
    if not video and not is_image_format(found):
        what = f"a {found} file" if found else "not a known media format"
        return _fail(asset, ErrorCode.UNSUPPORTED_FORMAT, f"{key!r} should be an image: {what}")
    return asset


# Each asset is two round trips (HEAD, then the first bytes); a listing has hundreds.
VALIDATE_THREADS = 8


def _validate_all(
    refs: list[AssetRef], *, storage: Storage, config: PipelineConfig
) -> list[ValidatedAsset]:
    """``validate_asset`` for every ref, in order, a few at a time (the round trips are
    waiting, not work). The first storage error stops the rest and propagates."""
    if len(refs) <= 1:
        return [validate_asset(ref, storage=storage, config=config) for ref in refs]
    pool = ThreadPoolExecutor(
        max_workers=min(VALIDATE_THREADS, len(refs)), thread_name_prefix="validate"
    )
    try:
        futures = [pool.submit(validate_asset, ref, storage=storage, config=config) for ref in refs]
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def validate_assets(
    event: ProcessingInput | Mapping[str, Any], *, storage: Storage, config: PipelineConfig
) -> ValidationResult:
    """docs/contract.md §4 step 1. Every asset stays in ``assets`` (failed ones with ``error`` and
    ``errorCode``); ``imageAssets`` / ``videoAssets`` and ``hasImages`` / ``hasVideos``
    count only valid assets, so the branches never see an asset that already failed.
    """
    normalized = normalize_processing_input(event)
    assets = _validate_all(normalized["assets"], storage=storage, config=config)
    valid = [asset for asset in assets if "error" not in asset]
    images = [asset for asset in valid if not is_video_type(asset["type"])]
    videos = [asset for asset in valid if is_video_type(asset["type"])]
    result = dict(normalized)
    result.update(
        assets=assets,
        imageAssets=images,
        videoAssets=videos,
        hasImages=bool(images),
        hasVideos=bool(videos),
    )
    if videos:
        # MediaConvert paths are S3 URIs whatever the adapter (they matter on AWS only).
        first = videos[0]["key"]
        result["videoInput"] = f"s3://{storage.bucket}/{first}"
        result["videoOutputPath"] = f"s3://{storage.bucket}/{transcode_folder(first)}"
    failed = [asset for asset in assets if "error" in asset]
    logger.info(
        "validated %d assets (%d images, %d videos, %d failed)",
        len(assets),
        len(images),
        len(videos),
        len(failed),
        extra=step_log_fields(normalized, "validate", failed_keys=[a["key"] for a in failed]),
    )
    return cast(ValidationResult, result)
