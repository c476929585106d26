"""The output tensors of the DCT input ops: their shapes and the checks of caller-given buffers."""

from __future__ import annotations

from typing import Union

import torch

from .layout import DCTLayout

__all__ = ["Output", "check_out", "output_shapes"]

Output = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]


def output_shapes(layout: DCTLayout, batch: int, hb: int, wb: int) -> tuple[tuple[int, ...], ...]:
    """Shapes of ``to_tensor``'s output(s) for a ``hb x wb`` Y block grid (one shape, or Y and CbCr)."""
    ny, *nc = layout.channels_per_component
    if layout.kind == "y_only":
        return ((batch, ny, hb, wb),)
    if layout.kind == "late_concat":
        return ((batch, ny, hb, wb), (batch, sum(nc), hb // 2, wb // 2))
    return ((batch, layout.num_channels, hb, wb),)



def check_out(out, shapes, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Validate caller-given output tensor(s) against the expected shapes and dtype."""
    outs = out if isinstance(out, (tuple, list)) else (out,)
    if len(outs) != len(shapes):
        raise ValueError(f"out must be {len(shapes)} tensor(s) for this layout, got {len(outs)}")
    for t, shape in zip(outs, shapes):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"out must hold torch tensors, got {type(t).__name__}")
        if tuple(t.shape) != shape or t.dtype != dtype:
            raise ValueError(f"out tensor is {t.dtype} {tuple(t.shape)}, expected {dtype} {shape}")
        if not t.is_contiguous():
            raise ValueError("out tensors must be contiguous")
    if len({t.device for t in outs}) != 1:
        raise ValueError("out tensors must be on one device")
    return tuple(outs)
