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

__all__ = ["blocks_to_tensor_torch", "normalisation"]


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


def blocks_to_tensor_torch(blocks: BlockBatch, layout: DCTLayout, dtype: torch.dtype = torch.float32):
    """Band selection + dequantisation + normalisation + channel-major layout of a BlockBatch.

    Returns ``(B, C, Hb, Wb)`` for ``upsampling``/``y_only`` or ``(y (B, nY, Hb, Wb),
    cbcr (B, nCb + nCr, Hb//2, Wb//2))`` for ``late_concat``, of ``dtype``.
    """
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
    up = cbcr.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    return torch.cat([y, up], dim=1).to(dtype).contiguous()
