"""Held-out study of dctnet.models.calibrate (issue 15 item 4): calibrate on half of a folder of
ImageNet photos (``<synset>_*.JPEG``, every other file in sorted order), report top-1/top-5 on the
other half for each band count, calibration variant and setting (original files, QF 90, QF 50).

    python scripts/calibrate_heldout.py /work/shared/data/imagenet-sample [--bands 64,32,16,8]

Prints a Markdown table; CPU, a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import glob
import os
import time

import torch

from dctnet.data.datasets import imagenet_classes, synset_of_path
from dctnet.data.encode import Setting, encode_setting
from dctnet.models import converted_layout, resolve
from dctnet.models.calibrate import bn_statistics, calibrate, calibration_set
from dctnet.ops import read_to_tensor

VARIANTS = {"plain": (), "lsq": ("lsq",), "bn": ("bn",), "lsq+bn": ("lsq", "bn"), "bn-delta": ("bn-delta",),
            "lsq+bn-delta": ("lsq", "bn-delta"), "lsq+stem+bn-delta": ("lsq", "stem", "bn-delta"),
            "lsq+distill+bn-delta": ("lsq", "distill", "bn-delta")}


def topk(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    top = logits.topk(5, 1).indices
    return (100.0 * (top[:, 0] == labels).float().mean().item(),
            100.0 * (top == labels[:, None]).any(1).float().mean().item())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--bands", default="64,32,16,8")
    p.add_argument("--variants", default="plain,lsq,lsq+bn,bn-delta,lsq+bn-delta,lsq+stem+bn-delta")
    p.add_argument("--qfs", default="90,50", help="held-out re-encodings besides the original files")
    p.add_argument("--distill-iterations", type=int, default=150)
    p.add_argument("--distill-depth", type=int, default=3)
    p.add_argument("--distill-target", default="features", choices=["features", "logits"])
    p.add_argument("--distill-lr", type=float, default=1e-3)
    args = p.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    files = sorted(glob.glob(os.path.join(args.data, "*.JPEG")))
    calib, held = files[0::2], files[1::2]
    index = imagenet_classes().index
    labels = torch.tensor([index[synset_of_path(f)] for f in held])
    originals = [open(f, "rb").read() for f in held]
    settings = {"orig": originals}
    for qf in (int(q) for q in args.qfs.split(",") if q):
        settings[f"QF{qf}"] = [encode_setting(d, Setting(qf)) for d in originals]
    full_inputs = {k: read_to_tensor(v, converted_layout(64), size=224, resize=256) for k, v in settings.items()}
    t0 = time.time()
    cal = calibration_set(calib)
    print(f"calibration: {len(calib)} photos -> {cal[0].shape[0]} inputs ({time.time() - t0:.0f} s); "
          f"held out: {len(held)} photos")
    full = resolve("efficientnet_lite0_dct", bands=64).model.eval()
    reference = bn_statistics(full, [(cal[0][i:i + 32], cal[1][i:i + 32]) for i in range(0, cal[0].shape[0], 32)])
    print("| n | variant | " + " | ".join(f"{k} top-1/top-5" for k in settings) + " |")
    print("|---|---|" + "---|" * len(settings))
    for n in (int(b) for b in args.bands.split(",")):
        for variant in args.variants.split(","):
            model = calibrate(full, n, cal, steps=VARIANTS[variant], progress=False, reference_stats=reference,
                              distill_options={"iterations": args.distill_iterations, "depth": args.distill_depth,
                                               "target": args.distill_target, "lr": args.distill_lr})
            cells = []
            with torch.no_grad():
                for k, (y, c) in full_inputs.items():
                    logits = model(y[:, :n], torch.cat([c[:, :n], c[:, 64:64 + n]], 1))
                    t1, t5 = topk(logits, labels)
                    cells.append(f"{t1:.0f} / {t5:.0f}")
            print(f"| {n} | {variant} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
