"""`dctnet bench <what>`: model measurements. `flops`: GMACs and parameters of registered models.

Each measurement is a subcommand defined by an entry in ``SUBCOMMANDS`` (help, add_arguments,
run), so e.g. a ``throughput`` subcommand is added beside ``flops`` without touching the rest.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import int_list

HELP = ("measure models: `flops` prints GMACs and parameter counts (default: the table of docs/architecture.md §5); "
        "`throughput` times input preparation, forward and end to end")


# ----------------------------------------------------------------------------- flops

def _flops_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help="registered model names or fnmatch patterns (default: the paper table of docs/architecture.md §5)")
    p.add_argument("-s", "--image-size", type=int, nargs="+", default=[224], metavar="PX",
                   help="square image sizes in pixels (default 224; DCT inputs are PX/8 blocks)")
    p.add_argument("-n", "--num-classes", type=int, default=1000, help="classifier outputs (default 1000)")
    p.add_argument("--stride-in-1x1", choices=["model", "yes", "no"], default="model",
                   help="override where downsampling blocks put their stride (default: each model's own)")
    p.add_argument("--bands", type=int_list, metavar="N,N",
                   help="one row per band count for models built with bands (converted models such as "
                        "efficientnet_lite0_dct, resnet_from_rgb), e.g. 64,32,16,8")
    p.add_argument("--json", action="store_true", help="one JSON object per row instead of a table")


def _takes_bands(name: str) -> bool:
    import inspect

    from ..models import model_builder

    return "bands" in inspect.signature(model_builder(name)).parameters


def _flops_run(args: argparse.Namespace) -> int:
    from ..models import CONVENTION, list_models, model_complexity
    from ..models.flops import PAPER_TABLE

    paper = {row[0]: row for row in PAPER_TABLE}
    if args.models:
        names = []
        for pattern in args.models:
            found = list_models(pattern)
            if not found:
                print(f"dctnet bench flops: no registered model matches {pattern!r} (see list_models())", file=sys.stderr)
                return 2
            names += [n for n in found if n not in names]
    else:
        names = list(paper)
    stride = {"model": None, "yes": True, "no": False}[args.stride_in_1x1]

    bad = [b for b in args.bands or () if not 1 <= b <= 64]
    if bad:
        print(f"dctnet bench flops: --bands must be in 1..64, got {bad[0]}", file=sys.stderr)
        return 2
    if args.bands and not any(_takes_bands(n) for n in names):
        print(f"dctnet bench flops: --bands: none of {', '.join(names)} is built with bands "
              "(e.g. efficientnet_lite0_dct, resnet_from_rgb)", file=sys.stderr)
        return 2
    rows = []
    for size in args.image_size:
        if size <= 0 or size % 16:
            print(f"dctnet bench flops: image size {size} must be a positive multiple of 16 pixels", file=sys.stderr)
            return 2
        for name in names:
            for bands in (args.bands if args.bands and _takes_bands(name) else [None]):
                c = model_complexity(name, size, num_classes=args.num_classes, stride_in_1x1=stride, bands=bands)
                row = {"model": name, "image_size": size,
                       "input": " + ".join("x".join(str(d) for d in s) for s in c.input_shapes),
                       "gmacs": round(c.gmacs, 4), "params_m": round(c.mparams, 3)}
                if bands is not None:
                    row["bands"] = bands
                if c.first_layer_macs is not None:
                    row.update(first_layer=c.first_layer_name, first_layer_mmacs=round(c.first_layer_macs / 1e6, 3))
                ref = paper.get(name)
                if ref is not None and size == 224 and args.num_classes == 1000 and stride is None:
                    row.update(paper_gmacs=ref[2], paper_params_m=ref[3],
                               gmacs_vs_paper_pct=round(100 * (c.gmacs / ref[2] - 1), 2),
                               params_vs_paper_pct=round(100 * (c.mparams / ref[3] - 1), 2))
                rows.append(row)

    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"# {CONVENTION}; batch 1")
    with_paper = any("paper_gmacs" in r for r in rows)
    header = ["model", "px", "input (C x h x w)", "GMACs", "params [M]", "first layer [MMACs]"]
    if with_paper:
        header += ["paper GMACs", "paper params [M]", "dGMACs", "dparams"]
    table = []
    for r in rows:
        first = f"{r['first_layer_mmacs']:.1f} ({r['first_layer']})" if "first_layer" in r else "-"
        line = [r["model"], str(r["image_size"]), r["input"], f"{r['gmacs']:.3f}", f"{r['params_m']:.2f}", first]
        if with_paper:
            if "paper_gmacs" in r:
                line += [f"{r['paper_gmacs']:.2f}", f"{r['paper_params_m']:.1f}",
                         f"{r['gmacs_vs_paper_pct']:+.1f}%", f"{r['params_vs_paper_pct']:+.1f}%"]
            else:
                line += ["", "", "", ""]
        table.append(line)
    widths = [max(len(x) for x in col) for col in zip(header, *table)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for line in table:
        print("  ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip())
    if with_paper:
        print("# paper: Gueguen et al. 2018 / dos Santos et al. 2020 (Keras counts include ~0.09M BN statistics "
              "and biases, hence the negative dparams)")
    return 0


# ----------------------------------------------------------------------------- throughput

def _throughput_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help="registered model names, or onnx:PATH (default: resnet50 resnet50_dct resnet50_dct_fbs16 "
                        "and the shared fp32 ONNX EfficientNet-Lite0 when found)")
    p.add_argument("--data", metavar="DIR", help="JPEG folder to read (default: the shared ImageNet sample)")
    p.add_argument("-b", "--batch", type=int, nargs="+", default=[1, 16], metavar="N", help="batch sizes (default 1 16)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--compile", choices=["no", "yes", "both"], default="no", help="torch.compile the models")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per figure (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed repeats first (default 2)")
    p.add_argument("-j", "--threads", type=int, metavar="N", help="reader/preprocessing threads (default: all cores)")
    p.add_argument("--results-file", "-o", metavar="PATH", help="write the JSON report here")
    p.add_argument("--results-format", choices=["markdown", "json"], default="markdown",
                   help="what to print on stdout (default markdown)")
    p.add_argument("--no-progress", action="store_true")


def _throughput_run(args: argparse.Namespace) -> int:
    import torch

    from ..bench.throughput import markdown_table, run_throughput
    from .demo import shared_dir
    from .inspect import expand_paths

    models = list(args.models)
    if not models:
        models = ["resnet50", "resnet50_dct", "resnet50_dct_fbs16"]
        onnx = shared_dir() / "models" / "efficientnet-lite0-fp32.onnx"   # the CPU-independent reference
        if onnx.is_file():
            models.append(f"onnx:{onnx}")
    data = args.data or str(shared_dir() / "data" / "imagenet-sample")
    files = expand_paths([data])
    if not files:
        print(f"dctnet bench throughput: no JPEG files in {data}", file=sys.stderr)
        return 2
    jpegs = [Path(f).read_bytes() for f in files]
    compile_modes = {"no": (False,), "yes": (True,), "both": (False, True)}[args.compile]
    settings = {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "bench_command"}
    settings.update(models=models, data=data, files=len(files))
    result = run_throughput(models, jpegs, batches=args.batch, device=args.device, dtype=getattr(torch, args.dtype),
                            compile_modes=compile_modes, repeats=args.repeats, warmup=args.warmup,
                            threads=args.threads, progress=not args.no_progress, settings=settings)
    if args.results_file:
        with open(args.results_file, "w") as f:
            json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1) if args.results_format == "json" else markdown_table(result))
    return 0


#: name -> (help, add_arguments, run).
SUBCOMMANDS = {
    "flops": ("GMACs (conv + linear multiply-accumulates) and parameters of models", _flops_arguments, _flops_run),
    "throughput": ("images/s of input preparation, model forward and end to end (JSON + Markdown)",
                   _throughput_arguments, _throughput_run),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="bench_command", metavar="WHAT")
    sub.required = True
    for name, (help_text, add, run) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        add(sp)
        sp.set_defaults(_bench_run=run)


def run(args: argparse.Namespace) -> int:
    return args._bench_run(args)
