"""The generated sample pictures: the same arguments give the same pixels, cheaply, and no
caller can change what the next one gets."""

from __future__ import annotations

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
