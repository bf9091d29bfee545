"""The backend's download-URL rule (docs/contract.md §2): for every asset a run reports
PROCESSED, every resolution the TOQ backend may ask resolves - through its own
``resolveProcessedKey`` (tests/support/go_storage.py) - to an object that exists in the S3
test server, with the right Content-Type. On both engines, for the key shapes that matter:
JPEG, PNG and HEIC photos, a date folder, an ``.mp4`` and a ``.MOV`` video."""

from __future__ import annotations

from typing import Any

import pytest

from media_jobs import sample_media
from media_jobs.models import AssetStatus, MediaAsset
from media_jobs.services.dispatch import listing_start_processing
from media_jobs.storage import pipeline_storage
from tests.factories import AssetFactory
from tests.fixtures.s3server import MotoServer
from tests.support.asl import StateMachine
from tests.support.callback_receiver import CallbackReceiver
from tests.support.go_callback import decode_callback
from tests.support.go_storage import resolutions_for, resolve_processed_key
from tests.support.state_machines import PROCESSING, RESOURCES, set_lambda_environment


def media(listing: int) -> list[tuple[str, str, bytes, str]]:
    """(asset type, raw key, bytes, content type) of a listing with every key shape."""
    mp4 = sample_media.mp4_bytes(1.0, 320, 240)
    return [
        ("PHOTO_HORIZONTAL", f"{listing}/raw/photo/horizontal/horizontal-01-IMG_1.jpg",
         sample_media.jpeg_bytes(640, 480, seed=1), "image/jpeg"),
        ("PHOTO_VERTICAL", f"{listing}/raw/2024-05-06/photo/vertical/vertical-01-scan 2.PNG",
         sample_media.png_alpha_bytes(300, 500), "image/png"),
        ("PHOTO_VERTICAL", f"{listing}/raw/photo/vertical/vertical-02-phone.heic",
         sample_media.heic_bytes(240, 320), "image/heic"),
        ("VIDEO_HORIZONTAL", f"{listing}/raw/video/horizontal/horizontal-01-tour.mp4",
         mp4, "video/mp4"),
        ("VIDEO_VERTICAL", f"{listing}/raw/video/vertical/vertical-01-walk.final.MOV",
         mp4, "video/quicktime"),
    ]  # fmt: skip


def expected_content_type(asset_type: str, resolution: str) -> str:
    return "video/mp4" if resolution == "original" else "image/jpeg"


def assert_backend_urls_resolve(
    moto_server: MotoServer,
    bucket: str,
    listing: int,
    processed: list[tuple[str, str, str]],
) -> list[str]:
    """``processed``: (asset type, raw key, s3_key_processed) of the PROCESSED assets.
    Returns every key checked."""
    s3 = moto_server.client("s3")
    checked = []
    for asset_type, raw_key, processed_key in processed:
        assert processed_key, raw_key
        for resolution in resolutions_for(asset_type):
            key = resolve_processed_key(
                listing_identity_id=listing,
                asset_type=asset_type,
                resolution=resolution,
                s3_key_processed=processed_key,
                s3_key_raw=raw_key,
            )
            try:
                head = s3.head_object(Bucket=bucket, Key=key)
            except s3.exceptions.ClientError as exc:
                raise AssertionError(f"{raw_key}: {resolution} -> {key} is missing") from exc
            assert head["ContentType"] == expected_content_type(asset_type, resolution), key
            assert head["ContentLength"] > 0, key
            checked.append(key)
    return checked


@pytest.mark.usefixtures("eager_engine")
def test_celery_engine_outputs_are_where_the_backend_looks(
    moto_server: MotoServer, s3_bucket: str
) -> None:
    listing = 6201
    storage = pipeline_storage()
    for number, (asset_type, raw_key, data, content_type) in enumerate(media(listing), 1):
        storage.write(raw_key, data, content_type=content_type)
        AssetFactory(
            listing_identity_id=listing,
            asset_type=asset_type,
            sequence=number,
            status=AssetStatus.PENDING_UPLOAD,
            s3_key_raw=raw_key,
        )
    listing_start_processing(listing_identity_id=listing)
    assets = list(MediaAsset.objects.filter(listing_identity_id=listing))
    assert {a.status for a in assets} == {AssetStatus.PROCESSED}, [a.metadata for a in assets]
    checked = assert_backend_urls_resolve(
        moto_server,
        s3_bucket,
        listing,
        [(a.asset_type, a.s3_key_raw, a.s3_key_processed) for a in assets],
    )
    assert len(checked) == 3 * 4 + 2 * 2
    mov = next(a for a in assets if a.s3_key_raw.endswith(".MOV"))
    # the backend asks for thumbnail/<transcode name>: the poster is there, as a JPEG
    assert mov.metadata["thumbnailKey"].endswith("/thumbnail/vertical-01-walk.final.mp4")
    assert mov.metadata["thumbnail_video_vertical"] == mov.metadata["thumbnailKey"]


def test_state_machine_outputs_are_where_the_backend_looks(
    moto_server: MotoServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = CallbackReceiver(backend_rules=True).start()
    try:
        set_lambda_environment(
            monkeypatch,
            endpoint_url=moto_server.endpoint_url,
            bucket=s3_bucket,
            callback_url=receiver.url,
            callback_secret="download-url-test",
        )
        listing = 6202
        s3 = moto_server.client("s3")
        assets: list[dict[str, Any]] = []
        for asset_type, raw_key, data, content_type in media(listing):
            s3.put_object(Bucket=s3_bucket, Key=raw_key, Body=data, ContentType=content_type)
            assets.append({"key": raw_key, "type": asset_type})
        execution = StateMachine(PROCESSING, RESOURCES, name="download-urls").start_execution(
            {"jobId": 62, "listingIdentityId": listing, "assets": assets}
        )
        assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
        assert receiver.rejected == []
        # What the backend stores: s3_key_processed from each PROCESSED result.
        bound = decode_callback(receiver.received[-1].body)
        type_of = {a["key"]: a["type"] for a in assets}
        processed = [
            (type_of[r.raw_key], r.raw_key, r.processed_key)
            for r in bound.results
            if r.status == "PROCESSED"
        ]
        assert len(processed) == len(assets)
        checked = assert_backend_urls_resolve(moto_server, s3_bucket, listing, processed)
        assert len(checked) == 3 * 4 + 2 * 2
    finally:
        receiver.stop()
