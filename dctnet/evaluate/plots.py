"""The plots of `dctnet eval`, drawn from the summary alone (the dict of ``summary.json``).

Every figure is a function of the summary, so the PNG files, the inline SVGs of
``report.html`` and anyone holding only ``summary.json`` draw the same curves:

* :func:`accuracy_figure` ``(summary, "bpp")``: top-1 and top-5 against bits per pixel, one
  curve (a colour) per setting family (``jpeg``, ``gray``, ``down2``, ``requant``, and one per
  other codec: ``jpeg2000``, ``heif``, ``avif``, ``webp``) and a line style per model, the
  original as a star;
* :func:`accuracy_figure` ``(summary, "qf")``: the JPEG families against the JPEG quality
  factor (other codecs have no QF), the original as a dotted line;
* :func:`curves`: the data of those curves, ``{(model, family): (xs, ys)}``.

matplotlib is imported by the caller (:mod:`dctnet.evaluate.report`), which reports its
absence; the functions here take the ``pyplot`` module.
"""

from __future__ import annotations

import io

__all__ = ["accuracy_figure", "curves", "figure_svg"]

# Families that are JPEG files with a quality factor (plotted against QF too).
_QF_FAMILIES = ("jpeg", "gray", "requant")


def _is_qf_family(family: str) -> bool:
    return family in _QF_FAMILIES or family.startswith(("down", "gray-"))


def curves(summary: dict, x: str = "bpp", metric: str = "top1") -> dict[tuple[str, str], tuple[list, list]]:
    """``{(model, family): (xs, ys)}`` of every curve, sorted by x; settings a model was not
    evaluated at (a DCT model and another codec) or without a value are left out.

    ``x``: ``"bpp"`` (the model's own bits per pixel at the setting) or ``"qf"`` (JPEG
    families only); ``metric``: ``"top1"`` or ``"top5"``.
    """
    if x not in ("bpp", "qf") or metric not in ("top1", "top5"):
        raise ValueError(f"x must be 'bpp' or 'qf' and metric 'top1' or 'top5', got {x!r}, {metric!r}")
    out: dict[tuple[str, str], tuple[list, list]] = {}
    for model, m in summary["models"].items():
        points: dict[str, list[tuple[float, float]]] = {}
        for sname, v in m["settings"].items():
            info = summary["settings"].get(sname, {})
            family = info.get("family") or ("original" if sname == "original" else "jpeg")
            if family == "original" or v.get(metric) is None:
                continue
            if x == "qf":
                if not _is_qf_family(family) or info.get("param") is None:
                    continue
                xv = info["param"]
            else:
                if v.get("bpp") is None:
                    continue
                xv = v["bpp"]
            points.setdefault(family, []).append((xv, v[metric]))
        for family, pts in points.items():
            pts.sort()
            out[(model, family)] = ([p[0] for p in pts], [p[1] for p in pts])
    return out


def accuracy_figure(summary: dict, x: str, plt):
    """Top-1 and top-5 against ``x`` (``"bpp"`` or ``"qf"``) as a matplotlib Figure (two panels)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    models = list(summary["models"])
    several = len(models) > 1
    for ax, metric in zip(axes, ("top1", "top5")):
        data = curves(summary, x, metric)
        families = sorted({f for _, f in data}, key=lambda f: (f != "jpeg", f))
        for (model, family), (xs, ys) in data.items():
            fi, mi = families.index(family), models.index(model)
            # A colour and marker per family (codec), a line style per model.
            ax.plot(xs, ys, marker="osv^Dxp*"[fi % 8], markersize=4, color=f"C{fi % 10}",
                    linestyle=["-", "--", ":", "-."][mi % 4], label=f"{model} {family}" if several else family)
        for mi, (model, m) in enumerate(summary["models"].items()):
            orig = m["settings"].get("original", {})
            if orig.get(metric) is None:
                continue
            color = "k"
            label = f"{model} original" if several else "original"
            if x == "qf":
                ax.axhline(orig[metric], color=color, linestyle=["-", "--", ":", "-."][mi % 4], linewidth=0.8,
                           label=label)
            elif orig.get("bpp") is not None:
                ax.plot([orig["bpp"]], [orig[metric]], marker="*P"[mi % 2], markersize=12, color=color,
                        linestyle="none", label=label)
        ax.set_xlabel("bits per pixel" if x == "bpp" else "JPEG quality factor")
        ax.set_ylabel(f"{'top-1' if metric == 'top1' else 'top-5'} accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    ds = summary["dataset"]
    fig.suptitle(f"dctnet eval: {ds['root']} ({ds['images']} images)")
    fig.tight_layout()
    return fig


def figure_svg(fig, plt) -> str:
    """A figure as an inline ``<svg>`` element (no XML declaration), then closed."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]
