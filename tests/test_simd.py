"""The LLVM vector intrinsics of the CPU kernels (dctnet/ops/_simd.py) against NumPy."""

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from dctnet.ops._simd import band_dot4, dequantise16, fma_row16, fma_rows16


@njit
def _fma_rows(d0, d1, s0, s1, s2, s3, c, w):
    fma_rows16(d0, d1, s0, s1, s2, s3, c, w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7])


@njit
def _fma_row(d0, s0, s1, s2, s3, c, w):
    fma_row16(d0, s0, s1, s2, s3, c, w[0], w[1], w[2], w[3])


@njit
def _dequantise_two(d0, d1, doff, src, soff, q, qoff):
    dequantise16(d0, d1, doff, src, soff, q, qoff)


@njit
def _band_dot(dst, doff, stride, r0, r1, r2, r3, soff, op, ooff, taps):
    band_dot4(dst, doff, stride, r0, r1, r2, r3, soff, op, ooff, taps)


def test_fma_rows16_matches_numpy_and_touches_only_its_columns():
    rng = np.random.default_rng(0)
    rows = [rng.standard_normal(48).astype(np.float32) for _ in range(4)]
    w = rng.standard_normal(8).astype(np.float32)
    d0, d1 = rng.standard_normal(48).astype(np.float32), rng.standard_normal(48).astype(np.float32)
    e0, e1 = d0.astype(np.float64), d1.astype(np.float64)
    sl = slice(16, 32)
    e0[sl] += sum(w[k] * rows[k][sl].astype(np.float64) for k in range(4))
    e1[sl] += sum(w[4 + k] * rows[k][sl].astype(np.float64) for k in range(4))
    _fma_rows(d0, d1, *rows, 16, w)
    np.testing.assert_allclose(d0, e0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d1, e1, rtol=1e-5, atol=1e-5)


def test_fma_row16_matches_numpy():
    rng = np.random.default_rng(1)
    rows = [rng.standard_normal(32).astype(np.float32) for _ in range(4)]
    w = rng.standard_normal(4).astype(np.float32)
    d0 = rng.standard_normal(32).astype(np.float32)
    expected = d0.astype(np.float64)
    expected[16:] += sum(w[k] * rows[k][16:].astype(np.float64) for k in range(4))
    _fma_row(d0, *rows, 16, w)
    np.testing.assert_allclose(d0, expected, rtol=1e-5, atol=1e-5)


def test_dequantise16_splits_two_block_rows():
    rng = np.random.default_rng(2)
    src = rng.integers(-2000, 2000, 40).astype(np.int16)
    q = rng.uniform(1, 50, 64).astype(np.float32)
    d0, d1 = np.full(24, -9.0, np.float32), np.full(24, -9.0, np.float32)
    _dequantise_two(d0, d1, 8, src, 5, q, 16)
    values = src[5:21].astype(np.float32) * q[16:32]
    np.testing.assert_array_equal(d0[8:16], values[:8])
    np.testing.assert_array_equal(d1[8:16], values[8:])
    assert (d0[:8] == -9).all() and (d0[16:] == -9).all() and (d1[:8] == -9).all() and (d1[16:] == -9).all()


@pytest.mark.parametrize("taps", [0, 1, 8, 21])
def test_band_dot4_matches_numpy(taps):
    rng = np.random.default_rng(taps)
    rows = [rng.standard_normal(40).astype(np.float32) for _ in range(4)]
    op = rng.standard_normal((3, 24, 8)).astype(np.float32)
    dst = np.full((8, 24), 5.0, np.float32)
    _band_dot(dst, 1 * 24 + 8, 24, *rows, 5, op, 24 * 8, taps)       # rows 1..4, columns 8..15; op block 1
    for k in range(4):
        expected = rows[k][5:5 + taps].astype(np.float64) @ op[1, :taps].astype(np.float64)
        np.testing.assert_allclose(dst[1 + k, 8:16], expected, rtol=1e-5, atol=1e-5)
    untouched = np.ones_like(dst, bool)
    untouched[1:5, 8:16] = False
    assert (dst[untouched] == 5.0).all()


def test_non_contiguous_or_wrong_dtype_arrays_are_refused_at_typing():
    a = np.zeros(64, np.float32)
    with pytest.raises(TypingError):
        _fma_rows(a[::2], a[1::2], a, a, a, a, 0, np.zeros(8, np.float32))
    with pytest.raises(TypingError):
        _dequantise_two(a, a[1:], 0, np.zeros(16, np.int32), 0, a, 0)
    with pytest.raises(TypingError):                        # float64 weights: no silent mixed vectors
        _fma_row(a, a, a, a, a, 0, np.zeros(4, np.float64))
