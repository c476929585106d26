"""A hostile corpus through every public entry point (issue 13).

One folder of files a careful adversarial user would try (cut inside a later scan header, no
quantisation tables, a FIFO, a symlink to /dev/zero, a header claiming 65500x65500, a PNG and
an empty file named .jpg, a CMYK JPEG, a 3 GB sparse file, a name that is not UTF-8) beside
good photos, run through ``read_header``, ``read_dct``, ``read_dct_batch``,
``read_to_tensor``, the pipelines, ``Classifier.predict`` (DCT, RGB, ONNX) and
``dctnet inspect/predict/eval/prepare/train``. Each runs in a child process with a time
limit, so a crash or a hang fails the test instead of the run. For each: every bad file
gives an error naming it, the good files give the same result as when read alone, and
memory stays bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jpeg_fixtures import ONNX_MODEL, run_tool
from test_hostile import marker_segments, run_child, without_markers

GOOD = ("good_a.jpg", "good_b.jpg")
BAD = ("trunc_prog.jpg", "nodqt.jpg", "fifo.jpg", "zero.jpg", "bomb.jpg", "png.jpg", "empty.jpg", "big.jpg",
       "cmyk.jpg")
ODD = b"\xff\xfe_odd.jpg"   # a good file whose name is not UTF-8
C0, C1 = "n01440764", "n01443537"   # class folders named by ImageNet synsets (for the ONNX model's eval)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, photos) -> Path:
    import io
    import struct

    from PIL import Image

    root = tmp_path_factory.mktemp("corpus")
    c0, c1 = root / "data" / C0, root / "data" / C1
    c0.mkdir(parents=True)
    c1.mkdir()
    shutil.copy(photos[0], c0 / "good_a.jpg")
    shutil.copy(photos[2], c1 / "good_b.jpg")
    shutil.copy(photos[3], os.path.join(os.fsencode(c1), ODD))
    prog = run_tool("jpegtran", "-progressive", str(photos[0]))
    second_sos = [pos for pos, code, _ in marker_segments(prog) if code == 0xDA][1]
    (c0 / "trunc_prog.jpg").write_bytes(prog[:second_sos + 5])
    (c0 / "nodqt.jpg").write_bytes(without_markers(photos[1].read_bytes(), 0xDB))
    os.mkfifo(c0 / "fifo.jpg")
    (c0 / "zero.jpg").symlink_to("/dev/zero")
    bomb = bytearray(photos[1].read_bytes())
    sof = bomb.index(b"\xff\xc0")
    bomb[sof + 5:sof + 9] = struct.pack(">HH", 65500, 65500)
    (c1 / "bomb.jpg").write_bytes(bytes(bomb))
    Image.new("RGB", (300, 300), (200, 10, 10)).save(c1 / "png.jpg", "PNG")
    (c1 / "empty.jpg").write_bytes(b"")
    with open(c1 / "big.jpg", "wb") as f:  # sparse: costs no disk
        f.write(photos[0].read_bytes()[:1000])
        f.truncate(3 << 30)
    buf = io.BytesIO()
    Image.new("CMYK", (256, 256), (10, 20, 30, 40)).save(buf, "JPEG", quality=90)
    (c1 / "cmyk.jpg").write_bytes(buf.getvalue())
    (root / "classes.tsv").write_text(f"{C0}\ttench\n{C1}\tgoldfish\n")  # for training two classes
    return root


def _files(corpus: Path) -> list[str]:
    data = corpus / "data"
    names = [str(data / (C0 if n in ("good_a.jpg", "trunc_prog.jpg", "nodqt.jpg", "fifo.jpg", "zero.jpg")
                         else C1) / n) for n in GOOD + BAD]
    return names + [os.fsdecode(os.path.join(os.fsencode(data / C1), ODD))]


def _check(outcome: dict, corpus: Path, *, cmyk_may_work: bool = False) -> None:
    """Every bad file has an error naming it; good files (and the odd name) have none."""
    for path, error in outcome.items():
        name = os.path.basename(path)
        if name in BAD and not (cmyk_may_work and name == "cmyk.jpg"):
            assert error and name in error, (path, error)
        elif name in GOOD or name == os.fsdecode(ODD):
            assert error is None, (path, error)


CHILD = """
import json, os, resource, sys, warnings
import numpy as np, torch
import dctnet
from dctnet.ops import DCTLayout, read_to_tensor
files = json.loads(sys.argv[1])
out = {}
def show(e):
    return None if e is None else str(e)
def rss_mb():
    # this process's own peak (VmHWM). ru_maxrss would also count the parent's peak: the child
    # is started with vfork + exec, and Linux carries the old address space's peak over.
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024
"""


def test_reader_functions(corpus):
    files = _files(corpus)
    code = CHILD + """
alone = {}
headers = {}
for f in files:
    try:
        dctnet.read_header(f)
        headers[f] = None
    except Exception as e:
        assert isinstance(e, (dctnet.JPEGError, OSError)), repr(e)
        headers[f] = show(e)
    try:
        alone[f] = dctnet.read_dct(f)
        out[f] = None
    except Exception as e:
        assert isinstance(e, (dctnet.JPEGError, OSError)), repr(e)
        out[f] = show(e)
images, errors = dctnet.read_dct_batch(files, on_error="return", threads=2)
for f, img, e in zip(files, images, errors):
    assert show(e) == out[f], (f, show(e), out[f])     # the same outcome in a batch
    if e is None:
        assert all(np.array_equal(a, b) for a, b in zip(img.planes, alone[f].planes))
layout = DCTLayout("upsampling", 8)
x, terrors = read_to_tensor(files, layout, size=224, on_error="return", threads=2)
for i, f in enumerate(files):
    if f in alone and not f.endswith("cmyk.jpg"):
        assert terrors[i] is None and torch.equal(x[i], read_to_tensor([f], layout, size=224)[0]), f
    else:
        assert terrors[i] is not None and not x[i].any(), f
print(json.dumps({"outcome": out, "headers": headers, "tensor": {f: show(e) for f, e in zip(files, terrors)}, "rss_mb": rss_mb()}))
"""
    result = json.loads(run_child(code, json.dumps(files), timeout=300))
    _check(result["outcome"], corpus, cmyk_may_work=True)   # CMYK is read (four planes)
    for path, error in result["headers"].items():           # a header alone may be fine (cut, no DQT)
        name = os.path.basename(path)
        assert (error is None) if name in GOOD else (error is None or name in error), (path, error)
    for name in ("fifo.jpg", "zero.jpg", "png.jpg", "empty.jpg", "big.jpg"):  # (a header has no pixel limit)
        assert result["headers"][next(p for p in result["headers"] if p.endswith(name))], name
    _check(result["tensor"], corpus)                        # ... but no layout takes it
    assert result["rss_mb"] < 3000


def test_pipelines_and_classifiers(corpus):
    files = _files(corpus)
    code = CHILD + f"""
from dctnet.models import resolve
from dctnet.pipeline import DCTPipeline, RGBPipeline
from dctnet.imaging import RGBPreprocess
for name, make in {{"dct": lambda: DCTPipeline(DCTLayout("upsampling", 8), 224, threads=2),
                    "rgb": lambda: RGBPipeline(RGBPreprocess(), threads=2)}}.items():
    batch = make()(files)
    out[name] = {{f: show(e) for f, e in zip(files, batch.errors)}}
for name in ("small_resnet_dct", "small_resnet_rgb", {str(ONNX_MODEL)!r}):
    clf = dctnet.Classifier(name, threads=2, batch_size=4)
    preds = clf.predict(files, topk=1)
    alone = {{f: clf.predict([f], topk=1)[0] for f in files if preds[files.index(f)].error is None}}
    for f, p in zip(files, preds):
        if p.error is None:
            assert p[0][0] == alone[f][0][0] and abs(p[0][2] - alone[f][0][2]) < 1e-5, f
    out[os.path.basename(name)] = {{f: show(p.error) for f, p in zip(files, preds)}}
out["rss_mb"] = rss_mb()
print(json.dumps(out))
"""
    result = json.loads(run_child(code, json.dumps(files), timeout=600))
    assert result.pop("rss_mb") < 4000
    for name, outcome in result.items():
        _check(outcome, corpus, cmyk_may_work=name in ("rgb", "small_resnet_rgb", ONNX_MODEL.name))


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "dctnet", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, errors="surrogateescape")


def test_command_line(corpus, tmp_path):
    data = str(corpus / "data")
    inspect = _cli("inspect", data)
    predict = _cli("predict", data, "--onnx", str(ONNX_MODEL), "--topk", "1", "--threads", "2")
    for result in (inspect, predict):
        assert result.returncode == 1, result.stderr          # some files failed: exit 1, not a crash
        assert "Traceback" not in result.stderr
        text = result.stdout + result.stderr
        for name in BAD:
            if name != "cmyk.jpg":
                assert name in text and f"{name}: " in text, (name, text[-2000:])
    assert os.fsdecode(ODD) in inspect.stdout and "quality=" in inspect.stdout.split(os.fsdecode(ODD))[1][:200]
    eval_out = tmp_path / "eval"
    evaluated = _cli("eval", data, "--onnx", str(ONNX_MODEL), "--qf", "50",
                     "--out", str(eval_out), "--no-plots", "--no-progress", "--threads", "2")
    assert evaluated.returncode == 0, evaluated.stderr
    summary = json.loads((eval_out / "summary.json").read_text())
    assert "Traceback" not in evaluated.stderr and summary
    failed = json.dumps(summary)
    for name in ("trunc_prog.jpg", "nodqt.jpg", "fifo.jpg", "zero.jpg", "bomb.jpg", "png.jpg", "empty.jpg",
                 "big.jpg"):
        assert name in failed, name
    prepared = _cli("prepare", data, str(tmp_path / "prepared"), "--short-side", "64", "--no-progress")
    assert "Traceback" not in prepared.stderr
    for name in ("trunc_prog.jpg", "nodqt.jpg", "fifo.jpg", "zero.jpg", "bomb.jpg", "empty.jpg", "big.jpg"):
        assert name in prepared.stderr, (name, prepared.stderr[-2000:])
    assert (tmp_path / "prepared" / C0 / "good_a.jpg").exists()
    trained = _cli("train", "--model", "small_resnet_dct_fbs4", "--model-arg", "width=8", "--data", data,
                   "--classes", str(corpus / "classes.tsv"), "--out", str(tmp_path / "run"), "--epochs", "1",
                   "--batch-size", "2", "--size", "64", "--workers", "1", "--skip-bad-files", "--quiet")
    assert trained.returncode == 0, trained.stderr[-3000:]
    skipped = set((tmp_path / "run" / "skipped.txt").read_text(errors="surrogateescape").split("\n")) - {""}
    assert {os.path.basename(p) for p in skipped} == set(BAD)
