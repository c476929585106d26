"""`dctnet eval DATA ...`: accuracy of models at every JPEG quality, with the selection studies.

See :mod:`dctnet.evaluate.report` for the results folder and the summary.json schema.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import int_list, model_weights, positive_int

HELP = ("accuracy of RGB/DCT/ONNX models on a labelled folder at every JPEG quality, other codecs, requantised "
        "coefficients (+ HRS/T1K/T5K/TTK/MEANPROB selectors, report.html)")




def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", metavar="DATA", help="image folder: class folders, a flat folder of '<synset>_*.JPEG', "
                   "or a flat folder with --labels")
    p.add_argument("--classes", metavar="TSV", help="class list 'synset<TAB>name' per line (default: ImageNet-1k, "
                   "shipped with dctnet)")
    p.add_argument("--labels", metavar="FILE", help="labels for a flat folder: '<file> <index|synset>' lines or "
                   "Kaggle's LOC_val_solution.csv")
    p.add_argument("--model", action="append", default=[], metavar="NAME", help="registered model (repeatable; "
                   "pair each with --weights)")
    p.add_argument("--weights", action="append", default=[], metavar="PATH", help="weights for the --model at the "
                   "same position ('default': the model's own; 'none': untrained; default when no --weights is given)")
    p.add_argument("--bands", type=positive_int, metavar="N",
                   help="DCT models built by name: keep the N lowest zigzag bands (e.g. efficientnet_lite0_dct)")
    p.add_argument("--onnx", action="append", default=[], metavar="PATH", help="ONNX RGB classifier (repeatable), "
                   "preprocessed as ImageNet: resize 256 (Pillow bilinear), centre crop 224, mean/std")
    p.add_argument("--onnx-dct", action="append", default=[], metavar="PATH:N,N,...",
                   help="ONNX RGB classifier fed DCT coefficients through the exact decode path (issue 8), one "
                   "row per band count N (n lowest zigzag bands per component), plus a PATH-prepared-rgb row: "
                   "the same prepared JPEG (shorter side 256, 224 crop on 16-pixel boundaries, re-encoded at "
                   "the version's quality) decoded by libjpeg-turbo (repeatable)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="results folder (reused: a rerun resumes and "
                   "recomputes nothing)")
    p.add_argument("--qf", type=int_list, default=None, metavar="Q,Q,...",
                   help="re-encoding qualities (default 100,90,80,70,60,50,40,30,20,10)")
    p.add_argument("--gray", action="store_true", help="also grayscale versions at every QF")
    p.add_argument("--downscale", type=int_list, default=[], metavar="F,F",
                   help="also versions downscaled by these factors (2, 4, 8) at every QF")
    p.add_argument("--codecs", default="", metavar="CODEC,...",
                   help="also versions made by other codecs for RGB models: jpeg2000, heif, avif, webp (comma-"
                   "separated), each with a ladder whose bits per pixel span about JPEG QF 100..10 (see --ladder). "
                   "DCT models take JPEG settings only: they are evaluated at those, and the report marks the "
                   "codec rows n/a for them")
    p.add_argument("--ladder", action="append", default=[], metavar="CODEC:P,P,...",
                   help="parameters of one --codecs codec instead of its default ladder (quality 0..100; "
                   "jpeg2000: compression ratio against 24-bit RGB), e.g. webp:90,50,10 (repeatable)")
    p.add_argument("--requantize", action="store_true",
                   help="also requant-qfQ at every QF: the original's coefficients requantised with QF Q's tables "
                   "(no decoding), written losslessly as a JPEG, compared with the true re-encode qfQ")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N images (sorted)")
    p.add_argument("--threads", "-j", type=int, metavar="N",
                   help="threads (default: all cores, shared among the ranks of a machine under torchrun)")
    p.add_argument("--batch-size", "-b", type=int, default=8, metavar="N",
                   help="images per batch; each goes to a model with all its versions (default 8)")
    p.add_argument("--confusion", metavar="MODEL:SETTING", help="confusion matrix of this model and setting "
                   "(default: the first model at original)")
    p.add_argument("--no-plots", action="store_true", help="skip the plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..data.datasets import open_dataset
    from ..data.encode import DEFAULT_QFS, make_settings
    from ..evaluate.predictors import OnnxPredictor, make_predictor
    from ..evaluate.study import distributed_context, run_study

    if not args.model and not args.onnx and not args.onnx_dct:
        print("dctnet eval: nothing to evaluate: give --onnx PATH and/or --model NAME --weights PATH",
              file=sys.stderr)
        return 2
    if args.limit is not None and args.limit < 1:
        print("dctnet eval: --limit must be >= 1", file=sys.stderr)
        return 2
    # Under torchrun the ranks of one machine share its cores.
    threads = args.threads or max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    try:
        weights = model_weights(args.model, args.weights)          # argument errors first
        codecs: dict = {}
        for name in (c.strip() for c in args.codecs.split(",") if c.strip()):
            if name in codecs:
                raise ValueError(f"--codecs names {name} twice")
            codecs[name] = None
        for spec in args.ladder:
            name, sep, params = spec.partition(":")
            if not sep or name not in codecs:
                have = ", ".join(codecs) or "none"
                raise ValueError(f"--ladder expects CODEC:P,P,... for a codec of --codecs ({have}), got {spec!r}")
            try:
                codecs[name] = int_list(params)
            except argparse.ArgumentTypeError as e:
                raise ValueError(f"--ladder {spec}: {e}") from None
            if not codecs[name]:
                raise ValueError(f"--ladder {spec}: no parameters")
        settings = make_settings(args.qf if args.qf is not None else DEFAULT_QFS, gray=args.gray,
                                 downscales=args.downscale, requantize=args.requantize, codecs=codecs)
        dataset = open_dataset(args.data, classes=args.classes, labels=args.labels, limit=args.limit)
        predictors = [make_predictor(n, w, threads=threads, bands=args.bands) for n, w in zip(args.model, weights)]
        predictors += [OnnxPredictor(p, threads=threads) for p in args.onnx]
        for spec in args.onnx_dct:
            from ..evaluate.predictors import OnnxDCTPredictor
            path, sep, bands = spec.rpartition(":")
            try:
                ns = int_list(bands) if sep else []
            except argparse.ArgumentTypeError:
                ns = []
            if not path or not ns:
                raise ValueError(f"--onnx-dct expects PATH:N[,N...] (e.g. model.onnx:64,32,16), got {spec!r}")
            predictors.append(OnnxDCTPredictor(path, mode="rgb", threads=threads))
            predictors += [OnnxDCTPredictor(path, n, threads=threads) for n in ns]
        codec_settings = [s.name for s in settings if not s.is_jpeg]
        for p in predictors:
            if codec_settings and not getattr(p, "accepts_pixels", False):
                print(f"dctnet eval: {p.name} takes JPEG files (DCT coefficients or prepared files): it is evaluated "
                      f"at the JPEG settings; the {len(codec_settings)} codec settings are n/a for it",
                      file=sys.stderr)
        confusion = None
        if args.confusion:
            model, sep, setting = args.confusion.rpartition(":")
            if not sep:
                raise ValueError(f"--confusion expects MODEL:SETTING, got {args.confusion!r}")
            confusion = (model, setting)
            if model not in [p.name for p in predictors] or setting not in [s.name for s in settings]:
                raise ValueError(f"--confusion {args.confusion}: models are {[p.name for p in predictors]}, "
                                 f"settings {[s.name for s in settings]}")
        rank, world, barrier = distributed_context()
        try:
            path = run_study(dataset, predictors, settings, args.out, threads=threads, chunk=args.batch_size,
                             progress=not args.no_progress, rank=rank, world_size=world, barrier=barrier,
                             report_options={"confusion": confusion, "plots": not args.no_plots})
        finally:
            if world > 1:
                import torch.distributed as dist
                if dist.is_initialized():
                    dist.destroy_process_group()
    except (ValueError, NotImplementedError, OSError) as e:
        print(f"dctnet eval: {e}", file=sys.stderr)
        return 1
    if path is None:
        return 0
    with open(os.path.join(os.path.dirname(path), "summary.md")) as fh:
        print(fh.read())
    print(f"results: {os.path.dirname(path)}", file=sys.stderr)
    return 0
