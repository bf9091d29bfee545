"""Rows for raw uploads that never reached the database (``import_raw_assets``).

A raw key says everything a row needs (docs/contract.md §2):
``{listingIdentityId}/raw/[YYYY-MM-DD/]{segment}/{reference}-{filename}``. The asset type is
the segment read backwards through ``keys.SEGMENT_BY_TYPE``; the sequence is the number of
a numeric reference (``horizontal-03`` -> 3). A reference that is not ``<word>-<number>``
(a client's own id), or a number another asset of the same listing and type already uses,
gets the next free sequence of that listing and type instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Max

from ..models import AssetStatus, MediaAsset
from ..pipeline import keys
from ..pipeline.errors import PipelineError
from ..pipeline.storage import Storage
from ..selectors.operations import listing_prefix
from .backfill import ItemResult, done, failed, skipped

TYPE_BY_SEGMENT: dict[str, str] = {segment: kind for kind, segment in keys.SEGMENT_BY_TYPE.items()}
# ``horizontal-03-IMG_2705.jpg``: reference ``horizontal-03`` (sequence 3), file ``IMG_2705.jpg``
NUMERIC_REFERENCE = re.compile(r"^(?P<reference>[A-Za-z]+-(?P<sequence>\d{1,9}))-(?P<filename>.+)$")
RAW_KEY_MAX_LENGTH = MediaAsset._meta.get_field("s3_key_raw").max_length or 255
# Concurrent imports of one listing may race for the same free sequence; try again this often.
SEQUENCE_ATTEMPTS = 5


@dataclass(frozen=True)
class RawKeyFacts:
    listing_identity_id: int
    asset_type: str
    reference: str | None  # None when the key's reference is not <word>-<number>
    sequence: int | None
    filename: str


class RawKeyError(ValueError):
    """A raw key that cannot become an asset row; the message says why."""


def raw_key_facts(raw_key: str) -> RawKeyFacts:
    """Listing, type, reference/sequence and filename read from a raw key."""
    try:
        parts = keys.split_raw_key(raw_key)
    except PipelineError as exc:
        raise RawKeyError(exc.message) from None
    listing = parts.prefix.rstrip("/")
    if not listing.isdigit() or "/" in listing:
        raise RawKeyError(f"{raw_key!r} is not under a listing folder ('<listing id>/raw/...')")
    asset_type = TYPE_BY_SEGMENT.get(parts.segment)
    if asset_type is None:
        raise RawKeyError(
            f"segment {parts.segment!r} of {raw_key!r} is not an asset type; expected one of "
            + ", ".join(sorted(TYPE_BY_SEGMENT))
        )
    if len(raw_key) > RAW_KEY_MAX_LENGTH:
        raise RawKeyError(f"{raw_key!r} is longer than {RAW_KEY_MAX_LENGTH} characters")
    match = NUMERIC_REFERENCE.match(parts.filename)
    if match:
        return RawKeyFacts(
            listing_identity_id=int(listing),
            asset_type=asset_type,
            reference=match["reference"],
            sequence=int(match["sequence"]),
            filename=match["filename"],
        )
    return RawKeyFacts(int(listing), asset_type, None, None, parts.filename)


def _next_free_sequence(listing_identity_id: int, asset_type: str) -> int:
    top = MediaAsset.objects.filter(
        listing_identity_id=listing_identity_id, asset_type=asset_type
    ).aggregate(top=Max("sequence"))["top"]
    return (top or 0) + 1


def _sequence_taken(listing_identity_id: int, asset_type: str, sequence: int) -> bool:
    return MediaAsset.objects.filter(
        listing_identity_id=listing_identity_id, asset_type=asset_type, sequence=sequence
    ).exists()


def _choose_sequence(facts: RawKeyFacts) -> tuple[int, str]:
    """(sequence, how it was chosen)."""
    if facts.sequence is not None and not _sequence_taken(
        facts.listing_identity_id, facts.asset_type, facts.sequence
    ):
        return facts.sequence, f"sequence {facts.sequence} from reference {facts.reference}"
    sequence = _next_free_sequence(facts.listing_identity_id, facts.asset_type)
    if facts.sequence is not None:
        return sequence, f"sequence {facts.sequence} taken, next free {sequence}"
    return sequence, f"non-numeric reference, next free sequence {sequence}"


def raw_asset_import(*, raw_key: str, dry_run: bool = False) -> ItemResult:
    """Create the PENDING_UPLOAD row of one raw object unless a row has this raw key.

    PENDING_UPLOAD is what an upload that the backend never recorded would be: the next
    ``uploads/process`` call of the listing processes it like any other.
    """
    if MediaAsset.objects.filter(s3_key_raw=raw_key).exists():
        return skipped(f"{raw_key}: already has an asset row")
    try:
        facts = raw_key_facts(raw_key)
    except RawKeyError as exc:
        return failed(str(exc))
    for _attempt in range(SEQUENCE_ATTEMPTS):
        sequence, how = _choose_sequence(facts)
        label = f"{raw_key}: {facts.asset_type} #{sequence} of listing {facts.listing_identity_id}"
        if dry_run:
            return done(
                f"{label}: would create ({how})", asset_type=facts.asset_type, sequence=sequence
            )
        try:
            asset = _create_row(facts, raw_key, sequence)
        except IntegrityError:
            # Another import took the sequence (or the key) meanwhile: look again.
            if MediaAsset.objects.filter(s3_key_raw=raw_key).exists():
                return skipped(f"{raw_key}: already has an asset row")
            continue
        return done(
            f"{label}: created asset #{asset.pk} ({how})",
            asset_id=asset.pk,
            asset_type=facts.asset_type,
            sequence=sequence,
        )
    return failed(
        f"{raw_key}: no free sequence after {SEQUENCE_ATTEMPTS} attempts (concurrent imports?)"
    )


@transaction.atomic
def _create_row(facts: RawKeyFacts, raw_key: str, sequence: int) -> MediaAsset:
    metadata = {"filename": facts.filename}
    if facts.reference:
        metadata["clientId"] = facts.reference
    asset = MediaAsset(
        listing_identity_id=facts.listing_identity_id,
        asset_type=facts.asset_type,
        sequence=sequence,
        status=AssetStatus.PENDING_UPLOAD,
        s3_key_raw=raw_key,
        title=facts.filename[:255],
        metadata=metadata,
    )
    asset.full_clean(validate_unique=False, validate_constraints=False)
    asset.save()
    return asset


RAW_FOLDER = "raw"


def is_raw_key(key: str) -> bool:
    """Cheap pre-filter of a bucket listing: has a whole ``raw`` folder after the listing."""
    return f"/{RAW_FOLDER}/" in f"/{key}" and not key.endswith("/")


def raw_keys_in_storage(
    *, storage: Storage, listing_ids: Iterable[int] | None = None
) -> Iterator[str]:
    """Raw object keys: under ``{listing}/raw/`` of each listing, or the whole bucket.

    A whole-bucket scan lists every object once (derivatives included) and keeps the raw ones.
    """
    if listing_ids:
        for listing_identity_id in listing_ids:
            prefix = f"{listing_prefix(listing_identity_id)}{RAW_FOLDER}/"
            for info in storage.list(prefix):
                if not info.key.endswith("/"):
                    yield info.key
        return
    for info in storage.list(""):
        if is_raw_key(info.key):
            yield info.key
