"""`dctnet demo`: the README's first command, on built-in defaults.

Classifies the shared ImageNet sample (``../shared/data/imagenet-sample`` next to the
repository, or ``$DCTNET_SHARED/data/imagenet-sample``) with the shared ONNX MobileNetV2
(RGB) and a DCT ResNet-50 side by side, and prints accuracy and throughput per model. Then
it feeds the same pretrained MobileNetV2 from DCT coefficients through the exact conversion
of ``dctnet.models.onnx_frontend`` (n = 64 and 16 bands): the pretrained DCT path that
exists without any training.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import time
from pathlib import Path

from ..data.datasets import imagenet_classes, synset_of_path
from .inspect import expand_paths
from .predict import run as predict

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
    p.add_argument("--bands", type=int, nargs="*", default=[64, 16], metavar="N",
                   help="bands of the converted MobileNetV2 rows (default 64 16; none to skip)")


def run(args: argparse.Namespace) -> int:
    shared = shared_dir()
    ns = argparse.Namespace(
        files=[str(shared / "data" / "imagenet-sample")], model=[args.model], weights=[args.weights],
        onnx=[str(shared / "models" / "mobilenetv2-12-int8.onnx")], topk=args.topk, json=False, labels=None,
        batch_size=32, device="cpu", dtype="float32", compile=False, threads=None)
    if args.quiet:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code = predict(ns)
        lines = buf.getvalue().splitlines()
        print("\n".join(lines[-len(ns.model) - len(ns.onnx):]))
    else:
        code = predict(ns)
    converted_rows(Path(ns.onnx[0]), Path(ns.files[0]), args.bands)
    return code


def converted_rows(onnx: Path, folder: Path, bands: list[int]) -> None:
    """Accuracy of the pretrained ONNX model fed DCT coefficients (exact conversion)."""
    import numpy as np  # start-up time: see dctnet/cli.py

    from ..evaluate.predictors import OnnxDCTPredictor

    files = expand_paths([str(folder)])
    index = imagenet_classes().index
    truth = [index.get(s) if (s := synset_of_path(f)) else None for f in files]
    data = [Path(f).read_bytes() for f in files]
    for n in bands:
        predictor = OnnxDCTPredictor(onnx, n)
        start = time.perf_counter()
        logits, errors = predictor.predict_logits(data)
        seconds = time.perf_counter() - start
        known = [(t, row) for t, row, e in zip(truth, logits, errors) if t is not None and e is None]
        top1 = np.mean([row.argmax() == t for t, row in known]) if known else float("nan")
        top5 = np.mean([t in np.argsort(-row)[:5] for t, row in known]) if known else float("nan")
        print(f"{predictor.name} (pretrained MobileNetV2 fed the {n} lowest DCT bands through the exact "
              f"decode path; files re-encoded at 256 px, 224 crop): {len(files) / seconds:.1f} images/s, "
              f"top-1 {100 * top1:.1f}%, top-5 {100 * top5:.1f}% on {len(known)} labelled files")
