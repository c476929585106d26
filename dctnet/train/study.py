"""The CPU-sized study: RGB vs DCT vs DCT+FBS on a procedural image set, end to end.

``run_cpu_study(out)`` (`dctnet study --out DIR`):

1. writes the synthetic set (:mod:`dctnet.data.synthetic`: 8 classes whose detail sits at
   known spatial frequencies and in colour; 128x128 JPEGs at quality 95, 4:2:0);
2. trains the small twins of :mod:`dctnet.models.small` on it with `dctnet train`'s loop:
   ``small_resnet_rgb``, ``small_resnet_dct`` (64 bands) and ``small_resnet_dct_fbs{32,16,8}``
   (112x112 crops; the same random crop + flip augmentation, SGD recipe and epochs for RGB and
   DCT; the learning rate is set per input family, ``FAMILY_LR``);
3. runs the evaluation of `dctnet eval` (its API) on the validation images re-encoded at every quality and prints its
   per-QF accuracy table.

Everything is seeded: a rerun gives the same set, and reuses finished trainings and stored
evaluation results (delete the folder to start over).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from ..data.datasets import open_dataset
from ..data.encode import make_settings
from ..data.synthetic import SyntheticSpec, make_synthetic_dataset
from ..evaluate.predictors import make_predictor
from ..evaluate.study import run_study
from .loop import TrainConfig, train

__all__ = ["StudyConfig", "run_cpu_study", "accuracy_table", "STUDY_MODELS"]

#: Learning rate per input family (the better of 0.1 and 0.02 for each family in a pilot run
#: of this study: RGB 36.5 % vs 94.5 %, DCT 64 bands 100 % vs 90.8 % validation top-1).
FAMILY_LR = {"rgb": 0.02, "dct": 0.1}

STUDY_MODELS = ("small_resnet_rgb", "small_resnet_dct", "small_resnet_dct_fbs32", "small_resnet_dct_fbs16",
                "small_resnet_dct_fbs8")


@dataclass
class StudyConfig:
    """Options of :func:`run_cpu_study` (``dctnet study --help``)."""

    out: str
    models: tuple[str, ...] = STUDY_MODELS
    train_per_class: int = 200
    val_per_class: int = 50
    epochs: int = 10
    batch_size: int = 64
    lr: float | None = None
    lr_step: int = 7
    workers: int = 2
    seed: int = 0
    qfs: tuple[int, ...] = (100, 90, 80, 70, 60, 50, 40, 30, 20, 10)
    plots: bool = False
    progress: bool = True


def run_cpu_study(config: StudyConfig) -> int:
    """Run the study (see the module docstring); returns `dctnet eval`'s exit code."""
    t0 = time.perf_counter()
    os.makedirs(config.out, exist_ok=True)
    paths = make_synthetic_dataset(os.path.join(config.out, "data"),
                                   SyntheticSpec(config.train_per_class, config.val_per_class, seed=config.seed))
    print(f"[study] synthetic set: {paths['train']} ({config.train_per_class}/class), {paths['val']} "
          f"({config.val_per_class}/class) ({time.perf_counter() - t0:.0f} s)", flush=True)
    weights = []
    for name in config.models:
        t1 = time.perf_counter()
        run_dir = os.path.join(config.out, "runs", name)
        lr = config.lr if config.lr is not None else FAMILY_LR["rgb" if "rgb" in name else "dct"]
        result = train(TrainConfig(model=name, data=paths["train"], val=paths["val"], classes=paths["classes"],
                                   out=run_dir, epochs=config.epochs, batch_size=config.batch_size, lr=lr,
                                   lr_step=config.lr_step, weight_decay=5e-4, workers=config.workers,
                                   seed=config.seed, augment="crop", stats_images=500, resume="auto"))
        last = result["history"][-1] if result["history"] else {}
        print(f"[study] {name}: val top-1 {100 * last.get('val_top1', float('nan')):.1f} after "
              f"{len(result['history'])} epochs ({time.perf_counter() - t1:.0f} s)", flush=True)
        weights.append(result["checkpoint"])
    # The evaluation `dctnet eval --model NAME --weights PATH ...` would run, through its API.
    print(f"[study] evaluating {', '.join(config.models)} on {paths['val']} at QF {config.qfs}", flush=True)
    dataset = open_dataset(paths["val"], classes=paths["classes"])
    predictors = [make_predictor(name, w, batch_size=16) for name, w in zip(config.models, weights)]
    run_study(dataset, predictors, make_settings(config.qfs), os.path.join(config.out, "eval"), chunk=16,
              progress=config.progress, report_options={"plots": config.plots})
    code = 0
    summary = os.path.join(config.out, "eval", "summary.json")
    if code == 0 and os.path.exists(summary):
        print(accuracy_table(summary), flush=True)
    print(f"[study] done in {time.perf_counter() - t0:.0f} s", flush=True)
    return code


def accuracy_table(summary_json: str) -> str:
    """Top-1 (%) of every model (columns) at every setting (rows) from `dctnet eval`'s
    ``summary.json``, as a Markdown table with the mean bits per pixel of each setting."""
    with open(summary_json, encoding="utf-8") as f:
        summary = json.load(f)
    models = list(summary["models"])
    short = {m: m.replace("small_resnet_", "") for m in models}
    lines = ["| setting | bpp | " + " | ".join(short[m] for m in models) + " |",
             "|---|---|" + "---|" * len(models)]
    for setting, info in summary["settings"].items():
        cells = []
        for m in models:
            row = summary["models"][m]["settings"].get(setting)
            cells.append(f"{row['top1']:.1f}" if row and row.get("top1") is not None else "-")
        lines.append(f"| {setting} | {info['bpp']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(["", "Top-1 accuracy (%) on the validation images re-encoded at each quality:", ""] + lines)
