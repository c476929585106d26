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
import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from numba import njit

from numba import carray, cfunc, types

from ..codec import DCTImage, JPEGError
from ._numba import CONSUMED, NOT_FAST_PATH, VIEW_COLORSPACE, VIEW_COLS, VIEW_COMPONENTS, VIEW_HEIGHT, VIEW_PLANES, \
    VIEW_QTABLES, VIEW_ROWS, VIEW_SIZE, VIEW_WIDTH, voidptr
from ._simd import band_dot4, dequantise16, fma_row16, fma_rows16
from .align import random_crop_draws, random_resized_crop_box
from .dct_domain import DCT8
from .layout import DCTLayout
from .outputs import check_out, output_shapes
from .reference import normalisation

__all__ = ["AxisOperator", "CROPS", "PlanePlan", "SinkPlan", "axis_operator", "bilinear_weights", "clear_plan_caches",
           "crop_draws", "crop_window", "image_window", "plane_plans", "resize_geometry", "resize_image_into",
           "resize_plane", "resize_plane_reference", "resize_image_into_tensors", "resize_sink_address",
           "resize_to_tensor"]


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


@njit(cache=True, nogil=True)
def _bilinear_taps(in_len, start, count, scale, flip):
    """Pillow's ``BILINEAR`` taps (its ``precompute_coeffs`` for float images), sparse: ``(first,
    weights)`` with ``first int64 (count,)`` the first input sample of each output pixel and
    ``weights float64 (count, width)`` its weights on samples ``first .. first + width - 1``
    (zero past its own support); ``flip`` reverses the output pixels. The one implementation
    of the filter: :func:`bilinear_weights` and the operators are built from it."""
    filterscale = max(scale, 1.0)
    support = filterscale                 # the triangle filter's support, widened when shrinking
    width = int(2.0 * support) + 3        # taps per output pixel, an upper bound
    w = np.zeros((count, width))
    first = np.empty(count, np.int64)
    for q in range(count):
        i = count - 1 - q if flip else q
        center = (start + i + 0.5) * scale
        xmin = max(int(np.floor(center - support + 0.5)), 0)
        xmax = min(int(np.floor(center + support + 0.5)), in_len)
        if xmax <= xmin:                   # window outside the image: the nearest edge sample
            xmin = min(max(int(np.floor(center)), 0), in_len - 1)
            xmax = xmin + 1
        total = 0.0
        for x in range(xmin, xmax):
            v = max(1.0 - abs((x - center + 0.5) / filterscale), 0.0)
            w[q, x - xmin] = v
            total += v
        for x in range(xmax - xmin):
            w[q, x] = w[q, x] / total if total > 0 else 1.0 / (xmax - xmin)
        first[q] = xmin
    return first, w


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
    first, w = _bilinear_taps(int(in_len), float(start), int(count), float(scale), bool(flip))
    out = np.zeros((count, in_len))
    cols = first[:, None] + np.arange(w.shape[1])[None, :]
    keep = cols < in_len
    out[np.broadcast_to(np.arange(count)[:, None], cols.shape)[keep], cols[keep]] = w[keep]
    return out


def _block_dct(nb: int) -> np.ndarray:
    """Block-diagonal orthonormal DCT-II, ``(8 nb, 8 nb)``: coefficients = C @ pixels."""
    return np.kron(np.eye(nb), DCT8)


@dataclass(frozen=True, eq=False)
class AxisOperator:
    """``M = C_out · R · C_inᵀ`` for one axis, stored by its bands.

    Attributes:
        packed: ``float32 (out_blocks, 8, 8 * width)``: output block J's band,
            ``packed[J, f, 8 * (j - lo[J]) + g] = M[8 * J + f, 8 * j + g]`` (zero past
            ``hi[J]``; ``width = max(hi - lo)``), contiguous for the kernels.
        packed_t: :attr:`packed` transposed per block, ``float32 (out_blocks, 8 * width, 8)``,
            contiguous (the horizontal pass reads it).
        lo, hi: ``int64 (out_blocks,)``: output block J uses input blocks ``lo[J] .. hi[J] - 1`` only.
        in_blocks: input blocks of the axis.
        sink_fields: ``(packed, lo, hi, packed_t addresses, out_blocks, 8 width)``: what the
            reader's sink table holds for this operator (the arrays live as long as it does).
    """

    packed: np.ndarray
    packed_t: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    in_blocks: int
    sink_fields: tuple[int, ...]

    @functools.cached_property
    def matrix(self) -> np.ndarray:
        """The dense map, ``float32 (8 * out_blocks, 8 * in_blocks)``; row ``8 * J + f`` is output
        block J's frequency f, column ``8 * j + g`` input block j's frequency g (references
        and tests; the kernels use :attr:`packed`)."""
        out = np.zeros((8 * self.out_blocks, 8 * self.in_blocks), np.float32)
        for jj in range(self.out_blocks):
            lo, hi = int(self.lo[jj]), int(self.hi[jj])
            out[8 * jj:8 * jj + 8, 8 * lo:8 * hi] = self.packed[jj, :, :8 * (hi - lo)]
        return out

    @property
    def out_blocks(self) -> int:
        return self.packed.shape[0]


@functools.lru_cache(maxsize=1024)        # ~30-60 kB each; planning an uncached size is cheap
def axis_operator(in_len: int, in_blocks: int, out_len_total: float, start: float, out_blocks: int,
                  flip: bool = False) -> AxisOperator:
    """The coefficient-domain operator of one axis (cached: batches of same-sized photos share it).

    Built band by band (each output block's 8 rows of ``R`` against its own input blocks, then
    the two 8-point DCTs), in time proportional to the output, not to the image: an uncached
    photo size costs tens of microseconds, not a dense product over the whole axis.

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
    packed, packed_t, lo, hi, addresses = _build_operator(int(in_len), float(in_len) / float(out_len_total),
                                                          float(start), int(out_blocks), bool(flip), DCT8)
    pv, vlo, vhi, pht = (int(a) for a in addresses)
    return AxisOperator(packed, packed_t, lo, hi, int(in_blocks),
                        (pv, vlo, vhi, pht, packed.shape[0], packed.shape[2]))


@njit(cache=True, nogil=True)
def _build_operator(in_len, scale, start, out_blocks, flip, dct8):
    """:func:`axis_operator`'s arrays: ``(packed float32 (out_blocks, 8, 8 band), packed_t
    float32 (out_blocks, 8 band, 8), lo, hi int64 (out_blocks,), their addresses int64 (4,))``.
    Pillow's taps per output pixel (:func:`_bilinear_taps`), each output block's input blocks
    from its pixels' first and last nonzero taps, then ``M_J[f, (j, g)] = sum_{a, b} dct8[f, a] R_J[a, (j, b)]
    dct8[g, b]`` in float64: the inner product over each pixel's few taps only (R is sparse),
    the outer one dense."""
    count = 8 * out_blocks
    first, w = _bilinear_taps(in_len, start, count, scale, flip)
    used_first = np.empty(count, np.int64)
    used_last = np.empty(count, np.int64)
    for q in range(count):               # each output pixel's first and last nonzero tap
        a = 0
        while w[q, a] == 0.0:
            a += 1
        b = w.shape[1] - 1
        while w[q, b] == 0.0:
            b -= 1
        used_first[q] = first[q] + a
        used_last[q] = first[q] + b
    lo = np.empty(out_blocks, np.int64)
    hi = np.empty(out_blocks, np.int64)
    band = 1
    for jj in range(out_blocks):
        lo[jj] = used_first[8 * jj:8 * jj + 8].min() // 8
        hi[jj] = used_last[8 * jj:8 * jj + 8].max() // 8 + 1
        band = max(band, hi[jj] - lo[jj])
    packed = np.zeros((out_blocks, 8, 8 * band), np.float32)
    packed_t = np.zeros((out_blocks, 8 * band, 8), np.float32)
    cols = np.zeros((8, 8 * band))
    prod = np.zeros((8, 8 * band))
    for jj in range(out_blocks):
        # cols[a, (j, g)] = sum_b R_J[a, (j, b)] dct8[g, b], over output pixel a's taps only
        cols[:, :] = 0.0
        for a in range(8):
            q = 8 * jj + a
            for x in range(used_first[q], used_last[q] + 1):
                weight = w[q, x - first[q]]
                if weight == 0.0:
                    continue
                rel = x - 8 * lo[jj]
                base = rel - rel % 8
                b = rel % 8
                for g in range(8):
                    cols[a, base + g] += weight * dct8[g, b]
        n = 8 * (hi[jj] - lo[jj])
        prod[:, :] = 0.0
        for f in range(8):               # contiguous inner loops (vectorised)
            for a in range(8):
                d = dct8[f, a]
                for c in range(n):
                    prod[f, c] += d * cols[a, c]
        for f in range(8):
            for c in range(n):
                packed[jj, f, c] = prod[f, c]
                packed_t[jj, c, f] = prod[f, c]
    addresses = np.array([packed.ctypes.data, lo.ctypes.data, hi.ctypes.data, packed_t.ctypes.data], np.int64)
    return packed, packed_t, lo, hi, addresses


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


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _column_pass(z, ring, pv, vlo, vhi, r_lo, row, vfreqs, nv, t, ho):
    """Pass 1 of :func:`_resize_bands` for output block row ``row``: ``t[p ho + row, :] +=
    sum_r pv[row, vfreqs[p], r] * z[r-th row under the block row]`` for the ``nv`` needed
    vertical frequencies, two frequencies (an odd last one alone) and four rows of ``z`` per
    sweep, 16 columns per step (:func:`~dctnet.ops._simd.fma_rows16`,
    :func:`~dctnet.ops._simd.fma_row16`; rows of ``z`` and ``t`` are whole steps long). Input
    block row ``i`` is in ring slot ``(i - r_lo) % ring`` of ``z``."""
    taps = 8 * (vhi[row] - vlo[row])      # whole blocks: groups of four rows never straddle one
    width = z.shape[1]
    p = 0
    while p < nv:
        two = p + 1 < nv                   # an odd last frequency goes alone
        f0 = vfreqs[p]
        f1 = vfreqs[p + 1] if two else f0
        d0 = t[p * ho + row]
        d1 = t[(p + 1) * ho + row] if two else d0
        for r in range(0, taps, 4):
            x0, y0, u0, v0 = pv[row, f0, r], pv[row, f0, r + 1], pv[row, f0, r + 2], pv[row, f0, r + 3]
            x1, y1, u1, v1 = pv[row, f1, r], pv[row, f1, r + 1], pv[row, f1, r + 2], pv[row, f1, r + 3]
            a = 8 * ((vlo[row] - r_lo + (r >> 3)) % ring) + (r & 7)
            s0, s1, s2, s3 = z[a], z[a + 1], z[a + 2], z[a + 3]
            if two:
                for c in range(0, width, 16):
                    fma_rows16(d0, d1, s0, s1, s2, s3, c, x0, y0, u0, v0, x1, y1, u1, v1)
            else:
                for c in range(0, width, 16):
                    fma_row16(d0, s0, s1, s2, s3, c, x0, y0, u0, v0)
        p += 2


@njit(cache=True, nogil=True, fastmath=True)
def _resize_bands(coefs, qstep, pv, vlo, vhi, pht, hlo, hhi, bands, out, ch0, means, inv_stds, up):
    """The separable banded map of one plane, only the kept bands, normalised, into ``out``.

    coefs ``int16 (Hb, Wb, 64)``; qstep ``float32 (64,)``; pv ``float32 (Ho, 8, 8 width)`` (the
    vertical operator's bands, :attr:`AxisOperator.packed`) with ``vlo/vhi (Ho,)``; pht
    ``float32 (Wo, 8 width, 8)`` (the horizontal operator's bands transposed,
    :attr:`AxisOperator.packed_t`) with ``hlo/hhi (Wo,)``; bands ``int64 (K,)`` natural
    indices; out ``float32 (C, H, W)`` (one image); channel ``ch0 + j`` gets band ``bands[j]``
    as ``(value - means[j]) * inv_stds[j]``; ``up``: write each output block to the ``up x up``
    blocks it covers (nearest upsampling of chroma). All arrays C-contiguous.

    The window's coefficients, dequantised, form one matrix ``z[8 i + v, 8 j + g]`` (block row
    ``i``, vertical frequency ``v``; block column ``j``, horizontal frequency ``g``), built one
    block row at a time into a ring of as many block rows as one output block row reads, just
    ahead of pass 1, so it stays in cache.

    * Pass 1 (columns), per output block row ``I``: ``t[(f, I), :] = sum_r Mv_I[f, r] z[r]``
      over the rows under ``I``, only for the vertical frequencies ``f`` some kept band uses
      (:func:`_column_pass`).
    * Pass 2 (rows), on ``t`` as it is (no transpose): ``o[(f, I), 8 J + u] = sum_c t[(f, I), c]
      Mh_J[u, c]``, four rows of ``t`` against output block ``J``'s band at a time, the 8
      horizontal frequencies in one vector (:func:`~dctnet.ops._simd.band_dot4`).
    * The kept bands ``(f, u)``, normalised, go to their channels (up x up copies for
      upsampled chroma).

    The short vectors are explicit (:mod:`dctnet.ops._simd`): numba's loop vectoriser leaves
    these 8- and 16-element loops scalar.
    """
    ho = vlo.shape[0]
    wo = hlo.shape[0]
    r_lo = vlo.min()
    r_hi = vhi.max()
    c_lo = hlo.min()
    c_hi = hhi.max()
    nc = c_hi - c_lo
    # the vertical output frequencies the kept bands use, and their positions in t
    vpos = np.full(8, -1, np.int64)
    for kk in range(bands.shape[0]):
        vpos[bands[kk] // 8] = 0
    vfreqs = np.empty(8, np.int64)
    nv = 0
    for f in range(8):
        if vpos[f] == 0:
            vpos[f] = nv
            vfreqs[nv] = f
            nv += 1
    # ring size: the most block rows alive at once (the vertical operator moves down the plane;
    # if it ever did not, the ring holds the whole window)
    ring = 1
    seen = vhi[0]
    for row in range(ho):
        if row > 0 and vlo[row] < vlo[row - 1]:
            ring = r_hi - r_lo
            break
        seen = max(seen, vhi[row])
        ring = max(ring, seen - vlo[row])
    width = (8 * nc + 15) // 16 * 16                 # rows of z and t: whole 16-column steps
    z = np.zeros((8 * ring, width), np.float32)      # (columns past 8 nc stay zero)
    t = np.zeros((nv * ho, width), np.float32)       # rows (f, I)
    done = r_lo
    for row in range(ho):
        while done < vhi[row]:                       # dequantise the block rows this row needs
            slot = 8 * ((done - r_lo) % ring)
            block_row = coefs[done].ravel()
            for v in range(0, 8, 2):
                z0 = z[slot + v]
                z1 = z[slot + v + 1]
                for j in range(nc):
                    dequantise16(z0, z1, 8 * j, block_row, 64 * (c_lo + j) + 8 * v, qstep, 8 * v)
            done += 1
        _column_pass(z, ring, pv, vlo, vhi, r_lo, row, vfreqs, nv, t, ho)
    # pass 2: four rows of t at a time (the last group repeats the last row)
    nrow = nv * ho
    ow = 8 * wo
    o = np.empty(((nrow + 3) // 4 * 4, ow), np.float32)
    op_stride = 8 * pht.shape[1]
    for rg in range(0, nrow, 4):
        r0 = t[rg]
        r1 = t[min(rg + 1, nrow - 1)]
        r2 = t[min(rg + 2, nrow - 1)]
        r3 = t[min(rg + 3, nrow - 1)]
        for jj in range(wo):
            band_dot4(o, rg * ow + 8 * jj, ow, r0, r1, r2, r3, 8 * (hlo[jj] - c_lo), pht, jj * op_stride,
                      8 * (hhi[jj] - hlo[jj]))
    for kk in range(bands.shape[0]):
        k = bands[kk]
        p = vpos[k // 8]
        u = k % 8
        m = means[kk]
        s = inv_stds[kk]
        for ii in range(ho):
            src = o[p * ho + ii]
            first = out[ch0 + kk, up * ii]
            if up == 1:                              # (a loop of its own: 5x faster than the general one)
                for jj in range(wo):
                    first[jj] = (src[8 * jj + u] - m) * s
                continue
            for jj in range(wo):
                value = (src[8 * jj + u] - m) * s
                for b in range(up):
                    first[up * jj + b] = value
            for a in range(1, up):
                copy = out[ch0 + kk, up * ii + a]
                for e in range(up * wo):
                    copy[e] = first[e]


def _plane_samples(info, c: int) -> tuple[int, int]:
    """A component's real samples ``(rows, cols)`` (libjpeg's downsampled_height/width)."""
    hmax = max(h for h, _ in info.sampling)
    vmax = max(v for _, v in info.sampling)
    h, v = info.sampling[c]
    return -(-info.height * v // vmax), -(-info.width * h // hmax)


CROPS = ("center", "random", "random-resized")
# torchvision RandomResizedCrop's defaults
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)


def crop_window(width: int, height: int, *, size: int, resize: int | None, crop: str = "center",
                draw: tuple[float, float] = (0.5, 0.5), generator: torch.Generator | None = None,
                scale: tuple[float, float] = RRC_SCALE,
                ratio: tuple[float, float] = RRC_RATIO) -> tuple[float, float, float, float]:
    """Where the ``size x size`` output grid lies: ``(total_w, total_h, left, top)``.

    The output pixels are ``left .. left + size - 1`` (and ``top ..``) of the image resized to
    ``total_w x total_h`` (Pillow's BILINEAR, each output pixel ``x`` centred at input
    ``(x + 0.5) * width / total_w``), the filter clamped to the image:

    * ``"center"``: the RGB pipeline's geometry (:func:`resize_geometry`): shorter side to
      ``resize``, centre crop.
    * ``"random"``: the same resize, the crop at a uniform offset: ``draw = (u_v, u_h)`` in
      ``[0, 1)`` gives ``min(floor(u * (steps + 1)), steps)`` pixels, ``steps`` = resized
      length - ``size`` (centred on an axis shorter than the crop).
    * ``"random-resized"``: torchvision's ``RandomResizedCrop`` (:func:`random_resized_crop_box`
      with ``generator``, ``scale`` and ``ratio``; ``resize`` must be None): the box, resized
      to ``size x size``; the same numbers as Pillow's ``resize((size, size), BILINEAR,
      box=...)``.
    """
    if crop == "random-resized":
        if resize is not None:
            raise ValueError("crop='random-resized' resizes the drawn box itself to the output size; pass resize=None")
        top, left, h, w = random_resized_crop_box(height, width, generator, scale, ratio)
        return width * size / w, height * size / h, left * size / w, top * size / h
    if resize is None:
        raise ValueError(f"crop={crop!r} with resampling needs resize= (the shorter side before the crop)")
    new_w, new_h, left, top = resize_geometry(width, height, resize, size)
    if crop == "random":
        steps_v, steps_h = new_h - size, new_w - size
        if steps_v >= 0:
            top = min(int(draw[0] * (steps_v + 1)), steps_v)
        if steps_h >= 0:
            left = min(int(draw[1] * (steps_h + 1)), steps_h)
    elif crop != "center":
        raise ValueError(f"crop must be one of {CROPS}, not {crop!r}")
    return float(new_w), float(new_h), float(left), float(top)


@dataclass(frozen=True)
class PlanePlan:
    """How one component of one image becomes its channels (shared by the Python route and the
    reader's sink). ``ops`` is None for a constant plane (gray images' chroma)."""

    component: int
    ops: tuple[AxisOperator, AxisOperator] | None
    blocks: tuple[int, int]     # the plane's (rows, cols) in blocks the operators expect
    up: int                     # nearest upsampling of the output (upsampled chroma: 2)
    output: int                 # 0: the first output tensor, 1: late_concat's cbcr
    channel: int                # first channel in that output
    stat: int                   # first statistic (index into the layout's mean/std)
    bands: np.ndarray           # int64 (K,) natural band indices


@functools.lru_cache(maxsize=64)
def _layout_bands(layout: DCTLayout) -> tuple[np.ndarray, ...]:
    """The layout's band lists as int64 arrays (one per component; shared, never written)."""
    return tuple(np.asarray(bands, np.int64) for bands in layout.band_indices())


def plane_plans(info, block_shapes, layout: DCTLayout, size: int,
                window: tuple[float, float, float, float], flip: bool) -> list[PlanePlan]:
    """Per component of the layout, what :func:`_resize_bands` needs for one image.

    ``info``: a :class:`~dctnet.codec.DCTImage` or :class:`~dctnet.codec.JPEGHeader` (width,
    height, sampling, colorspace); ``block_shapes``: its planes' (rows, cols) in blocks.
    Raises :class:`~dctnet.JPEGError` naming the image for colour spaces no layout takes.
    """
    if info.colorspace not in ("ycbcr", "gray") or len(info.sampling) not in (1, 3):
        raise JPEGError(info.source, f"{info.colorspace} images cannot be brought to a YCbCr layout")
    total_w, total_h, left, top = window
    g = size // 8
    plans = []
    channel = 0
    all_bands = _layout_bands(layout)
    ny = len(all_bands[0])
    for c, band_array in enumerate(all_bands):
        bands = band_array
        late = layout.kind == "late_concat" and c > 0
        output, ch0 = (1, channel - ny) if late else (0, channel)
        if c >= len(info.sampling):
            plans.append(PlanePlan(c, None, (0, 0), 1, output, ch0, channel, band_array))
        else:
            rows, cols = _plane_samples(info, c)
            brows, bcols = block_shapes[c]
            if c == 0:
                ops = (axis_operator(rows, brows, total_h, top, g),
                       axis_operator(cols, bcols, total_w, left, g, bool(flip)))
                up = 1
            else:                      # the layout's chroma grid: half the luma output
                ops = (axis_operator(rows, brows, total_h / 2, top / 2, g // 2),
                       axis_operator(cols, bcols, total_w / 2, left / 2, g // 2, bool(flip)))
                up = 2 if layout.kind == "upsampling" else 1
            plans.append(PlanePlan(c, ops, (brows, bcols), up, output, ch0, channel, band_array))
        channel += len(bands)
    return plans


def resize_image_into(img: DCTImage, layout: DCTLayout, size: int, window: tuple[float, float, float, float],
                      outs: tuple, row: int, flip: bool = False) -> None:
    """One image, resampled in the DCT domain onto the output grid ``window``
    (:func:`crop_window`), into row ``row`` of ``outs``.

    Args:
        img: any sampling (YCbCr or gray; gray gets zero chroma, normalised).
        layout: bands, kind and statistics of the output.
        size: output side in pixels.
        window: ``(total_w, total_h, left, top)`` from :func:`crop_window`.
        outs: NumPy views of the output tensor(s) as :func:`dctnet.ops.to_tensor` makes them
            (``(B, C, size/8, size/8)``, or Y and CbCr for ``late_concat``).
        flip: horizontal flip of the crop.

    Raises :class:`~dctnet.JPEGError` naming the image for colour spaces no layout takes (CMYK).
    """
    means, inv_stds = normalisation(layout)
    for plan in plane_plans(img, [p.shape[:2] for p in img.planes], layout, size, window, flip):
        n = len(plan.bands)
        target = outs[plan.output][row]
        m, s = means[plan.stat:plan.stat + n], inv_stds[plan.stat:plan.stat + n]
        if plan.ops is None:           # gray: zero chroma, normalised
            target[plan.channel:plan.channel + n] = ((0.0 - m) * s)[:, None, None]
            continue
        ro, co = plan.ops
        c = plan.component
        qstep = (img.qtables[c].astype(np.float32) if layout.dequantize else np.ones(64, np.float32))
        _resize_bands(np.ascontiguousarray(img.planes[c]), qstep, ro.packed, ro.lo, ro.hi, co.packed_t, co.lo, co.hi,
                      plan.bands, target, plan.channel, m, s, plan.up)


def resize_image_into_tensors(img: DCTImage, layout: DCTLayout, size: int, window: tuple[float, float, float, float],
                              outs: tuple[torch.Tensor, ...], row: int, flip: bool = False) -> None:
    """:func:`resize_image_into` with the Triton kernel (:func:`dctnet.ops._triton.resize_plane_triton`)
    on the device of ``outs`` (CUDA, or CPU tensors under ``TRITON_INTERPRET=1``): each plane's
    64 output coefficients per block, then band selection, normalisation and chroma
    upsampling as tensor operations on that device."""
    from ._triton import resize_plane_triton   # optional dependency, imported where used

    dev = outs[0].device
    means, inv_stds = (torch.from_numpy(a).to(dev) for a in normalisation(layout))
    for plan in plane_plans(img, [p.shape[:2] for p in img.planes], layout, size, window, flip):
        n = len(plan.bands)
        m, s = means[plan.stat:plan.stat + n, None, None], inv_stds[plan.stat:plan.stat + n, None, None]
        target = outs[plan.output][row, plan.channel:plan.channel + n]
        if plan.ops is None:           # gray: zero chroma, normalised
            target.copy_(((0.0 - m) * s).expand_as(target))
            continue
        ro, co = plan.ops
        c = plan.component
        qstep = img.qtables[c].astype(np.float32) if layout.dequantize else np.ones(64, np.float32)
        dense = resize_plane_triton(*(torch.from_numpy(np.ascontiguousarray(a)).to(dev) for a in (
            img.planes[c], qstep, ro.packed, ro.lo, co.packed_t, co.lo)))
        values = (dense[:, :, torch.from_numpy(plan.bands).to(dev)].permute(2, 0, 1) - m) * s
        if plan.up > 1:
            values = values.repeat_interleave(plan.up, 1).repeat_interleave(plan.up, 2)
        target.copy_(values)


def check_resize_arguments(layout: DCTLayout, size: int, resize: int | None, crop: str) -> None:
    """``ValueError`` naming the problem with a resampling call's crop, size or resize."""
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS} when resampling, not {crop!r}")
    unit = 8 if layout.kind == "y_only" else 16
    if not isinstance(size, (int, np.integer)) or size <= 0 or size % unit:
        raise ValueError(f"size must be a positive multiple of {unit} pixels for a {layout.kind} layout, not {size!r}")
    if crop == "random-resized":
        if resize is not None:
            raise ValueError("crop='random-resized' resizes the drawn box itself to the output size; pass resize=None")
    elif not isinstance(resize, (int, np.integer)) or resize <= 0:
        raise ValueError(f"resize must be a positive number of pixels, not {resize!r}")


def crop_draws(crop: str, batch: int, generator: torch.Generator | None) -> np.ndarray:
    """The per-image randomness of a batch's crops, drawn before anything is read so that every
    route (``to_tensor``, ``read_to_tensor``) gives the same crops: ``"random"``: ``float64
    (B, 2)`` uniforms; ``"random-resized"``: ``int64 (B,)`` seeds of one generator per image
    (the box depends on the image's size, which a failed read never reveals); else zeros."""
    if crop == "random":
        return random_crop_draws(batch, generator)
    if crop == "random-resized":
        return torch.randint(0, 2 ** 62, (batch,), generator=generator, dtype=torch.int64).numpy()
    return np.zeros((batch, 2))


def image_window(info, layout: DCTLayout, size: int, resize: int | None, crop: str, draw) -> tuple:
    """:func:`crop_window` of one image with its draw from :func:`crop_draws`."""
    if crop == "random-resized":
        g = torch.Generator()
        g.manual_seed(int(draw))
        return crop_window(info.width, info.height, size=size, resize=None, crop=crop, generator=g)
    return crop_window(info.width, info.height, size=size, resize=resize, crop=crop,
                       draw=(float(draw[0]), float(draw[1])))


def resize_to_tensor(images: Sequence[DCTImage], layout: DCTLayout, *, size: int, resize: int | None,
                     crop: str = "center", flip: np.ndarray | None = None, draws: np.ndarray | None = None,
                     generator: torch.Generator | None = None, out=None, threads: int | None = None,
                     errors: list | None = None, backend: str = "numba", device: torch.device | str | None = None):
    """DCTImages resampled like the RGB pipeline, into the layout's tensors.

    Args:
        images: ``DCTImage`` s of any sampling (YCbCr or gray); ``None`` entries (items that
            failed before) give zero rows.
        layout: what the model takes.
        size: crop side in pixels (multiple of 16; 8 for ``y_only``).
        resize: the shorter side the image is resized to before the crop (RGB pipeline's rule;
            ``None`` for ``"random-resized"``).
        crop: ``"center"``, ``"random"`` (random offset in the resized image) or
            ``"random-resized"`` (torchvision's RandomResizedCrop): :func:`crop_window`.
        flip: ``bool (B,)`` horizontal flips, or ``None``.
        draws: the batch's crop draws (:func:`crop_draws`); drawn from ``generator`` when None.
        out: output tensor(s) to write into (as :func:`dctnet.ops.to_tensor` returns them).
        threads: images are processed on this many threads (the kernel releases the GIL).
        errors: a list of length B to collect per-image errors in (rows of failed images are
            zero; entries already set are kept); ``None``: raise the first.
        backend: ``"numba"`` (CPU) or ``"triton"`` (CUDA outputs; CPU only under
            ``TRITON_INTERPRET=1``): :func:`resize_image_into_tensors`, one image at a time.
        device: output device when ``out`` is not given (default CPU).

    Returns:
        ``float32 (B, C, size/8, size/8)`` (``(y, cbcr)`` for ``late_concat``).
    """
    check_resize_arguments(layout, size, resize, crop)
    if backend not in ("numba", "triton"):
        raise ValueError(f"resampling runs with backend 'numba' (CPU) or 'triton' (CUDA), not {backend!r}")
    b = len(images)
    g = size // 8
    shapes = output_shapes(layout, b, g, g)
    outs = tuple(torch.empty(s, dtype=torch.float32, device=device) for s in shapes) if out is None else check_out(
        out, shapes, torch.float32)
    if backend == "numba" and outs[0].device.type != "cpu":
        raise ValueError(f"the numba resampler writes CPU tensors, not {outs[0].device} (use backend='triton')")
    views = tuple(t.numpy() for t in outs) if backend == "numba" else outs
    flips = np.zeros(b, bool) if flip is None else np.asarray(flip, bool)
    draws = crop_draws(crop, b, generator) if draws is None else draws

    def work(i: int):
        try:
            if images[i] is None:           # failed before (its error is already in ``errors``)
                for v in views:
                    v[i] = 0.0
                return
            window = image_window(images[i], layout, size, resize, crop, draws[i])
            if backend == "triton":
                resize_image_into_tensors(images[i], layout, size, window, outs, i, bool(flips[i]))
            else:
                resize_image_into(images[i], layout, size, window, views, i, bool(flips[i]))
        except ValueError as e:
            for v in views:
                v[i] = 0.0
            if errors is None:
                raise
            e.__traceback__ = None          # returned errors keep no frame (and no batch) alive
            errors[i] = e

    threads = 1 if backend == "triton" else max(1, min(threads or os.cpu_count() or 1, b))
    if threads == 1:
        for i in range(b):
            work(i)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, range(b)))
    if out is not None:
        return out
    return outs if layout.kind == "late_concat" else outs[0]


# --- the reader's sink: resampling on the reader's threads -----------------------------------

# Fields of one plane's row in the sink's plan table (int64 (B, 3, PLAN_FIELDS)).
(P_MODE, P_ROWS, P_COLS, P_PV, P_VLO, P_VHI, P_HO, P_WV, P_PHT, P_HLO, P_HHI, P_WO, P_WH, P_UP, P_OUT, P_CH,
 P_STAT, P_NB, P_BANDS) = range(19)
PLAN_FIELDS = 19
MODE_NONE, MODE_RESIZE, MODE_CONST, MODE_UNUSED = 0, 1, 2, 3
# Fields of the sink's context (int64).
(RC_BATCH, RC_TABLE, RC_GEOM, RC_OUT_Y, RC_OUT_C, RC_CH_Y, RC_CH_C, RC_G, RC_MEAN, RC_INV_STD, RC_CHANNELS,
 RC_DEQUANTIZE) = range(12)
RC_SIZE = 12
_JCS_GRAYSCALE, _JCS_YCBCR = 1, 3


@njit(cache=True, nogil=True)
def _plan_fits(ctx, index, v):
    """Whether image ``index``'s plan (made from its header) fits the image the reader has
    (``v``: the sink's view): the resampling sink and its window query both refuse otherwise."""
    batch = ctx[RC_BATCH]
    plan = carray(voidptr(ctx[RC_TABLE]), (batch, 3, PLAN_FIELDS), np.int64)[index]
    geom = carray(voidptr(ctx[RC_GEOM]), (batch, 3), np.int64)       # width, height, components
    ncomp = v[VIEW_COMPONENTS]
    if plan[0, P_MODE] == MODE_NONE or geom[index, 0] != v[VIEW_WIDTH] or geom[index, 1] != v[VIEW_HEIGHT] \
            or geom[index, 2] != ncomp:
        return False
    if v[VIEW_COLORSPACE] != (_JCS_YCBCR if ncomp == 3 else _JCS_GRAYSCALE):
        return False
    for c in range(3):
        if plan[c, P_MODE] == MODE_RESIZE and (v[VIEW_ROWS + c] != plan[c, P_ROWS] or v[VIEW_COLS + c] != plan[c, P_COLS]):
            return False
    return True


@njit(cache=True, nogil=True)
def _resize_sink_body(context, index, view):
    """Resample one decoded image into its output row with the plan the caller made from the
    file's header (``RC_*`` / ``P_*`` fields above); anything unexpected (no plan, a geometry
    other than the header's) hands the image back to Python."""
    ctx = carray(context, (RC_SIZE,), np.int64)
    v = carray(view, (VIEW_SIZE,), np.int64)
    batch = ctx[RC_BATCH]
    table = carray(voidptr(ctx[RC_TABLE]), (batch, 3, PLAN_FIELDS), np.int64)
    plan = table[index]
    ncomp = v[VIEW_COMPONENTS]
    if not _plan_fits(ctx, index, v):
        return NOT_FAST_PATH
    g = ctx[RC_G]
    out_y = carray(voidptr(ctx[RC_OUT_Y]), (batch, ctx[RC_CH_Y], g, g), np.float32)
    out_c = carray(voidptr(ctx[RC_OUT_C]), (batch, ctx[RC_CH_C], g // 2, g // 2), np.float32)
    channels = ctx[RC_CHANNELS]
    means = carray(voidptr(ctx[RC_MEAN]), (channels,), np.float32)
    inv_stds = carray(voidptr(ctx[RC_INV_STD]), (channels,), np.float32)
    qt = carray(voidptr(v[VIEW_QTABLES]), (ncomp, 64), np.uint16)
    qstep = np.ones(64, np.float32)
    for c in range(3):
        p = plan[c]
        mode = p[P_MODE]
        if mode == MODE_UNUSED:
            continue
        nb = p[P_NB]
        st = p[P_STAT]
        target = out_y[index] if p[P_OUT] == 0 else out_c[index]
        if mode == MODE_CONST:
            for k in range(nb):
                target[p[P_CH] + k] = (np.float32(0.0) - means[st + k]) * inv_stds[st + k]
            continue
        rows = p[P_ROWS]
        cols = p[P_COLS]
        ho = p[P_HO]
        wo = p[P_WO]
        plane = carray(voidptr(v[VIEW_PLANES + c]), (rows, cols, 64), np.int16)
        if ctx[RC_DEQUANTIZE]:
            for k in range(64):
                qstep[k] = np.float32(qt[c, k])
        _resize_bands(plane, qstep,
                      carray(voidptr(p[P_PV]), (ho, 8, p[P_WV]), np.float32),
                      carray(voidptr(p[P_VLO]), (ho,), np.int64), carray(voidptr(p[P_VHI]), (ho,), np.int64),
                      carray(voidptr(p[P_PHT]), (wo, p[P_WH], 8), np.float32),
                      carray(voidptr(p[P_HLO]), (wo,), np.int64), carray(voidptr(p[P_HHI]), (wo,), np.int64),
                      carray(voidptr(p[P_BANDS]), (nb,), np.int64), target, p[P_CH],
                      means[st:st + nb], inv_stds[st:st + nb], p[P_UP])
    return CONSUMED


@njit(cache=True, nogil=True)
def _resize_window_body(context, index, view, window):
    """The blocks :func:`_resize_sink_body` will read of image ``index``, from its header (the
    reader's window query; ``window``: int64 ``[row0, row1, col0, col1]`` per component, 3):
    the union of its operators' input ranges ``lo .. hi - 1``. Refuses (nonzero) exactly
    where the sink would refuse the image."""
    ctx = carray(context, (RC_SIZE,), np.int64)
    v = carray(view, (VIEW_SIZE,), np.int64)
    w = carray(window, (12,), np.int64)
    batch = ctx[RC_BATCH]
    table = carray(voidptr(ctx[RC_TABLE]), (batch, 3, PLAN_FIELDS), np.int64)
    plan = table[index]
    ncomp = v[VIEW_COMPONENTS]
    if not _plan_fits(ctx, index, v):
        return NOT_FAST_PATH
    w[:] = 0
    for c in range(min(ncomp, 3)):
        p = plan[c]
        if p[P_MODE] != MODE_RESIZE:
            continue                                  # not read: an empty window
        ho = p[P_HO]
        wo = p[P_WO]
        vlo = carray(voidptr(p[P_VLO]), (ho,), np.int64)
        vhi = carray(voidptr(p[P_VHI]), (ho,), np.int64)
        hlo = carray(voidptr(p[P_HLO]), (wo,), np.int64)
        hhi = carray(voidptr(p[P_HHI]), (wo,), np.int64)
        w[4 * c], w[4 * c + 1] = vlo.min(), vhi.max()
        w[4 * c + 2], w[4 * c + 3] = hlo.min(), hhi.max()
    return CONSUMED


_RESIZE_WINDOW = None


def resize_window_address() -> int:
    """Address of the resampling sink's window query (a numba cfunc over
    :func:`_resize_window_body`; the reader's ``SinkWindow``)."""
    global _RESIZE_WINDOW
    if _RESIZE_WINDOW is None:
        @cfunc(types.int32(types.voidptr, types.int64, types.voidptr, types.voidptr), cache=True, nopython=True)
        def window(context, index, view, out):
            return _resize_window_body(context, index, view, out)

        _RESIZE_WINDOW = window
    return _RESIZE_WINDOW.address


_RESIZE_SINK = None


def resize_sink_address() -> int:
    """Address of the resampling reader sink (a numba cfunc over :func:`_resize_sink_body`)."""
    global _RESIZE_SINK
    if _RESIZE_SINK is None:
        @cfunc(types.int32(types.voidptr, types.int64, types.voidptr), cache=True, nopython=True)
        def sink(context, index, view):
            return _resize_sink_body(context, index, view)

        _RESIZE_SINK = sink
    return _RESIZE_SINK.address


#: SinkPlan rows by (layout, size, geometry, window, flip), with the objects owning what they
#: point to (operators, band arrays). Cleared when full; 256 rows keep at most about 1000
#: operators alive, as many as :func:`axis_operator`'s own cache.
_PLAN_ROWS: dict = {}
_PLAN_ROWS_MAX = 256
#: (layout, size) -> a small number standing for it in :data:`_PLAN_ROWS`'s keys (a layout with
#: normalisation statistics takes microseconds to hash: once per batch, not per image).
_PLAN_LAYOUTS: dict = {}
_PLAN_LAYOUT_NUMBERS = itertools.count()          # never reused, even after a clear


def clear_plan_caches() -> None:
    """Forget every planned operator and sink row (benchmarks of photo sizes never seen before)."""
    axis_operator.cache_clear()
    _PLAN_ROWS.clear()
    _PLAN_LAYOUTS.clear()


class SinkPlan:
    """The sink's context and plan table for one batch, and the arrays they point to (which
    must stay alive while the reader runs: keep this object)."""

    def __init__(self, layout: DCTLayout, size: int, outs: tuple[torch.Tensor, ...], batch: int):
        self.table = np.zeros((batch, 3, PLAN_FIELDS), np.int64)      # MODE_NONE: no plan
        self.geom = np.zeros((batch, 3), np.int64)
        self.means, self.inv_stds = normalisation(layout)
        self.keep: list = [_layout_bands(layout)]    # (cached, but the table must not outlive them)
        ctx = np.zeros(RC_SIZE, np.int64)
        ctx[RC_BATCH] = batch
        ctx[RC_TABLE] = self.table.ctypes.data
        ctx[RC_GEOM] = self.geom.ctypes.data
        ctx[RC_OUT_Y] = outs[0].data_ptr()
        ctx[RC_OUT_C] = outs[-1].data_ptr()
        ctx[RC_CH_Y] = outs[0].shape[1]
        ctx[RC_CH_C] = outs[-1].shape[1]
        ctx[RC_G] = size // 8
        ctx[RC_MEAN] = self.means.ctypes.data
        ctx[RC_INV_STD] = self.inv_stds.ctypes.data
        ctx[RC_CHANNELS] = self.means.shape[0]
        ctx[RC_DEQUANTIZE] = bool(layout.dequantize)
        self.context = ctx
        self.layout, self.size = layout, size
        if len(_PLAN_LAYOUTS) >= _PLAN_ROWS_MAX:
            clear_plan_caches()
        memo = _PLAN_LAYOUTS.get((layout, size))
        if memo is None:
            memo = _PLAN_LAYOUTS.setdefault((layout, size), next(_PLAN_LAYOUT_NUMBERS))
        self._memo = memo

    def add(self, index: int, header, window: tuple, flip: bool) -> None:
        """Plan image ``index`` from its header (raises ``ValueError`` for images no layout takes:
        the item is then left to the Python route, which names the problem).

        Photos of one size with one crop share their table rows (:data:`_PLAN_ROWS`): most
        batches repeat a few sizes, and a row costs about 10 us of Python to make."""
        key = (self._memo, header.width, header.height, tuple(header.sampling), header.colorspace,
               tuple(header.block_shapes), tuple(window), bool(flip))
        made = _PLAN_ROWS.get(key)
        if made is None:
            made = self._rows(header, window, flip)
            if len(_PLAN_ROWS) >= _PLAN_ROWS_MAX:
                _PLAN_ROWS.clear()
            _PLAN_ROWS[key] = made
        self.table[index] = made[0]
        self.keep.append(made[1])                        # what the row's addresses point into
        self.geom[index] = header.width, header.height, len(header.sampling)

    def _rows(self, header, window: tuple, flip: bool) -> tuple[np.ndarray, tuple]:
        """``(int64 (3, PLAN_FIELDS) table rows, the objects owning the arrays they point to)``."""
        plans = plane_plans(header, header.block_shapes, self.layout, self.size, window, flip)
        rows = [[MODE_UNUSED] + [0] * (PLAN_FIELDS - 1) for _ in range(3)]
        owners: list = []
        for plan in plans:
            r = rows[plan.component]
            r[P_OUT], r[P_CH], r[P_STAT], r[P_NB] = plan.output, plan.channel, plan.stat, len(plan.bands)
            r[P_BANDS] = plan.bands.ctypes.data          # the layout's cached arrays (_layout_bands)
            owners.append(plan.bands)
            if plan.ops is None:
                r[P_MODE] = MODE_CONST
                continue
            ro, co = plan.ops
            owners += (ro, co)                           # the operators own the arrays the table points to
            r[P_MODE] = MODE_RESIZE
            r[P_ROWS], r[P_COLS] = plan.blocks
            r[P_PV], r[P_VLO], r[P_VHI], _, r[P_HO], r[P_WV] = ro.sink_fields
            _, r[P_HLO], r[P_HHI], r[P_PHT], r[P_WO], r[P_WH] = co.sink_fields
            r[P_UP] = plan.up
        return np.asarray(rows, np.int64), tuple(owners)
