"""Pipeline configuration, read from plain environment variables.

Lambda reads them from its environment; the Django side builds the same object from its
settings (``media_jobs.storage.pipeline_config``), so both engines share one definition.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_BUCKET = "toq-listing-medias"
GIB = 1024**3


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    return int(_number(environ, name, default, int))


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    return float(_number(environ, name, default, float))


def _number(
    environ: Mapping[str, str], name: str, default: float, cast: type[int] | type[float]
) -> float:
    raw = environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return cast(raw)
    except ValueError:
        kind = "an integer" if cast is int else "a number"
        raise ValueError(f"{name} must be {kind}, got {raw!r}") from None


@dataclass(frozen=True)
class PipelineConfig:
    bucket: str = DEFAULT_BUCKET
    # "s3" talks to S3 (or an S3-compatible server at s3_endpoint_url); "local" keeps
    # objects as files under local_root/<bucket>/<key>.
    storage_backend: str = "local"
    local_root: str = "var/media"
    s3_endpoint_url: str | None = None
    region: str | None = None
    max_file_bytes: int = 5 * GIB
    # 100 MP camera originals must pass; a decompression bomb must not.
    max_image_pixels: int = 180_000_000
    # What decoding one photo may cost (media_jobs/pipeline/decode_budget.py): the default
    # memory keeps a worker under 512 MiB peak RSS for any admitted photo.
    decode_memory_bytes: int = 320 * 1024**2
    decode_cpu_seconds: float = 10.0
    max_jpeg_scans: int = 100
    ffmpeg_path: str = "ffmpeg"
    ffprobe_path: str = "ffprobe"
    ffmpeg_timeout_s: int = 900
    callback_url: str | None = None
    callback_secret: str | None = None
    callback_timeout_s: int = 10
    state_machine_arn: str | None = None
    finalization_state_machine_arn: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PipelineConfig:
        env = os.environ if environ is None else environ
        bucket = env.get("MEDIA_BUCKET") or ""
        # On Lambda the only storage is S3: a function deployed without MEDIA_BUCKET (the
        # Go functions defaulted it) uses the default bucket, never the local disk.
        on_lambda = bool(env.get("AWS_LAMBDA_FUNCTION_NAME"))
        return cls(
            bucket=bucket or DEFAULT_BUCKET,
            storage_backend=env.get("MEDIA_STORAGE_BACKEND")
            or ("s3" if bucket or on_lambda else "local"),
            local_root=env.get("MEDIA_LOCAL_ROOT") or "var/media",
            s3_endpoint_url=env.get("AWS_S3_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL") or None,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            max_file_bytes=_int(env, "MEDIA_MAX_FILE_BYTES", 5 * GIB),
            max_image_pixels=_int(env, "MEDIA_MAX_IMAGE_PIXELS", 180_000_000),
            decode_memory_bytes=_int(env, "MEDIA_DECODE_MEMORY_BYTES", 320 * 1024**2),
            decode_cpu_seconds=_float(env, "MEDIA_DECODE_CPU_SECONDS", 10.0),
            max_jpeg_scans=_int(env, "MEDIA_MAX_JPEG_SCANS", 100),
            ffmpeg_path=env.get("FFMPEG_PATH") or "ffmpeg",
            ffprobe_path=env.get("FFPROBE_PATH") or "ffprobe",
            ffmpeg_timeout_s=_int(env, "FFMPEG_TIMEOUT_SECONDS", 900),
            callback_url=env.get("CALLBACK_URL") or None,
            callback_secret=env.get("CALLBACK_SECRET") or None,
            callback_timeout_s=_int(env, "CALLBACK_TIMEOUT_SECONDS", 10),
            state_machine_arn=env.get("STATE_MACHINE_ARN") or None,
            finalization_state_machine_arn=env.get("FINALIZATION_STATE_MACHINE_ARN") or None,
        )
