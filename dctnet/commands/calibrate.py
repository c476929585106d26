"""`dctnet calibrate MODEL --bands n DATA... -o ckpt.pt`: recover a converted model's accuracy on
n bands from unlabelled JPEGs (issue 15 item 4; :mod:`dctnet.models.calibrate`).

The checkpoint names the same registry model with ``bands=n`` and loads with
``dctnet.Classifier(MODEL, weights=ckpt)`` or ``dctnet.models.resolve(None, weights=ckpt)``.
"""

from __future__ import annotations

import argparse
import time

from .inspect import expand_paths

from . import band_count

HELP = "recover a converted DCT model's accuracy on fewer bands from unlabelled JPEGs (folded, no extra cost)"


def _steps(text: str) -> tuple[str, ...]:
    """Comma-separated step names (checked by ``calibrate``: an unknown one is a one-line error)."""
    return tuple(s.strip() for s in text.split(",") if s.strip())


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL",
                   help="converted model with default weights (efficientnet_lite0_dct) or a full-band checkpoint")
    p.add_argument("data", nargs="+", metavar="DATA", help="unlabelled JPEG files or folders (searched recursively)")
    p.add_argument("--bands", "-n", type=band_count, required=True, metavar="N",
                   help="keep the N lowest zigzag frequencies of every component")
    p.add_argument("--out", "-o", required=True, metavar="PATH", help="checkpoint to write")
    p.add_argument("--steps", type=_steps, default=None, metavar="S,S",
                   help="lsq (least-squares fill of the dropped bands, folded into the first layer), "
                        "stem (re-fit the first layer's folded BatchNorm), distill, bn (BatchNorm statistics "
                        "of the calibration images), bn-delta (only their change from the full-band model's); "
                        "default lsq,bn-delta")
    p.add_argument("--batch-size", "-b", type=int, default=32, metavar="N")
    p.add_argument("--threads", "-j", type=int, metavar="N", help="reader threads (default: all cores)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from ..models import resolve  # start-up time: see dctnet/cli.py
    from ..models.calibrate import DEFAULT_STEPS, calibrate, save_calibrated

    files = expand_paths(args.data)
    if not files:
        raise ValueError(f"no JPEG files in {', '.join(args.data)}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    # a name with its default weights (efficientnet_lite0_dct: all 64 bands), or a full-band checkpoint
    bundle = resolve(None, weights=args.model) if args.model.endswith((".pt", ".pth")) else resolve(args.model)
    if bundle.kind != "dct":
        raise ValueError(f"{args.model} is an RGB model; calibrate takes a converted DCT model "
                         "(efficientnet_lite0_dct, or a checkpoint written by `dctnet convert`)")
    t0 = time.time()
    model = calibrate(bundle, args.bands, files, steps=args.steps or DEFAULT_STEPS, progress=not args.quiet,
                      batch_size=args.batch_size, threads=args.threads)
    save_calibrated(args.out, model, extra={"calibration_files": len(files)})
    info = model.calibration
    print(f"wrote {args.out}: {model.model_name}(bands={args.bands}), steps {','.join(info['steps']) or 'none'}, "
          f"{len(files)} images -> {info['calibration_inputs']} calibration inputs, {time.time() - t0:.0f} s")
    return 0
