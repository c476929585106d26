"""A deterministic, procedurally drawn labelled image set for CPU-sized studies.

Every image is a smooth, randomly coloured background with a soft-edged disc on it; the
class is decided only by what the disc holds, and the classes are built so that their
distinguishing detail sits at known spatial frequencies and in colour:

===  ===============  =================================================================
 #   class            the disc (random centre, radius, contrast, orientation, phase)
===  ===============  =================================================================
 0   plain            brighter or darker than the background (luma only)
 1   red              slightly shifted luma + Cr up (colour only: same luma as 0)
 2   blue             slightly shifted luma + Cb up (colour only)
 3   stripes16        plain disc + luma stripes of period 16 px (DCT u or v = 1)
 4   stripes8         ... period 8 px (u or v = 2)
 5   stripes4         ... period 4 px (u or v = 4)
 6   stripes3         ... period 8/3 px (u or v = 6)
 7   chroma-stripes8  plain disc + isoluminant Cb/Cr stripes of period 8 px (chroma plane,
                      4:2:0: period 4 px, u or v = 4 of the chroma blocks)
===  ===============  =================================================================

Stripes are horizontal or vertical (at random), on top of the same luma offset as "plain",
so a model that only sees low frequencies (FBS with small n, or a JPEG at low quality)
confuses the fine-stripe classes with "plain", and a model without colour confuses 0, 1, 2.
Pixels are made in YCbCr (JFIF, full range) and converted to RGB, then encoded by
libjpeg-turbo at ``quality`` with 4:2:0 sampling and standard tables.

Image ``i`` of class ``c`` in split ``s`` depends only on ``(seed, s, c, i)``: the set is
the same on every machine and any subset can be regenerated.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..imaging import encode_jpeg

__all__ = ["CLASSES", "SyntheticSpec", "render", "make_synthetic_dataset"]

#: (folder name, description). Folder names sort in class-index order.
CLASSES: tuple[tuple[str, str], ...] = (
    ("0_plain", "plain disc (luma only)"),
    ("1_red", "red disc (Cr)"),
    ("2_blue", "blue disc (Cb)"),
    ("3_stripes16", "luma stripes, period 16 px"),
    ("4_stripes8", "luma stripes, period 8 px"),
    ("5_stripes4", "luma stripes, period 4 px"),
    ("6_stripes3", "luma stripes, period 8/3 px"),
    ("7_chroma_stripes8", "Cb/Cr stripes, period 8 px"),
)
_STRIPE_PERIOD = {3: 16.0, 4: 8.0, 5: 4.0, 6: 8.0 / 3.0}
_SPLITS = {"train": 0, "val": 1}


def _ycbcr_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """JFIF full-range YCbCr (float) -> uint8 RGB ``(H, W, 3)``."""
    r = y + 1.402 * (cr - 128.0)
    g = y - 0.344136 * (cb - 128.0) - 0.714136 * (cr - 128.0)
    b = y + 1.772 * (cb - 128.0)
    return np.clip(np.rint(np.stack([r, g, b], axis=-1)), 0, 255).astype(np.uint8)


def render(label: int, rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """Draw one image of class ``label`` (see the module docstring).

    Returns:
        ``uint8 (size, size, 3)`` RGB.
    """
    if not 0 <= label < len(CLASSES):
        raise ValueError(f"label must be in 0..{len(CLASSES) - 1}, not {label}")
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    # Background: a gradient plus two slow waves in luma, a colour cast with a gentle gradient.
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / size
    y = rng.uniform(80, 176) + rng.uniform(-30, 30) * ramp
    for _ in range(2):
        period = rng.uniform(48, 128)
        a = rng.uniform(0, 2 * np.pi)
        y = y + rng.uniform(0, 10) * np.cos(2 * np.pi * (np.cos(a) * xx + np.sin(a) * yy) / period
                                            + rng.uniform(0, 2 * np.pi))
    cb = rng.uniform(108, 148) + rng.uniform(-10, 10) * ramp
    cr = rng.uniform(108, 148) + rng.uniform(-10, 10) * ramp
    # The disc: soft edge (1.5 px ramp) so its outline carries no class information.
    cy, cx = rng.uniform(0.3 * size, 0.7 * size, 2)
    radius = rng.uniform(0.17 * size, 0.28 * size)
    dist = np.hypot(yy - cy, xx - cx)
    mask = np.clip((radius - dist) / 1.5 + 0.5, 0.0, 1.0)
    sign = 1.0 if rng.random() < 0.5 else -1.0
    offset = sign * rng.uniform(25, 45)
    if label in (1, 2):
        offset = rng.uniform(-10, 10)
        shift = rng.uniform(30, 45)
        if label == 1:
            cr = cr + mask * shift
        else:
            cb = cb + mask * shift
    y = y + mask * offset
    if label in _STRIPE_PERIOD or label == 7:
        period = _STRIPE_PERIOD.get(label, 8.0)
        coord = yy if rng.random() < 0.5 else xx
        wave = np.cos(2 * np.pi * coord / period + rng.uniform(0, 2 * np.pi))
        amp = rng.uniform(25, 40)
        if label == 7:
            cb = cb + mask * amp * wave
            cr = cr - mask * amp * wave
        else:
            y = y + mask * amp * wave
    y = y + rng.normal(0.0, 3.0, y.shape)
    return _ycbcr_to_rgb(y, cb, cr)


@dataclass(frozen=True)
class SyntheticSpec:
    """What :func:`make_synthetic_dataset` writes.

    Attributes:
        train_per_class, val_per_class: images per class in ``train/`` and ``val/``.
        size: image side in pixels (square).
        quality: JPEG quality of the stored images (libjpeg-turbo, 4:2:0).
        seed: the set's seed.
    """

    train_per_class: int = 160
    val_per_class: int = 40
    size: int = 128
    quality: int = 95
    seed: int = 0


def _encode(rgb: np.ndarray, quality: int) -> bytes:
    return encode_jpeg(rgb, quality, subsampling="420")


def make_synthetic_dataset(root: str | os.PathLike, spec: SyntheticSpec = SyntheticSpec(), *,
                           threads: int | None = None) -> dict[str, str]:
    """Write the set under ``root``: ``train/<class>/<i>.jpg``, ``val/<class>/<i>.jpg`` and
    ``classes.tsv`` (``folder<TAB>description``, one line per class, in index order).

    Existing files with the expected name are kept (the set is deterministic), so a second
    call only fills in what is missing. Files are written to a temporary name and renamed.

    Returns:
        ``{"train": path, "val": path, "classes": path}``.
    """
    root = os.path.abspath(os.fspath(root))
    jobs = []
    for split, count in (("train", spec.train_per_class), ("val", spec.val_per_class)):
        for label, (folder, _) in enumerate(CLASSES):
            d = os.path.join(root, split, folder)
            os.makedirs(d, exist_ok=True)
            for i in range(count):
                path = os.path.join(d, f"{i:05d}.jpg")
                if not os.path.exists(path):
                    jobs.append((path, _SPLITS[split], label, i))

    def work(job) -> None:
        path, split_id, label, i = job
        rng = np.random.default_rng([spec.seed, split_id, label, i])
        data = _encode(render(label, rng, spec.size), spec.quality)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
        list(pool.map(work, jobs))
    classes = os.path.join(root, "classes.tsv")
    with open(classes, "w", encoding="utf-8") as f:
        for folder, description in CLASSES:
            f.write(f"{folder}\t{description}\n")
    return {"train": os.path.join(root, "train"), "val": os.path.join(root, "val"), "classes": classes}
