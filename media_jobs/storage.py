"""The Django side of the storage choice: the pipeline's config and storage port, built from the
same settings that configure Django's ``STORAGES`` (toqportal/settings/storage.py decides)."""

from __future__ import annotations

from functools import cache

from django.conf import settings

from .pipeline.config import PipelineConfig
from .pipeline.storage import Storage
from .pipeline.storage_factory import storage_from_config


def pipeline_config() -> PipelineConfig:
    """The pipeline settings the Celery engine, the admin and the commands share."""
    return PipelineConfig(
        bucket=settings.MEDIA_BUCKET,
        storage_backend=settings.MEDIA_STORAGE_BACKEND,
        local_root=str(settings.MEDIA_LOCAL_ROOT),
        s3_endpoint_url=settings.AWS_S3_ENDPOINT_URL,
        region=settings.AWS_S3_REGION_NAME,
        max_file_bytes=settings.MEDIA_MAX_FILE_BYTES,
        max_image_pixels=settings.MEDIA_MAX_IMAGE_PIXELS,
        decode_memory_bytes=settings.MEDIA_DECODE_MEMORY_BYTES,
        decode_cpu_seconds=settings.MEDIA_DECODE_CPU_SECONDS,
        max_jpeg_scans=settings.MEDIA_MAX_JPEG_SCANS,
        ffmpeg_path=settings.FFMPEG_PATH,
        ffprobe_path=settings.FFPROBE_PATH,
        ffmpeg_timeout_s=settings.FFMPEG_TIMEOUT_SECONDS,
        callback_url=settings.CALLBACK_URL or None,
        callback_secret=settings.CALLBACK_SECRET or None,
        callback_timeout_s=settings.CALLBACK_TIMEOUT_SECONDS,
        state_machine_arn=settings.PROCESSING_STATE_MACHINE_ARN or None,
        finalization_state_machine_arn=settings.FINALIZATION_STATE_MACHINE_ARN or None,
    )


@cache
def _storage_for(config: PipelineConfig) -> Storage:

    return storage_from_config(config)


def pipeline_storage() -> Storage:
    """The storage port for the configured backend (one client per configuration)."""
    return _storage_for(pipeline_config())
