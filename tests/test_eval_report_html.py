"""report.html (issue 16, item 5): rendered by headless Chromium, which must load it without
errors and show the tables and the plots. Chromium is Debian's `chromium`, installed by
scripts/install.sh; a machine without it fails here with a message saying so."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from test_eval_codecs import PixelPredictor, _dataset

from dctnet.data.encode import make_settings
from dctnet.evaluate.htmlreport import render_html
from dctnet.evaluate.study import run_study

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError("headless Chromium is needed to check report.html: `apt-get install -y chromium` "
                         "(scripts/install.sh installs it)")


def _run_chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run([_chromium(), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=180)


class _Collect(HTMLParser):
    """Tags and their attributes, and the text of table cells, of a DOM dump."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.cells: list[str] = []
        self._cell = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    ds = _dataset(root / "d")
    settings = make_settings((80, 30), requantize=True, codecs={"webp": [80, 20], "jpeg2000": [10, 40]})
    out = root / "out"
    run_study(ds, [PixelPredictor("rgb"), PixelPredictor("dct", accepts_pixels=False)], settings, str(out),
              progress=False, report_options={"confusion": ("rgb", "webp-q20")})
    return out


def test_report_is_self_contained(report):
    text = (report / "report.html").read_text()
    summary = json.loads((report / "summary.json").read_text())
    # Nothing to fetch: no scripts, stylesheets or images from elsewhere.
    assert not re.search(r"<script|<link|<iframe|@import|url\((?!#)", text)  # url(#id): SVG clip paths
    assert not re.search(r"""(src|href)=["'](?!#|data:)""", text)
    # The same page from the summary alone (what summary.json holds suffices, heatmap aside).
    assert render_html(summary).count("<table") == text.count("<table")
    assert "Plots not drawn" in render_html(summary) and "Plots not drawn" not in text
    assert "webp-q20" in text and "n/a" in text and "requant-qf30" in text


def test_chromium_renders_the_report_without_errors(report, tmp_path):
    url = (report / "report.html").resolve().as_uri()
    dump = _run_chromium(tmp_path, "--enable-logging=stderr", "--v=0", "--dump-dom", url)
    assert dump.returncode == 0, dump.stderr[-2000:]
    console = [ln for ln in dump.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert console == [], console
    dom = _Collect()
    dom.feed(dump.stdout)
    tags = [t for t, _ in dom.tags]
    summary = json.loads((report / "summary.json").read_text())
    # Tables: versions, requant, per model (settings, requant, selectors), worst pairs x2, encoder,
    # codecs, library versions.
    tables = [a.get("class") for t, a in dom.tags if t == "table"]
    for cls in ("versions", "requant", "model", "selectors", "worst", "codecs", "lib-versions"):
        assert cls in tables, (cls, tables)
    assert tables.count("model") == 2
    # Every setting is a row of the versions table with its bpp as in summary.json.
    for name, v in summary["settings"].items():
        i = dom.cells.index(name)
        assert dom.cells[i + 4] == (f"{v['bpp']:.3f}" if v["bpp"] is not None else "-"), name
    # The DCT model's codec rows say n/a.
    assert any(c.startswith("webp (2 settings") for c in dom.cells) and dom.cells.count("n/a") >= 4
    # Two inline SVG plots and the confusion heatmap as a data: image.
    plot_divs = [a.get("id") for t, a in dom.tags if t == "div" and a.get("class") == "plot"]
    assert plot_divs == ["plot-bpp", "plot-qf"] and tags.count("svg") >= 2
    imgs = [a["src"] for t, a in dom.tags if t == "img"]
    assert len(imgs) == 1 and imgs[0].startswith("data:image/png;base64,")


def test_chromium_screenshot_shows_the_page(report, tmp_path):
    shot = tmp_path / "shot.png"
    url = (report / "report.html").resolve().as_uri()
    res = _run_chromium(tmp_path, "--window-size=1200,2400", f"--screenshot={shot}", url)
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    from PIL import Image
    img = np.asarray(Image.open(shot).convert("L"))
    assert img.shape == (2400, 1200)
    dark = np.mean(img < 128)
    assert 0.005 < dark < 0.5  # text, table borders and plots drawn on a white page
    assert os.path.getsize(shot) > 20_000
