"""``report.html``: one self-contained page per `dctnet eval` results folder.

Written from the summary (the dict of ``summary.json``) after everything else, it holds:
the dataset and the run (settings, models, which models take JPEG files only), the versions
table (bytes, bpp, CR, PSNR, SSIM per setting, JPEG and other codecs alike), one table per
model (top-1 / top-5 / bpp / CR / rank-difference statistics), the requantised-vs-re-encoded
comparison, the selectors, the plots (accuracy against bits per pixel, one curve per codec,
and against the JPEG QF, drawn from the summary by :mod:`dctnet.evaluate.plots` and inlined
as SVG), the worst setting's most confused class pairs and, when one was written, the
confusion heatmap (inlined as a base64 PNG), the encoder and codec settings and the package
and library versions, and the errors.

Nothing is loaded from elsewhere: no script, no stylesheet or image file, no web font, so the
page reads the same from a disk, an e-mail attachment or an archive.
"""

from __future__ import annotations

import base64
import html
import os

from .plots import accuracy_figure, figure_svg

__all__ = ["render_html", "write_html"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
tr.na td { color: #999; } .note { color: #555; font-size: .9em; } .plot svg { max-width: 100%; height: auto; }
.warn { background: #fff4e5; border: 1px solid #f0b37e; padding: .5em 1em; }
img.heatmap { max-width: 100%; }
"""


def _f(x, nd: int = 2) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def _e(x) -> str:
    return html.escape(str(x))


def _table(headers: list[str], rows: list[list], cls: str = "", row_classes: list[str] | None = None) -> str:
    out = [f'<table class="{cls}">' if cls else "<table>", "<thead><tr>"]
    out += [f"<th>{_e(h)}</th>" for h in headers]
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(rows):
        rc = row_classes[i] if row_classes else ""
        out.append(f'<tr class="{rc}">' if rc else "<tr>")
        out += [f"<td>{_e(c)}</td>" for c in row]
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _plots_html(summary: dict, plt) -> str:
    if plt is None:
        why = summary["plots"].get("error") if isinstance(summary.get("plots"), dict) else None
        return f'<p class="warn">Plots not drawn: {_e(why or "matplotlib is not available")}.</p>'
    parts = []
    for x, title in (("bpp", "Accuracy against bits per pixel (one curve per codec / setting family)"),
                     ("qf", "Accuracy against the JPEG quality factor (JPEG settings)")):
        svg = figure_svg(accuracy_figure(summary, x, plt), plt)
        parts.append(f'<h3>{_e(title)}</h3><div class="plot" id="plot-{x}">{svg}</div>')
    return "".join(parts)


def _heatmap_html(out_dir: str, summary: dict) -> str:
    conf = summary.get("confusion")
    plots = summary.get("plots")
    if not conf or not isinstance(plots, list):
        return ""
    png = conf["file"][:-4] + ".png"
    if png not in plots or not os.path.exists(os.path.join(out_dir, png)):
        return ""
    with open(os.path.join(out_dir, png), "rb") as fh:
        data = base64.b64encode(fh.read()).decode("ascii")
    return (f"<h3>Confusion heatmap: {_e(conf['model'])} at {_e(conf['setting'])}</h3>"
            f'<img class="heatmap" alt="confusion heatmap" src="data:image/png;base64,{data}">')


def render_html(summary: dict, plt=None, out_dir: str | None = None) -> str:
    """The page as a string (``plt``: matplotlib's pyplot for the plots, ``None``: a note
    instead; ``out_dir``: where to find the confusion heatmap PNG to inline)."""
    ds = summary["dataset"]
    run = summary.get("run", {})
    body = [f"<h1>dctnet eval: {_e(ds['root'])}</h1>",
            f"<p>{ds['images']} images ({_e(ds['layout'])} layout), classes from {_e(ds['classes'])}. "
            f"Schema {_e(summary['schema'])}; the numbers are in <code>summary.json</code> beside this page.</p>",
            '<nav><a href="#versions-table">versions</a> · <a href="#models">models</a> · '
            '<a href="#plots">plots</a> · <a href="#worst">worst setting</a> · <a href="#run">run</a></nav>']
    # Versions (model-independent).
    rows = [[s, v.get("family", ""), v["count"], _f(v["mean_bytes"], 0), _f(v["bpp"], 3), _f(v["cr"]),
             _f(v["psnr"]), _f(v["ssim"], 4)] for s, v in summary["settings"].items()]
    body += ['<h2 id="versions-table">Versions (model-independent)</h2>',
             _table(["setting", "family", "images", "mean bytes", "bpp", "CR", "PSNR (dB)", "SSIM"], rows,
                    "versions")]
    vs = {s: v["vs_reencode"] for s, v in summary["settings"].items() if v.get("vs_reencode")}
    if vs:
        body += ['<h2 id="requant">Requantised coefficients vs decode + re-encode</h2>',
                 '<p class="note">requant-qfQ: the original\'s coefficients requantised with the tables of QF Q '
                 '(no decoding); qfQ: decoded and re-encoded. Agreement: share of equal quantised coefficients '
                 '(all components only for images of the same geometry, i.e. 4:2:0 originals).</p>',
                 _table(["setting", "vs", "images", "coef. agreement Y %", "all components %",
                         "images (same geometry)", "PSNR between decodes (dB)"],
                        [[s, v["reference"], v["count"], _f(v["coef_agreement_y"]), _f(v["coef_agreement"]),
                          v["geometry_count"], _f(v["psnr"])] for s, v in vs.items()], "requant")]
    # Per model.
    body.append('<h2 id="models">Models</h2>')
    for model, m in summary["models"].items():
        body.append(f"<h3>{_e(model)}</h3><p>{m['count']} images evaluated, {m['failed']} left out (errors).</p>")
        rows = []
        for s, v in m["settings"].items():
            rd = v["rank_diff"] or {"mean": None, "median": None, "std": None}
            q = summary["settings"].get(s, {})
            rows.append([s, _f(v["top1"]), _f(v["top5"]), _f(v["bpp"], 3), _f(v["cr"]), _f(rd["mean"]),
                         _f(rd["median"], 1), _f(rd["std"]), _f(q.get("psnr")), _f(q.get("ssim"), 4)])
        na_settings = m.get("not_applicable") or []
        groups: dict[str, list[str]] = {}
        for s in na_settings:  # one row per codec
            groups.setdefault(summary["settings"].get(s, {}).get("family", s), []).append(s)
        na = [f"{fam} ({len(ss)} settings: {ss[0]} .. {ss[-1]})" if len(ss) > 1 else ss[0]
              for fam, ss in groups.items()]
        rows += [[s, "n/a", "n/a", "", "", "", "", "", "", ""] for s in na]
        body.append(_table(["setting", "top-1 %", "top-5 %", "bpp", "CR", "rank diff mean", "median", "std",
                            "PSNR (dB)", "SSIM"], rows, "model", [""] * len(m["settings"]) + ["na"] * len(na)))
        if na:
            body.append(f'<p class="note">n/a: {_e(model)} takes JPEG files (DCT coefficients), so the other '
                        "codecs' settings do not apply to it; it was evaluated at the JPEG settings.</p>")
        if m.get("requant"):
            body.append(_table(["requantised", "vs", "top-1 diff (pp)", "top-5 diff (pp)", "same top-1 %"],
                               [[s, v["reference"], _f(v["top1_diff"]), _f(v["top5_diff"]), _f(v["same_top1"])]
                                for s, v in m["requant"].items()], "requant-model"))
        if m["selectors"]:
            body.append(_table(["selector", "top-1 %", "top-5 %", "CR", "versions chosen"],
                               [[s, _f(v["top1"]), _f(v["top5"]), _f(v["cr"]),
                                 ", ".join(f"{k} {c}" for k, c in v["chosen"].items() if c)]
                                for s, v in m["selectors"].items()], "selectors"))
    body += ['<h2 id="plots">Plots</h2>', _plots_html(summary, plt)]
    # Worst settings.
    body.append('<h2 id="worst">Worst setting: most confused class pairs</h2>'
                '<p class="note">Per model, the setting with the lowest top-1 and its 20 most frequent '
                '(true class, predicted top-1 class) pairs among the misclassified images: a 1000-class '
                'matrix of a few hundred images is almost all zeros.</p>')
    for model, m in summary["models"].items():
        w = m.get("worst")
        if not w:
            continue
        body.append(f"<h3>{_e(model)} at {_e(w['setting'])}: top-1 {_f(w['top1'])} % "
                    f"({w['correct']} of {w['count']} correct)</h3>")
        body.append(_table(["true class", "predicted", "images"],
                           [[f"{p['true_name']} ({p['true']})", f"{p['predicted_name']} ({p['predicted']})",
                             p["count"]] for p in w["pairs"]], "worst"))
    if out_dir is not None:
        body.append(_heatmap_html(out_dir, summary))
    # The run.
    body.append('<h2 id="run">The run</h2>')
    if run:
        body.append(f"<p>Settings: {_e(', '.join(run.get('settings', [])))}.</p>"
                    f"<p>Models: {_e(', '.join(run.get('models', [])))}"
                    + (f"; JPEG settings only: {_e(', '.join(run['jpeg_only']))}" if run.get("jpeg_only") else "")
                    + ".</p>")
    enc = summary.get("encoder") or {}
    body.append("<h3>JPEG encoder</h3>" + _table(["", "value"], [[k, v] for k, v in enc.items()], "encoder"))
    if summary.get("codecs"):
        body.append("<h3>Other codecs</h3>" + _table(
            ["codec", "library", "parameter", "meaning", "options", "ladder"],
            [[c, v["library"], v["param"], v["meaning"], v["options"], ", ".join(map(str, v["ladder"]))]
             for c, v in summary["codecs"].items()], "codecs"))
    if summary.get("versions"):
        body.append("<h3>Versions</h3>" + _table(["package / library", "version"],
                                                 [[k, v if v is not None else "-"]
                                                  for k, v in summary["versions"].items()], "lib-versions"))
    errs = summary.get("errors", {})
    if errs.get("count"):
        body.append(f"<h2>Errors ({errs['count']})</h2><ul>"
                    + "".join(f"<li>{_e(e['image'])} [{_e(e['setting'])}, {_e(e['model'])}]: {_e(e['error'])}</li>"
                              for e in errs["first"]) + "</ul>")
    title = f"dctnet eval: {ds['root']}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_html(out_dir: str, summary: dict, plt=None) -> str:
    """Write ``out_dir/report.html`` (see :func:`render_html`); returns its path."""
    path = os.path.join(out_dir, "report.html")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(render_html(summary, plt, out_dir))
    return path
