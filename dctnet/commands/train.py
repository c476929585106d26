"""`dctnet train --model NAME --data DIR --out DIR`: train a DCT or RGB model (one process or torchrun/DDP)."""

from __future__ import annotations

import argparse
import json
import os
import sys

HELP = "train a DCT or RGB model on a labelled JPEG folder (SGD, step decay, AMP on GPU, DDP under torchrun, resumable)"


def _scale(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX, got {text!r}") from None
    return lo, hi


def _model_arg(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", required=True, metavar="NAME", help="registered model (dctnet.models.list_models())")
    p.add_argument("--data", "-d", required=True, metavar="DIR", help="training images (class folders, or a flat "
                   "folder with --labels / synset-prefixed names)")
    p.add_argument("--val", metavar="DIR", help="validation images (evaluated after every epoch; best.pt)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder: last.pt, best.pt, log.jsonl")
    p.add_argument("--classes", metavar="TSV", help="class list (default: ImageNet-1k if the folders are synsets, "
                   "else the sorted folder names)")
    p.add_argument("--labels", metavar="FILE", help="labels file for a flat training folder")
    p.add_argument("--val-labels", metavar="FILE", help="labels file for a flat validation folder")
    p.add_argument("--model-arg", action="append", type=_model_arg, default=[], metavar="KEY=VALUE",
                   help="builder option (JSON value), e.g. --model-arg width=16; stored in the checkpoint")
    p.add_argument("--weights", metavar="PATH|default", help="start from these weights (a checkpoint or state "
                   "dict for --model, or 'default': the model's registered default weights, e.g. multiqf's "
                   "pretrained backbone); default: from scratch")
    p.add_argument("--unfreeze-last", type=int, metavar="N", help="multiqf: also train the backbone's last N "
                   "blocks (default 0: only the final linear layer, the backbone frozen)")
    p.add_argument("--epochs", type=int, default=120, help="epochs (default 120)")
    p.add_argument("--batch-size", "-b", type=int, default=128, help="global batch size (default 128)")
    p.add_argument("--lr", type=float, default=0.05, help="initial learning rate (default 0.05)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    p.add_argument("--weight-decay", "--wd", type=float, default=1e-4, help="weight decay of conv/linear weights "
                   "(default 1e-4; none on BN and biases)")
    p.add_argument("--lr-step", type=int, default=30, help="divide the learning rate every N epochs (default 30)")
    p.add_argument("--lr-gamma", type=float, default=0.1, help="learning rate factor at each step (default 0.1)")
    p.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing (default 0)")
    p.add_argument("--amp", dest="amp", action="store_true", default=None, help="mixed precision (default: on CUDA)")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="full precision on CUDA")
    p.add_argument("--workers", "-j", type=int, default=2, help="loader workers per process: threads for DCT "
                   "models, processes for RGB models (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order and augmentation")
    p.add_argument("--size", type=int, metavar="PX", help="training crop in pixels (default: the model's input "
                   "size; a multiple of 16 for DCT models)")
    p.add_argument("--augment", choices=["rrc", "crop"], default="rrc", help="RandomResizedCrop (torchvision's; "
                   "DCT models: resampled in the DCT domain) or a plain random crop (DCT models: exact, on the "
                   "block grid); both with random horizontal flips")
    p.add_argument("--scale", type=_scale, default=(0.08, 1.0), metavar="MIN,MAX",
                   help="RandomResizedCrop area range (default 0.08,1)")
    p.add_argument("--stats-images", type=int, default=1000, help="DCT models: images for the normalisation "
                   "statistics (default 1000)")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N training images")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: CUDA when available")
    p.add_argument("--resume", metavar="PATH|auto", help="continue from a last.pt ('auto': OUT/last.pt if it exists)")
    p.add_argument("--checkpoint-every", type=int, default=0, metavar="STEPS",
                   help="also write last.pt every STEPS training steps inside an epoch (default: end of epochs only)")
    p.add_argument("--skip-bad-files", action="store_true", help="DCT models: drop unreadable files from their "
                   "batch (default: stop with the file's name)")
    p.add_argument("--quiet", "-q", action="store_true", help="no per-epoch lines on stdout")


def run(args: argparse.Namespace) -> int:
    from ..train import TrainConfig, train

    config = TrainConfig(model=args.model, data=args.data, out=args.out, val=args.val, classes=args.classes,
                         labels=args.labels, val_labels=args.val_labels, model_kwargs=dict(args.model_arg),
                         weights=args.weights, unfreeze_last=args.unfreeze_last,
                         epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
                         weight_decay=args.weight_decay, lr_step=args.lr_step, lr_gamma=args.lr_gamma,
                         label_smoothing=args.label_smoothing, amp=args.amp, workers=args.workers, seed=args.seed,
                         size=args.size, augment=args.augment, scale=args.scale, stats_images=args.stats_images,
                         limit=args.limit, device=args.device, resume=args.resume,
                         checkpoint_every=args.checkpoint_every,
                         on_error="skip" if args.skip_bad_files else "raise", quiet=args.quiet)
    try:
        result = train(config)
    except (ValueError, KeyError, OSError, RuntimeError) as e:
        print(f"dctnet train: {e}", file=sys.stderr)
        return 1
    if not args.quiet and int(os.environ.get("RANK", "0")) == 0:  # one line under torchrun
        print(f"checkpoint: {result['checkpoint']}", file=sys.stderr)
    return 0
