"""Fixtures of the operations command tests: Django pointed at the moto S3 server, the
pipeline storage port on it, and helpers that run a command the way a shell does."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.management import call_command, load_command_class
from django.core.management.base import CommandError

from media_jobs import sample_media
from media_jobs.models import AssetStatus, MediaAsset
from media_jobs.pipeline import keys
from media_jobs.pipeline.storage import Storage
from media_jobs.storage import pipeline_storage
from tests.factories import AssetFactory


@pytest.fixture
def storage(s3_settings: Any) -> Storage:
    """The same storage port the commands use (media_jobs.storage.pipeline_storage)."""
    return pipeline_storage()


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.stdout)

    def items(self, outcome: str | None = None) -> list[dict[str, Any]]:
        return [i for i in self.json["items"] if outcome is None or i["outcome"] == outcome]


def run_command(name: str, *args: str) -> Run:
    """call_command with the exit status a shell would see (CommandError.returncode)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(name, *args, stdout=out, stderr=err)
    except CommandError as exc:
        err.write(f"CommandError: {exc}\n")
        return Run(exc.returncode, out.getvalue(), err.getvalue())
    return Run(0, out.getvalue(), err.getvalue())


def run_cli(name: str, *args: str, capsys: pytest.CaptureFixture[str]) -> Run:
    """``manage.py <name> <args>`` in-process: the real argv parsing, error printing and
    ``sys.exit`` of Django's command runner."""
    command = load_command_class("media_jobs", name)
    code = 0
    try:
        command.run_from_argv(["manage.py", name, *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def put_photo(
    storage: Storage, raw_key: str, *, seed: int = 0, size: tuple[int, int] = (640, 480)
) -> None:
    data = sample_media.jpeg_bytes(*size, seed=seed)
    storage.write(raw_key, data, content_type="image/jpeg")


def processed_photo(
    storage: Storage,
    listing: int,
    sequence: int,
    *,
    asset_type: str = "PHOTO_HORIZONTAL",
    upload: bool = True,
) -> MediaAsset:
    """A PROCESSED photo asset whose raw object is in storage (no derivatives yet)."""
    kind = "vertical" if asset_type.endswith("VERTICAL") else "horizontal"
    raw_key = keys.raw_key(listing, asset_type, f"{kind}-{sequence:02d}", f"IMG_{sequence:04d}.jpg")
    if upload:
        put_photo(storage, raw_key, seed=sequence)
    return AssetFactory(
        listing_identity_id=listing,
        asset_type=asset_type,
        sequence=sequence,
        status=AssetStatus.PROCESSED,
        s3_key_raw=raw_key,
        s3_key_processed=None,
        metadata={"filename": f"IMG_{sequence:04d}.jpg"},
    )


def bucket_snapshot(
    storage: Storage, prefix: str = ""
) -> dict[str, tuple[str, Any, dict[str, str]]]:
    """key -> (etag, last modified, metadata): equal snapshots mean nothing was written."""
    snapshot = {}
    for info in storage.list(prefix):
        head = storage.head(info.key)
        snapshot[info.key] = (head.etag, head.last_modified, dict(head.metadata))
    return snapshot


def rows_snapshot() -> list[dict[str, Any]]:
    return list(MediaAsset.objects.order_by("pk").values())
