"""`dctnet demo`: the README's first command, on built-in defaults.

Classifies the shared ImageNet sample (``../shared/data/imagenet-sample`` next to the
repository, or ``$DCTNET_SHARED/data/imagenet-sample``) with the shared ONNX MobileNetV2
(RGB) and a DCT ResNet-50 side by side, and prints accuracy and throughput per model.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HELP = "classify the shared ImageNet sample with the shared ONNX model and a DCT ResNet side by side"


def shared_dir() -> Path:
    """The shared/ folder: $DCTNET_SHARED, else ../shared beside the repository or the current folder."""
    env = os.environ.get("DCTNET_SHARED")
    candidates = [Path(env)] if env else []
    repo = Path(__file__).resolve().parents[2]
    candidates += [repo.parent / "shared", Path.cwd().parent / "shared", Path.cwd() / "shared"]
    for c in candidates:
        if (c / "data" / "imagenet-sample").is_dir():
            return c
    raise SystemExit("dctnet demo: cannot find the shared folder (data/imagenet-sample); set DCTNET_SHARED "
                     f"(looked in: {', '.join(map(str, candidates))})")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="resnet50_dct_fbs16", help="DCT model to show beside the ONNX one")
    p.add_argument("--weights", default="none", help="its weights ('none': untrained)")
    p.add_argument("--topk", type=int, default=3)
    p.add_argument("--quiet", action="store_true", help="only the summary lines")


def run(args: argparse.Namespace) -> int:
    from .predict import run as predict

    shared = shared_dir()
    ns = argparse.Namespace(
        files=[str(shared / "data" / "imagenet-sample")], model=[args.model], weights=[args.weights],
        onnx=[str(shared / "models" / "mobilenetv2-12-int8.onnx")], topk=args.topk, json=False, labels=None,
        batch_size=32, device="cpu", dtype="float32", compile=False, threads=None)
    if args.quiet:
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code = predict(ns)
        lines = buf.getvalue().splitlines()
        print("\n".join(lines[-len(ns.model) - len(ns.onnx):]))
        return code
    return predict(ns)
