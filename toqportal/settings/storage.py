"""Object storage: S3 (any S3-compatible endpoint) when MEDIA_BUCKET is set, else local files.

This module is the one place that decides. Django's ``STORAGES`` and the pipeline's storage
port (``media_jobs.storage.pipeline_config``) are both derived from ``MEDIA_STORAGE_BACKEND``.
"""

from __future__ import annotations

from pathlib import Path

from .env import VAR_DIR, ConfigError, env, typed

MEDIA_BUCKET = env.str("MEDIA_BUCKET", default="")
MEDIA_STORAGE_BACKEND = env.str("MEDIA_STORAGE_BACKEND", default="s3" if MEDIA_BUCKET else "local")
if MEDIA_STORAGE_BACKEND not in {"s3", "local"}:
    raise ConfigError(f"MEDIA_STORAGE_BACKEND: must be s3 or local, got {MEDIA_STORAGE_BACKEND!r}")
MEDIA_BUCKET = MEDIA_BUCKET or "toq-listing-medias"
MEDIA_LOCAL_ROOT = Path(env.str("MEDIA_LOCAL_ROOT", default=str(VAR_DIR / "media")))

AWS_S3_ENDPOINT_URL = env.str("AWS_S3_ENDPOINT_URL", default="") or None
AWS_S3_REGION_NAME = env.str("AWS_REGION", default="") or env.str("AWS_DEFAULT_REGION", default="")
AWS_S3_REGION_NAME = AWS_S3_REGION_NAME or "us-east-1"
# The job and storage pages link objects to this S3 console (empty: no console links).
AWS_S3_CONSOLE_URL = env.str("AWS_S3_CONSOLE_URL", default="https://s3.console.aws.amazon.com/s3")
# Presigned download links in the admin live this long.
MEDIA_PRESIGNED_URL_TTL = typed("MEDIA_PRESIGNED_URL_TTL", int, 900)

# Limits the pipeline enforces (also read by Lambda from the same variable names).
MEDIA_MAX_FILE_BYTES = typed("MEDIA_MAX_FILE_BYTES", int, 5 * 1024**3)
MEDIA_MAX_IMAGE_PIXELS = typed("MEDIA_MAX_IMAGE_PIXELS", int, 180_000_000)
# What decoding one photo may cost (media_jobs/pipeline/decode_budget.py). 320 MiB keeps a
# worker process under 512 MiB peak RSS for any admitted photo, whatever its format.
MEDIA_DECODE_MEMORY_BYTES = typed("MEDIA_DECODE_MEMORY_BYTES", int, 320 * 1024**2)
MEDIA_DECODE_CPU_SECONDS = typed("MEDIA_DECODE_CPU_SECONDS", float, 10.0)
MEDIA_MAX_JPEG_SCANS = typed("MEDIA_MAX_JPEG_SCANS", int, 100)
FFMPEG_PATH = env.str("FFMPEG_PATH", default="ffmpeg")
FFPROBE_PATH = env.str("FFPROBE_PATH", default="ffprobe")
FFMPEG_TIMEOUT_SECONDS = typed("FFMPEG_TIMEOUT_SECONDS", int, 900)

if MEDIA_STORAGE_BACKEND == "s3":
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": MEDIA_BUCKET,
            "endpoint_url": AWS_S3_ENDPOINT_URL,
            "region_name": AWS_S3_REGION_NAME,
            "querystring_expire": MEDIA_PRESIGNED_URL_TTL,
            "file_overwrite": True,
        },
    }
else:
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_LOCAL_ROOT / MEDIA_BUCKET},
    }

STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
