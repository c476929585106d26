"""Geometry: bring a batch of DCTImages to a layout's block grid (crop, flip, chroma alignment).

Output geometry (what every backend produces, documented in ``DCTLayout``):

* ``y_only``: the Y plane's blocks, ``Hb x Wb`` = libjpeg's ``height_in_blocks x
  width_in_blocks`` (``ceil(H/8) x ceil(W/8)`` for the usual sampling); crops move in
  8-pixel steps.
* ``upsampling`` / ``late_concat`` (4:2:0 geometry): Y must pair with whole chroma
  blocks, so the grid is the largest even number of Y blocks that the chroma plane (after
  resampling to 4:2:0) also covers: ``Hb = 2 * min(Hy // 2, Hc')``, same for ``Wb``, where
  ``Hc'`` is the chroma height in blocks at 4:2:0 geometry. For a 225x223 4:2:0 file
  (Y 29x28 blocks, chroma 15x14) that is Y 28x28 / chroma 14x14: the last, partial
  column of Y blocks (pixels 224..231, of which only pixel 224 is in the image) and the
  matching partial chroma column are dropped. Crops move in 16-pixel steps.

Batches of mixed geometry need a crop (``"center"`` or ``"random"``, to ``size`` or, if no
size is given, to the largest grid every image covers); without one, differing grids are an
error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence, Union

import math

import numpy as np
import torch

from ..codec import DCTImage
from .dct_domain import FLIP_SIGN, resample_axis
from .layout import BlockBatch, DCTLayout

__all__ = ["align_blocks", "plan_geometry", "GeometryPlan", "random_resized_crop_box"]

Crop = Union[None, str]
Size = Union[None, int, Sequence[int]]
Flip = Union[bool, str, Sequence[bool], np.ndarray, torch.Tensor]

# Y-to-chroma sampling ratio along one axis -> resampling factor to reach ratio 2 (4:2:0).
_FACTOR_TO_420 = {1: -2, 2: 1, 4: 2}


@dataclass
class GeometryPlan:
    """Per-image crop offsets, flips and chroma treatment for one batch (internal hand-over
    between the geometry step and the kernels).

    Attributes:
        hb, wb: output Y grid in blocks; chroma grid is ``hb // 2, wb // 2`` (4:2:0 layouts).
        row0, col0: ``int64 (B, 3)`` first source block (row, column) of the crop in each
            component's own plane; meaningful where ``resampled`` is None.
        flip, has_chroma: ``bool (B,)``.
        qsteps: ``float32 (B, 3, 64)`` (ones where the plane is resampled, for gray chroma, or
            without dequantisation).
        resampled: ``{(i, c): float32 (hb//2, wb//2, 64)}`` chroma planes brought to 4:2:0
            geometry in the DCT domain, already cropped (not flipped), in the units of
            ``qsteps`` == 1.
    """

    images: Sequence[DCTImage]
    layout: DCTLayout
    hb: int
    wb: int
    row0: np.ndarray
    col0: np.ndarray
    flip: np.ndarray
    has_chroma: np.ndarray
    qsteps: np.ndarray
    resampled: dict = field(default_factory=dict)

    @property
    def batch(self) -> int:
        return len(self.images)

    @property
    def chroma_grid(self) -> tuple[int, int]:
        return self.hb // 2, self.wb // 2


_RATIO_CACHE: dict = {}


def _check_image(img, index: int, layout: DCTLayout) -> tuple[int, int] | None:
    """Validate one image; return its Y-to-chroma ratios (rv, rh), or None for gray / y_only."""
    if not isinstance(img, DCTImage):
        raise TypeError(f"images[{index}] is {type(img).__name__}, not a DCTImage"
                        + (f" ({img})" if isinstance(img, BaseException) else ""))
    key = (img.sampling, img.colorspace, layout.kind == "y_only")
    if key in _RATIO_CACHE:                   # only valid samplings are cached
        return _RATIO_CACHE[key]
    ratio = _check_sampling(img, layout)
    _RATIO_CACHE[key] = ratio
    return ratio


def _check_sampling(img: DCTImage, layout: DCTLayout) -> tuple[int, int] | None:
    ncomp = len(img.planes)
    if ncomp == 1:
        return None
    if ncomp != 3 or img.colorspace != "ycbcr":
        raise ValueError(f"{img.source}: {img.colorspace} JPEG with {ncomp} components; only YCbCr (3 components) "
                         "and grayscale files can be brought to a DCT layout")
    (hy, vy) = img.sampling[0]
    hmax = max(s[0] for s in img.sampling)
    vmax = max(s[1] for s in img.sampling)
    if (hy, vy) != (hmax, vmax):
        raise ValueError(f"{img.source}: luma sampling {img.sampling[0]} is not the largest {img.sampling}; "
                         "unsupported chroma layout")
    if layout.kind == "y_only":
        return None
    ratios = set()
    for c in (1, 2):
        h, v = img.sampling[c]
        if hy % h or vy % v or (vy // v) not in _FACTOR_TO_420 or (hy // h) not in _FACTOR_TO_420:
            raise ValueError(f"{img.source}: chroma sampling {img.sampling} cannot be brought to 4:2:0 geometry "
                             "exactly (supported Y/chroma ratios per axis: 1, 2, 4)")
        ratios.add((vy // v, hy // h))
    if len(ratios) != 1:
        raise ValueError(f"{img.source}: Cb and Cr have different sampling {img.sampling}")
    return ratios.pop()


def _usable_grid(img: DCTImage, ratio, layout: DCTLayout) -> tuple[int, int]:
    """Largest Y block grid of this image that the layout's geometry can use."""
    hy, wy = img.planes[0].shape[:2]
    if layout.kind == "y_only":
        return hy, wy
    if ratio is None:                                     # gray: no chroma to pair with
        return 2 * (hy // 2), 2 * (wy // 2)
    hc, wc = img.planes[1].shape[:2]
    rv, rh = ratio
    # chroma blocks available at 4:2:0 geometry after resampling (down: pairs, up: doubles)
    hc420 = {1: hc // 2, 2: hc, 4: 2 * hc}[rv]
    wc420 = {1: wc // 2, 2: wc, 4: 2 * wc}[rh]
    return 2 * min(hy // 2, hc420), 2 * min(wy // 2, wc420)


def usable_size(img: DCTImage, layout: DCTLayout) -> tuple[int, int]:
    """``(height, width)`` in pixels of the largest area of ``img`` the layout's geometry can
    use (what a centre or random crop must fit in). Cheap: header geometry only.

    Raises ``ValueError`` naming the file when the image cannot be brought to the layout.
    """
    ratio = _check_image(img, 0, layout)
    hb, wb = _usable_grid(img, ratio, layout)
    return 8 * hb, 8 * wb


def pixels_to_blocks(size, unit: int, what: str) -> tuple[int, int]:
    """An output size in pixels (int or ``(h, w)``) as ``(Hb, Wb)`` 8x8 blocks; each side must be
    a multiple of ``unit`` blocks (``what`` names that step in the error)."""
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    h, w = (int(s) for s in size)
    step = 8 * unit
    if h <= 0 or w <= 0 or h % step or w % step:
        raise ValueError(f"crop size {h}x{w} pixels must be positive multiples of {step} ({what})")
    return h // 8, w // 8


def random_crop_draws(batch: int, generator: torch.Generator | None) -> np.ndarray:
    """``float64 (B, 2)``: the uniform draws behind a random crop's (vertical, horizontal)
    offsets, ``offset = min(floor(u * (steps + 1)), steps)`` crop steps."""
    rv = torch.rand(batch, generator=generator, dtype=torch.float64)
    rh = torch.rand(batch, generator=generator, dtype=torch.float64)
    return torch.stack([rv, rh], 1).numpy()


def random_resized_crop_box(height: int, width: int, generator: torch.Generator,
                            scale: tuple[float, float] = (0.08, 1.0),
                            ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """torchvision ``RandomResizedCrop.get_params`` semantics: ``(top, left, h, w)`` of the crop.

    Ten attempts at an area fraction uniform in ``scale`` and a log-uniform aspect ratio in
    ``ratio``; if none fits, the whole image clamped to the ratio range, centred.
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        u = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_lo + (log_hi - log_lo) * u[1])
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def flip_flags(flip: Flip, batch: int, generator: torch.Generator | None) -> np.ndarray:
    if isinstance(flip, str):
        if flip != "random":
            raise ValueError(f"flip must be a bool, a per-image sequence of bools or 'random', not {flip!r}")
        return (torch.rand(batch, generator=generator) < 0.5).numpy()
    if isinstance(flip, (bool, np.bool_)):
        return np.full(batch, bool(flip))
    flags = np.asarray(flip.cpu() if isinstance(flip, torch.Tensor) else flip)
    if flags.shape != (batch,) or flags.dtype != np.bool_:
        raise ValueError(f"per-image flip flags must be {batch} bools, got {flags.dtype} {flags.shape}")
    return flags


def plan_geometry(images: Sequence[DCTImage], layout: DCTLayout, *, crop: Crop = None, size: Size = None,
                  flip: Flip = False, generator: torch.Generator | None = None,
                  uniform: np.ndarray | None = None) -> GeometryPlan:
    """Decide the output grid, per-image crop offsets and flips, and resample odd chroma.

    See :func:`align_blocks` for the arguments. Chroma of non-4:2:0 files is resampled here
    (only the cropped region), in float64, and stored as float32. ``uniform``: ``float64
    (B, 2)`` draws in [0, 1) for a random crop's vertical and horizontal offsets, instead of
    drawing them from ``generator`` (used by :func:`~dctnet.ops.read_to_tensor`, which
    draws before reading).
    """
    images = list(images)
    if not images:
        raise ValueError("empty batch: no images")
    b = len(images)
    ratios = [_check_image(img, i, layout) for i, img in enumerate(images)]
    grids = np.array([_usable_grid(img, r, layout) for img, r in zip(images, ratios)], dtype=np.int64)
    unit = 1 if layout.kind == "y_only" else 2           # Y blocks per crop step
    what = "8-pixel blocks" if unit == 1 else "16-pixel steps of the 4:2:0 geometry"
    if crop is None:
        if size is not None:
            raise ValueError("size is given but crop is None; pass crop='center' or crop='random'")
        if (grids != grids[0]).any():
            shapes = sorted({f"{8 * h}x{8 * w}" for h, w in grids})
            raise ValueError(f"images of different block geometry ({', '.join(shapes)} pixels in the layout's grid; "
                             f"first: {images[0].source}); pass crop='center' or crop='random' (with size=) "
                             "to bring them to one size")
        hb, wb = (int(x) for x in grids[0])
        if hb == 0 or wb == 0:
            raise ValueError(f"{images[0].source}: too small for the layout ({what})")
        top = np.zeros(b, np.int64)
        left = np.zeros(b, np.int64)
    elif crop in ("center", "random"):
        if size is None:
            hb, wb = int(grids[:, 0].min()), int(grids[:, 1].min())
            if hb == 0 or wb == 0:
                raise ValueError(f"{images[int(np.argmin(grids.prod(1)))].source}: too small for the layout ({what})")
        else:
            hb, wb = pixels_to_blocks(size, unit, what)
        small = np.nonzero((grids[:, 0] < hb) | (grids[:, 1] < wb))[0]
        if small.size:
            i = int(small[0])
            raise ValueError(f"{images[i].source}: usable area {8 * grids[i, 1]}x{8 * grids[i, 0]} pixels (WxH) is "
                             f"smaller than the {8 * wb}x{8 * hb} crop")
        steps_v = (grids[:, 0] - hb) // unit
        steps_h = (grids[:, 1] - wb) // unit
        if crop == "center":
            top, left = steps_v // 2 * unit, steps_h // 2 * unit
        else:
            if uniform is None:
                rv, rh = random_crop_draws(b, generator).T
            else:
                rv, rh = np.asarray(uniform, np.float64).T
            top = np.minimum((rv * (steps_v + 1)).astype(np.int64), steps_v) * unit
            left = np.minimum((rh * (steps_h + 1)).astype(np.int64), steps_h) * unit
    else:
        raise ValueError(f"crop must be None, 'center' or 'random', not {crop!r}")

    flags = flip_flags(flip, b, generator)
    qsteps = np.ones((b, 3, 64), np.float32)
    row0 = np.zeros((b, 3), np.int64)
    col0 = np.zeros((b, 3), np.int64)
    row0[:, 0], col0[:, 0] = top, left
    colour = layout.kind != "y_only"
    has_chroma = np.array([r is not None for r in ratios]) if colour else \
        np.array([len(img.planes) == 3 for img in images])
    # chroma crop offsets in 4:2:0 blocks (used as is by 4:2:0 planes; resampled ones are cropped here)
    row0[:, 1:] = (top // 2)[:, None]
    col0[:, 1:] = (left // 2)[:, None]
    if layout.dequantize:
        used = [img.qtables if (colour and r is not None) else img.qtables[:1] for img, r in zip(images, ratios)]
        ncomps = np.array([len(u) for u in used])
        for n in set(ncomps.tolist()):
            sel = np.nonzero(ncomps == n)[0]
            qsteps[sel, :n] = np.stack([used[i] for i in sel])
    resampled = {}
    hc, wc = hb // 2, wb // 2
    for i, ratio in enumerate(ratios):
        if not colour or ratio is None or ratio == (2, 2):
            continue
        img = images[i]
        ct, cl = int(row0[i, 1]), int(col0[i, 1])
        rv, rh = ratio
        for c in (1, 2):
            q = img.qtables[c].astype(np.float64)
            blocks = img.planes[c].reshape(*img.planes[c].shape[:2], 8, 8).astype(np.float64) * q.reshape(8, 8)
            blocks = resample_axis(blocks, 0, _FACTOR_TO_420[rv], ct, ct + hc)
            blocks = resample_axis(blocks, 1, _FACTOR_TO_420[rh], cl, cl + wc)
            blocks = blocks.reshape(hc, wc, 64)
            if not layout.dequantize:                  # back to the file's quantisation units
                blocks = blocks / q
            resampled[(i, c)] = np.ascontiguousarray(blocks, dtype=np.float32)
            qsteps[i, c] = 1.0
    return GeometryPlan(images=images, layout=layout, hb=hb, wb=wb, row0=row0, col0=col0, flip=flags,
                        has_chroma=has_chroma, qsteps=qsteps, resampled=resampled)


def _plane_slice(plan: GeometryPlan, i: int, c: int, h: int, w: int) -> np.ndarray:
    if (i, c) in plan.resampled:
        blocks = plan.resampled[(i, c)]
    else:
        r0, c0 = int(plan.row0[i, c]), int(plan.col0[i, c])
        blocks = plan.images[i].planes[c][r0:r0 + h, c0:c0 + w]
    if plan.flip[i]:
        blocks = blocks[:, ::-1] * FLIP_SIGN.astype(blocks.dtype)
    return blocks


def blocks_from_plan(plan: GeometryPlan) -> BlockBatch:
    """Materialise a :class:`BlockBatch` (CPU tensors) from a geometry plan (plain NumPy copies)."""
    b, hb, wb = plan.batch, plan.hb, plan.wb
    y = np.empty((b, hb, wb, 64), np.int16)
    for i in range(b):
        y[i] = _plane_slice(plan, i, 0, hb, wb)
    cb = cr = None
    if plan.layout.kind != "y_only":
        hc, wc = plan.chroma_grid
        dtype = np.float32 if plan.resampled else np.int16
        cb = np.zeros((b, hc, wc, 64), dtype)
        cr = np.zeros((b, hc, wc, 64), dtype)
        for i in range(b):
            if plan.has_chroma[i]:
                cb[i] = _plane_slice(plan, i, 1, hc, wc)
                cr[i] = _plane_slice(plan, i, 2, hc, wc)
        cb, cr = torch.from_numpy(cb), torch.from_numpy(cr)
    return BlockBatch(y=torch.from_numpy(y), cb=cb, cr=cr, qsteps=torch.from_numpy(plan.qsteps),
                      has_chroma=torch.from_numpy(np.ascontiguousarray(plan.has_chroma, dtype=np.bool_)))


def align_blocks(images: Sequence[DCTImage], layout: DCTLayout, *, crop: Crop = None, size: Size = None,
                 flip: Flip = False, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> BlockBatch:
    """Bring DCTImages to the layout's block geometry: crop, flip, chroma alignment (exact).

    Args:
        images: ``DCTImage`` s (YCbCr of any supported sampling, or grayscale).
        layout: the target :class:`DCTLayout` (its ``kind`` fixes the geometry, see the module
            docstring; ``dequantize`` decides ``qsteps``).
        crop: ``None`` (whole usable grid; all images must share it), ``"center"`` or
            ``"random"`` (offsets in 16-pixel steps, 8 for ``y_only``).
        size: crop size in pixels, ``int`` or ``(height, width)``; multiples of 16 (8 for
            ``y_only``); e.g. 224 -> a 28x28 Y grid. ``None`` with a crop: the largest grid
            every image covers.
        flip: ``True``/``False`` for all images, a per-image bool sequence, or ``"random"``
            (each image with probability 1/2, drawn from ``generator``).
        generator: ``torch.Generator`` for random crops and flips.
        device: move the batch there (e.g. ``"cuda"`` for the fused stem); default CPU.

    Returns:
        :class:`BlockBatch` (CPU tensors unless ``device``): ``y int16 (B, Hb, Wb, 64)``; ``cb``, ``cr``
        ``(B, Hb//2, Wb//2, 64)`` int16, or float32 if any image's chroma was resampled (None
        for ``y_only``); ``qsteps float32 (B, 3, 64)``; ``has_chroma bool (B,)``.
    """
    blocks = blocks_from_plan(plan_geometry(images, layout, crop=crop, size=size, flip=flip, generator=generator))
    if device is not None and torch.device(device) != torch.device("cpu"):
        blocks = BlockBatch(*(t.to(device, non_blocking=True) if t is not None else None for t in blocks))
    return blocks
