"""SSIM (Wang et al. 2004) in numpy: Gaussian window sigma 1.5 (11 taps), on luma.

Our own few lines instead of scikit-image: the bench needs one number per image pair and
numpy is already a bench dependency.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

_K1, _K2, _L = 0.01, 0.03, 255.0
_C1, _C2 = (_K1 * _L) ** 2, (_K2 * _L) ** 2


def _gaussian_kernel(sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def _filter(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable 'valid' convolution: the border where the window does not fit is dropped."""
    taps = len(kernel)
    rows = sum(kernel[i] * image[i : image.shape[0] - taps + 1 + i, :] for i in range(taps))
    return sum(kernel[i] * rows[:, i : rows.shape[1] - taps + 1 + i] for i in range(taps))


def luma(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=np.float64)


def ssim(first: np.ndarray, second: np.ndarray) -> float:
    """Mean SSIM of two greyscale images of the same shape."""
    if first.shape != second.shape:
        raise ValueError(f"shapes differ: {first.shape} vs {second.shape}")
    kernel = _gaussian_kernel()
    mu1, mu2 = _filter(first, kernel), _filter(second, kernel)
    sigma1 = _filter(first * first, kernel) - mu1 * mu1
    sigma2 = _filter(second * second, kernel) - mu2 * mu2
    sigma12 = _filter(first * second, kernel) - mu1 * mu2
    numerator = (2 * mu1 * mu2 + _C1) * (2 * sigma12 + _C2)
    denominator = (mu1 * mu1 + mu2 * mu2 + _C1) * (sigma1 + sigma2 + _C2)
    return float(np.mean(numerator / denominator))


def ssim_jpeg(first: bytes, second: bytes) -> float:
    """SSIM of two encoded images (decoded, compared on luma)."""
    return ssim(luma(Image.open(io.BytesIO(first))), luma(Image.open(io.BytesIO(second))))
