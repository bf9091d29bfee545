"""Comparing pictures in the tests."""

from __future__ import annotations

import math

from PIL import Image, ImageChops, ImageStat


def psnr(first: Image.Image, second: Image.Image) -> float:
    """Peak signal-to-noise ratio of two same-size pictures, in dB (99 when identical): the
    mean of every RGB channel's squared difference, summed by Pillow in C."""
    assert first.size == second.size
    difference = ImageChops.difference(first.convert("RGB"), second.convert("RGB"))
    mean_square = sum(rms**2 for rms in ImageStat.Stat(difference).rms) / 3
    return 99.0 if mean_square == 0 else 10 * math.log10(255**2 / mean_square)
