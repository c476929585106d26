"""Held-out study of dctnet.models.calibrate (issue 15): calibrate on half of a folder of
ImageNet photos (``<synset>_*.JPEG``, every other file in sorted order), report top-1/top-5 on
the other half for each band count, calibration variant and setting. The library's
:func:`dctnet.evaluate.calibration.calibration_table` (also `dctnet calibrate --heldout`),
with the research variants (distillation options) exposed.

    python scripts/calibrate_heldout.py /work/shared/data/imagenet-sample [--bands 64,32,16,8] [--swap]

Prints a Markdown table; CPU, 10-40 minutes on 2 shared cores.
"""

from __future__ import annotations

import argparse
import glob
import os

import torch

from dctnet.evaluate.calibration import calibration_table, table_markdown


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--bands", default="64,32,16,8")
    p.add_argument("--variants", default="plain,lsq,lsq+bn-delta",
                   help="plain or calibrate steps joined by +, e.g. lsq+stem+bn-delta, lsq+distill+bn-delta, bn")
    p.add_argument("--qfs", default="original,90,70,50,30,10", help="held-out settings")
    p.add_argument("--swap", action="store_true", help="calibrate on the odd files, report on the even ones")
    p.add_argument("--distill-iterations", type=int, default=150)
    p.add_argument("--distill-depth", type=int, default=3)
    p.add_argument("--distill-target", default="features", choices=["features", "logits"])
    p.add_argument("--distill-lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    files = sorted(glob.glob(os.path.join(args.data, "*.JPEG")))
    qfs = [None if q == "original" else int(q) for q in args.qfs.split(",") if q]
    options = {}
    if "distill" in args.variants:
        options["distill_options"] = {"iterations": args.distill_iterations, "depth": args.distill_depth,
                                      "target": args.distill_target, "lr": args.distill_lr}
    rows = calibration_table("efficientnet_lite0_dct", files, bands=[int(b) for b in args.bands.split(",")],
                             variants=args.variants.split(","), qfs=qfs, swap=args.swap, threads=args.threads,
                             calibrate_options=options,
                             on_row=lambda r: print(f"n={r['bands']} {r['variant']} {r['setting']}: "
                                                    f"{r['top1']:.0f} / {r['top5']:.0f}", flush=True))
    print(table_markdown(rows))


if __name__ == "__main__":
    main()
