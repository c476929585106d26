"""Triton backend: BlockBatch -> selected, dequantised, normalised, chroma-aligned,
channel-major tensor in one pass (one launch per component; every coefficient is read once
and every output element written once).

Written for Ampere/Hopper: a program takes ``BLOCK_P`` consecutive 8x8 blocks of one image
(raster order) and loads them whole as one ``[BLOCK_P, 64]`` tile: a single contiguous
range of ``BLOCK_P * 128`` bytes (int16) read by neighbouring lanes, i.e. fully coalesced.
The selected bands are picked from registers with ``tl.gather`` (no second memory access).
Stores go channel by channel along image rows (``pos`` is the fastest output index), i.e.
coalesced, one write per output element. Chroma of the ``upsampling`` layout is written to its 2x2
output positions from registers (nearest-neighbour upsampling without a second pass).

Under ``TRITON_INTERPRET=1`` (set before this module is imported) the same kernel runs on
CPU tensors; that is how the test suite checks it.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .layout import BlockBatch, DCTLayout
from .reference import normalisation

__all__ = ["blocks_to_tensor_triton", "resize_plane_triton"]


@triton.jit
def _gather_kernel(src, qsteps, bands, mean, inv_std, out,
                   n_pos, src_w, n_bands, comp, stat_off, ch_off, out_c, out_h, out_w,
                   UP: tl.constexpr, NORMALISE: tl.constexpr, BLOCK_P: tl.constexpr, NB: tl.constexpr):
    b = tl.program_id(1).to(tl.int64)
    pos = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)     # block index in the plane
    j = tl.arange(0, NB)                                         # band slot (padded to a power of two)
    pmask = pos < n_pos
    jmask = j < n_bands
    k = tl.load(bands + j, mask=jmask, other=0)                  # natural coefficient index
    q = tl.load(qsteps + b * 192 + comp * 64 + k, mask=jmask, other=0.0)
    mask = pmask[:, None] & jmask[None, :]
    whole = tl.load(src + (b * n_pos + pos[:, None]) * 64 + tl.arange(0, 64)[None, :], mask=pmask[:, None], other=0)
    x = tl.gather(whole, tl.broadcast_to(k[None, :], (BLOCK_P, NB)), axis=1)
    v = x.to(tl.float32) * q[None, :]
    if NORMALISE:
        m = tl.load(mean + stat_off + j, mask=jmask, other=0.0)
        s = tl.load(inv_std + stat_off + j, mask=jmask, other=1.0)
        v = (v - m[None, :]) * s[None, :]
    v = v.to(out.dtype.element_ty)
    r = pos // src_w
    c = pos % src_w
    plane = out + (b * out_c + ch_off + j[None, :]).to(tl.int64) * (out_h * out_w)
    if UP:
        row = (2 * r)[:, None] * out_w + (2 * c)[:, None]
        tl.store(plane + row, v, mask=mask)
        tl.store(plane + row + 1, v, mask=mask)
        tl.store(plane + row + out_w, v, mask=mask)
        tl.store(plane + row + out_w + 1, v, mask=mask)
    else:
        tl.store(plane + (r * out_w + c)[:, None], v, mask=mask)


#: No FMA contraction: ``(x * q - mean) * inv_std`` is rounded step by step exactly as in the
#: torch and numba backends (and Triton 3.9 warns when fusion is left to its default).
_COMPILE_OPTIONS = {"enable_fp_fusion": False}


def _block_p(n_pos: int, interpreting: bool) -> int:
    # GPU: 64 blocks x up to 64 bands = 4096 elements per program. The interpreter pays
    # ~3 ms per program, so it gets fewer, larger programs.
    cap = 1024 if interpreting else 64
    return max(16, min(cap, triton.next_power_of_2(n_pos)))


def blocks_to_tensor_triton(blocks: BlockBatch, layout: DCTLayout, outs: tuple[torch.Tensor, ...]) -> None:
    """Write the layout's tensor(s) for ``blocks`` into ``outs`` (contiguous, on the blocks' device).

    ``outs`` are as :func:`~dctnet.ops.to_tensor` returns them (one tensor, or Y and CbCr).
    """
    interpreting = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
    device = blocks.y.device
    for t in outs:
        if t.device != device or not t.is_contiguous():
            raise ValueError(f"outputs must be contiguous tensors on {device}")
    band_lists = layout.band_indices()
    planes = [blocks.y] if layout.kind == "y_only" else [blocks.y, blocks.cb, blocks.cr]
    qsteps = blocks.qsteps.to(device=device, dtype=torch.float32).contiguous()
    mean, inv_std = (torch.from_numpy(a).to(device) for a in normalisation(layout))
    stat_off = 0
    for comp, (plane, bl) in enumerate(zip(planes, band_lists)):
        plane = plane.contiguous()
        bsz, h, w, _ = plane.shape
        if layout.kind == "late_concat" and comp > 0:
            out, ch_off = outs[1], stat_off - len(band_lists[0])
        else:
            out, ch_off = outs[0], stat_off
        up = layout.kind == "upsampling" and comp > 0
        n_pos = h * w
        if bsz and n_pos:
            bands = torch.tensor(bl, dtype=torch.int32, device=device)
            block_p = _block_p(n_pos, interpreting)
            grid = (triton.cdiv(n_pos, block_p), bsz)
            _gather_kernel[grid](plane, qsteps, bands, mean, inv_std, out,
                                 n_pos, w, len(bl), comp, stat_off, ch_off, out.shape[1], out.shape[2], out.shape[3],
                                 UP=up, NORMALISE=layout.mean is not None, BLOCK_P=block_p,
                                 NB=triton.next_power_of_2(len(bl)), **_COMPILE_OPTIONS)
        stat_off += len(bl)


# --- DCT-domain resampling (dctnet.ops.resize) ---------------------------------------------------

@triton.jit
def _resize_kernel(src, qstep, pv, vlo, pht, hlo, dst, src_h, src_w, out_w, wv, wh,
                   BV: tl.constexpr, BH: tl.constexpr):
    """One output block (I, J) = ``Mv_I · Z · Mh_Jᵀ``: ``Z`` the dequantised coefficients of the
    input blocks under the filter, laid out ``[8 i + v, 8 j + g]`` (``BV x BH``, masked past
    the operator's band and the plane), two small matrix products, all 64 coefficients out."""
    I = tl.program_id(0).to(tl.int64)
    J = tl.program_id(1).to(tl.int64)
    r = tl.arange(0, BV)
    c = tl.arange(0, BH)
    f = tl.arange(0, 16)                       # output frequencies (8, padded for tl.dot)
    i = tl.load(vlo + I) + r // 8
    j = tl.load(hlo + J) + c // 8
    rmask = (r < wv) & (i < src_h)
    cmask = (c < wh) & (j < src_w)
    k = (r % 8)[:, None] * 8 + (c % 8)[None, :]
    zmask = rmask[:, None] & cmask[None, :]
    z = tl.load(src + (i[:, None] * src_w + j[None, :]) * 64 + k, mask=zmask, other=0).to(tl.float32)
    z = z * tl.load(qstep + k, mask=zmask, other=0.0)
    mv = tl.load(pv + (I * 8 + f[:, None]) * wv + r[None, :], mask=(f[:, None] < 8) & (r[None, :] < wv), other=0.0)
    mh = tl.load(pht + (J * wh + c[:, None]) * 8 + f[None, :], mask=(c[:, None] < wh) & (f[None, :] < 8),
                 other=0.0)
    t = tl.dot(mv, z, input_precision="ieee")                 # (16, BH)
    o = tl.dot(t, mh, input_precision="ieee")                 # (16, 16)
    tl.store(dst + (I * out_w + J) * 64 + f[:, None] * 8 + f[None, :], o, mask=(f[:, None] < 8) & (f[None, :] < 8))


def resize_plane_triton(plane: torch.Tensor, qstep: torch.Tensor, pv: torch.Tensor, vlo: torch.Tensor,
                        pht: torch.Tensor, hlo: torch.Tensor) -> torch.Tensor:
    """All 64 output coefficients of one resampled plane.

    Args:
        plane: ``int16 (Hb, Wb, 64)`` quantised coefficients, contiguous, on the kernel's device.
        qstep: ``float32 (64,)`` dequantisation steps (ones for raw coefficients).
        pv, vlo: the vertical operator's packed bands ``float32 (Ho, 8, 8 width)`` and first
            input blocks ``int64 (Ho,)`` (:class:`dctnet.ops.resize.AxisOperator`).
        pht, hlo: the horizontal operator's transposed bands ``float32 (Wo, 8 width, 8)`` and
            first input blocks ``int64 (Wo,)``.

    Returns:
        ``float32 (Ho, Wo, 64)`` on the same device.
    """
    ho, wv = pv.shape[0], pv.shape[2]
    wo, wh = pht.shape[0], pht.shape[1]
    dst = torch.empty((ho, wo, 64), dtype=torch.float32, device=plane.device)
    bv = max(16, triton.next_power_of_2(wv))
    bh = max(16, triton.next_power_of_2(wh))
    _resize_kernel[(ho, wo)](plane, qstep, pv, vlo, pht, hlo, dst, plane.shape[0], plane.shape[1], wo, wv, wh,
                             BV=bv, BH=bh, **_COMPILE_OPTIONS)
    return dst
