"""The storage adapter a configuration names. Apart from the port (``storage``) so that the
port imports neither adapter, and the adapters import only the port."""

from __future__ import annotations

from .config import PipelineConfig
from .storage import Storage
from .storage_local import LocalStorage


def storage_from_config(config: PipelineConfig) -> Storage:
    """The adapter named by ``config.storage_backend`` ("s3" or "local")."""
    if config.storage_backend == "s3":
        # boto3 only when S3 is asked for: the Lambda runtime provides it, the Lambda zip
        # does not carry it, and a local run needs none.
        from .storage_s3 import S3Storage  # noqa: PLC0415 - optional: boto3 on S3 only

        return S3Storage.from_config(config)
    if config.storage_backend == "local":
        return LocalStorage.from_config(config)
    raise ValueError(f"unknown storage backend {config.storage_backend!r}; expected s3 or local")
