"""Seed a demo listing for ``make run``: generated photos (several EXIF orientations) and one
short video in storage, their ``media_assets`` rows, and a processing job. Idempotent."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from media_jobs import sample_media
from media_jobs.management.base import TranslatedCommand
from media_jobs.models import AssetType, MediaAsset, MediaProcessingJob
from media_jobs.pipeline import keys
from media_jobs.services.dispatch import listing_start_processing
from media_jobs.storage import pipeline_storage

DEMO_LISTING_ID = 900001
# (asset type, sequence, filename, orientation) - orientations 1, 3, 6 and 8 show rotation.
DEMO_PHOTOS = [
    (AssetType.PHOTO_HORIZONTAL, 1, "living-room.jpg", 1),
    (AssetType.PHOTO_HORIZONTAL, 2, "kitchen.jpg", 3),
    (AssetType.PHOTO_VERTICAL, 1, "stairs.jpg", 6),
    (AssetType.PHOTO_VERTICAL, 2, "balcony.jpg", 8),
]
DEMO_VIDEO = (AssetType.VIDEO_HORIZONTAL, 1, "tour.mp4")


class Command(TranslatedCommand):
    help_text = _("Seed the demo listing (photos + one video) and start its processing job.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--listing", type=int, default=DEMO_LISTING_ID)

    def handle(self, *args: Any, listing: int, **options: Any) -> None:
        storage = pipeline_storage()
        created = 0
        items: list[tuple[str, int, str, bytes | None, int]] = [
            (t, seq, name, None, orientation) for t, seq, name, orientation in DEMO_PHOTOS
        ]
        items.append((DEMO_VIDEO[0], DEMO_VIDEO[1], DEMO_VIDEO[2], None, 0))
        for asset_type, sequence, filename, _title, orientation in items:
            kind = "vertical" if asset_type.endswith("VERTICAL") else "horizontal"
            reference = f"{kind}-{sequence:02d}"
            raw_key = keys.raw_key(listing, asset_type, reference, filename)
            asset, was_created = MediaAsset.objects.get_or_create(
                listing_identity_id=listing,
                asset_type=asset_type,
                sequence=sequence,
                defaults={
                    "s3_key_raw": raw_key,
                    "title": filename,
                    "metadata": {"filename": filename, "clientId": reference},
                },
            )
            created += was_created
            try:
                storage.head(asset.s3_key_raw or raw_key)
            except Exception:  # noqa: BLE001 - absent (or unreadable): write it again
                if asset_type.startswith("VIDEO"):
                    data = sample_media.mp4_bytes(3.0, 640, 360)
                    content_type = "video/mp4"
                else:
                    w, h = (1600, 1200) if kind == "horizontal" else (1200, 1600)
                    data = sample_media.jpeg_bytes(w, h, orientation=orientation, seed=sequence)
                    content_type = "image/jpeg"
                storage.write(asset.s3_key_raw or raw_key, data, content_type=content_type)
        self.stdout.write(
            gettext("demo listing %(listing)s: %(created)s asset rows created, media in storage")
            % {"listing": listing, "created": created}
        )
        if MediaProcessingJob.objects.filter(listing_identity_id=listing).exists():
            self.stdout.write(gettext("demo listing already has a job; nothing started"))
            return

        job = listing_start_processing(listing_identity_id=listing)
        self.stdout.write(
            self.style.SUCCESS(gettext("started processing job #%(job)s") % {"job": job.pk})
        )
