"""Hostile keys through validation and the thumbnails step, on both storages: each one is
that asset's INVALID_KEY, the good photo of the same job is processed, and nothing but its
four derivatives is written."""

from __future__ import annotations

from typing import Any

import pytest

from media_jobs import sample_media
from media_jobs.pipeline.config import PipelineConfig
from media_jobs.pipeline.keys import IMAGE_SIZES, derivative_key
from media_jobs.pipeline.storage import Storage
from media_jobs.pipeline.storage_local import TEMP_PREFIX, LocalStorage
from media_jobs.pipeline.thumbnails import generate_thumbnails
from media_jobs.pipeline.types import ValidatedAsset
from media_jobs.pipeline.validate import validate_assets

pytestmark = pytest.mark.fault

LISTING = 880
FOLDER = f"{LISTING}/raw/photo/horizontal"
GOOD = f"{FOLDER}/horizontal-01-good.jpg"

# Refused by the key rules every storage shares (docs/contract.md §2, S3's own limits).
EVERY_STORAGE = {
    "nul": f"{FOLDER}/a\x00b.jpg",
    "cr-lf": f"{FOLDER}/line\r\nbreak.jpg",
    "escape": f"{FOLDER}/esc\x1b[31mred.jpg",
    "lone-surrogate": f"{FOLDER}/x\udc80.jpg",
    "over-1024-bytes": f"{FOLDER}/" + "/".join(["d" * 100] * 10) + "/x.jpg",
    "dot-dot": f"{LISTING}/raw/photo/../../../etc/passwd",
    "leading-slash": f"/{FOLDER}/x.jpg",
    "empty-segment": f"{FOLDER}//x.jpg",
    "no-raw-folder": f"{LISTING}/photo/horizontal/x.jpg",
}
# Refused by the local adapter (a file system), accepted by S3.
LOCAL_ONLY = {
    "reserved-temp-name": f"{FOLDER}/{TEMP_PREFIX}abc.jpg",
    "reserved-temp-folder": f"{LISTING}/raw/photo/{TEMP_PREFIX}x/y.jpg",
    "segment-256-bytes": f"{LISTING}/raw/photo/" + "\u00e9" * 128 + "/x.jpg",
    "file-name-251-bytes": f"{FOLDER}/" + "n" * 247 + ".jpg",
    # the raw name fits, its derivative's name ("{stem}.jpg", +4 bytes) would not
    "derivative-name-too-long": f"{FOLDER}/" + "n" * 248,
}


def _validation_input(*keys: str) -> dict[str, Any]:
    return {
        "jobId": 55,
        "listingIdentityId": LISTING,
        "assets": [{"key": key, "type": "PHOTO_HORIZONTAL"} for key in keys],
    }


def _check(storage: Storage, hostile: dict[str, str]) -> None:
    storage.write(GOOD, sample_media.jpeg_bytes(640, 480), content_type="image/jpeg")
    config = PipelineConfig(bucket=storage.bucket)

    validation = validate_assets(
        _validation_input(GOOD, *hostile.values()), storage=storage, config=config
    )

    by_key = {asset["key"]: asset for asset in validation["assets"]}
    assert "error" not in by_key[GOOD]
    for name, key in hostile.items():
        assert by_key[key].get("errorCode") == "INVALID_KEY", (name, by_key[key])
    assert [asset["key"] for asset in validation["imageAssets"]] == [GOOD]

    result = generate_thumbnails(validation, storage=storage, config=config)
    body = result["body"]
    assert body["errors"] == []
    assert sorted(g["key"] for g in body["generatedAssets"]) == sorted(
        derivative_key(GOOD, size) for size in IMAGE_SIZES
    )
    written = {info.key for info in storage.list(f"{LISTING}/")}
    assert written == {GOOD, *(derivative_key(GOOD, size) for size in IMAGE_SIZES)}


def test_hostile_keys_on_local_storage_fail_only_their_asset(local_storage: LocalStorage) -> None:
    """Before: a NUL, a reserved temp name or a segment over 255 bytes raised ValueError in
    validation and failed the whole job."""
    _check(local_storage, {**EVERY_STORAGE, **LOCAL_ONLY})


def test_hostile_keys_on_s3_fail_only_their_asset(s3_storage: Storage) -> None:
    """Before: a lone surrogate raised UnicodeEncodeError inside botocore (the whole job)."""
    _check(s3_storage, EVERY_STORAGE)


@pytest.mark.parametrize("name", ["lone-surrogate", "over-1024-bytes"])
def test_thumbnails_report_a_key_the_storage_refuses_on_that_photo(
    storage: Storage, name: str
) -> None:
    """A validation result that lists such a key anyway (another engine's, an old run's):
    the photo fails with INVALID_KEY, the others are made."""
    storage.write(GOOD, sample_media.jpeg_bytes(320, 240), content_type="image/jpeg")
    hostile = EVERY_STORAGE[name]
    assets = [
        ValidatedAsset(key=key, type="PHOTO_HORIZONTAL", sourceKey=key, etag="")
        for key in (GOOD, hostile)
    ]
    validation: Any = {"jobId": 1, "listingIdentityId": LISTING, "imageAssets": assets}

    body = generate_thumbnails(validation, storage=storage, config=PipelineConfig())["body"]

    assert [(e["sourceKey"], e["errorCode"]) for e in body["errors"]] == [(hostile, "INVALID_KEY")]
    assert {g["sourceKey"] for g in body["generatedAssets"]} == {GOOD}
