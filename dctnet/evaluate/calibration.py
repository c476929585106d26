"""Held-out accuracy of calibrated n-band models (issue 15): the n x QF table.

Calibrate (:func:`dctnet.models.calibrate.calibrate`) on one half of a folder of labelled
ImageNet photos (``<synset>_*.JPEG``; every other file in sorted order), and report top-1 /
top-5 on the other half, for each band count, calibration variant and JPEG setting (the
original files and re-encodings at the given qualities, read as the Classifier reads them:
shorter side 256 in the DCT domain, 224 centre crop). ``swap=True`` exchanges the halves,
which shows how much of a difference is the split's.

`dctnet calibrate MODEL DATA --heldout --bands 64,32,16,8` prints the table;
``scripts/calibrate_heldout.py`` is the same with the research variants.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm import tqdm

from ..data.datasets import imagenet_classes, synset_of_path
from ..data.encode import Setting, encode_setting
from ..models import converted_layout, resolve
from ..models.calibrate import bn_statistics, calibrate, calibration_set, factored_first_layers
from ..ops import read_to_tensor

__all__ = ["DEFAULT_VARIANTS", "HELDOUT_QFS", "calibration_table", "heldout_split", "table_markdown", "variant_steps"]

#: Variants of the table: ``plain`` (dropped bands zero) and steps of :func:`calibrate` joined by ``+``.
DEFAULT_VARIANTS = ("plain", "lsq", "lsq+bn-delta")
#: Held-out settings: the original files (``None``) and re-encodings at these qualities.
HELDOUT_QFS = (None, 90, 70, 50, 30, 10)


def variant_steps(variant: str) -> tuple[str, ...]:
    """``"plain"`` -> ``()``; ``"lsq+bn-delta"`` -> ``("lsq", "bn-delta")`` (checked by calibrate)."""
    return () if variant == "plain" else tuple(s for s in variant.split("+") if s)


def heldout_split(files: Sequence[str], swap: bool = False) -> tuple[list[str], list[str]]:
    """``(calibration files, held-out files)``: the even and odd entries of the sorted list
    (exchanged with ``swap``)."""
    files = sorted(os.fspath(f) for f in files)
    even, odd = files[0::2], files[1::2]
    return (odd, even) if swap else (even, odd)


def _topk(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    top = logits.topk(5, 1).indices
    return (100.0 * (top[:, 0] == labels).float().mean().item(),
            100.0 * (top == labels[:, None]).any(1).float().mean().item())


@torch.no_grad()
def calibration_table(model: str, files: Sequence[str], *, bands: Sequence[int] = (64, 32, 16, 8),
                      variants: Sequence[str] = DEFAULT_VARIANTS, qfs: Sequence[int | None] = HELDOUT_QFS,
                      swap: bool = False, threads: int | None = None, batch_size: int = 32, progress: bool = True,
                      calibrate_options: dict | None = None,
                      on_row: Callable[[dict], None] | None = None) -> list[dict]:
    """Held-out top-1 / top-5 of ``model`` (a converted registry model with default weights,
    e.g. ``"efficientnet_lite0_dct"``) on n bands, per calibration variant and setting.

    Args:
        model: registry name; resolved at 64 bands (the calibration's full-band model).
        files: labelled photos (``<synset>_*.JPEG`` or ``<synset>/x.JPEG``), split by
            :func:`heldout_split`.
        bands: band counts n (at 64 only ``plain`` is run: every step is the identity there).
        variants: ``"plain"`` or steps of :func:`calibrate` joined by ``+``.
        qfs: held-out settings: ``None`` = the original files, else the quality of a
            re-encoding (:func:`~dctnet.data.encode.encode_setting`, 4:2:0).
        swap: calibrate on the other half.
        calibrate_options: more keyword arguments of :func:`calibrate` (e.g. ``estimate``).
        on_row: called with each row as it is done (progress output of long runs).

    Returns:
        Rows ``{"bands", "variant", "setting" ("original" / "qf90" ...), "top1", "top5",
        "calibration_files", "heldout_files", "split" ("even" / "odd": the calibration half)}``
        (percentages, float).

    Raises:
        ValueError: a file not named after a synset, or fewer than 2 files.
    """
    calib, held = heldout_split(files, swap)
    if not calib or not held:
        raise ValueError("the held-out table needs at least 2 photos")
    index = imagenet_classes().index
    synsets = [synset_of_path(f) for f in held]
    missing = [f for f, s in zip(held, synsets) if s is None]
    if missing:
        raise ValueError(f"{missing[0]}: not named after an ImageNet synset (<synset>_*.JPEG)")
    labels = torch.tensor([index[s] for s in synsets])
    originals = [Path(f).read_bytes() for f in held]
    full_in = {}
    for qf in tqdm(list(qfs), desc="held-out settings", unit="setting", disable=not progress):
        data = originals if qf is None else [encode_setting(d, Setting(int(qf)), name=f)
                                             for d, f in zip(originals, held)]
        full_in["original" if qf is None else f"qf{int(qf)}"] = read_to_tensor(
            data, converted_layout(64), size=224, resize=256, threads=threads)
    full = resolve(model, bands=64).model.eval()
    cal = calibration_set(calib, threads=threads, progress=progress)
    reference = None
    if any("bn-delta" in variant_steps(v) for v in variants) and any(n < 64 for n in bands):
        batches = [(cal[0][i:i + batch_size], cal[1][i:i + batch_size]) for i in range(0, cal[0].shape[0], batch_size)]
        with factored_first_layers(full.stem_conv):       # the same map, cheaper on CPU
            reference = bn_statistics(full, batches, progress=progress, total=len(batches))
    rows = []
    jobs = [(int(n), v) for n in bands for v in (("plain",) if int(n) == 64 else variants)]
    for n, variant in tqdm(jobs, desc="calibrated models", unit="model", disable=not progress):
        t0 = time.time()
        options = dict(calibrate_options or {})
        if "kd" in variant_steps(variant):
            options.setdefault("kd_images", calib)       # kd reads fresh augmentations of the JPEGs
        net = calibrate(full, n, cal, steps=variant_steps(variant),
                        progress=progress and "kd" in variant_steps(variant),
                        batch_size=batch_size, reference_stats=reference, threads=threads, **options)
        kd_train = (options.get("kd_options") or {}).get("train", "all")
        trained_first = "distill" in variant_steps(variant) or ("kd" in variant_steps(variant)
                                                                and kd_train in ("first", "everything"))
        if not trained_first:                            # factored: the same map, cheaper on CPU
            net.stem_conv.factored = True
        for setting, (y, c) in full_in.items():
            logits = torch.cat([net(y[i:i + batch_size, :n],
                                    torch.cat([c[i:i + batch_size, :n], c[i:i + batch_size, 64:64 + n]], 1))
                                for i in range(0, y.shape[0], batch_size)])
            top1, top5 = _topk(logits, labels)
            row = {"bands": n, "variant": variant, "setting": setting, "top1": top1, "top5": top5,
                   "calibration_files": len(calib), "heldout_files": len(held), "split": "odd" if swap else "even",
                   "seconds": round(time.time() - t0, 1)}
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


def table_markdown(rows: Sequence[dict]) -> str:
    """Rows of :func:`calibration_table` as a Markdown table: one line per (n, variant), one
    column per setting, cells ``top-1 / top-5``."""
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    lines = ["| n | variant | " + " | ".join(settings) + " |", "|---|---|" + "---|" * len(settings)]
    cells: dict[tuple, dict] = {}
    for r in rows:
        cells.setdefault((r["bands"], r["variant"]), {})[r["setting"]] = f"{r['top1']:.0f} / {r['top5']:.0f}"
    for (n, variant), by in cells.items():
        lines.append(f"| {n} | {variant} | " + " | ".join(by.get(s, "") for s in settings) + " |")
    return "\n".join(lines)
