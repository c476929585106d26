"""Resizing in the DCT domain: "inverse DCT -> resize -> crop -> DCT" as one linear map per axis.

The 8x8 block DCT and a separable pixel resize are both linear, so for one axis of a plane
(``L`` pixels in ``nb`` blocks) the coefficients of the resized and cropped signal are

    y = M @ x,    M = C_out · R · C_inᵀ,

with ``x`` the plane's coefficients along that axis in block-major order (``8 * block +
frequency``), ``C_in`` / ``C_out`` block-diagonal orthonormal 8-point DCT-II matrices and
``R`` the 1-D pixel resampling matrix restricted to the output window. ``R`` is Pillow's
``BILINEAR`` (:func:`bilinear_weights`: a triangle filter whose support widens by the
downscaling factor, exactly as ``Image.resize`` computes it for float images), so a DCT
model and its RGB twin (:class:`dctnet.imaging.RGBPreprocess`) see the same geometry: the
shorter side resized to ``resize`` with the new size ``(round(w * s), round(h * s))`` and the
``size x size`` centre crop at ``((W' - size) // 2, (H' - size) // 2)``
(:func:`resize_geometry`). A horizontal flip reverses the output pixels (folded into ``R``).

``M`` is banded: output block ``j`` depends only on the input blocks under the filter
(:class:`AxisOperator` keeps each output block's input block range), and the 2-D map is
separable: rows, then columns (:func:`resize_plane`).

Chroma planes use the same operator at their own scale: a plane of ``Lc`` samples for an
image of ``L`` pixels maps onto the output chroma grid of ``size * ratio`` samples, where
``ratio`` is the layout's chroma/luma ratio (1/2 for the 4:2:0 layouts), so chroma of any
sampling (4:4:4, 4:2:2, 4:4:0, 4:1:1) lands on the layout's grid in one step.

The level shift (-128) passes through unchanged because every row of ``R`` sums to one.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .dct_domain import DCT8

__all__ = ["AxisOperator", "axis_operator", "bilinear_weights", "resize_geometry", "resize_plane",
           "resize_plane_reference"]


def resize_geometry(width: int, height: int, resize: int, size: int) -> tuple[int, int, int, int]:
    """The RGB pipeline's geometry: ``(new_w, new_h, left, top)``.

    The shorter side becomes ``resize`` (``s = resize / min(w, h)``, new size
    ``(round(w * s), round(h * s))`` with Python's ``round``), then the ``size x size``
    centre crop starts at ``((new_w - size) // 2, (new_h - size) // 2)`` (negative when the
    resized image is smaller than the crop: those output pixels replicate the edge, as the
    filter clamps to the image).
    """
    s = resize / min(width, height)
    new_w, new_h = round(width * s), round(height * s)
    return new_w, new_h, (new_w - size) // 2, (new_h - size) // 2


def bilinear_weights(in_len: int, out_len: int, start: float, count: int, scale: float | None = None,
                     flip: bool = False) -> np.ndarray:
    """Pillow's ``BILINEAR`` resampling matrix for output pixels ``start .. start + count - 1``.

    Args:
        in_len: input samples.
        out_len: length of the whole resized axis (defines the scale ``in_len / out_len``
            unless ``scale`` is given).
        start: first output pixel of the window (may be fractional for chroma grids, or
            negative / past the end: the filter's support is clamped to the input, so the
            edge is replicated, as Pillow does).
        count: output pixels.
        scale: input samples per output pixel (default ``in_len / out_len``).
        flip: reverse the output pixels (a horizontal flip of the window).

    Returns:
        ``float64 (count, in_len)``, rows summing to one.
    """
    scale = in_len / out_len if scale is None else scale
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale          # the triangle filter's support, widened when shrinking
    out = np.zeros((count, in_len))
    for i in range(count):
        center = (start + i + 0.5) * scale
        xmin = max(int(math.floor(center - support + 0.5)), 0)
        xmax = min(int(math.floor(center + support + 0.5)), in_len)
        if xmax <= xmin:  # window entirely outside the image: clamp to the nearest edge sample
            xmin = min(max(int(math.floor(center)), 0), in_len - 1)
            xmax = xmin + 1
        x = np.arange(xmin, xmax)
        w = np.maximum(1.0 - np.abs((x - center + 0.5) / filterscale), 0.0)
        total = w.sum()
        out[i, xmin:xmax] = w / total if total > 0 else 1.0 / len(w)
    return out[::-1].copy() if flip else out


def _block_dct(nb: int) -> np.ndarray:
    """Block-diagonal orthonormal DCT-II, ``(8 nb, 8 nb)``: coefficients = C @ pixels."""
    return np.kron(np.eye(nb), DCT8)


@dataclass(frozen=True)
class AxisOperator:
    """``M = C_out · R · C_inᵀ`` for one axis, with its band structure.

    Attributes:
        matrix: ``float32 (8 * out_blocks, 8 * in_blocks)``; row ``8 * J + f`` is output block J's
            frequency f, column ``8 * j + g`` input block j's frequency g.
        lo, hi: ``int64 (out_blocks,)``: output block J uses input blocks ``lo[J] .. hi[J] - 1`` only.
    """

    matrix: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @property
    def out_blocks(self) -> int:
        return self.matrix.shape[0] // 8

    @property
    def in_blocks(self) -> int:
        return self.matrix.shape[1] // 8


@functools.lru_cache(maxsize=4096)
def axis_operator(in_len: int, in_blocks: int, out_len_total: float, start: float, out_blocks: int,
                  flip: bool = False) -> AxisOperator:
    """The coefficient-domain operator of one axis (cached: batches of same-sized photos share it).

    Args:
        in_len: the plane's samples along the axis (its real extent; the blocks beyond it are
            padding the resize never reads).
        in_blocks: the plane's blocks along the axis (``>= ceil(in_len / 8)``).
        out_len_total: length of the whole resized axis in this plane's output units (for
            chroma at half resolution: half the resized luma length, possibly fractional).
        start: first output sample of the window in those units.
        out_blocks: output blocks (the window is ``8 * out_blocks`` samples).
        flip: reverse the window (horizontal flip).
    """
    r = bilinear_weights(in_len, 1, start, 8 * out_blocks, scale=in_len / out_len_total, flip=flip)
    r_full = np.zeros((8 * out_blocks, 8 * in_blocks))
    r_full[:, :in_len] = r
    m = _block_dct(out_blocks) @ r_full @ _block_dct(in_blocks).T
    used = np.abs(r_full).reshape(out_blocks, 8, in_blocks, 8).max(axis=(1, 3)) > 0
    lo = np.argmax(used, axis=1)
    hi = in_blocks - np.argmax(used[:, ::-1], axis=1)
    # (the float64 map, cast once: its entries are used as float32 by every backend)
    return AxisOperator(np.ascontiguousarray(m, dtype=np.float32), lo.astype(np.int64), hi.astype(np.int64))


def resize_plane_reference(coefs: np.ndarray, qstep: np.ndarray, rows: AxisOperator, cols: AxisOperator) -> np.ndarray:
    """Float64 reference of :func:`resize_plane` through pixels.

    ``int16 (Hb, Wb, 64)`` quantised coefficients and ``qstep (64,)`` -> ``float64
    (Ho, Wo, 64)``: dequantise, inverse DCT per block, the resampling matrices (recovered
    from the operators as ``C_outᵀ · M · C_in``), forward DCT per block.
    """
    hb, wb = coefs.shape[:2]
    x = coefs.astype(np.float64) * qstep.astype(np.float64)
    pixels = np.einsum("kv,hwku,uj->hvwj", DCT8, x.reshape(hb, wb, 8, 8), DCT8).reshape(8 * hb, 8 * wb)
    rv = _block_dct(rows.out_blocks).T @ rows.matrix.astype(np.float64) @ _block_dct(rows.in_blocks)
    rh = _block_dct(cols.out_blocks).T @ cols.matrix.astype(np.float64) @ _block_dct(cols.in_blocks)
    out = rv @ pixels @ rh.T
    ho, wo = rows.out_blocks, cols.out_blocks
    blocks = out.reshape(ho, 8, wo, 8)
    return np.einsum("kv,hvwj,uj->hwku", DCT8, blocks, DCT8).reshape(ho, wo, 64)


def resize_plane(coefs: np.ndarray, qstep: np.ndarray, rows: AxisOperator, cols: AxisOperator) -> np.ndarray:
    """Resize one plane in the DCT domain: ``int16 (Hb, Wb, 64)`` -> ``float32 (Ho, Wo, 64)``.

    Dense NumPy form of the separable map (``Mv · X · Mhᵀ`` on the block-major coefficient
    matrix); the banded numba kernel (:mod:`dctnet.ops._numba`) computes the same numbers
    for the bands a layout keeps.
    """
    hb, wb = coefs.shape[:2]
    x = (coefs.astype(np.float32) * qstep.astype(np.float32)).reshape(hb, wb, 8, 8)
    z = x.transpose(0, 2, 1, 3).reshape(8 * hb, 8 * wb)            # [8 b_r + v, 8 b_c + u]
    out = rows.matrix @ z @ cols.matrix.T
    ho, wo = rows.out_blocks, cols.out_blocks
    return np.ascontiguousarray(out.reshape(ho, 8, wo, 8).transpose(0, 2, 1, 3).reshape(ho, wo, 64))
