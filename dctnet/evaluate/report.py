"""The results folder of `dctnet eval`: summary.json, CSV, Markdown, confusion matrix, plots.

``summary.json`` (schema version 2; other tools read it, so keys are only ever added)::

    {
      "schema": "dctnet-eval/2",
      "encoder": {...},                 # how the versions were encoded (dctnet.imaging.ENCODER)
      "dataset": {"root": str, "layout": str, "classes": str, "images": int},
      "settings": {SETTING: {            # model-independent, over images whose version exists
          "count": int, "mean_bytes": float, "bpp": float, "cr": float,
          "psnr": float | null, "ssim": float | null}},   # null for "original" (the reference)
      "models": {MODEL: {
          "count": int,                 # images with results at every setting
          "failed": int,                # images left out (an error at some setting)
          "settings": {SETTING: {
              "top1": %, "top5": %, "count": int, "mean_bytes": float, "bpp": float, "cr": x,
              "rank_diff": {"mean": float, "median": float, "std": float}}},
          "selectors": {"HRS" | "T1K" | "T5K" | "TTK" | "MEANPROB": {
              "top1": %, "top5": %, "cr": x, "count": int,
              "chosen": {VERSION: int},      # how often each of original, qf100 .. chose ({} for MEANPROB)
              "versions": [VERSION]}}}},     # MEANPROB only: the versions whose probabilities it averages
      "confusion": {"model": str, "setting": str, "file": str} | null,
      "plots": [str] | {"error": str},
      "errors": {"count": int, "first": [{"image", "setting", "model", "error"}]}
    }

SETTING is ``original``, ``qf100`` ... ``qf10`` and, when asked for, ``gray-qfQ``,
``downF-qfQ``, ``gray-downF-qfQ`` (:mod:`dctnet.data.encode`); MODEL is the registry name
or the ONNX file's stem. Percentages are in percent. Definitions:

* ``top1`` / ``top5``: share of images whose true class has rank <= 1 / <= 5;
* ``mean_bytes``: mean file size; ``bpp``: total bits / total pixels of the encoded images;
* ``cr`` (compression ratio): total bytes of the originals / total bytes at the setting
  (or of the versions a selector chose), over the same images;
* ``rank_diff``: true-class rank at the setting minus at the original, per image
  (positive = worse); the std is the population std;
* ``psnr`` / ``ssim``: means over images against the original's decode
  (:mod:`dctnet.evaluate.metrics`), reduced / gray as the setting is;
* selectors choose among the original and the plain re-encodings ``qf100`` .. ``qf10``
  present in the run (:mod:`dctnet.evaluate.selectors`); MEANPROB averages the softmax
  probabilities of all of them, from the logits the store keeps (no model runs for it); its
  ``cr`` is the originals' bytes over the bytes of all those versions.

Files: ``summary.json``, ``summary.md``, ``settings.csv`` (one row per model x setting),
``selectors.csv``, ``quality.csv`` (per setting), ``confusion_<model>_<setting>.csv``
(``true,true_name,predicted,predicted_name,count``, non-zero cells) and its heatmap
``confusion_<model>_<setting>.png``, ``accuracy_vs_qf.png`` and ``accuracy_vs_bpp.png``
(matplotlib; if it is missing the summary says so under ``plots``, ``PLOTS_MISSING.txt`` is
written and a loud warning is printed).
"""

from __future__ import annotations

import csv
import json
import os
import sys
from typing import Sequence

import numpy as np

from ..data.datasets import Dataset
from ..data.encode import Setting
from ..imaging import ENCODER
from .selectors import SELECTORS, mean_probabilities, rank_and_topk, select
from .store import ResultStore

__all__ = ["SCHEMA", "compute_summary", "write_report"]

#: Version 2 added ``encoder`` (the versions are encoded with the accurate forward DCT since);
#: version-1 files have no ``encoder`` key and are read the same way otherwise.
SCHEMA = "dctnet-eval/2"


def _r(x, nd: int = 4):
    return None if x is None else round(float(x), nd)


def _model_arrays(store: ResultStore, dataset: Dataset, model: str, settings: Sequence[Setting], versions):
    """Arrays over the images with results at every setting for ``model``."""
    preds = store.predictions(model)
    names = [s.name for s in settings]
    keep, ranks, top5, nbytes, pixels, errors = [], [], [], [], [], []
    for i, key in enumerate(dataset.keys):
        rows = []
        bad = None
        for sname in names:
            p = preds.get((key, sname))
            v = versions.get((key, sname))
            if p is None:
                raise ValueError(f"no result for {key!r} at {sname} with model {model}: run the study first")
            if p[2] is not None or p[0] is None:
                bad = (sname, p[2] or "no prediction")
                break
            if v is None or v[0] is None or v[1] is None:
                bad = (sname, (v[5] if v is not None else None) or "version missing")
                break
            rows.append((p[0], p[1], v[0], v[1] * v[2]))
        if bad is not None:
            errors.append({"image": key, "setting": bad[0], "model": model, "error": bad[1]})
            continue
        keep.append(i)
        ranks.append([r[0] for r in rows])
        k = max(len(r[1]) for r in rows)
        top5.append([list(r[1]) + [-1] * (k - len(r[1])) for r in rows])
        nbytes.append([r[2] for r in rows])
        pixels.append([r[3] for r in rows])
    s = len(names)
    return (np.array(keep, np.int64), np.array(ranks, np.int64).reshape(-1, s),
            np.array(top5, np.int64).reshape(len(keep), s, -1) if keep else np.zeros((0, s, 5), np.int64),
            np.array(nbytes, np.float64).reshape(-1, s), np.array(pixels, np.float64).reshape(-1, s), errors)


def _mean_probability_entry(store: ResultStore, dataset: Dataset, model: str, keep: np.ndarray,
                            nbytes: np.ndarray, versions: list[str], cols: list[int]) -> dict:
    """The MEANPROB row from the stored logits of ``versions`` (no model runs)."""
    stored = store.logits(model, versions)
    keys = [dataset.keys[i] for i in keep]
    missing = [(k, v) for k in keys for v in versions if (k, v) not in stored]
    if missing:
        raise ValueError(f"{store.path}: no stored logits of {missing[0][0]!r} at {missing[0][1]} for model {model} "
                         f"({len(missing)} missing); rerun `dctnet eval` into this folder to compute them")
    logits = np.stack([np.stack([stored[(k, v)].astype(np.float32) for v in versions]) for k in keys])
    ranks, _ = rank_and_topk(mean_probabilities(logits), np.array(dataset.labels)[keep])
    return {"top1": _r(100.0 * np.mean(ranks <= 1)), "top5": _r(100.0 * np.mean(ranks <= 5)),
            "cr": _r(nbytes[:, 0].sum() / nbytes[:, cols].sum()), "count": len(keys), "chosen": {},
            "versions": list(versions)}


def compute_summary(store: ResultStore, dataset: Dataset, models: Sequence[str], settings: Sequence[Setting],
                    *, confusion: tuple[str, str] | None = None) -> tuple[dict, dict]:
    """The summary dict (schema in the module docstring) and the confusion counts.

    Returns ``(summary, confusion_cells)`` where ``confusion_cells`` maps
    ``(true, predicted) -> count`` for the chosen model and setting (empty if none).
    """
    versions = store.versions()
    names = [s.name for s in settings]
    summary: dict = {
        "schema": SCHEMA,
        "encoder": dict(ENCODER),
        "dataset": {"root": dataset.root, "layout": dataset.layout, "classes": dataset.classes.source,
                    "images": len(dataset)},
        "settings": {}, "models": {}, "confusion": None, "plots": [],
        "errors": {"count": 0, "first": []},
    }
    all_errors: list[dict] = []
    for sname in names:
        b, px, ob, ps, ss = [], [], [], [], []
        for key in dataset.keys:
            v, o = versions.get((key, sname)), versions.get((key, "original"))
            if v is None or v[0] is None or v[1] is None or o is None or o[0] is None:
                continue
            b.append(v[0]); px.append(v[1] * v[2]); ob.append(o[0])
            if v[3] is not None:
                ps.append(v[3])
            if v[4] is not None:
                ss.append(v[4])
        summary["settings"][sname] = {
            "count": len(b),
            "mean_bytes": _r(np.mean(b) if b else None, 1),
            "bpp": _r(8 * sum(b) / sum(px) if b else None),
            "cr": _r(sum(ob) / sum(b) if b else None),
            "psnr": _r(np.mean(ps) if ps else None),
            "ssim": _r(np.mean(ss) if ss else None, 5),
        }
    # The selectors' versions: the original and the plain re-encodings, best quality first.
    sel_cols = [0] + [j for j, s in enumerate(settings) if s.is_plain_qf]
    sel_cols = [0] + sorted(sel_cols[1:], key=lambda j: -settings[j].qf)
    cells: dict = {}
    for model in models:
        keep, ranks, top5, nbytes, pixels, errors = _model_arrays(store, dataset, model, settings, versions)
        all_errors += errors
        n = len(keep)
        entry: dict = {"count": n, "failed": len(errors), "settings": {}, "selectors": {}}
        for j, sname in enumerate(names):
            if n == 0:
                entry["settings"][sname] = {"top1": None, "top5": None, "count": 0, "mean_bytes": None,
                                            "bpp": None, "cr": None, "rank_diff": None}
                continue
            diff = ranks[:, j] - ranks[:, 0]
            entry["settings"][sname] = {
                "top1": _r(100.0 * np.mean(ranks[:, j] <= 1)),
                "top5": _r(100.0 * np.mean(ranks[:, j] <= 5)),
                "count": n,
                "mean_bytes": _r(nbytes[:, j].mean(), 1),
                "bpp": _r(8 * nbytes[:, j].sum() / pixels[:, j].sum()),
                "cr": _r(nbytes[:, 0].sum() / nbytes[:, j].sum()),
                "rank_diff": {"mean": _r(diff.mean()), "median": _r(np.median(diff)), "std": _r(diff.std())},
            }
        if n:
            for sel in SELECTORS:
                choice = select(sel, ranks[:, sel_cols], top5[:, sel_cols])
                cols = np.array(sel_cols)[choice]
                rows = np.arange(n)
                chosen_ranks = ranks[rows, cols]
                hist = {names[c]: int(np.sum(cols == c)) for c in sel_cols}
                entry["selectors"][sel] = {
                    "top1": _r(100.0 * np.mean(chosen_ranks <= 1)),
                    "top5": _r(100.0 * np.mean(chosen_ranks <= 5)),
                    "cr": _r(nbytes[:, 0].sum() / nbytes[rows, cols].sum()),
                    "count": n,
                    "chosen": hist,
                }
        if n:
            entry["selectors"]["MEANPROB"] = _mean_probability_entry(store, dataset, model, keep, nbytes,
                                                                     [names[c] for c in sel_cols], sel_cols)
        if confusion is not None and confusion[0] == model and n:
            j = names.index(confusion[1])
            labels = np.array(dataset.labels)[keep]
            for t, p in zip(labels, top5[:, j, 0]):
                cells[(int(t), int(p))] = cells.get((int(t), int(p)), 0) + 1
        summary["models"][model] = entry
    summary["errors"] = {"count": len(all_errors), "first": all_errors[:100]}
    return summary, cells


def _markdown(summary: dict) -> str:
    ds = summary["dataset"]
    out = [f"# dctnet eval: {ds['root']}", "",
           f"{ds['images']} images ({ds['layout']} layout), classes from {ds['classes']}.", ""]
    out += ["## Versions (model-independent)", "",
            "| setting | images | mean bytes | bpp | CR | PSNR (dB) | SSIM |", "|---|---|---|---|---|---|---|"]

    def f(x, nd=2):
        return "-" if x is None else f"{x:.{nd}f}"

    for s, v in summary["settings"].items():
        out.append(f"| {s} | {v['count']} | {f(v['mean_bytes'], 0)} | {f(v['bpp'], 3)} | {f(v['cr'])} | "
                   f"{f(v['psnr'])} | {f(v['ssim'], 4)} |")
    for model, m in summary["models"].items():
        out += ["", f"## {model}", "", f"{m['count']} images evaluated, {m['failed']} left out (errors).", "",
                "| setting | top-1 % | top-5 % | bpp | CR | rank diff mean | median | std |",
                "|---|---|---|---|---|---|---|---|"]
        for s, v in m["settings"].items():
            rd = v["rank_diff"] or {"mean": None, "median": None, "std": None}
            out.append(f"| {s} | {f(v['top1'])} | {f(v['top5'])} | {f(v['bpp'], 3)} | {f(v['cr'])} | "
                       f"{f(rd['mean'])} | {f(rd['median'], 1)} | {f(rd['std'])} |")
        if m["selectors"]:
            out += ["", "| selector | top-1 % | top-5 % | CR | versions chosen |", "|---|---|---|---|---|"]
            for s, v in m["selectors"].items():
                chosen = ", ".join(f"{k} {c}" for k, c in v["chosen"].items() if c)
                if s == "MEANPROB":
                    n = len(v["versions"])
                    chosen = f"mean probability over {n} version{'s' if n != 1 else ''}"
                out.append(f"| {s} | {f(v['top1'])} | {f(v['top5'])} | {f(v['cr'])} | {chosen} |")
    if summary["errors"]["count"]:
        out += ["", f"## Errors ({summary['errors']['count']})", ""]
        out += [f"- {e['image']} [{e['setting']}, {e['model']}]: {e['error']}" for e in summary["errors"]["first"]]
    return "\n".join(out) + "\n"


def _write_csvs(out_dir: str, summary: dict) -> None:
    with open(os.path.join(out_dir, "settings.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "setting", "top1", "top5", "count", "mean_bytes", "bpp", "cr",
                    "rank_diff_mean", "rank_diff_median", "rank_diff_std", "psnr", "ssim"])
        for model, m in summary["models"].items():
            for s, v in m["settings"].items():
                rd = v["rank_diff"] or {}
                q = summary["settings"][s]
                w.writerow([model, s, v["top1"], v["top5"], v["count"], v["mean_bytes"], v["bpp"], v["cr"],
                            rd.get("mean"), rd.get("median"), rd.get("std"), q["psnr"], q["ssim"]])
    with open(os.path.join(out_dir, "selectors.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        versions = None
        for model, m in summary["models"].items():
            for sel, v in m["selectors"].items():
                if versions is None:
                    versions = list(v["chosen"])
                    w.writerow(["model", "selector", "top1", "top5", "cr", "count"] + [f"chosen_{k}" for k in versions])
                w.writerow([model, sel, v["top1"], v["top5"], v["cr"], v["count"]]
                           + [v["chosen"].get(k, 0) for k in versions])
    with open(os.path.join(out_dir, "quality.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["setting", "count", "mean_bytes", "bpp", "cr", "psnr", "ssim"])
        for s, q in summary["settings"].items():
            w.writerow([s, q["count"], q["mean_bytes"], q["bpp"], q["cr"], q["psnr"], q["ssim"]])


def _family(setting: Setting) -> str:
    """Settings grouped into lines of a plot: ``colour``, ``gray``, ``down2`` ..."""
    parts = (["gray"] if setting.gray else []) + ([f"down{setting.downscale}"] if setting.downscale != 1 else [])
    return "-".join(parts) or "colour"


def _plots(out_dir: str, summary: dict, settings: Sequence[Setting]) -> list[str] | dict:
    try:  # matplotlib is imported only when plots are written (and reported when missing)
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        msg = (f"PLOTS NOT WRITTEN: matplotlib is not installed ({e}); `pip install matplotlib` "
               "and rerun the same command (nothing is recomputed)")
        print("\n" + "!" * 80 + f"\n{msg}\n" + "!" * 80, file=sys.stderr)
        with open(os.path.join(out_dir, "PLOTS_MISSING.txt"), "w") as fh:
            fh.write(msg + "\n")
        return {"error": msg}
    stale = os.path.join(out_dir, "PLOTS_MISSING.txt")
    if os.path.exists(stale):
        os.remove(stale)
    families: dict[str, list[Setting]] = {}
    for s in settings:
        if not s.is_original:
            families.setdefault(_family(s), []).append(s)
    files = []
    for xkey, fname, xlabel in (("qf", "accuracy_vs_qf.png", "JPEG quality factor"),
                                ("bpp", "accuracy_vs_bpp.png", "bits per pixel")):
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for ax, metric in zip(axes, ("top1", "top5")):
            for mi, (model, m) in enumerate(summary["models"].items()):
                color = f"C{mi % 10}"
                orig = m["settings"]["original"]
                for fi, (fam, ss) in enumerate(families.items()):
                    ss = sorted(ss, key=lambda s: s.qf)
                    xs = [s.qf if xkey == "qf" else m["settings"][s.name]["bpp"] for s in ss]
                    ys = [m["settings"][s.name][metric] for s in ss]
                    if any(y is None for y in ys):
                        continue
                    # One model: a colour per family; several: a colour per model, a marker per family.
                    ax.plot(xs, ys, marker="osv^Dxp*"[fi % 8], markersize=4,
                            color=f"C{fi % 10}" if len(summary["models"]) == 1 else color,
                            linestyle=["-", "--", ":", "-."][fi % 4], label=f"{model} {fam}")
                if orig[metric] is not None:
                    if xkey == "qf":
                        ax.axhline(orig[metric], color="k" if len(summary["models"]) == 1 else color,
                                   linestyle=":", linewidth=1,
                                   label=f"{model} original")
                    else:
                        ax.plot([orig["bpp"]], [orig[metric]], marker="*", markersize=12,
                                color="k" if len(summary["models"]) == 1 else color,
                                linestyle="none", label=f"{model} original")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"{'top-1' if metric == 'top1' else 'top-5'} accuracy (%)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6, loc="best")
        fig.suptitle(f"dctnet eval: {summary['dataset']['root']} ({summary['dataset']['images']} images)")
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, fname), dpi=120)
        plt.close(fig)
        files.append(fname)
    return files


def _confusion_plot(out_dir: str, confusion: tuple[str, str], cells: dict, dataset: Dataset) -> str:
    """Heatmap over the classes present in the data (rows: true, columns: predicted, plus "other")."""
    import matplotlib.pyplot as plt

    present = sorted(set(dataset.labels))
    pos = {c: i for i, c in enumerate(present)}
    mat = np.zeros((len(present), len(present) + 1), np.int64)
    for (t, p), c in cells.items():
        mat[pos[t], pos.get(p, len(present))] += c
    size = min(20.0, 3 + 0.12 * len(present))
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(mat, cmap="Blues", interpolation="nearest", aspect="auto")
    if len(present) <= 40:
        names = [dataset.classes.names[c] for c in present]
        ax.set_yticks(range(len(present)), names, fontsize=6)
        ax.set_xticks(range(len(present) + 1), names + ["other"], rotation=90, fontsize=6)
    ax.set_xlabel("predicted (top-1); last column: a class not in the data")
    ax.set_ylabel("true class")
    ax.set_title(f"confusion: {confusion[0]} at {confusion[1]}")
    fig.tight_layout()
    fname = f"confusion_{confusion[0]}_{confusion[1]}.png"
    fig.savefig(os.path.join(out_dir, fname), dpi=100)
    plt.close(fig)
    return fname


def write_report(out_dir: str, dataset: Dataset, models: Sequence[str], settings: Sequence[Setting], *,
                 confusion: tuple[str, str] | None = None, plots: bool = True) -> str:
    """Write the results folder from ``out_dir/results.sqlite``; returns the summary.json path.

    ``confusion``: ``(model, setting)`` for the confusion matrix (default: the first model
    at ``original``).
    """
    names = [s.name for s in settings]
    if confusion is None and models:
        confusion = (models[0], "original")
    if confusion is not None:
        if confusion[0] not in models:
            raise ValueError(f"confusion matrix: unknown model {confusion[0]!r} (have {list(models)})")
        if confusion[1] not in names:
            raise ValueError(f"confusion matrix: unknown setting {confusion[1]!r} (have {names})")
    with ResultStore(os.path.join(out_dir, "results.sqlite")) as store:
        summary, cells = compute_summary(store, dataset, models, settings, confusion=confusion)
    if confusion is not None:
        fname = f"confusion_{confusion[0]}_{confusion[1]}.csv"
        cls = dataset.classes

        def cname(i: int) -> str:
            return cls.names[i] if 0 <= i < len(cls) else f"class {i}"

        with open(os.path.join(out_dir, fname), "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["true", "true_name", "predicted", "predicted_name", "count"])
            for (t, p), c in sorted(cells.items()):
                w.writerow([t, cname(t), p, cname(p), c])
        summary["confusion"] = {"model": confusion[0], "setting": confusion[1], "file": fname}
    _write_csvs(out_dir, summary)
    summary["plots"] = _plots(out_dir, summary, settings) if plots else {"error": "plots not requested"}
    if isinstance(summary["plots"], list) and confusion is not None and cells:
        summary["plots"].append(_confusion_plot(out_dir, confusion, cells, dataset))
    with open(os.path.join(out_dir, "summary.md"), "w") as fh:
        fh.write(_markdown(summary))
    path = os.path.join(out_dir, "summary.json")
    with open(path, "w") as fh:
        json.dump(summary, fh, indent=1)
        fh.write("\n")
    return path
