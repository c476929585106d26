"""PSNR and SSIM against direct float64 computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dctnet.evaluate.metrics import PSNR_CAP, gaussian_window, luma, psnr, ssim


def _ssim_bruteforce(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. 2004, window by window: 11x11 Gaussian (sigma 1.5), valid positions only."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5 ** 2))
    w = np.outer(g, g)
    w /= w.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            a, b = x[i:i + 11, j:j + 11], y[i:i + 11, j:j + 11]
            ma, mb = np.sum(w * a), np.sum(w * b)
            va, vb = np.sum(w * (a - ma) ** 2), np.sum(w * (b - mb) ** 2)
            cov = np.sum(w * (a - ma) * (b - mb))
            vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


@pytest.mark.parametrize("shape", [(11, 11), (17, 23), (20, 14, 3)])
def test_ssim_matches_window_by_window_formula(shape):
    rng = np.random.default_rng(sum(shape))
    a = rng.integers(0, 256, shape).astype(np.uint8)
    noise = rng.integers(-40, 41, shape)
    b = np.clip(a.astype(int) + noise, 0, 255).astype(np.uint8)
    expected = _ssim_bruteforce(luma(a), luma(b))
    assert ssim(a, b) == pytest.approx(expected, abs=1e-10)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, b) < 0.99


def test_luma_weights_and_window():
    px = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    assert luma(px)[0].tolist() == pytest.approx([0.299 * 255, 0.587 * 255, 0.114 * 255])
    g = gaussian_window()
    assert g.sum() == pytest.approx(1.0) and g.argmax() == 5 and np.allclose(g, g[::-1])


def test_psnr_values_and_errors():
    a = np.zeros((8, 8, 3), np.uint8)
    assert psnr(a, a + 1) == pytest.approx(10 * math.log10(255 ** 2))
    assert psnr(a, a) == PSNR_CAP
    with pytest.raises(ValueError, match="equal shapes"):
        psnr(a, a[:4])
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(a, a)
