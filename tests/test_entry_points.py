"""Every entry point on hostile input (issue 13, the parts above the reader): the RGB/ONNX
path has the reader's limits, command-line mistakes give one line and a non-zero exit code,
file names that are not UTF-8 are listed and read, `prepare` cleans up after a killed run."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dctnet
from dctnet.imaging import RGBPreprocess, check_decode_limits, decode_rgb
from jpeg_fixtures import ONNX_MODEL, run_tool, sample_photos

ROOT = Path(dctnet.__file__).resolve().parents[1]


def _huge_header_jpeg(width: int = 65500, height: int = 65500) -> bytes:
    """A small real JPEG whose SOF0 claims ``width x height`` (the data stays tiny)."""
    data = bytearray(sample_photos()[0].read_bytes())
    i = data.index(b"\xff\xc0")
    data[i + 5:i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})}  # strict UTF-8 stdout
    full_env.pop("DCTNET_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "dctnet", *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout, errors="surrogateescape")


# --- the RGB path has the reader's limits ------------------------------------------------

def test_rgb_decode_checks_the_pixel_limit_before_decoding():
    bomb = _huge_header_jpeg()
    with pytest.raises(dctnet.JPEGError, match=r"bomb\.jpg: 65500x65500 = 4290250000 pixels exceeds"):
        decode_rgb(bomb, name="bomb.jpg")
    x, errors = RGBPreprocess().batch([bomb, sample_photos()[0].read_bytes()], names=["bomb", "good"])
    assert "exceeds the limit" in str(errors[0]) and errors[1] is None and not x[0].any() and x[1].any()


def test_rgb_path_refuses_special_files(tmp_path):
    link = tmp_path / "zero.JPEG"
    link.symlink_to("/dev/zero")
    fifo = tmp_path / "fifo.JPEG"
    os.mkfifo(fifo)
    for path, what in ((link, "character device"), (fifo, "FIFO")):
        with pytest.raises(dctnet.JPEGError, match=f"{path.name}: not a regular file.*{what}"):
            decode_rgb(str(path))


def test_rgb_path_bounds_progressive_scans(tmp_path):
    """A progressive file with a scan script of thousands of scans is refused on its markers."""
    photo = sample_photos()[0]
    # A 4-scan progressive file (DC, then each component's AC bands): the rule is checked
    # with limits below its counts (cjpeg/jpegtran cannot write thousands of scans).
    script = tmp_path / "scans.txt"
    script.write_text("0,1,2: 0-0, 0, 0;\n0: 1-63, 0, 0;\n1: 1-63, 0, 0;\n2: 1-63, 0, 0;\n")
    prog = run_tool("jpegtran", "-scans", str(script), str(photo))
    scans = prog.count(b"\xff\xda")
    assert scans == 4
    header = check_decode_limits(prog, "p.jpg")
    assert header.progressive
    with pytest.raises(dctnet.JPEGError, match=r"p\.jpg: progressive file has 4 scans, more than 3"):
        check_decode_limits(prog, "p.jpg", max_scans=3)
    with pytest.raises(dctnet.JPEGError, match="max_scan_blocks"):
        check_decode_limits(prog, "p.jpg", max_scan_blocks=10_000)
    assert decode_rgb(prog).shape == decode_rgb(str(photo)).shape


def test_onnx_classifier_refuses_the_bomb_at_once():
    import time

    clf = dctnet.Classifier(str(ONNX_MODEL), threads=2)
    start = time.perf_counter()
    pred = clf.predict([_huge_header_jpeg()])[0]
    assert time.perf_counter() - start < 5
    assert pred.error is not None and "exceeds the limit" in str(pred.error)


# --- command-line mistakes: one line, non-zero exit ----------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--topk", "0"], "argument --topk: expected a positive integer, got 0"),
    (["--topk", "5000"], "--topk 5000 is more than the 1000 classes"),
    (["--onnx", "PHOTO"], "--onnx expects an .onnx model file"),
    (["--onnx", "missing.onnx"], "missing.onnx: no such ONNX file"),
    (["--model", "resnet18", "--weights", "JUNK"], "cannot read as a PyTorch state dict"),
    (["--model", "resnet_nope"], "unknown model 'resnet_nope'"),
    (["--labels", "LABELS"], "class names for a model with 1000 outputs"),
    (["--labels", "BINARY"], "not a UTF-8 text file of class names"),
])
def test_predict_mistakes_are_one_line(tmp_path, args, message):
    photo = str(sample_photos()[0])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "labels.txt").write_text("a\nb\n")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00binary")
    subst = {"PHOTO": photo, "JUNK": str(tmp_path / "junk.pt"), "LABELS": str(tmp_path / "labels.txt"),
             "BINARY": str(tmp_path / "binary.txt"), "missing.onnx": str(tmp_path / "missing.onnx")}
    args = [subst.get(a, a) for a in args]
    if "--onnx" not in args and "--model" not in args:
        args += ["--onnx", str(ONNX_MODEL)]
    result = _cli("predict", photo, *args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert message in lines[-1]
    if not lines[-1].startswith("dctnet predict: error:"):  # argparse's own errors follow its usage lines
        assert len(lines) == 1, lines


def test_a_checkpoint_for_another_model_is_one_line(tmp_path):
    from dctnet.models import create_model, save_checkpoint

    save_checkpoint(tmp_path / "r18.pt", create_model("resnet18", num_classes=10))
    result = _cli("predict", str(sample_photos()[0]), "--model", "resnet34", "--weights", str(tmp_path / "r18.pt"))
    assert result.returncode == 2 and "checkpoint is for model 'resnet18', not 'resnet34'" in result.stderr
    assert "Traceback" not in result.stderr


# --- names that are not UTF-8 ----------------------------------------------------------

@pytest.fixture()
def odd_names(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    photos = sample_photos()
    shutil.copy(photos[0], folder / photos[0].name)
    odd = os.path.join(os.fsencode(folder), b"\xff\xfe_" + os.fsencode(photos[1].name))
    shutil.copy(photos[1], odd)
    return folder, odd


def test_inspect_and_predict_list_and_read_non_utf8_names(odd_names):
    folder, odd = odd_names
    listed = _cli("inspect", str(folder))
    assert listed.returncode == 0, listed.stderr
    assert os.fsdecode(odd) in listed.stdout and "quality=" in listed.stdout
    predicted = _cli("predict", str(folder), "--onnx", str(ONNX_MODEL), "--topk", "1")
    assert predicted.returncode == 0, predicted.stderr
    assert os.fsdecode(odd) in predicted.stdout and "onnx: 2" in predicted.stdout
    # and through the Python API (str with surrogate escapes, Path), in one batch with a good file
    name = os.fsdecode(odd)
    images, errors = dctnet.read_dct_batch([name, Path(name), str(folder / sample_photos()[0].name)],
                                           on_error="return")
    assert errors == [None, None, None]
    assert np.array_equal(images[0].planes[0], images[1].planes[0])
    assert decode_rgb(name).shape[2] == 3


# --- prepare after kill -9 ---------------------------------------------------------------

def test_prepare_removes_parts_left_by_a_killed_run(tmp_path):
    from dctnet.data.prepare import prepare_tree

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(sample_photos()[0], src / "a.jpg")
    dst = tmp_path / "dst"
    (dst).mkdir()
    orphan = dst / "a.jpg.part99999"
    orphan.write_bytes(b"half a file")
    report = prepare_tree(src, dst, short_side=64, qfs=[90], progress=False)
    assert report.written == 1 and not orphan.exists()
    assert dctnet.read_header(str(dst / "a.jpg")).width >= 64
