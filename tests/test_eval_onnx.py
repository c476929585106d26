"""`dctnet eval` end to end with the shared ONNX MobileNetV2 on a few photos."""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from jpeg_fixtures import ONNX_MODEL, sample_photos
from dctnet.cli import main
from dctnet.data.datasets import imagenet_classes
from dctnet.evaluate.predictors import OnnxPredictor, Predictor

PHOTOS = [0, 37, 81]  # tench (4:4:4 colour), and two more of the sample


def _independent_logits(paths) -> np.ndarray:
    """shared/data/README.md's preprocessing written out with Pillow alone, then onnxruntime."""
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    batch = []
    for p in paths:
        with Image.open(p) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = 256 / min(w, h)
            im = im.resize((round(w * s), round(h * s)), Image.BILINEAR)
            w, h = im.size
            left, top = (w - 224) // 2, (h - 224) // 2
            x = np.asarray(im.crop((left, top, left + 224, top + 224)), np.float32) / 255.0
        batch.append(((x - mean) / std).transpose(2, 0, 1))
    sess = ort.InferenceSession(str(ONNX_MODEL), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": np.stack(batch)})[0]


@pytest.fixture(scope="module")
def few_photos():
    all_photos = sample_photos()
    return [all_photos[i] for i in PHOTOS]


def test_onnx_predictor_reports_bad_items_and_keeps_the_rest(few_photos):
    pred = OnnxPredictor(ONNX_MODEL, threads=2)
    assert isinstance(pred, Predictor)
    assert pred.name == "mobilenetv2-12-int8" and pred.num_classes == 1000
    assert "83530ad811bc31d2b60a5599a21265a5057608c9b044b4ee758cc22f2309f54f" in pred.identity
    data = [few_photos[0].read_bytes(), b"\xff\xd8 not a jpeg", few_photos[1].read_bytes()]
    logits, errors = pred.predict_logits(data)
    assert logits.shape == (3, 1000) and logits.dtype == np.float32
    assert errors[0] is None and errors[2] is None and errors[1]
    assert np.isnan(logits[1]).all() and np.isfinite(logits[[0, 2]]).all()
    ref = _independent_logits([few_photos[0], few_photos[1]])
    assert np.array_equal(logits[[0, 2]].argmax(1), ref.argmax(1))
    np.testing.assert_allclose(logits[[0, 2]], ref, atol=0.5)


def test_onnx_predictor_rejects_wrong_files(tmp_path):
    with pytest.raises(ValueError, match="no such ONNX file"):
        OnnxPredictor(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="junk.onnx: onnxruntime cannot load it"):
        OnnxPredictor(junk)


def test_eval_command_end_to_end(tmp_path, few_photos, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for p in few_photos:
        shutil.copy(p, data / p.name)
    (data / "n01440764_broken.JPEG").write_bytes(few_photos[0].read_bytes()[:2000])  # truncated
    out = tmp_path / "out"
    code = main(["eval", str(data), "--onnx", str(ONNX_MODEL), "--out", str(out), "--qf", "50,10",
                 "--threads", "2", "--no-progress"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    model = summary["models"]["mobilenetv2-12-int8"]
    assert list(model["settings"]) == ["original", "qf50", "qf10"]
    assert set(model["selectors"]) == {"HRS", "T1K", "T5K", "TTK", "MEANPROB"}
    for entry in list(model["settings"].values()) + list(model["selectors"].values()):
        assert 0 <= entry["top1"] <= entry["top5"] <= 100 and entry["cr"] > 0
    assert model["count"] == 3 and model["failed"] == 1
    assert summary["errors"]["first"][0]["image"] == "n01440764_broken.JPEG"
    assert summary["plots"] == ["accuracy_vs_qf.png", "accuracy_vs_bpp.png",
                                "confusion_mobilenetv2-12-int8_original.png"]
    for name in ("summary.md", "settings.csv", "selectors.csv", "quality.csv", "accuracy_vs_qf.png",
                 "confusion_mobilenetv2-12-int8_original.csv"):
        assert (out / name).stat().st_size > 0
    assert "## mobilenetv2-12-int8" in capsys.readouterr().out
    # The stored original-setting results equal an independent preprocessing + onnxruntime run.
    ref = _independent_logits(few_photos)
    classes = imagenet_classes()
    labels = np.array([classes.index[p.name.split("_")[0]] for p in few_photos])
    with sqlite3.connect(out / "results.sqlite") as db:
        rows = dict(db.execute("SELECT image, top5 FROM predictions WHERE setting = 'original' AND error IS NULL"))
    assert [json.loads(rows[p.name])[0] for p in few_photos] == ref.argmax(1).tolist()
    expected_top1 = 100.0 * np.mean(ref.argmax(1) == labels)
    assert model["settings"]["original"]["top1"] == pytest.approx(expected_top1, abs=1e-3)
    # A rerun computes nothing new and gives the same summary.
    assert main(["eval", str(data), "--onnx", str(ONNX_MODEL), "--out", str(out), "--qf", "50,10",
                 "--no-progress"]) == 0
    assert json.loads((out / "summary.json").read_text()) == summary


def test_eval_command_argument_errors(tmp_path, capsys):
    assert main(["eval", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err
    # --weights: none at all (every model's default weights) or one per --model
    assert main(["eval", str(tmp_path), "--model", "resnet50", "--weights", "a.pt", "--weights", "b.pt",
                 "--out", str(tmp_path / "o")]) == 1
    assert "one --weights per --model" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nope"), "--onnx", str(ONNX_MODEL), "--out", str(tmp_path / "o")]) == 1
    assert "not a folder" in capsys.readouterr().err

