"""services.raw_import called directly: the sequence a raw key's new row gets, why a key cannot
become a row, and the retry when a concurrent import takes the chosen sequence first."""

from __future__ import annotations

import pytest

from media_jobs.models import AssetStatus, AssetType, MediaAsset
from media_jobs.services import raw_import
from media_jobs.services.raw_import import raw_asset_import
from tests.factories import AssetFactory

pytestmark = pytest.mark.django_db

LISTING = 7631
OTHER = 7632


def test_the_next_free_sequence_counts_only_the_listings_own_rows() -> None:
    """Sequences are per listing and type: higher ones of another listing, or of another
    type of the same listing, do not move the next free one."""
    AssetFactory(listing_identity_id=LISTING, asset_type=AssetType.PHOTO_HORIZONTAL, sequence=1)
    AssetFactory(listing_identity_id=LISTING, asset_type=AssetType.PHOTO_VERTICAL, sequence=7)
    AssetFactory(listing_identity_id=OTHER, asset_type=AssetType.PHOTO_HORIZONTAL, sequence=9)
    raw_key = f"{LISTING}/raw/photo/horizontal/abc123-kitchen.jpg"

    result = raw_asset_import(raw_key=raw_key)

    row = MediaAsset.objects.get(s3_key_raw=raw_key)
    assert (row.listing_identity_id, row.asset_type, row.sequence, row.status) == (
        LISTING,
        AssetType.PHOTO_HORIZONTAL,
        2,
        AssetStatus.PENDING_UPLOAD,
    )
    assert result.outcome == "done"
    assert result.detail == (
        f"{raw_key}: PHOTO_HORIZONTAL #2 of listing {LISTING}: created asset #{row.pk} "
        "(non-numeric reference, next free sequence 2)"
    )


def test_a_numeric_reference_keeps_its_sequence_when_only_other_listings_or_types_use_it() -> None:
    """ "Taken" means taken by the same listing AND type: sequence 3 of another listing, or
    of another type of this listing, leaves the reference's own number free."""
    AssetFactory(listing_identity_id=OTHER, asset_type=AssetType.PHOTO_HORIZONTAL, sequence=3)
    AssetFactory(listing_identity_id=LISTING, asset_type=AssetType.PHOTO_VERTICAL, sequence=3)
    raw_key = f"{LISTING}/raw/photo/horizontal/horizontal-03-IMG_2705.jpg"

    result = raw_asset_import(raw_key=raw_key)

    row = MediaAsset.objects.get(s3_key_raw=raw_key)
    assert (row.asset_type, row.sequence) == (AssetType.PHOTO_HORIZONTAL, 3)
    assert result.detail == (
        f"{raw_key}: PHOTO_HORIZONTAL #3 of listing {LISTING}: created asset #{row.pk} "
        "(sequence 3 from reference horizontal-03)"
    )


def test_a_key_that_already_has_a_row_is_skipped_naming_it() -> None:
    raw_key = f"{LISTING}/raw/photo/horizontal/horizontal-01-IMG_1.jpg"
    AssetFactory(listing_identity_id=LISTING, sequence=1, s3_key_raw=raw_key)

    result = raw_asset_import(raw_key=raw_key)

    assert (result.outcome, result.detail, result.data) == (
        "skipped",
        f"{raw_key}: already has an asset row",
        {},
    )
    assert MediaAsset.objects.count() == 1


@pytest.mark.parametrize(
    "raw_key, detail",
    [
        (
            f"{LISTING}/draw/photo/horizontal/a.jpg",
            f"invalid raw key '{LISTING}/draw/photo/horizontal/a.jpg': no 'raw/' folder",
        ),
        (
            # a listing folder must be digits only, whatever it ends with
            "12X/raw/photo/horizontal/horizontal-01-a.jpg",
            "'12X/raw/photo/horizontal/horizontal-01-a.jpg' is not under a listing folder"
            " ('<listing id>/raw/...')",
        ),
        (
            f"{LISTING}/raw/misc/x.jpg",
            f"segment 'misc' of '{LISTING}/raw/misc/x.jpg' is not an asset type; expected one of"
            " photo/horizontal, photo/vertical, project/doc, project/render, video/horizontal,"
            " video/vertical",
        ),
    ],
)
def test_a_key_that_cannot_become_a_row_fails_saying_why(raw_key: str, detail: str) -> None:
    result = raw_asset_import(raw_key=raw_key)

    assert (result.outcome, result.detail, result.data) == ("failed", detail, {})
    assert not MediaAsset.objects.exists()


def test_a_raw_key_of_exactly_the_columns_length_is_imported() -> None:
    """The raw key column holds 255 characters: 255 fits, 256 does not."""
    head = f"{LISTING}/raw/photo/horizontal/horizontal-01-"
    fits = head + "x" * (255 - len(head) - 4) + ".jpg"
    too_long = head + "x" * (256 - len(head) - 4) + ".jpg"
    assert (len(fits), len(too_long)) == (255, 256)

    assert raw_asset_import(raw_key=fits).outcome == "done"
    refused = raw_asset_import(raw_key=too_long)

    assert MediaAsset.objects.get().s3_key_raw == fits
    assert (refused.outcome, refused.detail) == (
        "failed",
        f"{too_long!r} is longer than 255 characters",
    )


@pytest.fixture
def concurrent_import(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """Another import of the listing commits between this one choosing a sequence and
    inserting its row (the race the retry loop is for). Each entry of the returned list,
    taken in turn per attempt, is the raw key the other import inserts with the chosen
    sequence (None: a row of another key); when the list is empty, nobody interferes."""
    others: list[str | None] = []
    choose = raw_import._choose_sequence

    def choose_then_lose_the_race(facts: raw_import.RawKeyFacts) -> tuple[int, str]:
        sequence, how = choose(facts)
        if others:
            other_key = others.pop(0)
            AssetFactory(
                listing_identity_id=facts.listing_identity_id,
                asset_type=facts.asset_type,
                sequence=sequence,
                s3_key_raw=other_key or f"{LISTING}/raw/photo/horizontal/other-{sequence}-IMG.jpg",
            )
        return sequence, how

    monkeypatch.setattr(raw_import, "_choose_sequence", choose_then_lose_the_race)
    return others


def test_a_sequence_taken_meanwhile_is_chosen_again(concurrent_import: list[str | None]) -> None:
    """The unique (listing, type, sequence) refuses the insert; the import looks again and
    takes the next free sequence."""
    concurrent_import.append(None)
    raw_key = f"{LISTING}/raw/photo/horizontal/horizontal-04-IMG_4.jpg"

    result = raw_asset_import(raw_key=raw_key)

    row = MediaAsset.objects.get(s3_key_raw=raw_key)
    assert row.sequence == 5
    assert (result.outcome, result.detail) == (
        "done",
        f"{raw_key}: PHOTO_HORIZONTAL #5 of listing {LISTING}: created asset #{row.pk} "
        "(sequence 4 taken, next free 5)",
    )


def test_a_key_imported_meanwhile_by_another_run_is_skipped(
    concurrent_import: list[str | None],
) -> None:
    raw_key = f"{LISTING}/raw/photo/horizontal/horizontal-04-IMG_4.jpg"
    concurrent_import.append(raw_key)

    result = raw_asset_import(raw_key=raw_key)

    assert (result.outcome, result.detail) == ("skipped", f"{raw_key}: already has an asset row")
    assert MediaAsset.objects.filter(s3_key_raw=raw_key).count() == 1


def test_losing_every_race_fails_after_five_attempts(concurrent_import: list[str | None]) -> None:
    concurrent_import.extend([None] * 5)
    raw_key = f"{LISTING}/raw/photo/horizontal/horizontal-01-IMG_1.jpg"

    result = raw_asset_import(raw_key=raw_key)

    assert (result.outcome, result.detail, result.data) == (
        "failed",
        f"{raw_key}: no free sequence after 5 attempts (concurrent imports?)",
        {},
    )
    assert not MediaAsset.objects.filter(s3_key_raw=raw_key).exists()
    assert sorted(MediaAsset.objects.values_list("sequence", flat=True)) == [1, 2, 3, 4, 5]
