"""boto3 clients shared by the process: one per service, settings and AWS environment.

A worker task or a warm Lambda container asks for a client on every run. Building one costs
~25-40 ms of CPU, and a new botocore session ~200 ms more: it reads the service's JSON model,
the endpoints and the partitions again. Here clients are kept by service, by the settings the
caller gives and by every ``AWS_*`` environment variable (credentials, endpoint, region,
profile), so rotated keys or a moved endpoint get a new client; and every session reads the
models through one loader, so they are read once per process. botocore clients are safe to
share between threads.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import boto3.session
import botocore.loaders
import botocore.session
from botocore.config import Config

_MODELS = botocore.loaders.create_loader()


@dataclass(frozen=True)
class ClientOptions:
    """What a caller sets; ``None`` leaves botocore's default."""

    endpoint_url: str | None = None
    region: str | None = None
    # Retries after the first request ("standard" mode): at most max_retries + 1 requests.
    max_retries: int | None = None
    connect_timeout_s: float | None = None
    read_timeout_s: float | None = None


def shared_client(service: str, options: ClientOptions | None = None) -> Any:
    """The process's client of ``service`` for ``options`` and the current AWS environment."""
    environment = frozenset(
        (name, value) for name, value in os.environ.items() if name.startswith("AWS_")
    )
    return _client_for(service, options or ClientOptions(), environment)


@functools.lru_cache(maxsize=16)
def _client_for(
    service: str, options: ClientOptions, environment: frozenset[tuple[str, str]]
) -> Any:
    del environment  # only a cache key: the new session reads the environment itself
    core = botocore.session.get_session()
    core.register_component("data_loader", _MODELS)
    return boto3.session.Session(botocore_session=core).client(
        service,  # type: ignore[call-overload]  # any service name; the caller knows which
        endpoint_url=options.endpoint_url,
        region_name=options.region,
        config=_config(service, options),
    )


def _config(service: str, options: ClientOptions) -> Config:
    settings: dict[str, Any] = {}
    if options.max_retries is not None:
        settings["retries"] = {"max_attempts": options.max_retries, "mode": "standard"}
    if options.connect_timeout_s is not None:
        settings["connect_timeout"] = options.connect_timeout_s
    if options.read_timeout_s is not None:
        settings["read_timeout"] = options.read_timeout_s
    if service == "s3":
        settings["signature_version"] = "s3v4"
    return Config(**settings)
