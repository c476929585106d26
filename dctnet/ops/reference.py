"""Torch reference of the per-channel gather (the oracle the numba and Triton kernels are tested against).

Plain tensor indexing, nothing clever: select bands, multiply by quantisation steps,
normalise, move channels first, upsample chroma x2 by nearest neighbour (``upsampling``).
Float formula, the same in every backend: ``(float32(coef) * qstep - mean) * inv_std`` in
float32, with ``inv_std = float32(1 / float64(std))`` (see :func:`normalisation`).
"""

from __future__ import annotations

import numpy as np
import torch

from .layout import BlockBatch, DCTLayout

__all__ = ["blocks_to_tensor_torch", "check_block_batch", "normalisation"]


def check_block_batch(blocks: BlockBatch, layout: DCTLayout) -> None:
    """Raise ``ValueError`` naming the problem if ``blocks`` does not fit ``layout``.

    Chroma planes may have ``ceil`` or ``floor`` of half the luma block counts (odd sizes)."""
    if not isinstance(blocks, BlockBatch):
        raise TypeError(f"expected a BlockBatch, got {type(blocks).__name__}")
    y = blocks.y
    if y.dim() != 4 or y.shape[-1] != 64:
        raise ValueError(f"BlockBatch.y must be (B, Hb, Wb, 64), got {tuple(y.shape)}")
    if y.dtype not in (torch.int16, torch.float32):
        raise ValueError(f"BlockBatch.y must be int16 or float32, got {y.dtype}")
    b, hb, wb, _ = y.shape
    if tuple(blocks.qsteps.shape) != (b, 3, 64):
        raise ValueError(f"BlockBatch.qsteps must be (B, 3, 64) = {(b, 3, 64)}, got {tuple(blocks.qsteps.shape)}")
    if layout.kind == "y_only":
        return
    for name in ("cb", "cr"):
        plane = getattr(blocks, name)
        if plane is None:
            raise ValueError(f"{layout.kind} layout needs BlockBatch.{name}, got None")
        if plane.dtype not in (torch.int16, torch.float32):
            raise ValueError(f"BlockBatch.{name} must be int16 or float32, got {plane.dtype}")
        if plane.device != y.device:
            raise ValueError(f"BlockBatch.{name} is on {plane.device}, y on {y.device}")
        if (plane.dim() != 4 or plane.shape[0] != b or plane.shape[-1] != 64
                or plane.shape[1] not in (hb // 2, (hb + 1) // 2) or plane.shape[2] not in (wb // 2, (wb + 1) // 2)
                or plane.shape[1] == 0 or plane.shape[2] == 0):
            raise ValueError(f"BlockBatch.{name} must be (B, Hb/2, Wb/2, 64) for y {tuple(y.shape)}, "
                             f"got {tuple(plane.shape)}")


def normalisation(layout: DCTLayout) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, inv_std)`` as ``float32 (C,)`` arrays, the exact constants every backend uses.

    Without statistics: zeros and ones (``(v - 0) * 1 == v`` exactly).
    """
    c = layout.num_channels
    if layout.mean is None:
        return np.zeros(c, np.float32), np.ones(c, np.float32)
    mean = np.asarray(layout.mean, np.float64).astype(np.float32)
    inv_std = (1.0 / np.asarray(layout.std, np.float64)).astype(np.float32)
    return mean, inv_std


def _component(blocks: torch.Tensor, qsteps: torch.Tensor, bands: tuple[int, ...]) -> torch.Tensor:
    idx = torch.tensor(bands, dtype=torch.long, device=blocks.device)
    x = blocks.index_select(3, idx).to(torch.float32) * qsteps.index_select(1, idx)[:, None, None, :]
    return x.permute(0, 3, 1, 2)


def _normalise(x: torch.Tensor, layout: DCTLayout, first: int) -> torch.Tensor:
    if layout.mean is None:
        return x
    c = x.shape[1]
    mean, inv_std = (torch.from_numpy(a[first:first + c]).to(x.device)[None, :, None, None]
                     for a in normalisation(layout))
    return (x - mean) * inv_std


def _nearest_up_index(n_out: int, n_in: int, device) -> torch.Tensor:
    # x2 nearest upsampling; a chroma plane of floor(n_out / 2) repeats its last row/column
    return torch.clamp(torch.arange(n_out, device=device) // 2, max=n_in - 1)


def blocks_to_tensor_torch(blocks: BlockBatch, layout: DCTLayout, dtype: torch.dtype = torch.float32):
    """Band selection + dequantisation + normalisation + channel-major layout of a BlockBatch.

    The one torch reference of the gather: the numba and Triton backends are tested against
    it, and the fused first stage's CPU path (:mod:`dctnet.models.fused_stem`) calls it.

    Args:
        blocks: int16 or float32 blocks ``(B, Hb, Wb, 64)`` per component (chroma ``ceil`` or
            ``floor`` of half the luma size) and ``qsteps (B, 3, 64)``.
        layout: bands, kind, statistics.
        dtype: output dtype.

    Returns ``(B, C, Hb, Wb)`` for ``upsampling``/``y_only`` or ``(y (B, nY, Hb, Wb),
    cbcr (B, nCb + nCr, Hb//2, Wb//2))`` for ``late_concat``, of ``dtype``. ``upsampling``
    chroma position ``(h, w)`` is chroma block ``(min(h // 2, Hc - 1), min(w // 2, Wc - 1))``.
    """
    check_block_batch(blocks, layout)
    bands = layout.band_indices()
    y = _normalise(_component(blocks.y, blocks.qsteps[:, 0], bands[0]), layout, 0)
    if layout.kind == "y_only":
        return y.to(dtype).contiguous()
    ny = len(bands[0])
    cbcr = torch.cat([_component(blocks.cb, blocks.qsteps[:, 1], bands[1]),
                      _component(blocks.cr, blocks.qsteps[:, 2], bands[2])], dim=1)
    cbcr = _normalise(cbcr, layout, ny)
    if layout.kind == "late_concat":
        return y.to(dtype).contiguous(), cbcr.to(dtype).contiguous()
    hb, wb = y.shape[2:]
    rows = _nearest_up_index(hb, cbcr.shape[2], y.device)
    cols = _nearest_up_index(wb, cbcr.shape[3], y.device)
    up = cbcr[:, :, rows][:, :, :, cols]
    return torch.cat([y, up], dim=1).to(dtype).contiguous()
