"""Exact operations on 8x8 DCT blocks: flip and chroma resampling as linear block maps.

A JPEG block holds the orthonormal 2-D DCT-II of 8x8 level-shifted pixels:
``X = D.T @ C @ D`` with ``C[v, u]`` (``k = 8*v + u``, natural order) and ``D`` the 8x8
orthonormal DCT matrix. Any linear pixel operation that maps whole blocks to whole blocks
is therefore an exact linear map between coefficient blocks; the ones here are separable
(a horizontal map acts on ``u``, a vertical one on ``v``):

* box downsampling by 2 (the average of two neighbouring samples, what libjpeg's encoder
  does for 2x subsampled chroma, up to its integer rounding): two blocks -> one block,
  ``c = DOWN[0] @ a + DOWN[1] @ b``;
* nearest-neighbour upsampling by 2: one block -> two blocks, ``c_j = UP[j] @ a``;
* horizontal flip of one block: negate the odd-``u`` coefficients (``k`` odd).

The level shift (``-128``) commutes with all of them because every row of the pixel maps
sums to one (constants are preserved).
"""

from __future__ import annotations

import numpy as np

__all__ = ["DCT8", "DOWN", "UP", "FLIP_SIGN", "resample_axis", "idct_blocks", "fdct_blocks"]


def _dct_matrix() -> np.ndarray:
    n = np.arange(8)
    d = np.cos((2 * n[None, :] + 1) * n[:, None] * np.pi / 16) * np.sqrt(2 / 8)
    d[0] /= np.sqrt(2)
    return d


#: Orthonormal 8-point DCT-II, ``DCT8[k, n]``: coefficients ``a = DCT8 @ x``, pixels ``x = DCT8.T @ a``.
DCT8: np.ndarray = _dct_matrix()

_AVG = np.zeros((8, 16))
_AVG[np.arange(8), 2 * np.arange(8)] = 0.5
_AVG[np.arange(8), 2 * np.arange(8) + 1] = 0.5
_NEAREST = np.zeros((16, 8))
_NEAREST[np.arange(16), np.arange(16) // 2] = 1.0

#: ``DOWN[j]`` (8x8, float64): contribution of the j-th of two neighbouring blocks to the
#: block of the 2x box-downsampled signal (1-D, acting on one frequency axis).
DOWN: np.ndarray = np.stack([DCT8 @ _AVG[:, 8 * j:8 * j + 8] @ DCT8.T for j in range(2)])
#: ``UP[j]`` (8x8, float64): the j-th of the two blocks of the 2x nearest-upsampled signal.
UP: np.ndarray = np.stack([DCT8 @ _NEAREST[8 * j:8 * j + 8] @ DCT8.T for j in range(2)])
#: ``int16 (64,)``: +1, or -1 for odd horizontal frequency ``u = k % 8`` (horizontal flip).
FLIP_SIGN: np.ndarray = np.where(np.arange(64) % 2 == 1, -1, 1).astype(np.int16)


def resample_axis(blocks: np.ndarray, axis: int, factor: int, start: int, stop: int) -> np.ndarray:
    """Resample ``float64 (H, W, 8, 8)`` blocks (``[..., v, u]``) along one block axis.

    Args:
        blocks: coefficient blocks; ``axis`` 0 (vertical: maps act on ``v``) or 1
            (horizontal: maps act on ``u``).
        factor: ``-2`` downsamples by 2 (box average), ``1`` is the identity, ``2``
            upsamples by 2 (nearest neighbour).
        start, stop: block range of the *result* to produce along ``axis`` (the caller's crop),
            in units of result blocks.

    Returns:
        ``float64`` blocks covering result blocks ``start:stop`` along ``axis``.
    """
    if factor == 1:
        return np.take(blocks, np.arange(start, stop), axis=axis)
    if factor == -2:
        src = np.take(blocks, np.arange(2 * start, 2 * stop), axis=axis)
        if axis == 0:
            src = src.reshape(stop - start, 2, *src.shape[1:])              # (h, j, W, v, u)
            # optimize=True routes the contraction through BLAS (about 5x faster here).
            return np.einsum("hjwvu,jxv->hwxu", src, DOWN, optimize=True)
        src = src.reshape(src.shape[0], stop - start, 2, 8, 8)              # (H, w, j, v, u)
        return np.einsum("hwjvu,jxu->hwvx", src, DOWN, optimize=True)
    if factor == 2:
        first, last = start // 2, (stop + 1) // 2
        src = np.take(blocks, np.arange(first, last), axis=axis)
        if axis == 0:
            up = np.einsum("hwvu,jxv->hjwxu", src, UP, optimize=True).reshape(2 * (last - first), *src.shape[1:])
        else:
            up = np.einsum("hwvu,jxu->hwjvx", src, UP, optimize=True).reshape(src.shape[0], 2 * (last - first), 8, 8)
        return np.take(up, np.arange(start - 2 * first, stop - 2 * first), axis=axis)
    raise ValueError(f"resampling factor must be -2, 1 or 2, not {factor}")


def idct_blocks(coefs: np.ndarray) -> np.ndarray:
    """``(Hb, Wb, 64)`` coefficients -> ``float64 (8*Hb, 8*Wb)`` level-shifted pixels (reference)."""
    hb, wb = coefs.shape[:2]
    c = coefs.reshape(hb, wb, 8, 8).astype(np.float64)
    px = np.einsum("kv,hwku,uj->hvwj", DCT8, c, DCT8)   # D.T @ C @ D per block
    return px.reshape(8 * hb, 8 * wb)


def fdct_blocks(pixels: np.ndarray) -> np.ndarray:
    """``(8*Hb, 8*Wb)`` pixels -> ``float64 (Hb, Wb, 64)`` coefficients (reference)."""
    h, w = pixels.shape
    x = pixels.reshape(h // 8, 8, w // 8, 8).astype(np.float64)
    c = np.einsum("kv,hvwj,uj->hwku", DCT8, x, DCT8)    # D @ X @ D.T per block
    return c.reshape(h // 8, w // 8, 64)
