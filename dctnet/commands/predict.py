"""`dctnet predict FILES...`: top-k classes of JPEGs with DCT, RGB and ONNX models side by side."""

from __future__ import annotations

import argparse
import json
import sys
import time

from ..data.datasets import imagenet_classes, synset_of_path
from . import model_weights, positive_int
from .inspect import expand_paths

HELP = "classify JPEGs with registered DCT/RGB models and ONNX classifiers, side by side"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="JPEG files or folders (searched recursively)")
    p.add_argument("--model", action="append", default=[], metavar="NAME",
                   help="registered model (repeatable; see `dctnet bench flops --list`)")
    p.add_argument("--weights", action="append", default=[], metavar="PATH",
                   help="weights for the --model at the same position ('default': the model's own, e.g. "
                        "efficientnet_lite0's; 'none': untrained; default when no --weights is given)")
    p.add_argument("--bands", type=positive_int, metavar="N",
                   help="DCT models built by name: keep the N lowest zigzag bands (e.g. efficientnet_lite0_dct)")
    p.add_argument("--onnx", action="append", default=[], metavar="PATH",
                   help="ONNX RGB classifier (repeatable), ImageNet preprocessing (resize 256, crop 224)")
    p.add_argument("--topk", type=positive_int, default=5, help="classes per image (default 5)")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.add_argument("--labels", metavar="FILE", help="class names (TSV 'synset<TAB>name'; default ImageNet-1k)")
    p.add_argument("--batch-size", "-b", type=int, default=32, metavar="N")
    p.add_argument("--device", default="cpu", help="cpu or cuda (torch models)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--compile", action="store_true", help="torch.compile the torch models")
    p.add_argument("--threads", "-j", type=int, metavar="N", help="reader/preprocessing threads (default: all cores)")


def build_classifiers(args: argparse.Namespace):
    """Classifiers for --model/--weights pairs and --onnx paths, with an 'untrained' flag each."""
    import torch  # start-up time: see dctnet/cli.py

    from ..classify import Classifier

    weights = model_weights(args.model, args.weights)
    dtype = getattr(torch, args.dtype)
    out = []
    for name, w in zip(args.model, weights):
        out.append(Classifier(name, weights=w, device=args.device, dtype=dtype, batch_size=args.batch_size,
                              compile=args.compile, labels=args.labels, threads=args.threads,
                              bands=getattr(args, "bands", None)))
    for path in args.onnx:
        if not path.lower().endswith(".onnx"):
            raise ValueError(f"--onnx expects an .onnx model file, got {path}")
        out.append(Classifier(path, batch_size=args.batch_size, labels=args.labels, threads=args.threads))
    if not out:
        raise SystemExit("dctnet: nothing to run: give --model NAME [--weights PATH] and/or --onnx PATH")
    return out


def true_class(path: str, classifier) -> int | None:
    """Class index from an ImageNet-style file name (``n01440764_tench.JPEG``), if any."""
    synset = synset_of_path(path)
    if synset is None or classifier.class_names is None:
        return None
    classes = imagenet_classes()
    if len(classes) != classifier.num_classes:
        return None
    return classes.index.get(synset)


def run(args: argparse.Namespace) -> int:
    files = expand_paths(args.files)
    if not files:
        print("dctnet predict: no JPEG files found", file=sys.stderr)
        return 1
    classifiers = build_classifiers(args)
    for clf in classifiers:
        if args.topk > clf.num_classes:
            raise ValueError(f"--topk {args.topk} is more than the {clf.num_classes} classes of {clf.name}")
    for clf in classifiers:
        if not clf.trained:
            print(f"note: {clf.name} has no weights (random initialisation): its predictions are meaningless; "
                  f"train one with `dctnet train` or convert an RGB network with `dctnet convert`", file=sys.stderr)
    results, timings = [], []
    for clf in classifiers:
        start = time.perf_counter()
        results.append(clf.predict(files, topk=args.topk))
        timings.append(time.perf_counter() - start)
    failures = 0
    for i, path in enumerate(files):
        preds = [r[i] for r in results]
        failures += any(p.error is not None for p in preds)
        if args.json:
            print(json.dumps({"file": path, "models": {
                clf.name: {"path": p.path, "error": None if p.error is None else str(p.error),
                           "topk": [list(t) for t in p], "trained": clf.trained}
                for clf, p in zip(classifiers, preds)}}))
            continue
        print(path)
        for clf, p in zip(classifiers, preds):
            tag = f"  {clf.name}{'' if clf.trained else ' (untrained)'} [{p.path or 'error'}]"
            if p.error is not None:
                print(f"{tag}: error: {p.error}")
            else:
                print(f"{tag}: " + ", ".join(f"{name} {prob:.3f}" for _, name, prob in p))
    # Files named after their synset (like the shared ImageNet sample) give an accuracy line.
    summary = []
    for clf, preds, seconds in zip(classifiers, results, timings):
        truth = [true_class(f, clf) for f in files]
        known = [(t, p) for t, p in zip(truth, preds) if t is not None and p.error is None]
        line = f"{clf.name}{'' if clf.trained else ' (untrained: chance level expected)'}: " \
               f"{len(files) / seconds:.1f} images/s end to end"
        if known:
            top1 = sum(p[0][0] == t for t, p in known) / len(known)
            topk = sum(any(c == t for c, _, _ in p) for t, p in known) / len(known)
            line += f", top-1 {100 * top1:.1f}%, top-{args.topk} {100 * topk:.1f}% on {len(known)} labelled files"
        paths = {}
        for p in preds:
            paths[p.path or "error"] = paths.get(p.path or "error", 0) + 1
        line += " (" + ", ".join(f"{k}: {v}" for k, v in sorted(paths.items())) + ")"
        summary.append(line)
    print("\n".join(summary), file=sys.stderr if args.json else sys.stdout)
    if failures:
        print(f"{failures} of {len(files)} files failed (reported above)", file=sys.stderr)
    return 1 if failures else 0
