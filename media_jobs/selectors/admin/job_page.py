"""Reads behind the job and listing pages: the listing's jobs and assets, each asset's keys,
error and outcome in a job, the listing's current ZIP."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from media_jobs.models import (
    AssetType,
    JobProvider,
    JobStatus,
    MediaAsset,
    MediaProcessingJob,
)
from media_jobs.pipeline import keys
from media_jobs.pipeline.errors import PipelineError

# -- job page ---------------------------------------------------------------------------------


def listing_jobs(*, listing_identity_id: int, limit: int = 50) -> list[MediaProcessingJob]:
    """The listing's jobs, newest first (idx_mpj_listing)."""
    return list(
        MediaProcessingJob.objects.filter(listing_identity_id=listing_identity_id)
        .defer("payload", "callback_body")
        .order_by("-pk")[:limit]
    )


def listing_assets(*, listing_identity_id: int, limit: int = 1000) -> list[MediaAsset]:
    return list(
        MediaAsset.objects.filter(listing_identity_id=listing_identity_id).order_by(
            "asset_type", "sequence"
        )[:limit]
    )


def asset_thumbnail_key(asset: MediaAsset) -> str | None:
    """The key of the asset's small preview: recorded thumbnailKey, else the key rules."""
    meta = asset.meta
    recorded = meta.get("thumbnailKey")
    if isinstance(recorded, str) and recorded:
        return recorded
    if not asset.s3_key_raw or asset.asset_type in (AssetType.ZIP, AssetType.THUMBNAIL):
        return asset.s3_key_processed if asset.asset_type == AssetType.THUMBNAIL else None
    try:
        if keys.is_video_type(asset.asset_type):
            return keys.poster_key(asset.s3_key_raw)
        return keys.derivative_key(asset.s3_key_raw, "thumbnail")
    except PipelineError:
        return None


def asset_links(asset: MediaAsset) -> list[tuple[str, str]]:
    """(label, key) for the raw object and every recorded derivative, no duplicates."""
    links: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(label: str, key: Any) -> None:
        if isinstance(key, str) and key and key not in seen:
            seen.add(key)
            links.append((label, key))

    add("raw", asset.s3_key_raw)
    meta = asset.meta
    outputs = meta.get("outputs")
    if isinstance(outputs, dict):
        for label, key in sorted(outputs.items()):
            add(str(label), key)
    for label, key in sorted(meta.items()):
        if "_" in label and isinstance(key, str) and "/processed/" in key:
            add(label, key)
    add("thumbnail", meta.get("thumbnailKey"))
    add("processed", asset.s3_key_processed)
    return links


def asset_error(asset: MediaAsset) -> tuple[str | None, str | None]:
    meta = asset.meta
    code = meta.get("errorCode")
    message = meta.get("error")
    return (str(code) if code else None, str(message) if message else None)


@dataclass(frozen=True)
class AssetOutcome:
    """What one job did with one of its assets: processed, or failed with a code."""

    processed: bool
    code: str = ""
    message: str = ""


def job_asset_outcomes(*, job: MediaProcessingJob) -> dict[str, AssetOutcome]:
    """raw key -> the job's own outcome for that asset, from its callback body's outputs
    (docs/contract.md §6) - what this job did, whatever later jobs did since. A failure without
    outputs failed every asset it took with the job's code: the caller knows which. Empty
    when the body is absent, not JSON, or cut at the column's 64 KiB."""
    try:
        body = json.loads(job.callback_body) if job.callback_body else None
    except ValueError:
        return {}
    outputs = body.get("outputs") if isinstance(body, dict) else None
    if not isinstance(outputs, list):
        return {}
    found = {}
    for output in outputs:
        if not isinstance(output, dict) or not isinstance(output.get("rawKey"), str):
            continue
        code = str(output.get("errorCode") or "")
        message = str(output.get("errorMessage") or "")
        found[output["rawKey"]] = AssetOutcome(not (code or message), code, message)
    return found


def listing_zip_job(*, listing_identity_id: int) -> MediaProcessingJob | None:
    """The newest successful finalization of the listing (its ZIP is the current one)."""
    return (
        MediaProcessingJob.objects.filter(
            listing_identity_id=listing_identity_id,
            provider=JobProvider.STEP_FUNCTIONS_FINALIZATION,
            status=JobStatus.SUCCEEDED,
        )
        .defer("callback_body")
        .order_by("-pk")
        .first()
    )
