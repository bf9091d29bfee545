"""import_raw_assets against MariaDB and the moto S3 server."""

from __future__ import annotations

import pytest

from media_jobs import sample_media
from media_jobs.models import AssetStatus, AssetType, MediaAsset
from media_jobs.pipeline import keys
from media_jobs.pipeline.storage import Storage
from tests.factories import AssetFactory
from tests.fixtures.s3server import MotoServer

from .conftest import put_photo, rows_snapshot, run_command

pytestmark = pytest.mark.django_db

LISTING = 7101
OTHER = 7102


def upload_listing(storage: Storage) -> dict[str, str]:
    """Raw uploads of every shape import_raw_assets meets, by name."""
    uploads = {
        "numeric": f"{LISTING}/raw/photo/horizontal/horizontal-03-IMG_2705.jpg",
        "dated": f"{LISTING}/raw/2023-11-02/photo/vertical/vertical-02-stairs.jpg",
        "client_ref": f"{LISTING}/raw/photo/horizontal/abc123-kitchen.jpg",
        "video": f"{LISTING}/raw/video/horizontal/horizontal-01-tour.mp4",
        "doc": f"{LISTING}/raw/project/doc/doc-01-plan.jpg",
        "unknown_segment": f"{LISTING}/raw/misc/horizontal-04-x.jpg",
        "known": f"{LISTING}/raw/photo/horizontal/horizontal-01-known.jpg",
    }
    for name, key in uploads.items():
        if name == "video":
            storage.write(key, sample_media.mp4_bytes(0.5, 160, 120), content_type="video/mp4")
        else:
            put_photo(storage, key, size=(64, 48))
    # a derivative that must be ignored by the scan
    storage.write(keys.derivative_key(uploads["known"], "small"), b"jpeg")
    return uploads


def test_creates_missing_rows_from_the_keys_and_is_idempotent(storage: Storage) -> None:
    uploads = upload_listing(storage)
    AssetFactory(
        listing_identity_id=LISTING,
        asset_type=AssetType.PHOTO_HORIZONTAL,
        sequence=1,
        s3_key_raw=uploads["known"],
        status=AssetStatus.PROCESSED,
    )

    first = run_command("import_raw_assets", "--listing", str(LISTING), "--json")

    assert first.code == 1  # the unknown segment cannot become a row
    assert (first.json["done"], first.json["skipped"], first.json["failed"]) == (5, 1, 1)
    [failure] = first.items("failed")
    assert failure["ref"] == uploads["unknown_segment"]
    assert "'misc'" in failure["detail"] and "not an asset type" in failure["detail"]
    rows = {a.s3_key_raw: a for a in MediaAsset.objects.filter(listing_identity_id=LISTING)}
    numeric = rows[uploads["numeric"]]
    assert (numeric.asset_type, numeric.sequence, numeric.status) == (
        AssetType.PHOTO_HORIZONTAL,
        3,
        AssetStatus.PENDING_UPLOAD,
    )
    assert numeric.metadata == {"filename": "IMG_2705.jpg", "clientId": "horizontal-03"}
    assert (rows[uploads["dated"]].asset_type, rows[uploads["dated"]].sequence) == (
        AssetType.PHOTO_VERTICAL,
        2,
    )
    # a reference that is not <word>-<number>: the next free sequence when it is imported
    # (keys come in listing order: abc123-... before horizontal-03-..., after the known 1)
    client = rows[uploads["client_ref"]]
    assert (client.asset_type, client.sequence) == (AssetType.PHOTO_HORIZONTAL, 2)
    assert client.metadata == {"filename": "abc123-kitchen.jpg"}
    assert (rows[uploads["video"]].asset_type, rows[uploads["video"]].sequence) == (
        AssetType.VIDEO_HORIZONTAL,
        1,
    )
    assert rows[uploads["doc"]].asset_type == AssetType.PROJECT_DOC
    assert uploads["unknown_segment"] not in rows

    before = rows_snapshot()
    second = run_command("import_raw_assets", "--listing", str(LISTING), "--json")

    assert (second.json["done"], second.json["skipped"], second.json["failed"]) == (0, 6, 1)
    assert rows_snapshot() == before


def test_a_taken_sequence_gets_the_next_free_one(storage: Storage) -> None:
    key = f"{LISTING}/raw/photo/vertical/vertical-02-new.jpg"
    put_photo(storage, key, size=(64, 48))
    AssetFactory(
        listing_identity_id=LISTING,
        asset_type=AssetType.PHOTO_VERTICAL,
        sequence=2,
        s3_key_raw=f"{LISTING}/raw/photo/vertical/vertical-02-old.jpg",
    )

    run = run_command("import_raw_assets", "--listing", str(LISTING), "-v", "2")

    assert run.code == 0
    asset = MediaAsset.objects.get(s3_key_raw=key)
    assert asset.sequence == 3
    assert "sequence 2 taken, next free 3" in run.stdout
    assert "import_raw_assets: selected=1 done=1 skipped=0 failed=0" in run.stdout


def test_dry_run_creates_nothing(storage: Storage) -> None:
    upload_listing(storage)
    before = rows_snapshot()

    run = run_command("import_raw_assets", "--listing", str(LISTING), "--dry-run")

    assert rows_snapshot() == before
    assert f"would {LISTING}/raw/photo/horizontal/horizontal-03-IMG_2705.jpg" in run.stdout
    assert "would create" in run.stdout
    assert "(dry run: nothing changed)" in run.stdout


def test_all_scans_the_whole_bucket(storage: Storage) -> None:
    first = f"{LISTING}/raw/photo/horizontal/horizontal-01-a.jpg"
    second = f"{OTHER}/raw/photo/vertical/vertical-01-b.jpg"
    for key in (first, second):
        put_photo(storage, key, size=(64, 48))
    storage.write(f"{OTHER}/processed/photo/vertical/small/vertical-01-b.jpg", b"x")
    storage.write("notes/raw-readme.txt", b"not a raw upload")

    run = run_command("import_raw_assets", "--all", "--json", "--batch-size", "1")

    assert run.code == 0
    assert sorted(i["ref"] for i in run.json["items"]) == [first, second]
    assert MediaAsset.objects.filter(s3_key_raw__in=[first, second]).count() == 2


def test_limit_bounds_the_rows_created(storage: Storage) -> None:
    for sequence in range(1, 4):
        put_photo(
            storage, f"{LISTING}/raw/photo/horizontal/horizontal-0{sequence}-p.jpg", size=(32, 24)
        )

    run = run_command("import_raw_assets", "--listing", str(LISTING), "--limit", "2", "--json")

    assert run.json["done"] == 2 and run.json["limit_reached"] is True
    assert MediaAsset.objects.filter(listing_identity_id=LISTING).count() == 2
    rest = run_command("import_raw_assets", "--listing", str(LISTING), "--limit", "2", "--json")
    assert (rest.json["done"], rest.json["skipped"]) == (1, 2)


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "give either --listing"),
        (("--all", "--listing", "5"), "give either --listing"),
        (("--listing", "x7"), "'x7' is not a listing id"),
        (("--listing", "0"), "'0' is not a listing id"),
        (("--all", "--batch-size", "0"), "must be at least 1"),
    ],
)
def test_bad_arguments_exit_2(storage: Storage, args: tuple[str, ...], message: str) -> None:
    run = run_command("import_raw_assets", *args)

    assert run.code == 2
    assert message in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_a_free_numeric_sequence_is_kept_beside_other_rows_of_the_type(storage: Storage) -> None:
    # sequence 1 is used by another row of the same listing and type; 5 is not
    AssetFactory(
        listing_identity_id=LISTING,
        asset_type=AssetType.PHOTO_HORIZONTAL,
        sequence=1,
        s3_key_raw=f"{LISTING}/raw/photo/horizontal/horizontal-01-old.jpg",
    )
    key = f"{LISTING}/raw/photo/horizontal/horizontal-05-new.jpg"
    put_photo(storage, key, size=(32, 24))

    run = run_command("import_raw_assets", "--listing", str(LISTING), "-v", "2")

    assert run.code == 0
    assert MediaAsset.objects.get(s3_key_raw=key).sequence == 5
    assert "sequence 5 from reference horizontal-05" in run.stdout


def test_a_client_reference_in_an_empty_type_starts_at_sequence_1(storage: Storage) -> None:
    # another type of the listing has rows; this type has none yet
    AssetFactory(
        listing_identity_id=LISTING,
        asset_type=AssetType.PHOTO_HORIZONTAL,
        sequence=4,
        s3_key_raw=f"{LISTING}/raw/photo/horizontal/horizontal-04-old.jpg",
    )
    key = f"{LISTING}/raw/photo/vertical/abc123-hall.jpg"
    put_photo(storage, key, size=(24, 32))

    run = run_command("import_raw_assets", "--listing", str(LISTING), "--json")

    assert run.code == 0
    asset = MediaAsset.objects.get(s3_key_raw=key)
    assert (asset.asset_type, asset.sequence) == (AssetType.PHOTO_VERTICAL, 1)
    [item] = run.items("done")
    assert item["ref"] == key
    assert item["data"] == {"asset_id": asset.pk, "asset_type": "PHOTO_VERTICAL", "sequence": 1}


def test_dry_run_json_says_the_type_and_sequence_it_would_use(storage: Storage) -> None:
    key = f"{LISTING}/raw/video/vertical/vertical-02-walk.mp4"
    storage.write(key, sample_media.mp4_bytes(0.5, 120, 160), content_type="video/mp4")

    run = run_command("import_raw_assets", "--listing", str(LISTING), "--dry-run", "--json")

    assert not MediaAsset.objects.filter(s3_key_raw=key).exists()
    [item] = run.items("done")
    assert item["data"] == {"asset_type": "VIDEO_VERTICAL", "sequence": 2}


def test_keys_that_cannot_become_rows_fail_with_the_reason(storage: Storage) -> None:
    # S3 keeps keys up to 1024 bytes; the raw key column holds 255 characters
    too_long = f"{LISTING}/raw/photo/horizontal/horizontal-01-{'x' * 220}.jpg"
    not_a_listing = "uploads/raw/photo/horizontal/horizontal-01-a.jpg"
    for key in (too_long, not_a_listing):
        put_photo(storage, key, size=(32, 24))

    run = run_command("import_raw_assets", "--all", "--json")

    assert run.code == 1
    assert (run.json["done"], run.json["failed"]) == (0, 2)
    details = {i["ref"]: i["detail"] for i in run.items("failed")}
    assert details[too_long].endswith("is longer than 255 characters")
    assert details[not_a_listing] == (
        f"{not_a_listing!r} is not under a listing folder ('<listing id>/raw/...')"
    )
    assert not MediaAsset.objects.filter(s3_key_raw__in=[too_long, not_a_listing]).exists()


def test_folder_markers_are_not_raw_objects(
    storage: Storage, moto_server: MotoServer, s3_bucket: str
) -> None:
    # what the S3 console's "Create folder" leaves: an empty object whose key ends in '/'
    s3 = moto_server.client("s3")
    for folder in (f"{LISTING}/raw/", f"{LISTING}/raw/photo/horizontal/"):
        s3.put_object(Bucket=s3_bucket, Key=folder, Body=b"")
    key = f"{LISTING}/raw/photo/horizontal/horizontal-01-a.jpg"
    put_photo(storage, key, size=(32, 24))

    for selection in (("--listing", str(LISTING)), ("--all",)):
        MediaAsset.objects.filter(s3_key_raw=key).delete()
        run = run_command("import_raw_assets", *selection, "--json")

        assert run.code == 0, run.stdout
        assert [(i["ref"], i["outcome"]) for i in run.json["items"]] == [(key, "done")]
