"""`dctnet prepare`: resize + re-encode a tree (sizes, quality, sampling, pixels), resumable,
per-file errors that do not stop the run, several qualities."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from dctnet import read_header
from dctnet.cli import main as cli_main
from dctnet.data.prepare import prepare_tree
from dctnet.imaging import decode_rgb
from dctnet.data.synthetic import render


@pytest.fixture()
def tree(tmp_path):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(render(3, rng, 96)[:, :80]).save(src / "a" / "wide.jpg", quality=95)        # 80x96
    Image.fromarray(render(1, rng, 64)).save(src / "a" / "tall.png")                             # PNG source
    Image.fromarray(render(0, rng, 64)[:40].mean(axis=2).astype(np.uint8)).save(src / "b" / "gray.jpeg")
    (src / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (src / "b" / "notes.txt").write_text("ignored")
    return src


def test_prepare_resizes_reencodes_and_reports_bad_files(tree, tmp_path):
    dst = tmp_path / "out"
    lines = []
    report = prepare_tree(tree, dst, short_side=32, qfs=[75], progress=False, threads=2, log=lines.append)
    assert report.written == 3 and report.skipped == 0
    assert [os.path.basename(p) for p, _ in report.failed] == ["broken.jpg"]
    assert len(lines) == 1 and "broken.jpg" in lines[0]
    expected = {"a/wide.jpg": (32, round(96 * 32 / 80)), "a/tall.jpg": (32, 32), "b/gray.jpeg": (round(64 * 32 / 40), 32)}
    for rel, (w, h) in expected.items():
        header = read_header(dst / rel)
        assert (header.width, header.height) == (w, h), rel
        assert header.subsampling == "4:2:0" and header.num_components == 3
        assert header.quality == 75
    # Pixels: the source decoded and resized with Pillow bilinear, up to JPEG error at Q75.
    src_rgb = decode_rgb(tree / "a" / "wide.jpg")
    ref = np.asarray(Image.fromarray(src_rgb).resize((32, 38), Image.BILINEAR)).astype(np.float64)
    out = decode_rgb(dst / "a" / "wide.jpg").astype(np.float64)
    psnr = 10 * np.log10(255 ** 2 / np.mean((out - ref) ** 2))
    assert psnr > 25
    assert not (dst / "b" / "broken.jpg").exists() and not (dst / "b" / "notes.txt").exists()
    assert not [p for p in dst.rglob("*") if ".part" in p.name]


def test_prepare_is_resumable(tree, tmp_path):
    dst = tmp_path / "out"
    prepare_tree(tree, dst, short_side=32, qfs=[90], progress=False, log=lambda _: None)
    before = (dst / "a" / "tall.jpg").stat().st_mtime_ns
    # An interrupted write left a truncated file under the final name (e.g. copied by hand).
    data = (dst / "a" / "wide.jpg").read_bytes()
    (dst / "a" / "wide.jpg").write_bytes(data[: len(data) // 2])
    report = prepare_tree(tree, dst, short_side=32, qfs=[90], progress=False, log=lambda _: None)
    assert report.written == 1 and report.skipped == 2 and len(report.failed) == 1
    assert (dst / "a" / "wide.jpg").read_bytes() == data            # redone, deterministically
    assert (dst / "a" / "tall.jpg").stat().st_mtime_ns == before    # untouched


def test_prepare_several_qualities(tree, tmp_path):
    dst = tmp_path / "out"
    report = prepare_tree(tree, dst, short_side=None, qfs=[90, 30], progress=False, log=lambda _: None)
    assert report.written == 6
    for q in (90, 30):
        h = read_header(dst / f"qf{q}" / "a" / "wide.jpg")
        assert (h.width, h.height) == (80, 96) and h.quality == q
    assert (dst / "qf90" / "a" / "wide.jpg").stat().st_size > (dst / "qf30" / "a" / "wide.jpg").stat().st_size


def test_prepare_rejects_bad_options(tree, tmp_path):
    with pytest.raises(ValueError, match="1..100"):
        prepare_tree(tree, tmp_path / "o", qfs=[0], progress=False)
    with pytest.raises(ValueError, match="inside the source"):
        prepare_tree(tree, tree / "out", progress=False)
    with pytest.raises(ValueError, match="not a folder"):
        prepare_tree(tmp_path / "nothing", tmp_path / "o", progress=False)


def test_cli_prepare(tree, tmp_path, capsys):
    code = cli_main(["prepare", str(tree), str(tmp_path / "o"), "--short-side", "24", "--qf", "80", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1                                   # one source failed
    assert "broken.jpg" in err and "3 files written" in err and "1 sources failed" in err
    assert read_header(tmp_path / "o" / "a" / "tall.jpg").width == 24
