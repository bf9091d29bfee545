"""Backfills and repairs that engineers run from the shell, one item at a time.

Each ``*`` function here handles ONE item (an asset, a job) and returns an ``ItemResult``:
the commands and the ``ops_tasks`` worker task loop over items and count the outcomes, so a
run inline and a run on the workers do exactly the same thing. Every function is idempotent
(running it twice leaves the same state; the second run reports ``skipped``) and honours
``dry_run`` (reads only, says what it would do).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from django.db import transaction

from ..models import TERMINAL_JOB_STATUSES, AssetStatus, MediaAsset, MediaProcessingJob
from ..pipeline import keys
from ..pipeline.consolidate import consolidate_outputs
from ..pipeline.decode_budget import DecodeLimits
from ..pipeline.errors import ErrorCode, PipelineError
from ..pipeline.storage import ObjectNotFound, Storage
from ..pipeline.thumbnails import SOURCE_ETAG_METADATA, generate_thumbnails, render_derivatives
from ..pipeline.types import BranchResult, GeneratedAsset, ValidatedAsset
from ..pipeline.validate import validate_assets
from ..pipeline.video import POSTER_TYPE, TRANSCODE_TYPE, generate_poster_frames, transcode_videos
from ..selectors.operations import job_superseded_by
from ..storage import pipeline_config, pipeline_storage
from .callbacks import asset_apply_output
from .retry import job_retry_and_dispatch, retry_plan

logger = logging.getLogger("toq.operations")

Outcome = Literal["done", "skipped", "failed"]

# Who the jobs' timelines name as the actor of an operations command.
OPERATIONS_ACTOR = "manage.py requeue_jobs"
# The step names used for a backfill's log lines (the ``step`` field of the JSON logs).
BACKFILL_STEP = "backfill"


@dataclass
class ItemResult:
    """What happened to one item. ``detail`` is one human line; ``data`` is for --json;
    ``tags`` are extra counters of the run summary (e.g. ``drift``)."""

    outcome: Outcome
    detail: str
    data: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()

    def as_json(self, ref: Any) -> dict[str, Any]:
        return {"ref": ref, "outcome": self.outcome, "detail": self.detail, "data": self.data}


def done(detail: str, **data: Any) -> ItemResult:
    return ItemResult("done", detail, data)


def skipped(detail: str, **data: Any) -> ItemResult:
    return ItemResult("skipped", detail, data)


def failed(detail: str, **data: Any) -> ItemResult:
    return ItemResult("failed", detail, data)


# -- derivatives ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DerivativeState:
    """Which expected outputs of one raw object exist, and whether they were made from it."""

    raw_etag: str
    expected: dict[str, str]  # size or output name -> key
    missing: tuple[str, ...]
    stale: tuple[str, ...]  # present but made from another raw object (or unknown source)

    @property
    def current(self) -> bool:
        return not self.missing and not self.stale


def expected_outputs(*, raw_key: str, asset_type: str) -> dict[str, str]:
    """The derivative keys the pipeline writes for a raw object (docs/contract.md §2 key rules)."""
    if keys.is_video_type(asset_type):
        return {"poster": keys.poster_key(raw_key), "transcode": keys.transcode_key(raw_key)}
    return {size: keys.derivative_key(raw_key, size) for size in keys.IMAGE_SIZES}


def derivative_state(*, storage: Storage, raw_key: str, asset_type: str) -> DerivativeState:
    """HEAD the raw object and every expected output. Raises ObjectNotFound (raw missing)
    and PipelineError(INVALID_KEY)."""
    raw = storage.head(raw_key)
    expected = expected_outputs(raw_key=raw_key, asset_type=asset_type)
    missing: list[str] = []
    stale: list[str] = []
    for name, key in expected.items():
        try:
            info = storage.head(key)
        except ObjectNotFound:
            missing.append(name)
            continue
        if info.metadata.get(SOURCE_ETAG_METADATA) != raw.etag:
            stale.append(name)
    return DerivativeState(raw.etag, expected, tuple(missing), tuple(stale))


def _rewrite_photo_derivatives(
    *, storage: Storage, raw_key: str, raw_etag: str, limits: DecodeLimits
) -> None:
    """``--force`` for a photo: render and overwrite even when the derivatives are current
    (generate_thumbnails would skip them). Same keys, metadata and content type as the step,
    and the objects are overwritten in place, so they are never missing in between."""
    with storage.open_read(raw_key) as source:
        derivatives = render_derivatives(source, limits=limits)
    for derivative in derivatives:
        storage.write(
            keys.derivative_key(raw_key, derivative.size),
            derivative.data,
            content_type="image/jpeg",
            metadata={SOURCE_ETAG_METADATA: raw_etag},
        )


def _run_steps(
    *, asset: MediaAsset, state: DerivativeState, storage: Storage, force: bool
) -> list[BranchResult]:
    """The processing workflow's steps for one asset: validate, then the branches for its
    kind. Returns the parallel results for consolidation."""

    config = pipeline_config()
    validation = validate_assets(
        {
            "jobId": 0,  # a backfill is not a job; 0 marks its log lines
            "listingIdentityId": asset.listing_identity_id,
            "assets": [{"key": asset.s3_key_raw, "type": asset.asset_type}],
        },
        storage=storage,
        config=config,
    )
    validated: ValidatedAsset = validation["assets"][0]
    if validated.get("error"):
        raise PipelineError(
            validated.get("errorCode") or ErrorCode.VALIDATION_ERROR, validated["error"]
        )
    if keys.is_video_type(asset.asset_type):
        if force:
            # The video steps skip outputs made from the same source; forcing means
            # removing them first (a poster/transcode is briefly absent).
            for key in state.expected.values():
                storage.delete(key)
        posters = generate_poster_frames(validation, storage=storage, config=config)
        transcodes = transcode_videos(validation, storage=storage, config=config)
        return [posters, transcodes]
    if force:
        _rewrite_photo_derivatives(
            storage=storage,
            raw_key=validated["sourceKey"],
            raw_etag=validated.get("etag") or state.raw_etag,
            limits=DecodeLimits.from_config(config),
        )
    return [generate_thumbnails(validation, storage=storage, config=config)]


def _output_for(asset: MediaAsset, parallel_results: list[BranchResult]) -> dict[str, Any]:
    outputs = consolidate_outputs(
        [{"key": asset.s3_key_raw, "sourceKey": asset.s3_key_raw, "type": asset.asset_type}],
        parallel_results,
    )
    return dict(outputs[0])


def _row_matches(asset: MediaAsset, output: dict[str, Any]) -> bool:
    """The row already says what a callback with ``output`` would write."""
    meta = asset.meta
    if asset.s3_key_processed != output["processedKey"]:
        return False
    if output["thumbnailKey"] and meta.get("thumbnailKey") != output["thumbnailKey"]:
        return False
    return all(meta.get(name) == key for name, key in output["outputs"].items())


def _existing_output(asset: MediaAsset, state: DerivativeState, raw_key: str) -> dict[str, Any]:
    """The consolidated output of derivatives that are already current in storage."""
    generated: list[GeneratedAsset]
    if keys.is_video_type(asset.asset_type):
        generated = [
            {"key": state.expected["poster"], "type": POSTER_TYPE, "sourceKey": raw_key},
            {"key": state.expected["transcode"], "type": TRANSCODE_TYPE, "sourceKey": raw_key},
        ]
    else:
        generated = [
            {"key": key, "type": asset.asset_type, "sourceKey": raw_key}
            for key in state.expected.values()
        ]
    return _output_for(
        asset, [{"body": {"status": "SUCCESS", "generatedAssets": generated, "errors": []}}]
    )


def asset_backfill_derivatives(
    *,
    asset_id: int,
    force: bool = False,
    missing_only: bool = False,
    dry_run: bool = False,
) -> ItemResult:
    """Regenerate one PROCESSED asset's derivatives and record them like a callback does.

    - default: skip when every derivative exists and was made from the current raw object
      (``source-etag`` metadata), so a re-run resumes where an interrupted one stopped;
    - ``missing_only``: act only when some derivative is absent (present ones made by
      another system, without ``source-etag``, are left alone);
    - ``force``: regenerate whatever their state.

    The row is then updated through ``services.callbacks.asset_apply_output`` (processed key
    and metadata merge, exactly as a callback output does). A failure leaves the row as it
    was: the old derivatives still serve, and the item is reported failed.
    """
    asset = MediaAsset.objects.filter(pk=asset_id).first()
    if asset is None:
        return skipped(f"asset #{asset_id} no longer exists")
    label = f"asset #{asset.pk} {asset.asset_type} {asset.s3_key_raw or '(no raw key)'}"
    if asset.status != AssetStatus.PROCESSED:
        return skipped(f"{label}: is {asset.status}, only PROCESSED assets are backfilled")
    if not asset.s3_key_raw:
        return failed(f"{label}: has no raw key", error_code=ErrorCode.INVALID_KEY.value)
    storage = pipeline_storage()
    try:
        state = derivative_state(
            storage=storage, raw_key=asset.s3_key_raw, asset_type=asset.asset_type
        )
    except ObjectNotFound:
        return failed(
            f"{label}: raw object is missing", error_code=ErrorCode.OBJECT_NOT_FOUND.value
        )
    except PipelineError as exc:
        return failed(f"{label}: {exc.code}: {exc.message}", error_code=str(exc.code))
    facts = {"missing": list(state.missing), "stale": list(state.stale)}

    if force:
        reason = "forced"
    elif missing_only:
        reason = f"missing: {', '.join(state.missing)}" if state.missing else ""
    else:
        problems = [f"missing: {', '.join(state.missing)}"] if state.missing else []
        problems += [f"stale: {', '.join(state.stale)}"] if state.stale else []
        reason = "; ".join(problems)

    if not reason:
        # Nothing to render; the row may still not reference the derivatives.
        if state.current:
            output = _existing_output(asset, state, asset.s3_key_raw)
            if not _row_matches(asset, output):
                if dry_run:
                    return done(f"{label}: would update the row (derivatives current)", **facts)
                _apply_output(asset, output)
                return done(f"{label}: row updated (derivatives current)", **facts)
        what = "derivatives current" if state.current else "no derivative missing"
        return skipped(f"{label}: {what}", **facts)

    if dry_run:
        return done(f"{label}: would regenerate {len(state.expected)} outputs ({reason})", **facts)
    try:
        parallel_results = _run_steps(asset=asset, state=state, storage=storage, force=force)
    except PipelineError as exc:
        return failed(f"{label}: {exc.code}: {exc.message}", error_code=str(exc.code), **facts)
    output = _output_for(asset, parallel_results)
    if output["errorCode"]:
        return failed(
            f"{label}: {output['errorCode']}: {output['errorMessage']}",
            error_code=output["errorCode"],
            **facts,
        )
    _apply_output(asset, output)
    logger.info(
        "backfilled derivatives of asset %s",
        asset.pk,
        extra={"listing_identity_id": asset.listing_identity_id, "step": BACKFILL_STEP},
    )
    return done(f"{label}: regenerated ({reason})", processed_key=output["processedKey"], **facts)


@transaction.atomic
def _apply_output(asset: MediaAsset, output: dict[str, Any]) -> None:
    """The callback receiver's own asset update, on the row locked like a callback does."""

    locked = MediaAsset.objects.select_for_update().get(pk=asset.pk)
    asset_apply_output(asset=locked, output=output)


# -- requeue -------------------------------------------------------------------------------


def job_requeue(
    *, job_id: int, include_superseded: bool = False, dry_run: bool = False
) -> ItemResult:
    """Retry one finished job through the admin's retry service (a new job, dispatched).

    Skipped when a newer job of the same listing and kind exists (it was retried already),
    which makes a requeue run safe to repeat, and when the retry plan says it cannot run
    now (tagged ``blocked``, with the plan's reason: nothing left to process, a job still
    running, assets not ready for a ZIP).
    """

    job = MediaProcessingJob.objects.filter(pk=job_id).first()
    if job is None:
        return skipped(f"job #{job_id} no longer exists")
    label = f"job #{job.pk} ({job.provider}, listing {job.listing_identity_id}, {job.status})"
    if job.status not in TERMINAL_JOB_STATUSES:
        return skipped(f"{label}: not finished, not retried")
    if not include_superseded:
        newer = job_superseded_by(job)
        if newer is not None:
            return skipped(f"{label}: already superseded by job #{newer.pk}")
    plan = retry_plan(job=job)
    if not plan.allowed:
        result = skipped(f"{label}: cannot be retried now: {plan.blocked_reason}")
        result.tags = ("blocked",)
        return result
    if dry_run:
        return done(f"{label}: would retry: {plan.summary}", asset_ids=plan.asset_ids)
    new_job = job_retry_and_dispatch(job=job, actor=OPERATIONS_ACTOR)
    return done(f"{label}: retried as job #{new_job.pk}", new_job_id=new_job.pk)
