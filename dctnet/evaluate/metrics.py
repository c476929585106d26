"""Image quality against a reference: PSNR and SSIM (NumPy only).

* PSNR over all channels of the uint8 images, ``10 log10(255^2 / MSE)``; identical images
  (MSE 0) are reported as :data:`PSNR_CAP` dB so means stay finite.
* SSIM of Wang, Bovik, Sheikh and Simoncelli (IEEE TIP 2004) as they defined it: on the
  luma (BT.601 ``0.299 R + 0.587 G + 0.114 B`` for colour inputs, float64), an 11x11
  Gaussian window with sigma 1.5 normalised to sum 1, ``K1 = 0.01``, ``K2 = 0.03``,
  ``L = 255``, local statistics over the "valid" region only (no padding), population
  variances, and the mean of the SSIM map. No downsampling (the reference MATLAB code's
  optional automatic downsampling is not applied).
"""

from __future__ import annotations

import numpy as np

__all__ = ["PSNR_CAP", "gaussian_window", "luma", "psnr", "ssim"]

PSNR_CAP = 100.0


def luma(image: np.ndarray) -> np.ndarray:
    """``uint8 (H, W, 3)`` or ``(H, W)`` -> ``float64 (H, W)`` BT.601 luma (gray passes through)."""
    image = np.asarray(image)
    if image.ndim == 2:
        return image.astype(np.float64)
    if image.ndim == 3 and image.shape[2] == 3:
        return image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    raise ValueError(f"expected (H, W) or (H, W, 3), got shape {image.shape}")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two ``uint8`` images of the same shape (capped at :data:`PSNR_CAP`)."""
    if a.shape != b.shape:
        raise ValueError(f"PSNR needs equal shapes, got {a.shape} and {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0.0:
        return PSNR_CAP
    return min(PSNR_CAP, 10.0 * np.log10(255.0 ** 2 / mse))


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """1-D Gaussian taps ``float64 (size,)`` summing to 1 (the 2-D window is its outer product)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x ** 2) / (2.0 * sigma ** 2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of ``(H, W)`` with ``taps`` along both axes."""
    k = taps.size
    h, w = x.shape
    rows = np.zeros((h - k + 1, w), np.float64)
    for i in range(k):
        rows += taps[i] * x[i:i + h - k + 1]
    out = np.zeros((h - k + 1, w - k + 1), np.float64)
    for j in range(k):
        out += taps[j] * rows[:, j:j + w - k + 1]
    return out


def ssim(a: np.ndarray, b: np.ndarray, *, window: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03, data_range: float = 255.0) -> float:
    """Mean SSIM of two images of the same shape (``uint8 (H, W, 3)`` or ``(H, W)``), on luma.

    Images smaller than the window in either side raise ``ValueError``.
    """
    if a.shape != b.shape:
        raise ValueError(f"SSIM needs equal shapes, got {a.shape} and {b.shape}")
    x, y = luma(a), luma(b)
    if min(x.shape) < window:
        raise ValueError(f"SSIM needs images of at least {window}x{window}, got {x.shape[1]}x{x.shape[0]}")
    taps = gaussian_window(window, sigma)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mu_x, mu_y = _filter_valid(x, taps), _filter_valid(y, taps)
    sxx = _filter_valid(x * x, taps) - mu_x * mu_x
    syy = _filter_valid(y * y, taps) - mu_y * mu_y
    sxy = _filter_valid(x * y, taps) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (sxx + syy + c2)
    return float(np.mean(num / den))
