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
      "errors": {"count": int, "first": [{"image", "setting", "model", "error"}]},
      # added in dctnet 0.3 (same schema version: keys are only added)
      "settings": {SETTING: {..., "family": str, "codec": str, "param": int | null,
          "vs_reencode": {"reference": "qfQ", "count": int, "coef_agreement_y": %,
              "coef_agreement": % | null, "geometry_count": int, "psnr": dB | null}}},  # requant only
      "models": {MODEL: {...,
          "not_applicable": [SETTING],  # other codecs' settings for a model that takes JPEGs only
          "requant": {SETTING: {"reference": "qfQ", "top1_diff": pp, "top5_diff": pp, "same_top1": %}},
          "worst": {"setting": str, "top1": %, "count": int, "correct": int,
                    "pairs": [{"true", "true_name", "predicted", "predicted_name", "count"}]} | null}},
      "codecs": {CODEC: {"library", "param", "meaning", "options", "ladder": [int]}},
      "run": {"settings": [SETTING], "models": [MODEL], "jpeg_only": [MODEL]},
      "versions": {PACKAGE OR LIBRARY: str | null}
    }

SETTING is ``original``, ``qf100`` ... ``qf10`` and, when asked for, ``gray-qfQ``,
``downF-qfQ``, ``gray-downF-qfQ``, ``requant-qfQ``, ``jpeg2000-crR``, ``heif-qQ``,
``avif-qQ``, ``webp-qQ`` (:mod:`dctnet.data.encode`); MODEL is the registry name or the ONNX
file's stem. Percentages are in percent. Definitions:

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
* ``family``: the curve of a setting in plots (``jpeg``, ``gray``, ``down2``, ``requant``,
  ``jpeg2000`` ...); ``param``: its QF, quality or JPEG 2000 compression ratio;
* ``not_applicable``: DCT models (and other models that take JPEG files only) in a run
  with other codecs are evaluated at the JPEG settings; the codec settings are listed here
  and left out of their ``settings``, selectors and plots;
* ``vs_reencode`` (``requant-qfQ``): the requantised file against the true decode +
  re-encode ``qfQ``: share of equal quantised coefficients in luma (images whose luma blocks
  line up) and over all components (images of the same geometry: 4:2:0 originals), PSNR
  between the two decodes; ``requant`` per model: top-1 / top-5 of ``requant-qfQ`` minus
  ``qfQ`` (percentage points) and the share of images with the same top-1 class;
* ``worst``: the setting with the lowest top-1 (ties: fewer bits per pixel) and its 20 most
  frequent confused class pairs (true, top-1 predicted; a 1000-class matrix is mostly empty).

Files: ``summary.json``, ``summary.md``, ``settings.csv`` (one row per model x setting),
``selectors.csv``, ``quality.csv`` (per setting), ``confusion_<model>_<setting>.csv``
(``true,true_name,predicted,predicted_name,count``, non-zero cells) and its heatmap
``confusion_<model>_<setting>.png``, ``accuracy_vs_qf.png`` and ``accuracy_vs_bpp.png``
(matplotlib, drawn from the summary: :mod:`dctnet.evaluate.plots`; if it is missing the
summary says so under ``plots``, ``PLOTS_MISSING.txt`` is written and a loud warning is
printed), ``requant.csv`` (requantised vs re-encoded, when asked for) and ``report.html``
(:mod:`dctnet.evaluate.htmlreport`: one self-contained page with every table and plot).
"""

from __future__ import annotations

import csv
import importlib.metadata
import json
import os
import platform
import sys
from typing import Sequence

import numpy as np

from ..data.datasets import Dataset
from ..data.encode import Setting
from ..imaging import CODECS, ENCODER, codec_versions
from .htmlreport import write_html
from .plots import accuracy_figure
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


def _versions() -> dict:
    """Package and library versions of the run (``None``: not installed)."""
    out = {"python": platform.python_version()}
    for pkg in ("dctnet", "numpy", "torch", "onnxruntime", "matplotlib", "PyTurboJPEG"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    out.update(codec_versions())
    return out


def _worst(dataset: Dataset, settings: Sequence[Setting], entry: dict, top5: np.ndarray, keep: np.ndarray,
           n_pairs: int = 20) -> dict | None:
    """The setting with the lowest top-1 (ties: fewer bits) and its most confused class pairs."""
    cand = [(v["top1"], v["bpp"] if v["bpp"] is not None else 0.0, j, s.name)
            for j, s in enumerate(settings) if not s.is_original
            for v in [entry["settings"][s.name]] if v["top1"] is not None]
    if not cand:
        return None
    top1, _, j, sname = min(cand)
    labels = np.array(dataset.labels)[keep]
    pred = top5[:, j, 0]
    counts: dict[tuple[int, int], int] = {}
    for t, p in zip(labels.tolist(), pred.tolist()):
        if t != p:
            counts[(t, p)] = counts.get((t, p), 0) + 1
    names = dataset.classes.names

    def cname(i: int) -> str:
        return names[i] if 0 <= i < len(names) else f"class {i}"

    pairs = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n_pairs]
    return {"setting": sname, "top1": top1, "count": int(len(labels)), "correct": int(np.sum(labels == pred)),
            "pairs": [{"true": t, "true_name": cname(t), "predicted": p, "predicted_name": cname(p), "count": c}
                      for (t, p), c in pairs]}


def compute_summary(store: ResultStore, dataset: Dataset, models: Sequence[str], settings: Sequence[Setting],
                    *, confusion: tuple[str, str] | None = None,
                    jpeg_only: Sequence[str] = ()) -> tuple[dict, dict]:
    """The summary dict (schema in the module docstring) and the confusion counts.

    ``jpeg_only``: models evaluated at the JPEG settings only (DCT models in a run with
    other codecs). Returns ``(summary, confusion_cells)`` where ``confusion_cells`` maps
    ``(true, predicted) -> count`` for the chosen model and setting (empty if none).
    """
    versions = store.versions()
    requant = store.requant()
    names = [s.name for s in settings]
    summary: dict = {
        "schema": SCHEMA,
        "encoder": dict(ENCODER),
        "dataset": {"root": dataset.root, "layout": dataset.layout, "classes": dataset.classes.source,
                    "images": len(dataset)},
        "settings": {}, "models": {}, "confusion": None, "plots": [],
        "errors": {"count": 0, "first": []},
        "codecs": {c: {**CODECS[c], "ladder": [s.qf for s in settings if s.codec == c]}
                   for c in dict.fromkeys(s.codec for s in settings if not s.is_jpeg)},
        "run": {"settings": names, "models": list(models), "jpeg_only": [m for m in models if m in set(jpeg_only)]},
        "versions": _versions(),
    }
    all_errors: list[dict] = []
    for setting in settings:
        sname = setting.name
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
            "family": setting.family, "codec": setting.codec, "param": setting.qf,
        }
        if setting.requantize:
            rows = [requant.get((key, sname)) for key in dataset.keys]
            rows = [r for r in rows if r is not None and r[4] is None]
            ys = [r[1] for r in rows if r[1] is not None]
            alls = [r[2] for r in rows if r[2] is not None]
            ps = [r[3] for r in rows if r[3] is not None]
            summary["settings"][sname]["vs_reencode"] = {
                "reference": f"qf{setting.qf}", "count": len(rows),
                "coef_agreement_y": _r(100.0 * np.mean(ys) if ys else None),
                "coef_agreement": _r(100.0 * np.mean(alls) if alls else None),
                "geometry_count": len(alls), "psnr": _r(np.mean(ps) if ps else None)}
    cells: dict = {}
    for model in models:
        msettings = [s for s in settings if s.is_jpeg] if model in set(jpeg_only) else list(settings)
        mnames = [s.name for s in msettings]
        # The selectors' versions: the original and the plain re-encodings, best quality first.
        sel_cols = [0] + [j for j, s in enumerate(msettings) if s.is_plain_qf]
        sel_cols = [0] + sorted(sel_cols[1:], key=lambda j: -msettings[j].qf)
        keep, ranks, top5, nbytes, pixels, errors = _model_arrays(store, dataset, model, msettings, versions)
        all_errors += errors
        n = len(keep)
        entry: dict = {"count": n, "failed": len(errors), "settings": {}, "selectors": {},
                       "not_applicable": [s for s in names if s not in set(mnames)], "requant": {}, "worst": None}
        for j, sname in enumerate(mnames):
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
                hist = {mnames[c]: int(np.sum(cols == c)) for c in sel_cols}
                entry["selectors"][sel] = {
                    "top1": _r(100.0 * np.mean(chosen_ranks <= 1)),
                    "top5": _r(100.0 * np.mean(chosen_ranks <= 5)),
                    "cr": _r(nbytes[:, 0].sum() / nbytes[rows, cols].sum()),
                    "count": n,
                    "chosen": hist,
                }
        if n:
            entry["selectors"]["MEANPROB"] = _mean_probability_entry(store, dataset, model, keep, nbytes,
                                                                     [mnames[c] for c in sel_cols], sel_cols)
            for j, st in enumerate(msettings):
                ref = f"qf{st.qf}"
                if st.requantize and ref in mnames:
                    r = mnames.index(ref)
                    entry["requant"][st.name] = {
                        "reference": ref,
                        "top1_diff": _r(100.0 * (np.mean(ranks[:, j] <= 1) - np.mean(ranks[:, r] <= 1))),
                        "top5_diff": _r(100.0 * (np.mean(ranks[:, j] <= 5) - np.mean(ranks[:, r] <= 5))),
                        "same_top1": _r(100.0 * np.mean(top5[:, j, 0] == top5[:, r, 0]))}
            entry["worst"] = _worst(dataset, msettings, entry, top5, keep)
        if confusion is not None and confusion[0] == model and n and confusion[1] in mnames:
            j = mnames.index(confusion[1])
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
    vs = {s: v["vs_reencode"] for s, v in summary["settings"].items() if v.get("vs_reencode")}
    if vs:
        out += ["", "## Requantised coefficients vs decode + re-encode", "",
                "| setting | vs | images | coef. agreement Y % | all components % (images) | PSNR between (dB) |",
                "|---|---|---|---|---|---|"]
        for s, v in vs.items():
            out.append(f"| {s} | {v['reference']} | {v['count']} | {f(v['coef_agreement_y'])} | "
                       f"{f(v['coef_agreement'])} ({v['geometry_count']}) | {f(v['psnr'])} |")
    for model, m in summary["models"].items():
        out += ["", f"## {model}", "", f"{m['count']} images evaluated, {m['failed']} left out (errors).", "",
                "| setting | top-1 % | top-5 % | bpp | CR | rank diff mean | median | std |",
                "|---|---|---|---|---|---|---|---|"]
        for s, v in m["settings"].items():
            rd = v["rank_diff"] or {"mean": None, "median": None, "std": None}
            out.append(f"| {s} | {f(v['top1'])} | {f(v['top5'])} | {f(v['bpp'], 3)} | {f(v['cr'])} | "
                       f"{f(rd['mean'])} | {f(rd['median'], 1)} | {f(rd['std'])} |")
        if m.get("not_applicable"):
            out += ["", f"Not applicable to {model} (it takes JPEG files; these are other codecs' files): "
                    + ", ".join(m["not_applicable"]) + "."]
        if m.get("requant"):
            out += ["", "| requantised | vs | top-1 diff (pp) | top-5 diff (pp) | same top-1 % |",
                    "|---|---|---|---|---|"]
            for s, v in m["requant"].items():
                out.append(f"| {s} | {v['reference']} | {f(v['top1_diff'])} | {f(v['top5_diff'])} | "
                           f"{f(v['same_top1'])} |")
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
    vs = {s: v["vs_reencode"] for s, v in summary["settings"].items() if v.get("vs_reencode")}
    if vs:
        with open(os.path.join(out_dir, "requant.csv"), "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["setting", "reference", "count", "coef_agreement_y", "coef_agreement", "geometry_count",
                        "psnr"] + [f"{m}_{k}" for m in summary["models"] for k in ("top1_diff", "same_top1")])
            for s, v in vs.items():
                extra = []
                for m in summary["models"].values():
                    r = m.get("requant", {}).get(s, {})
                    extra += [r.get("top1_diff"), r.get("same_top1")]
                w.writerow([s, v["reference"], v["count"], v["coef_agreement_y"], v["coef_agreement"],
                            v["geometry_count"], v["psnr"]] + extra)
    with open(os.path.join(out_dir, "quality.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["setting", "count", "mean_bytes", "bpp", "cr", "psnr", "ssim"])
        for s, q in summary["settings"].items():
            w.writerow([s, q["count"], q["mean_bytes"], q["bpp"], q["cr"], q["psnr"], q["ssim"]])


def _pyplot():
    """``(pyplot, None)`` on the Agg backend, or ``(None, why)`` when matplotlib is missing."""
    try:  # matplotlib is imported only when plots are written (and reported when missing)
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        return None, str(e)
    return plt, None


def _plots(out_dir: str, summary: dict) -> list[str] | dict:
    plt, why = _pyplot()
    if plt is None:
        msg = (f"PLOTS NOT WRITTEN: matplotlib is not installed ({why}); `pip install matplotlib` "
               "and rerun the same command (nothing is recomputed)")
        print("\n" + "!" * 80 + f"\n{msg}\n" + "!" * 80, file=sys.stderr)
        with open(os.path.join(out_dir, "PLOTS_MISSING.txt"), "w") as fh:
            fh.write(msg + "\n")
        return {"error": msg}
    stale = os.path.join(out_dir, "PLOTS_MISSING.txt")
    if os.path.exists(stale):
        os.remove(stale)
    files = []
    for x, fname in (("qf", "accuracy_vs_qf.png"), ("bpp", "accuracy_vs_bpp.png")):
        fig = accuracy_figure(summary, x, plt)
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
                 confusion: tuple[str, str] | None = None, plots: bool = True,
                 jpeg_only: Sequence[str] = ()) -> str:
    """Write the results folder from ``out_dir/results.sqlite``; returns the summary.json path.

    ``confusion``: ``(model, setting)`` for the confusion matrix (default: the first model
    at ``original``). ``jpeg_only``: models evaluated at the JPEG settings only (see
    ``not_applicable`` in the module docstring). ``report.html`` is written last, from the
    summary (its plots too: without matplotlib it says the plots are missing).
    """
    names = [s.name for s in settings]
    if confusion is None and models:
        confusion = (models[0], "original")
    if confusion is not None:
        if confusion[0] not in models:
            raise ValueError(f"confusion matrix: unknown model {confusion[0]!r} (have {list(models)})")
        if confusion[1] not in names:
            raise ValueError(f"confusion matrix: unknown setting {confusion[1]!r} (have {names})")
        if confusion[0] in set(jpeg_only) and not settings[names.index(confusion[1])].is_jpeg:
            raise ValueError(f"confusion matrix: {confusion[0]} takes JPEG files; {confusion[1]} is another "
                             "codec's setting (n/a for it)")
    with ResultStore(os.path.join(out_dir, "results.sqlite")) as store:
        summary, cells = compute_summary(store, dataset, models, settings, confusion=confusion, jpeg_only=jpeg_only)
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
    summary["plots"] = _plots(out_dir, summary) if plots else {"error": "plots not requested"}
    if isinstance(summary["plots"], list) and confusion is not None and cells:
        summary["plots"].append(_confusion_plot(out_dir, confusion, cells, dataset))
    with open(os.path.join(out_dir, "summary.md"), "w") as fh:
        fh.write(_markdown(summary))
    path = os.path.join(out_dir, "summary.json")
    with open(path, "w") as fh:
        json.dump(summary, fh, indent=1)
        fh.write("\n")
    write_html(out_dir, summary, _pyplot()[0] if plots else None)
    return path
