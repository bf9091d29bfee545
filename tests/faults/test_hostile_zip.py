"""Hostile names through the CreateZipBundle step, on both storages: the listing ZIP holds
every asset exactly once under a portable name, and real extractors (Info-ZIP unzip, 7-Zip,
bsdtar) extract all of them inside the target folder."""

from __future__ import annotations

import subprocess
import unicodedata
import zipfile
from pathlib import Path

import pytest

from media_jobs.pipeline.keys import entry_name_identity
from media_jobs.pipeline.storage import Storage
from media_jobs.pipeline.storage_local import LocalStorage
from media_jobs.pipeline.zipper import create_zip_bundle

pytestmark = pytest.mark.fault

LISTING = 5151
RAW = f"{LISTING}/raw/photo/vertical"
HOSTILE_NAMES = [
    f"{LISTING}/raw/C:/Windows/drive.jpg",  # a drive letter on Windows
    f"{RAW}/caf\u00e9.jpg",  # NFC
    f"{RAW}/cafe\u0301.jpg",  # NFD: the same name on macOS
    f"{RAW}/CAF\u00c9.JPG",  # the same name on Windows and macOS
    f"{RAW}/nul.jpg",  # a device name on Windows
    f"{RAW}/trailing.jpg. ",  # Windows drops trailing dots and spaces...
    f"{RAW}/trailing.jpg",  # ...so this would be overwritten
    f"{RAW}/x\u202egpj.exe",  # shows as "xexe.jpg"
    f'{RAW}/a<b>c|d?e*f".jpg',
    f"{RAW}/..\\..\\..\\evil.jpg",  # backslashes are separators to Windows extractors
    f"{RAW}/ok.jpg",
]
# Control characters: a file name holds them; S3's XML (moto's bulk delete) does not.
LOCAL_ONLY = [f"{RAW}/line\r\nbreak.jpg", f"{RAW}/tab\tand\x01control.jpg"]
# What a file system cannot hold at all (S3 can): a name of 285 bytes (over 255), and a
# file where another entry needs a folder.
S3_ONLY = [f"{RAW}/" + "\u00e9" * 140 + ".jpg", f"{LISTING}/raw/photo"]
FORBIDDEN = set('<>:"|?*\\') | {chr(c) for c in range(32)} | {"\x7f", "\u202e"}


def _extract(tool: str, archive: Path, target: Path) -> None:
    target.mkdir()
    commands = {
        "unzip": ["unzip", "-q", "-o", str(archive), "-d", str(target)],
        "7z": ["7z", "x", "-y", f"-o{target}", str(archive)],
        "bsdtar": ["bsdtar", "-xf", str(archive), "-C", str(target)],
    }
    done = subprocess.run(commands[tool], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stdout.decode(errors="replace")[-2000:]


def test_hostile_names_are_zipped_once_each_under_portable_names(
    storage: Storage, tmp_path: Path
) -> None:
    keys = HOSTILE_NAMES + (LOCAL_ONLY if isinstance(storage, LocalStorage) else S3_ONLY)
    contents = {key: f"object {index}: {key!r}".encode() for index, key in enumerate(keys)}
    for key, data in contents.items():
        storage.write(key, data)

    body = create_zip_bundle(
        {"jobId": 1, "listingIdentityId": LISTING, "assets": [{"key": k} for k in keys]},
        storage=storage,
    )["body"]
    assert body["assetsZipped"] == len(keys)
    archive_path = tmp_path / "listing.zip"
    with storage.open_read(body["zipKey"]) as stream:
        archive_path.write_bytes(stream.read())

    with zipfile.ZipFile(archive_path) as archive:
        names = archive.namelist()
        # every asset exactly once, in order, with its own bytes
        assert [archive.read(name) for name in names] == [contents[key] for key in keys]
    assert len({entry_name_identity(name) for name in names}) == len(names)
    folders = {name.rsplit("/", 1)[0] for name in names if "/" in name}
    for name in names:
        assert unicodedata.is_normalized("NFC", name), name
        assert not FORBIDDEN & set(name.replace("/", "")), name
        for segment in name.split("/"):
            assert segment not in ("", ".", "..") and ".." not in segment, name
            assert segment == segment.rstrip(" ."), name
            assert len(segment.encode()) <= 255, name
        assert entry_name_identity(name) not in {entry_name_identity(f) for f in folders}
    assert "C_/Windows/drive.jpg" in names

    for tool in ("unzip", "7z", "bsdtar"):
        target = tmp_path / tool
        _extract(tool, archive_path, target)
        extracted = sorted(
            p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()
        )
        assert extracted == sorted(names), tool
