"""The generated sample pictures: the same arguments give the same pixels, cheaply, and no
caller can change what the next one gets; made media is shared through SAMPLE_MEDIA_DIR."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import ImageChops, ImageStat

from media_jobs import sample_media


def _same(first, second) -> bool:
    return ImageChops.difference(first, second).getbbox() is None


def test_a_seed_gives_the_same_picture_and_another_seed_another() -> None:
    first = sample_media.photographic(320, 240, seed=4)
    assert _same(first, sample_media.photographic(320, 240, seed=4))
    assert not _same(first, sample_media.photographic(320, 240, seed=5))
    assert sample_media.jpeg_bytes(320, 240, seed=4) == sample_media.jpeg_bytes(320, 240, seed=4)


def test_a_caller_drawing_on_its_picture_leaves_the_next_one_untouched() -> None:
    first = sample_media.photographic(200, 100, seed=7)
    first.paste((0, 0, 0), (0, 0, 200, 100))
    assert ImageStat.Stat(sample_media.photographic(200, 100, seed=7)).mean != [0, 0, 0]


def test_large_pictures_are_made_afresh_not_kept() -> None:
    sample_media._kept_photographic.cache_clear()
    side = int(sample_media.KEPT_PIXELS**0.5) + 1
    sample_media.photographic(side, side, seed=1)
    sample_media.photographic(64, 48, seed=1)
    assert sample_media._kept_photographic.cache_info().currsize == 1


def test_the_noise_spreads_like_a_camera_s_not_like_static() -> None:
    """About sigma 25 around mid-grey, as Image.effect_noise made before it was seeded."""
    stat = ImageStat.Stat(sample_media._noise((400, 300), 25, sample_media.random.Random(0)))
    assert 120 < stat.mean[0] < 136
    assert 22 < stat.stddev[0] < 28


def test_kept_media_is_made_once_for_every_process_sharing_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []

    def make() -> bytes:
        made.append("x")
        return b"clip bytes"

    monkeypatch.delenv(sample_media.SHARED_DIR_VARIABLE, raising=False)
    assert sample_media.kept("clip", make) == sample_media.kept("clip", make) == b"clip bytes"
    assert len(made) == 2  # no folder: made every time

    monkeypatch.setenv(sample_media.SHARED_DIR_VARIABLE, str(tmp_path / "shared"))
    made.clear()
    assert sample_media.kept("clip", make) == b"clip bytes"
    assert sample_media.kept("clip", make) == b"clip bytes"
    assert sample_media.kept("other clip", make) == b"clip bytes"
    assert len(made) == 2  # once per name
    assert not list((tmp_path / "shared").glob("*.part"))

    other_process = subprocess.run(
        [sys.executable, "-c", "from media_jobs import sample_media; "
         "print(sample_media.kept('clip', lambda: b'made again').decode())"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert other_process.stdout.strip() == "clip bytes"
