"""`dctnet study --out DIR`: the CPU-sized RGB vs DCT vs DCT+FBS study (synthetic data, train, eval)."""

from __future__ import annotations

import argparse

from . import int_list

HELP = ("CPU-sized study: make a procedural JPEG set, train small RGB / DCT / DCT+FBS (n=32,16,8) models, "
        "print `dctnet eval`'s per-QF accuracy table (about 10 minutes on 2 cores)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="working folder (data, runs, eval); reused")
    p.add_argument("--models", default=None, metavar="A,B,...",
                   help="models to train (default: small_resnet_rgb and small_resnet_dct with 64, 32, 16 and 8 "
                        "bands: dctnet.train.study.STUDY_MODELS)")
    p.add_argument("--train-per-class", type=int, default=200, help="training images per class (default 200)")
    p.add_argument("--val-per-class", type=int, default=50, help="validation images per class (default 50)")
    p.add_argument("--epochs", type=int, default=10, help="epochs per model (default 10)")
    p.add_argument("--batch-size", "-b", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--lr", type=float, default=None, help="learning rate of every model (default: 0.02 for RGB, "
                   "0.1 for DCT models; /10 at --lr-step)")
    p.add_argument("--lr-step", type=int, default=7, help="epochs between learning-rate steps (default 7)")
    p.add_argument("--workers", "-j", type=int, default=2, help="loader workers (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data set and the training")
    p.add_argument("--qf", type=int_list, default=(100, 90, 80, 70, 60, 50, 40, 30, 20, 10), metavar="Q,Q",
                   help="qualities to evaluate at (default 100,...,10)")
    p.add_argument("--plots", action="store_true", help="also write `dctnet eval`'s plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import sys

    from ..train.study import STUDY_MODELS, StudyConfig, run_cpu_study  # start-up time: see dctnet/cli.py

    models = STUDY_MODELS if args.models is None else tuple(m.strip() for m in args.models.split(",") if m.strip())
    config = StudyConfig(out=args.out, models=models, train_per_class=args.train_per_class,
                         val_per_class=args.val_per_class, epochs=args.epochs, batch_size=args.batch_size,
                         lr=args.lr, lr_step=args.lr_step, workers=args.workers, seed=args.seed, qfs=args.qf,
                         plots=args.plots, progress=not args.no_progress)
    try:
        return run_cpu_study(config)
    except (ValueError, KeyError, OSError, RuntimeError) as e:
        print(f"dctnet study: {e}", file=sys.stderr)
        return 1
