"""Database-versus-storage drift of a listing, and the ZIP rebuild that follows from it.

One ``list`` of the listing's prefix gives every raw and processed object with its size and
last-modified time, so an audit costs one paginated listing per listing plus one query,
whatever the number of assets.

Long on purpose: what a listing's objects should be (expected keys per asset, the
legacy poster names) and how the storage differs from it are one comparison; the admin's
check and the commands' drift report both read it here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from ..exceptions import ApplicationError
from ..models import AssetStatus, AssetType, MediaAsset
from ..pipeline import keys
from ..pipeline.consolidate import SIZE_PREFERENCE
from ..pipeline.errors import PipelineError
from ..pipeline.storage import ObjectInfo, ObjectNotFound, Storage
from ..selectors.admin import asset_links, listing_zip_job
from ..selectors.operations import (
    listing_active_finalization,
    listing_assets,
    listing_has_succeeded_finalization,
    listing_prefix,
    raw_keys_known,
)
from ..storage import pipeline_storage
from .backfill import ItemResult, done, failed, skipped
from .dispatch import listing_finalization_blockers, listing_start_finalization

# metadata members that hold output keys: ``{size}_{type}`` (docs/contract.md §4 step 3) and thumbnailKey
OUTPUT_FIELD = re.compile(rf"^(?:{'|'.join(SIZE_PREFERENCE)})_[a-z_]+$")
THUMBNAIL_FIELD = "thumbnailKey"
PROCESSED_FIELD = "s3_key_processed"

ZIP_CURRENT = "current"
ZIP_STALE = "stale"
ZIP_MISSING = "missing"
# The storage check of a listing looks at its first assets only (a page, not a report).
MAX_ASSETS_CHECKED = 1000


def asset_output_keys(asset: MediaAsset) -> dict[str, str]:
    """Where the row says its outputs are: ``s3_key_processed`` and the metadata keys."""
    found: dict[str, str] = {}
    if asset.s3_key_processed:
        found[PROCESSED_FIELD] = asset.s3_key_processed
    for name, value in asset.meta.items():
        if (
            isinstance(value, str)
            and value
            and (name == THUMBNAIL_FIELD or OUTPUT_FIELD.match(name))
        ):
            found[name] = value
    return found


def current_derivative_keys(raw_key: str, *, video: bool) -> dict[str, str]:
    """The keys the pipeline writes today for ``raw_key``, by what they are: ``poster`` and
    ``transcode`` for a video, the four sizes for a photo. Raises ``PipelineError`` for a
    key the rules refuse. Both audits below expect exactly these."""
    if video:
        return {"poster": keys.poster_key(raw_key), "transcode": keys.transcode_key(raw_key)}
    return {size: keys.derivative_key(raw_key, size) for size in keys.IMAGE_SIZES}


def derived_keys(raw_key: str) -> set[str]:
    """Every key the pipeline could write from ``raw_key`` (any kind of asset), including
    the poster keys of earlier releases and of the Go system: such an object belongs to
    the asset, it is not an orphan (``backfill_derivatives`` writes the current one)."""
    try:
        derived = set(current_derivative_keys(raw_key, video=False).values())
        derived |= set(current_derivative_keys(raw_key, video=True).values())
        derived |= set(keys.legacy_poster_keys(raw_key))
    except PipelineError:
        return set()
    return derived


@dataclass(frozen=True)
class ZipStatus:
    key: str
    state: str  # current | stale | missing
    zip_modified: datetime | None
    newest_processed: datetime | None
    newest_processed_key: str | None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("zip_modified", "newest_processed"):
            if data[name] is not None:
                data[name] = data[name].isoformat()
        return data


def _zip_status(
    listing_identity_id: int, objects: dict[str, ObjectInfo], assets: list[MediaAsset]
) -> ZipStatus:
    """A ZIP is stale when a PROCESSED asset's output is newer than it (same second counts
    as current: S3 times have second resolution)."""
    zip_key = keys.zip_key(listing_identity_id)
    newest: ObjectInfo | None = None
    newest_at: datetime | None = None
    for asset in assets:
        if asset.status != AssetStatus.PROCESSED:
            continue
        for key in asset_output_keys(asset).values():
            info = objects.get(key)
            if info is None or info.last_modified is None:
                continue
            if newest_at is None or info.last_modified > newest_at:
                newest, newest_at = info, info.last_modified
    zip_info = objects.get(zip_key)
    if zip_info is None:
        state = ZIP_MISSING
    elif newest_at is not None and zip_info.last_modified and newest_at > zip_info.last_modified:
        state = ZIP_STALE
    else:
        state = ZIP_CURRENT
    return ZipStatus(
        key=zip_key,
        state=state,
        zip_modified=zip_info.last_modified if zip_info else None,
        newest_processed=newest_at,
        newest_processed_key=newest.key if newest else None,
    )


def _listing_objects(storage: Storage, listing_identity_id: int) -> dict[str, ObjectInfo]:
    return {info.key: info for info in storage.list(listing_prefix(listing_identity_id))}


def _present(storage: Storage, objects: dict[str, ObjectInfo], prefix: str, key: str) -> bool:
    """From the listing when the key is under the listing's prefix, else one HEAD."""
    if key.startswith(prefix):
        return key in objects
    try:
        storage.head(key)
    except ObjectNotFound:
        return False
    return True


def listing_zip_status(*, listing_identity_id: int, storage: Storage | None = None) -> ZipStatus:
    storage = storage or pipeline_storage()
    assets = list(listing_assets(listing_identity_id=listing_identity_id))
    return _zip_status(listing_identity_id, _listing_objects(storage, listing_identity_id), assets)


@dataclass
class ListingDrift:
    """What differs between ``media_assets`` and the bucket for one listing."""

    listing_identity_id: int
    assets: int = 0
    objects: int = 0
    raw_missing: list[dict[str, Any]] = field(default_factory=list)
    processed_missing: list[dict[str, Any]] = field(default_factory=list)
    orphan_derivatives: list[str] = field(default_factory=list)
    raw_without_asset: list[str] = field(default_factory=list)
    zip: dict[str, Any] = field(default_factory=dict)

    @property
    def stale_zip(self) -> bool:
        return self.zip.get("state") == ZIP_STALE

    @property
    def missing_zip(self) -> bool:
        return bool(self.zip.get("expected")) and self.zip.get("state") == ZIP_MISSING

    @property
    def has_drift(self) -> bool:
        return bool(
            self.raw_missing
            or self.processed_missing
            or self.orphan_derivatives
            or self.raw_without_asset
            or self.stale_zip
            or self.missing_zip
        )

    def counts(self) -> dict[str, int]:
        return {
            "raw_missing": len(self.raw_missing),
            "processed_missing": len(self.processed_missing),
            "orphan_derivatives": len(self.orphan_derivatives),
            "raw_without_asset": len(self.raw_without_asset),
            "stale_zip": int(self.stale_zip),
            "missing_zip": int(self.missing_zip),
        }

    def summary_line(self) -> str:
        problems = [f"{name}={count}" for name, count in self.counts().items() if count]
        state = ", ".join(problems) if problems else "no drift"
        return f"listing {self.listing_identity_id} ({self.assets} assets, {self.objects} objects): {state}"

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["counts"] = self.counts()
        data["has_drift"] = self.has_drift
        return data


def listing_audit(*, listing_identity_id: int, storage: Storage | None = None) -> ListingDrift:
    """Compare a listing's asset rows with its objects.

    - raw missing: an asset past PENDING_UPLOAD whose raw object is absent (a PENDING_UPLOAD
      asset may legitimately not be uploaded yet);
    - processed missing: a PROCESSED asset without ``s3_key_processed``, or whose processed
      key or metadata output keys point at absent objects;
    - orphan derivatives: objects under ``processed/`` that no asset produced or references
      (the listing ZIP excepted);
    - raw without asset: raw objects no row knows (``import_raw_assets`` adds them);
    - ZIP: stale when older than the newest processed output; missing counts as drift only
      when a finalization of the listing succeeded before.
    """
    storage = storage or pipeline_storage()
    prefix = listing_prefix(listing_identity_id)
    objects = _listing_objects(storage, listing_identity_id)
    assets = list(listing_assets(listing_identity_id=listing_identity_id))
    drift = ListingDrift(listing_identity_id, assets=len(assets), objects=len(objects))
    raw_prefix = f"{prefix}raw/"
    processed_prefix = f"{prefix}processed/"
    zip_key = keys.zip_key(listing_identity_id)

    owned: set[str] = {zip_key}
    referenced_raw: set[str] = set()
    for asset in assets:
        outputs = asset_output_keys(asset)
        owned |= set(outputs.values())
        if asset.s3_key_raw:
            referenced_raw.add(asset.s3_key_raw)
            owned |= derived_keys(asset.s3_key_raw)
            if asset.status != AssetStatus.PENDING_UPLOAD and not _present(
                storage, objects, prefix, asset.s3_key_raw
            ):
                drift.raw_missing.append(
                    {"asset_id": asset.pk, "status": asset.status, "key": asset.s3_key_raw}
                )
        if asset.status != AssetStatus.PROCESSED:
            continue
        if PROCESSED_FIELD not in outputs:
            drift.processed_missing.append(
                {"asset_id": asset.pk, "field": PROCESSED_FIELD, "key": None}
            )
        for name, key in outputs.items():
            if not _present(storage, objects, prefix, key):
                drift.processed_missing.append({"asset_id": asset.pk, "field": name, "key": key})

    drift.orphan_derivatives = sorted(
        key for key in objects if key.startswith(processed_prefix) and key not in owned
    )
    unknown_raw = [
        key
        for key in objects
        if key.startswith(raw_prefix) and not key.endswith("/") and key not in referenced_raw
    ]
    # A raw object may belong to a row of another listing (a key moved by hand): ask once.
    known_elsewhere = raw_keys_known(unknown_raw)
    drift.raw_without_asset = sorted(key for key in unknown_raw if key not in known_elsewhere)

    status = _zip_status(listing_identity_id, objects, assets)
    drift.zip = status.as_json()
    drift.zip["expected"] = listing_has_succeeded_finalization(
        listing_identity_id=listing_identity_id
    )
    return drift


def listing_verify(*, listing_identity_id: int, dry_run: bool = False) -> ItemResult:
    """The audit as an operations item: ``done`` (tagged ``drift`` when something differs).
    Read-only, so ``dry_run`` changes nothing."""
    drift = listing_audit(listing_identity_id=listing_identity_id)
    result = done(drift.summary_line(), **drift.as_json())
    if drift.has_drift:
        result.tags = ("drift",)
    return result


# -- the admin's storage check -----------------------------------------------------------
# Per object, for the job and listing pages: every key the rules or the rows expect, present
# or not, and what else is there. ``listing_audit`` above is the same comparison summed up
# as drift for the operations commands.


@dataclass
class ExpectedObject:
    key: str
    what: str  # "raw", "thumbnail", "small", ..., "poster", "transcode", "zip", "recorded"
    asset_id: int | None
    required: bool  # missing is a problem (the asset is PROCESSED, or the ZIP succeeded)
    present: bool = False
    size: int | None = None


@dataclass
class StorageCheck:
    listing_identity_id: int
    prefix: str
    expected: list[ExpectedObject] = field(default_factory=list)
    unexpected: list[ObjectInfo] = field(default_factory=list)
    listed: int = 0
    truncated: bool = False
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def missing(self) -> list[ExpectedObject]:
        return [obj for obj in self.expected if obj.required and not obj.present]

    @property
    def ok(self) -> bool:
        """Nothing required is missing (absent derivatives of a failed asset are fine)."""
        return self.error is None and not self.missing

    @property
    def present(self) -> int:
        return sum(1 for obj in self.expected if obj.present)

    @property
    def absent_optional(self) -> int:
        return sum(1 for obj in self.expected if not obj.present and not obj.required)

    @property
    def complete(self) -> bool:
        """Every expected object is there: the only state the badge calls "complete"."""
        return self.error is None and self.present == len(self.expected)


def expected_objects(
    *, listing_identity_id: int, assets: Sequence[MediaAsset], zip_expected: bool
) -> tuple[list[ExpectedObject], list[str]]:
    """What should exist for the listing, by the key rules of ``pipeline.keys`` and the keys
    the database recorded. Derivatives are required for PROCESSED assets only (a FAILED asset
    is expected to lack them)."""
    expected: dict[str, ExpectedObject] = {}
    notes: list[str] = []

    def expect(key: Any, what: str, asset_id: int | None, required: bool) -> None:
        if not isinstance(key, str) or not key:
            return
        known = expected.get(key)
        if known is None:
            expected[key] = ExpectedObject(key, what, asset_id, required)
        else:
            known.required = known.required or required

    for asset in assets:
        processed = asset.status == AssetStatus.PROCESSED
        raw = asset.s3_key_raw
        if raw:
            expect(raw, "raw", asset.pk, asset.status != AssetStatus.PENDING_UPLOAD)
        if raw and asset.asset_type not in (AssetType.ZIP, AssetType.THUMBNAIL):
            try:
                video = keys.is_video_type(asset.asset_type)
                for what, key in current_derivative_keys(raw, video=video).items():
                    expect(key, what, asset.pk, processed)
            except PipelineError as exc:
                notes.append(f"asset {asset.pk}: {exc.message}")
        if processed:
            for _, key in asset_links(asset):
                expect(key, "recorded", asset.pk, True)
    if zip_expected:
        expect(keys.zip_key(listing_identity_id), "zip", None, True)
    return list(expected.values()), notes


def storage_check(
    *,
    listing_identity_id: int,
    storage: Storage,
    assets: Sequence[MediaAsset] | None = None,
    zip_expected: bool | None = None,
    limit: int = 10_000,
) -> StorageCheck:
    """What exists under ``{listing}/`` against what should (missing highlighted, extra listed).

    Lists at most ``limit`` objects; keys outside the prefix (legacy raw keys) get one HEAD each.
    """
    prefix = f"{listing_identity_id}/"
    if assets is None:
        assets = list(listing_assets(listing_identity_id=listing_identity_id)[:MAX_ASSETS_CHECKED])
    if zip_expected is None:
        zip_expected = listing_zip_job(listing_identity_id=listing_identity_id) is not None
    expected, notes = expected_objects(
        listing_identity_id=listing_identity_id, assets=assets, zip_expected=zip_expected
    )
    check = StorageCheck(listing_identity_id, prefix, expected, notes=notes)
    by_key = {obj.key: obj for obj in expected}
    try:
        for info in storage.list(prefix):
            check.listed += 1
            if check.listed > limit:
                check.truncated = True
                break
            known = by_key.get(info.key)
            if known is None:
                check.unexpected.append(info)
            else:
                known.present, known.size = True, info.size
        for obj in expected:
            if not obj.key.startswith(prefix):
                try:
                    obj.size, obj.present = storage.head(obj.key).size, True
                except ObjectNotFound:
                    obj.present = False
    except Exception as exc:  # noqa: BLE001 - storage down: say so instead of a 500
        check.error = f"{type(exc).__name__}: {exc}"
    return check


# -- ZIP rebuild ---------------------------------------------------------------------------


def listing_zip_rebuild(
    *, listing_identity_id: int, force: bool = False, dry_run: bool = False
) -> ItemResult:
    """Start a finalization when the listing's ZIP is missing or older than its newest
    processed output (``force``: whatever its state).

    Skipped while a finalization of the listing is PENDING or RUNNING (a re-run never starts
    a second one), and when the listing is not ready (an asset not PROCESSED): finalizing it
    would be refused with 409 by the same rule.
    """
    label = f"listing {listing_identity_id}"
    active = listing_active_finalization(listing_identity_id=listing_identity_id)
    if active is not None:
        return skipped(f"{label}: finalization job #{active.pk} is {active.status}")
    status = listing_zip_status(listing_identity_id=listing_identity_id)
    facts = status.as_json()
    if status.state == ZIP_CURRENT and not force:
        return skipped(f"{label}: ZIP is current", **facts)
    reason = "forced" if status.state == ZIP_CURRENT else f"ZIP {status.state}"
    blockers = listing_finalization_blockers(listing_identity_id=listing_identity_id)
    if blockers:
        shown = "; ".join(
            f"asset #{b['assetId']} {', '.join(b['problems'])}" for b in blockers[:3]
        ) + (f" (+{len(blockers) - 3} more)" if len(blockers) > 3 else "")
        result = skipped(f"{label}: {reason} but not ready: {shown}", blockers=blockers, **facts)
        result.tags = ("not_ready",)
        return result
    if dry_run:
        return done(f"{label}: would start a finalization ({reason})", **facts)
    try:
        job = listing_start_finalization(listing_identity_id=listing_identity_id)
    except ApplicationError as exc:
        return failed(f"{label}: {exc.message}", **facts)
    return done(f"{label}: finalization job #{job.pk} started ({reason})", job_id=job.pk, **facts)
