"""Where the time goes: input preparation, model forward and end to end, DCT against RGB.

For each model and batch size, three figures in images/s, each the median (and spread:
min..max) over ``repeats`` timed repeats after ``warmup`` untimed ones:

* ``prepare``: JPEG bytes -> input tensor(s), as :class:`dctnet.Classifier` prepares them.
  DCT models: ``read_dct_batch`` + centre crop + ``to_tensor`` (on CPU fused:
  ``read_to_tensor``); RGB models and ONNX: decode + resize 256 + centre crop + normalise.
* ``model``: the forward pass alone on a prepared batch (CUDA-synchronised on GPU).
* ``end_to_end``: JPEG bytes -> top-5 through :class:`dctnet.Classifier` (which overlaps
  the next batch's preparation with the current forward pass).

Results are one JSON document (``header`` with machine, versions and settings; ``rows``)
and a Markdown table; both are stable formats used by the README and benchmarks/README.md.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numba
import numpy as np
import onnxruntime
import torch
from tqdm import tqdm

from .. import __version__
from ..classify import Classifier
from ..codec import LIBJPEG_TURBO_VERSION
from ..models import count_macs, count_params

__all__ = ["BenchRow", "bench_model", "environment", "markdown_table", "run_throughput"]


@dataclass
class BenchRow:
    model: str
    kind: str                      # dct | rgb | onnx
    batch: int
    device: str
    dtype: str
    compiled: bool
    gmacs: float | None
    params_m: float | None
    prepare: dict = field(default_factory=dict)      # images/s: median, min, max
    model_forward: dict = field(default_factory=dict)
    end_to_end: dict = field(default_factory=dict)


def environment(settings: dict) -> dict:
    """Report header: machine, library versions, settings."""
    versions = {"dctnet": __version__, "torch": torch.__version__, "numpy": np.__version__,
                "numba": numba.__version__, "python": platform.python_version(),
                "libjpeg_turbo": LIBJPEG_TURBO_VERSION}
    versions["onnxruntime"] = onnxruntime.__version__
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
               "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    return {"machine": machine, "versions": versions, "settings": settings,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _stats(images: int, seconds: list[float]) -> dict:
    rates = sorted(images / s for s in seconds)
    return {"median": statistics.median(rates), "min": rates[0], "max": rates[-1], "repeats": len(rates)}


def _timed(fn: Callable[[], object], images: int, repeats: int, warmup: int, sync: Callable[[], None]) -> dict:
    for _ in range(warmup):
        fn()
    sync()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        seconds.append(time.perf_counter() - start)
    return _stats(images, seconds)


def bench_model(spec: str, jpegs: Sequence[bytes], *, batch: int, device: str = "cpu",
                dtype: torch.dtype = torch.float32, compile: bool = False, repeats: int = 5, warmup: int = 2,
                threads: int | None = None, images_per_repeat: int | None = None) -> BenchRow:
    """Measure one model at one batch size.

    Args:
        spec: a registry name, ``NAME@WEIGHTS`` (a registry name with a local checkpoint, e.g.
            a converted model from ``dctnet convert``), or ``onnx:PATH`` for an ONNX classifier.
        jpegs: JPEG files (bytes) to cycle through.
        batch: images per forward pass.
        images_per_repeat: images per timed repeat of ``prepare`` and ``end_to_end``
            (default: ``max(batch, 16)`` rounded to whole batches).
    """
    if not jpegs:
        raise ValueError("no JPEG files to benchmark with")
    is_onnx = spec.startswith("onnx:")
    name, _, weights = (spec, "", "") if is_onnx else spec.partition("@")
    clf = Classifier(spec[5:] if is_onnx else name, weights=weights or None, device=device, dtype=dtype,
                     batch_size=batch, compile=compile, threads=threads)
    n = images_per_repeat or max(batch, 16)
    n = -(-n // batch) * batch
    reps = (list(jpegs) * (-(-n // len(jpegs))))[:n]
    first = reps[:batch]
    sync = torch.cuda.synchronize if clf.device.type == "cuda" else (lambda: None)

    gmacs = params = None
    if not is_onnx:
        # Counted on the model as built (a checkpoint may carry builder options): one forward
        # pass on a zero image of the model's input size.
        net = getattr(clf.model, "_orig_mod", clf.model)
        h, w = clf.image_size
        zeros = [torch.zeros(1, *shape, device=clf.device, dtype=clf.dtype) for shape in net.input_config.shapes_at(h, w)]
        gmacs = count_macs(net, *zeros) / 1e9
        params = count_params(net) / 1e6

    prepared = clf.prepare(first)
    if len(prepared.ok) != batch:
        raise ValueError(f"{spec}: {batch - len(prepared.ok)} benchmark images failed to prepare: "
                         f"{[str(e) for e in prepared.errors if e is not None][:3]}")
    row = BenchRow(model=clf.name, kind=clf.kind, batch=batch, device=str(clf.device), dtype=str(dtype).replace(
        "torch.", ""), compiled=compile, gmacs=gmacs, params_m=params)
    row.prepare = _timed(lambda: [clf.prepare(reps[i:i + batch]) for i in range(0, n, batch)], n, repeats,
                         warmup, lambda: None)
    row.model_forward = _timed(lambda: clf.forward(prepared), batch, max(repeats, 3) * max(1, n // batch), warmup,
                               sync)
    row.end_to_end = _timed(lambda: clf.predict_logits(reps), n, repeats, warmup, sync)
    return row


def run_throughput(models: Sequence[str], jpegs: Sequence[bytes], *, batches: Sequence[int], device: str = "cpu",
                   dtype: torch.dtype = torch.float32, compile_modes: Sequence[bool] = (False,), repeats: int = 5,
                   warmup: int = 2, threads: int | None = None, progress: bool = True,
                   settings: dict | None = None) -> dict:
    """Measure every model x batch x compile mode. Returns ``{"header": ..., "rows": [...]}``."""
    plan = [(m, b, c) for m in models for b in batches for c in compile_modes if not (c and m.startswith("onnx:"))]
    rows = []
    bar = tqdm(plan, desc="dctnet bench", unit="run", disable=not progress, dynamic_ncols=True)
    for model, batch, compiled in bar:
        bar.set_postfix_str(f"{model} b={batch}{' compiled' if compiled else ''}")
        rows.append(asdict(bench_model(model, jpegs, batch=batch, device=device, dtype=dtype, compile=compiled,
                                       repeats=repeats, warmup=warmup, threads=threads)))
    return {"header": environment(settings or {}), "rows": rows}


def markdown_table(result: dict) -> str:
    """The report as a Markdown table (images/s, median over repeats; min..max in brackets)."""
    head = result["header"]
    lines = [f"<!-- {head['machine']['processor']}, {head['machine']['cpus']} CPUs, torch {head['versions']['torch']}, "
             f"{head['time']} -->",
             "| model | kind | batch | compiled | GMACs | params (M) | prepare img/s | model img/s | end-to-end img/s |",
             "|---|---|---|---|---|---|---|---|---|"]

    def cell(d: dict) -> str:
        return f"{d['median']:.1f} [{d['min']:.1f}..{d['max']:.1f}]"

    for r in result["rows"]:
        g = f"{r['gmacs']:.3f}" if r["gmacs"] is not None else "-"
        p = f"{r['params_m']:.2f}" if r["params_m"] is not None else "-"
        lines.append(f"| {r['model']} | {r['kind']} | {r['batch']} | {'yes' if r['compiled'] else 'no'} | {g} | {p} | "
                     f"{cell(r['prepare'])} | {cell(r['model_forward'])} | {cell(r['end_to_end'])} |")
    return "\n".join(lines)
