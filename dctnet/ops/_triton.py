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

__all__ = ["blocks_to_tensor_triton"]


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
