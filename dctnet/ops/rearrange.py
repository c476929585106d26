"""``to_tensor``: DCTImages -> network inputs (align + select bands + dequantise + normalise),
with three backends that agree, and ``compute_stats`` for the normalisation."""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Sequence

import numpy as np
import torch

from ..codec import DCTImage
from ._numba import fused_gather
from .align import Crop, Flip, GeometryPlan, Size, blocks_from_plan, flip_flags, plan_geometry
from .layout import DCTLayout
from .outputs import Output, check_out, output_shapes
from .resize import check_resize_arguments, crop_draws, resize_to_tensor
from .reference import blocks_to_tensor_torch, normalisation

__all__ = ["to_tensor", "compute_stats", "output_shapes", "BACKENDS"]

BACKENDS = ("auto", "torch", "numba", "triton")


def _triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _choose_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    if backend == "auto":
        return "triton" if device.type == "cuda" else "numba"
    if backend == "numba" and device.type != "cpu":
        raise ValueError(f"the numba backend writes CPU tensors, but the output device is {device}")
    if backend == "triton":
        if device.type == "cpu" and not _triton_interpreting():
            raise RuntimeError("the triton backend needs a CUDA device for its output (got cpu); on CPU it runs "
                               "only under the Triton interpreter (TRITON_INTERPRET=1 set before triton is imported)")
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"the triton backend runs on CUDA devices, not {device}")
        try:
            import triton  # noqa: F401
        except ImportError as e:
            raise RuntimeError(f"the triton backend needs the triton package ({e}); pip install 'dctnet[gpu]'") from e
    return backend


def gather_tables(layout: DCTLayout):
    """The numba kernel's per-layout tables: ``bands int64 (3, 64)`` (natural indices, first
    ``nbands[c]`` used), ``nbands``, ``ch_off`` (first channel of each component in its output),
    ``stat_off`` (first entry in ``mean``/``inv_std``): ``int64 (3,)``; ``mean, inv_std float32 (C,)``."""
    bands_list = layout.band_indices()
    bands = np.zeros((3, 64), np.int64)
    for c, bl in enumerate(bands_list):
        bands[c, :len(bl)] = bl
    nbands = np.zeros(3, np.int64)
    nbands[:layout.num_components] = [len(bl) for bl in bands_list]
    stat_off = np.concatenate([[0], np.cumsum(nbands)[:2]]).astype(np.int64)
    ch_off = stat_off.copy()
    if layout.kind == "late_concat":
        ch_off[1:] -= nbands[0]
    mean, inv_std = normalisation(layout)
    return bands, nbands, ch_off, stat_off, mean, inv_std


def _run_numba(plan: GeometryPlan, layout: DCTLayout, outs: tuple[torch.Tensor, ...]) -> None:

    b = plan.batch
    ncomp = layout.num_components
    address = np.zeros((b, 3), np.int64)
    row_len = np.zeros((b, 3), np.int64)
    is_float = np.zeros((b, 3), np.bool_)
    keep = []                                 # contiguous copies must outlive the kernel call
    resampled = plan.resampled
    chroma = plan.has_chroma if ncomp == 3 else np.zeros(b, np.bool_)
    for i, img in enumerate(plan.images):
        for c in range(3 if chroma[i] else 1):  # address 0 (chroma of gray images): zeros
            plane = resampled.get((i, c)) if resampled else None
            if plane is not None:
                is_float[i, c] = True
            else:
                plane = img.planes[c]
                if not plane.flags.c_contiguous:
                    plane = np.ascontiguousarray(plane)
                    keep.append(plane)
            address[i, c] = plane.ctypes.data
            row_len[i, c] = plane.shape[1]
    row0 = np.where(is_float, 0, plan.row0)
    col0 = np.where(is_float, 0, plan.col0)
    bands, nbands, ch_off, stat_off, mean, inv_std = gather_tables(layout)

    direct = all(t.dtype == torch.float32 and t.device.type == "cpu" for t in outs)
    arrays = [t.numpy() if direct else np.empty(tuple(t.shape), np.float32) for t in outs]
    out_y = arrays[0]
    out_c = arrays[1] if len(arrays) > 1 else arrays[0]
    fused_gather(address, row_len, row0, col0, is_float, np.ascontiguousarray(plan.flip, np.bool_),
                 plan.qsteps, bands, nbands, ch_off, stat_off, mean, inv_std, ncomp, plan.hb, plan.wb,
                 out_y, out_c, layout.kind == "upsampling")
    del keep
    if not direct:
        for t, a in zip(outs, arrays):
            t.copy_(torch.from_numpy(a))


def to_tensor(images: Sequence[DCTImage], layout: DCTLayout, *, crop: Crop = None, size: Size = None,
              flip: Flip = False, backend: str = "auto", out: Output | None = None,
              dtype: torch.dtype | None = None, generator: torch.Generator | None = None,
              device: torch.device | str | None = None, resize: int | None = None) -> Output:
    """Turn DCTImages into the input tensor(s) of a DCT network.

    ``to_tensor = align_blocks`` (crop, flip, chroma alignment; exact, see
    :func:`~dctnet.ops.align_blocks`) ``+`` band selection ``+`` dequantisation ``+``
    normalisation (``(coef * qstep - mean) * (1 / std)`` in float32, per output channel).

    Args:
        images: ``DCTImage`` s (YCbCr of sampling 4:2:0, 4:4:4, 4:2:2, 4:4:0, 4:1:1, 4:1:0,
            or grayscale: zero chroma).
        layout: what the model expects (:class:`DCTLayout`).
        crop, size, flip, generator: geometry, as in :func:`~dctnet.ops.align_blocks`; e.g.
            ``crop="center", size=224`` gives a 28x28 grid.
        backend: ``"torch"`` (reference), ``"numba"`` (CPU), ``"triton"`` (CUDA; CPU only under
            ``TRITON_INTERPRET=1``), or ``"auto"``: Triton for a CUDA output, numba otherwise.
            An explicit backend that cannot run raises (no fallback).
        out: tensor(s) to write into (e.g. pinned CPU buffers); shape and dtype must match
            exactly (a tuple ``(y, cbcr)`` for ``late_concat``). Decides the device.
        dtype: output dtype (default float32, or ``out``'s dtype; float16/bfloat16 are computed
            in float32 and rounded once).
        device: output device when ``out`` is not given (default CPU).
        resize: resize in the DCT domain first, as the RGB pipeline does: the shorter side to
            ``resize`` pixels (Pillow's BILINEAR filter and size rule), then the ``size`` crop
            on the resized pixel grid (``crop="center"``, or ``"random"`` at a uniform offset;
            offsets need not be on block boundaries). Any sampling, any image size (small
            images are upscaled by the same operator). :mod:`dctnet.ops.resize`; CPU float32
            (numba). ``None`` (the default): exact block crops of the original, as above,
            unless ``crop="random-resized"``: torchvision's RandomResizedCrop (scale 0.08-1,
            ratio 3/4-4/3, drawn from ``generator``), the box resampled to ``size`` by the
            same operator (:func:`dctnet.ops.resize.crop_window`).

    Returns:
        ``upsampling``: ``(B, 3n, Hb, Wb)`` (``nY + nCb + nCr`` channels for band lists);
        ``y_only``: ``(B, nY, Hb, Wb)``; ``late_concat``: ``(y (B, nY, Hb, Wb),
        cbcr (B, nCb + nCr, Hb // 2, Wb // 2))``. Channels: Y bands, Cb bands, Cr bands,
        each in the layout's band order. ``out`` itself when given.
    """
    if out is not None:
        first = out[0] if isinstance(out, (tuple, list)) else out
        dev = first.device
        dtype = dtype or first.dtype
    else:
        dev = torch.device(device) if device is not None else torch.device("cpu")
    dtype = dtype or torch.float32
    if resize is not None or crop == "random-resized":
        chosen = "triton" if backend == "triton" or (backend == "auto" and dev.type == "cuda") else backend
        if dtype != torch.float32 or chosen not in ("auto", "numba", "triton") or (chosen != "triton" and dev.type != "cpu"):
            raise ValueError("resampling (resize= or crop='random-resized') runs in float32, on the CPU with the numba "
                             f"backend or on CUDA with Triton; got device={dev}, dtype={dtype}, backend={backend!r}")
        check_resize_arguments(layout, size, resize, crop)
        draws = crop_draws(crop, len(images), generator)      # crop draws first, then flips (read_to_tensor's order)
        flips = flip_flags(flip, len(images), generator)
        return resize_to_tensor(images, layout, size=size, resize=resize, crop=crop, flip=flips, draws=draws, out=out,
                                backend="triton" if chosen == "triton" else "numba", device=dev)
    chosen = _choose_backend(backend, dev)
    plan = plan_geometry(images, layout, crop=crop, size=size, flip=flip, generator=generator)
    shapes = output_shapes(layout, plan.batch, plan.hb, plan.wb)
    if out is None:
        outs = tuple(torch.empty(s, dtype=dtype, device=dev) for s in shapes)
    else:
        outs = check_out(out, shapes, dtype)
    run_plan(plan, layout, chosen, outs)
    if out is not None:
        return out
    return outs if layout.kind == "late_concat" else outs[0]


def run_plan(plan: GeometryPlan, layout: DCTLayout, chosen: str, outs: tuple[torch.Tensor, ...]) -> None:
    """Write a planned batch into ``outs`` (checked) with backend ``chosen``."""
    dev = outs[0].device
    dtype = outs[0].dtype
    if chosen == "numba":
        _run_numba(plan, layout, outs)
    elif chosen == "torch":
        result = blocks_to_tensor_torch(blocks_from_plan(plan), layout, dtype)
        result = result if isinstance(result, tuple) else (result,)
        for t, r in zip(outs, result):
            t.copy_(r)
    else:
        from ._triton import blocks_to_tensor_triton  # Triton is optional (the [gpu] extra)
        blocks = blocks_from_plan(plan)
        if dev.type != "cpu":
            blocks = type(blocks)(*(x.to(dev, non_blocking=True) if x is not None else None for x in blocks))
        blocks_to_tensor_triton(blocks, layout, outs)


def compute_stats(images: Sequence[DCTImage], layout: DCTLayout, *, crop: Crop = None, size: Size = None,
                  batch_size: int = 64, backend: str = "auto", resize: int | None = None) -> DCTLayout:
    """Per-channel mean and standard deviation of the dequantised coefficients (the inputs
    before normalisation) over ``images``.

    Chroma channels are measured over colour images only (grayscale images have no chroma to
    describe). A channel with zero spread gets ``std = 1`` (it is then only centred).
    Without a crop, images of different geometry are processed in groups of equal grids.

    Returns:
        ``layout`` with ``mean`` and ``std`` filled in (float, JSON-serialisable through
        :meth:`DCTLayout.to_dict`; save with the model's weights).
    """
    images = list(images)
    if not images:
        raise ValueError("compute_stats needs at least one image")
    plain = DCTLayout(kind=layout.kind, bands=layout.bands, dequantize=layout.dequantize)
    ny = layout.channels_per_component[0]
    c = layout.num_channels
    total = np.zeros(c, np.float64)
    total_sq = np.zeros(c, np.float64)
    count = np.zeros(c, np.float64)
    groups: dict = defaultdict(list)
    for i, img in enumerate(images):
        groups[tuple(p.shape for p in img.planes) if crop is None else 0].append(i)
    for idx in groups.values():
        for s in range(0, len(idx), batch_size):
            chunk = [images[i] for i in idx[s:s + batch_size]]
            result = to_tensor(chunk, plain, crop=crop, size=size, backend=backend, resize=resize)
            parts = result if isinstance(result, tuple) else (result,)
            colour = torch.tensor([len(img.planes) == 3 for img in chunk])
            first = 0
            for part in parts:
                x = part.to(torch.float64)
                for j in range(part.shape[1]):
                    ch = first + j
                    sel = x[:, j] if ch < ny else x[colour, j]
                    total[ch] += float(sel.sum())
                    total_sq[ch] += float((sel * sel).sum())
                    count[ch] += sel.numel()
                first += part.shape[1]
    count = np.maximum(count, 1)
    mean = total / count
    var = np.maximum(total_sq / count - mean * mean, 0.0)
    std = np.sqrt(var)
    std[std == 0] = 1.0
    return layout.with_stats(mean.tolist(), std.tolist())
