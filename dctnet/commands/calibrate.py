"""`dctnet calibrate MODEL --bands n DATA... -o ckpt.pt`: recover a converted model's accuracy on
n bands from unlabelled JPEGs (issue 15 item 4; :mod:`dctnet.models.calibrate`).

The checkpoint names the same registry model with ``bands=n`` and loads with
``dctnet.Classifier(MODEL, weights=ckpt)`` or ``dctnet.models.resolve(None, weights=ckpt)``.

`dctnet calibrate MODEL DATA --heldout --bands 64,32,16,8 [--swap]`: no checkpoint; the held-out
n x QF table of :mod:`dctnet.evaluate.calibration` (calibrate on half of labelled photos,
top-1 / top-5 on the other half).
"""

from __future__ import annotations

import argparse
import time

from .inspect import expand_paths

from . import band_count


def _band_list(text: str) -> list[int]:
    """``--bands``: one band count, or several (``64,32,16,8``) for ``--heldout``."""
    return [band_count(t.strip()) for t in text.split(",") if t.strip()]


def _settings(text: str) -> list[int | None]:
    """``original,90,50`` -> ``[None, 90, 50]``."""
    out = []
    for t in (t.strip() for t in text.split(",") if t.strip()):
        if t == "original":
            out.append(None)
            continue
        try:
            q = int(t)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected 'original' or qualities 1..100, got {t!r}") from None
        if not 1 <= q <= 100:
            raise argparse.ArgumentTypeError(f"JPEG quality must be 1..100, got {q}")
        out.append(q)
    return out

HELP = "recover a converted DCT model's accuracy on fewer bands from unlabelled JPEGs (folded, no extra cost)"


def _steps(text: str) -> tuple[str, ...]:
    """Comma-separated step names (checked by ``calibrate``: an unknown one is a one-line error)."""
    return tuple(s.strip() for s in text.split(",") if s.strip())


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL",
                   help="converted model with default weights (efficientnet_lite0_dct) or a full-band checkpoint")
    p.add_argument("data", nargs="+", metavar="DATA", help="unlabelled JPEG files or folders (searched recursively)")
    p.add_argument("--bands", "-n", type=_band_list, required=True, metavar="N",
                   help="keep the N lowest zigzag frequencies of every component (--heldout: a list, N,N,...)")
    p.add_argument("--out", "-o", metavar="PATH", help="checkpoint to write (required unless --heldout)")
    p.add_argument("--steps", type=_steps, default=None, metavar="S,S",
                   help="lsq (least-squares fill of the dropped bands, folded into the first layer) or wiener "
                        "(the same from a photo-independent prior), "
                        "stem (re-fit the first layer's folded BatchNorm), distill, bn (BatchNorm statistics "
                        "of the calibration images), bn-delta (only their change from the full-band model's), "
                        "kd (distil the full-band model's class distribution into the n-band one on fresh "
                        "augmentations: minutes); default lsq,bn-delta")
    p.add_argument("--kd-iterations", type=int, default=None, metavar="N",
                   help="kd step: training iterations (default 200, batches of 16)")
    p.add_argument("--kd-lr", type=float, default=None, metavar="LR",
                   help="kd step: peak Adam learning rate (default 2e-5)")
    p.add_argument("--kd-temperature", type=float, default=None, metavar="T",
                   help="kd step: softmax temperature of the distilled distributions (default 2)")
    p.add_argument("--batch-size", "-b", type=int, default=32, metavar="N")
    p.add_argument("--threads", "-j", type=int, metavar="N", help="reader threads (default: all cores)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    g = p.add_argument_group("held-out table (no checkpoint)")
    g.add_argument("--heldout", action="store_true",
                   help="calibrate on every other photo of DATA (named <synset>_*.JPEG), print top-1/top-5 on the "
                        "others per band count, variant and setting")
    g.add_argument("--swap", action="store_true", help="calibrate on the other half")
    g.add_argument("--variants", default="plain,lsq,lsq+bn-delta", metavar="V,V",
                   help="plain or steps joined by + (default plain,lsq,lsq+bn-delta)")
    g.add_argument("--settings", type=_settings, default=[None, 90, 70, 50, 30, 10], metavar="S,S",
                   help="held-out settings: original and/or qualities (default original,90,70,50,30,10)")
    g.add_argument("--json", metavar="PATH", help="also write the rows as JSON")


def _kd_options(args: argparse.Namespace) -> dict:
    """``--kd-iterations`` / ``--kd-lr`` / ``--kd-temperature`` as
    :func:`~dctnet.models.calibrate.knowledge_distill` keywords."""
    out = {}
    if args.kd_iterations is not None:
        if args.kd_iterations < 1:
            raise ValueError(f"--kd-iterations must be >= 1, got {args.kd_iterations}")
        out["iterations"] = args.kd_iterations
    if args.kd_lr is not None:
        if not args.kd_lr > 0:
            raise ValueError(f"--kd-lr must be > 0, got {args.kd_lr}")
        out["lr"] = args.kd_lr
    if args.kd_temperature is not None:
        if not args.kd_temperature > 0:
            raise ValueError(f"--kd-temperature must be > 0, got {args.kd_temperature}")
        out["temperature"] = args.kd_temperature
    return out


def run(args: argparse.Namespace) -> int:
    from ..models import resolve  # start-up time: see dctnet/cli.py
    from ..models.calibrate import DEFAULT_STEPS, calibrate, save_calibrated

    files = expand_paths(args.data)
    if not files:
        raise ValueError(f"no JPEG files in {', '.join(args.data)}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    steps = args.steps or DEFAULT_STEPS
    if args.heldout:
        return _heldout(args, files)
    if len(args.bands) != 1:
        raise ValueError(f"--bands takes one band count (a list only with --heldout), got {args.bands}")
    if not args.out:
        raise ValueError("--out PATH is required (or --heldout for the held-out table)")
    bands = args.bands[0]
    # a name with its default weights (efficientnet_lite0_dct: all 64 bands), or a full-band checkpoint
    bundle = resolve(None, weights=args.model) if args.model.endswith((".pt", ".pth")) else resolve(args.model)
    if bundle.kind != "dct":
        raise ValueError(f"{args.model} is an RGB model; calibrate takes a converted DCT model "
                         "(efficientnet_lite0_dct, or a checkpoint written by `dctnet convert`)")
    t0 = time.time()
    model = calibrate(bundle, bands, files, steps=steps, progress=not args.quiet,
                      batch_size=args.batch_size, threads=args.threads, kd_options=_kd_options(args))
    save_calibrated(args.out, model, extra={"calibration_files": len(files)})
    info = model.calibration
    print(f"wrote {args.out}: {model.model_name}(bands={bands}), steps {','.join(info['steps']) or 'none'}, "
          f"{len(files)} images -> {info['calibration_inputs']} calibration inputs, {time.time() - t0:.0f} s")
    return 0


def _heldout(args: argparse.Namespace, files: list[str]) -> int:
    import json
    import sys

    from ..evaluate.calibration import calibration_table, table_markdown, variant_steps
    from ..models.calibrate import STEPS

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        bad = [s for s in variant_steps(v) if s not in STEPS]
        if bad:
            raise ValueError(f"variant {v!r}: unknown step {bad[0]!r}; choose from plain or {', '.join(STEPS)} "
                             "joined by +")
    if args.model.endswith((".pt", ".pth")):
        raise ValueError("--heldout takes a registry name with default weights (efficientnet_lite0_dct)")
    t0 = time.time()

    def show(row: dict) -> None:   # progress: each result as it comes (the table follows at the end)
        print(f"n={row['bands']} {row['variant']} {row['setting']}: top-1 {row['top1']:.0f}, top-5 "
              f"{row['top5']:.0f}", file=sys.stderr, flush=True)

    rows = calibration_table(args.model, files, bands=args.bands, variants=variants, qfs=args.settings,
                             swap=args.swap, threads=args.threads, batch_size=args.batch_size,
                             progress=not args.quiet, on_row=None if args.quiet else show,
                             calibrate_options={"kd_options": _kd_options(args)})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    print(f"# {args.model}: calibrated on the {rows[0]['split']} half ({rows[0]['calibration_files']} photos), "
          f"top-1 / top-5 % on the other {rows[0]['heldout_files']}; {time.time() - t0:.0f} s")
    print(table_markdown(rows))
    return 0
