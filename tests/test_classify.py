"""The inference API (dctnet.Classifier), `dctnet predict` and `dctnet bench throughput`."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
import torch

import dctnet
from dctnet.classify import Classifier, Prediction, load_labels
from dctnet.models import create_model

from jpeg_fixtures import ONNX_MODEL, SAMPLE_DIR

LABELS10 = [f"class{i}" for i in range(10)]


@pytest.fixture(scope="module")
def files(photos):
    # Two large photos, one smaller than 224 on one side (250x206), one gray.
    names = ["n01440764_tench", "n02090721_Irish_wolfhound", "n01530575_brambling"]
    picked = [SAMPLE_DIR / f"{n}.JPEG" for n in names]
    gray = [p for p in photos if dctnet.read_header(p).colorspace == "gray"]
    return [str(p) for p in picked + gray[:1]]


@pytest.fixture(scope="module")
def dct_classifier():
    torch.manual_seed(0)
    model = create_model("resnet50_dct_fbs4", num_classes=10)
    return Classifier(model, labels=LABELS10, batch_size=2, threads=2)


def test_onnx_classifier_on_real_photos(files):
    clf = Classifier(str(ONNX_MODEL), batch_size=2)
    preds = clf.predict(files, topk=5)
    assert [p.source for p in preds] == files
    for p in preds:
        assert isinstance(p, Prediction) and p.error is None and p.path == "onnx"
        assert len(p) == 5
        probs = [prob for _, _, prob in p]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-9
        assert all(clf.class_names[i] == name for i, name, _ in p)
    # The tench photo is a known top-5 hit for this model.
    assert 0 in [i for i, _, _ in preds[0]]
    full = clf.predict(files[:1], topk=1000)[0]
    assert abs(sum(prob for _, _, prob in full) - 1.0) < 1e-6


def test_dct_classifier_paths_and_shapes(dct_classifier, files):
    """DCT models resize like their RGB twins (issue 14): every file, also the 250x206 one that
    is smaller than the crop, is resized in the DCT domain (no decode, no re-encode)."""
    assert dct_classifier.bundle.resize == 256 and dct_classifier.pipeline.resize == 256
    preds = dct_classifier.predict(files, topk=3)
    by_name = {p.source.rsplit("/", 1)[-1]: p for p in preds}
    assert by_name["n02090721_Irish_wolfhound.JPEG"].path == "dct"  # 250x206: upscaled by the operator
    assert by_name["n01440764_tench.JPEG"].path == "dct"
    for p in preds:
        assert p.error is None and len(p) == 3 and all(name in LABELS10 for _, name, _ in p)
    logits, errors, paths = dct_classifier.predict_logits(files)
    assert logits.shape == (len(files), 10) and logits.dtype == np.float32 and not np.isnan(logits).any()
    # The same images given as bytes or as DCTImages (large enough) give the same logits.
    data = [Path(f).read_bytes() for f in files]
    logits_bytes, _, _ = dct_classifier.predict_logits(data)
    np.testing.assert_allclose(logits_bytes, logits, rtol=1e-5, atol=1e-5)
    img = dctnet.read_dct(files[0])
    np.testing.assert_allclose(dct_classifier.predict_logits([img])[0][0], logits[0], rtol=1e-5, atol=1e-5)


def test_dct_classifier_matches_manual_pipeline(dct_classifier, files):
    """Classifier = read + DCT-domain resize to 256 + centre crop 224 + model, nothing else."""
    from dctnet.ops import to_tensor

    img = dctnet.read_dct(files[0])
    x = to_tensor([img], dct_classifier.layout, crop="center", size=224, resize=256)
    with torch.no_grad():
        expected = dct_classifier.model(x).numpy()
    got = dct_classifier.predict_logits([files[0]])[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_dct_classifier_cpu_fused_read_matches_two_step_path(dct_classifier, files):
    """On CPU the classifier reads files with read_to_tensor (the reader's threads gather);
    the explicit torch backend takes read_dct_batch + to_tensor: same rows, paths and errors."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.open(files[0]).convert("RGB").save(buf, "JPEG", quality=90, subsampling=2)   # 4:2:0: the fast path
    srcs = [buf.getvalue(), *files, b"junk"]
    two_step = Classifier(dct_classifier.model, labels=LABELS10, batch_size=8, threads=2, backend="torch")
    fused = Classifier(dct_classifier.model, labels=LABELS10, batch_size=8, threads=2)
    assert fused.pipeline.fused and not two_step.pipeline.fused
    la, ea, pa = fused.predict_logits(srcs)
    lb, eb, pb = two_step.predict_logits(srcs)
    assert pa == pb == ["dct", "dct", "dct", "dct", "dct", None]
    assert [type(e) for e in ea] == [type(e) for e in eb] and "<bytes #5>" in str(ea[5])
    np.testing.assert_allclose(la[:5], lb[:5], rtol=1e-4, atol=1e-4)


def test_small_dctimage_is_resized_like_its_file(dct_classifier, files):
    small = dctnet.read_dct(files[1])              # 250x206: smaller than the crop
    from_image = dct_classifier.predict_logits([small])[0]
    from_file = dct_classifier.predict_logits([files[1]])[0]
    np.testing.assert_allclose(from_image, from_file, rtol=1e-5, atol=1e-5)


def test_exact_crop_pipeline_resamples_small_images_in_the_dct_domain(dct_classifier, files):
    """Without resize (exact block crops, e.g. prepared data), an image smaller than the crop is
    resampled in the DCT domain, shorter side to the crop (evaluation; no decode, no
    re-encode), or refused (training with exact crops), and says so."""
    import torch

    from dctnet.ops import to_tensor
    from dctnet.pipeline import DCTPipeline

    layout = dct_classifier.layout
    batch = DCTPipeline(layout, 224, threads=2)([files[0], files[1]])
    assert batch.paths == ["dct", "dct-resized"] and batch.errors == [None, None]
    images = dctnet.read_dct_batch(files[:2])
    assert torch.equal(batch.inputs[0], to_tensor(images[:1], layout, crop="center", size=224)[0])
    assert torch.equal(batch.inputs[1], to_tensor(images[1:], layout, size=224, resize=224, crop="center")[0])
    image = DCTPipeline(layout, 224, threads=2)([images[1]])           # a DCTImage: the same
    assert image.paths == ["dct-resized"] and torch.equal(image.inputs[0], batch.inputs[1])
    train = DCTPipeline(layout, 224, threads=2, train=True, train_crop="random")([files[0], files[1]], seed=0)
    assert train.errors[0] is None and "smaller than the 224x224 crop" in str(train.errors[1])
    rrc = DCTPipeline(layout, 224, threads=2, train=True)([files[0], files[1]], seed=0)
    assert rrc.errors == [None, None]                                  # RandomResizedCrop: any size


def test_bad_files_are_reported_per_item(dct_classifier, files, tmp_path):
    missing = str(tmp_path / "missing.jpg")
    srcs = [files[0], b"not a jpeg", missing, Path(files[0]).read_bytes()[:1000], files[2]]
    preds = dct_classifier.predict(srcs, topk=2)
    assert preds[0].error is None and preds[4].error is None
    assert isinstance(preds[1].error, dctnet.JPEGError) and preds[1].source == "<bytes #1>"
    assert "<bytes #1>" in str(preds[1].error) and "Not a JPEG" in str(preds[1].error)
    assert isinstance(preds[2].error, FileNotFoundError)
    assert isinstance(preds[3].error, dctnet.JPEGError) and "<bytes #3>" in str(preds[3].error)
    assert all(len(p) == 0 and p.path is None for p in preds[1:4])
    # Order and results of the good ones do not depend on the bad ones.
    alone = dct_classifier.predict([files[0], files[2]], topk=2)
    for a, b in zip(alone, [preds[0], preds[4]]):
        assert [c for c, _, _ in a] == [c for c, _, _ in b]
        np.testing.assert_allclose([p for _, _, p in a], [p for _, _, p in b], rtol=1e-3, atol=1e-6)


def test_rgb_classifier(files):
    torch.manual_seed(0)
    clf = Classifier(create_model("resnet18", num_classes=10), labels=LABELS10, batch_size=3)
    assert clf.kind == "rgb" and clf.preprocess.crop == 224 and clf.preprocess.resize == 256
    preds = clf.predict(files + [b"junk"], topk=2)
    assert all(p.path == "rgb" for p in preds[:-1]) and preds[-1].error is not None


def test_arguments_are_checked(files):
    with pytest.raises(ValueError, match="batch_size"):
        Classifier(str(ONNX_MODEL), batch_size=0)
    with pytest.raises(ValueError, match="ONNX classifiers run with onnxruntime on CPU"):
        Classifier(str(ONNX_MODEL), dtype=torch.float16)
    with pytest.raises(KeyError, match="unknown model"):
        Classifier("resnet50_dtc")
    with pytest.raises(ValueError, match="3 class names for a model with 10 outputs"):
        load_labels(["a", "b", "c"], 10)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="cuda"):
            Classifier("resnet18", device="cuda")
    clf = Classifier(str(ONNX_MODEL))
    with pytest.raises(ValueError, match="topk"):
        clf.predict(files[:1], topk=0)


def test_untrained_registry_model_is_flagged():
    clf = Classifier("resnet50_dct_fbs2")
    assert clf.kind == "dct" and clf.trained is False and len(clf.class_names) == 1000


def test_predict_cli_json(files, tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8garbage")
    cmd = [sys.executable, "-m", "dctnet", "predict", files[0], files[2], str(tmp_path / "bad.jpg"),
           "--onnx", str(ONNX_MODEL), "--topk", "3", "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 1, res.stderr  # one bad file
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["file"] for r in rows] == [files[0], files[2], str(tmp_path / "bad.jpg")]
    mnv2 = rows[0]["models"]["mobilenetv2-12-int8"]
    assert mnv2["path"] == "onnx" and len(mnv2["topk"]) == 3 and mnv2["error"] is None
    assert rows[2]["models"]["mobilenetv2-12-int8"]["error"]
    assert "top-1" in res.stderr and "1 of 3 files failed" in res.stderr


def test_predict_cli_says_untrained(files):
    res = subprocess.run([sys.executable, "-m", "dctnet", "predict", files[0], "--model", "resnet50_dct_fbs2",
                          "--topk", "1"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "no weights (random initialisation)" in res.stderr
    assert "(untrained)" in res.stdout


def test_bench_throughput_report(files):
    from dctnet.bench.throughput import markdown_table, run_throughput

    jpegs = [Path(f).read_bytes() for f in files]
    result = run_throughput(["resnet50_dct_fbs2", f"onnx:{ONNX_MODEL}"], jpegs, batches=[2], repeats=1, warmup=0,
                            progress=False, settings={"test": True})
    assert result["header"]["versions"]["torch"] == torch.__version__
    assert result["header"]["settings"] == {"test": True}
    rows = result["rows"]
    assert [r["kind"] for r in rows] == ["dct", "onnx"]
    dct = rows[0]
    assert dct["gmacs"] == pytest.approx(create_model_macs("resnet50_dct_fbs2"), rel=1e-6)
    for key in ("prepare", "model_forward", "end_to_end"):
        assert dct[key]["median"] > 0 and dct[key]["min"] <= dct[key]["median"] <= dct[key]["max"]
    table = markdown_table(result)
    assert "| resnet50_dct_fbs2 | dct | 2 | no |" in table and "mobilenetv2-12-int8" in table


def test_bench_throughput_with_checkpoint(files, tmp_path):
    """NAME@WEIGHTS: a checkpoint whose builder options differ from the registry default."""
    from dctnet.bench.throughput import bench_model
    from dctnet.models import save_checkpoint

    model = create_model("resnet50_dct_fbs2", num_classes=10)
    path = tmp_path / "fbs2-10.pt"
    save_checkpoint(path, model, class_names=LABELS10)
    row = bench_model(f"resnet50_dct_fbs2@{path}", [Path(f).read_bytes() for f in files[:2]], batch=2, repeats=1,
                      warmup=0, images_per_repeat=2)
    assert row.model == "resnet50_dct_fbs2" and row.kind == "dct"
    # 10 classes instead of 1000: the counted MACs are the checkpoint's model's.
    assert row.gmacs == pytest.approx(create_model_macs("resnet50_dct_fbs2") - 2048 * 990 / 1e9, rel=1e-6)


def create_model_macs(name: str) -> float:
    from dctnet.models import model_complexity

    return model_complexity(name, 224).gmacs


def test_eval_runs_registered_models_through_the_classifier(tmp_path, files):
    from dctnet.evaluate.predictors import make_predictor

    pred = make_predictor("resnet50_dct_fbs2", None, threads=2, batch_size=4)
    jpegs = [Path(f).read_bytes() for f in files[:2]] + [b"junk"]
    logits, errors = pred.predict_logits(jpegs)
    assert logits.shape == (3, 1000) and np.isnan(logits[2]).all() and not np.isnan(logits[:2]).any()
    assert errors[0] is None and "Not a JPEG" in str(errors[2])
    assert pred.identity.startswith("torch:resnet50_dct_fbs2:untrained")


def test_demo_on_a_folder(tmp_path, capsys, files):
    """`dctnet demo DIR`: pretrained EfficientNet-Lite0 from RGB and from DCT coefficients, one table."""
    import shutil

    from dctnet.cli import main

    for f in files[:3]:
        shutil.copy(f, tmp_path)
    assert main(["demo", str(tmp_path), "--bands", "16", "--threads", "2", "--per-image"]) == 0
    out = capsys.readouterr().out
    assert "3 files in" in out and "3 named after their ImageNet class" in out
    table = [line for line in out.splitlines() if line.startswith("| efficientnet")]
    assert [line.split(" | ")[0] for line in table] == ["| efficientnet_lite0", "| efficientnet_lite0_dct",
                                                        "| efficientnet_lite0_dct", "| efficientnet-lite0-fp32"]
    assert "DCT, 16 bands" in table[1]
    assert "recovered without labels" in table[2] and "calibration took" in out
    rgb_top1 = float(table[0].split(" | ")[2])
    assert rgb_top1 >= 66  # 89% on the 100 photos; these 3 are tench, wolfhound, ...
    assert Path(files[0]).name in out  # --per-image lines
    assert main(["demo", str(tmp_path), "--bands", "16", "--threads", "2", "--no-recover"]) == 0
    assert "recovered" not in capsys.readouterr().out


def test_demo_without_photos_says_what_it_needs(tmp_path, monkeypatch):
    from dctnet.cli import main

    monkeypatch.setenv("DCTNET_SHARED", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    import dctnet.commands.demo as demo

    monkeypatch.setattr(demo, "shared_dir", lambda required=True: (_ for _ in ()).throw(
        SystemExit("dctnet demo: cannot find the shared folder")) if required else None)
    with pytest.raises(SystemExit, match="cannot find the shared folder"):
        main(["demo"])
    assert main(["demo", str(tmp_path / "empty")]) == 2   # not a folder: one line, exit 2


def test_models_built_on_cpu_run_channels_last_with_the_same_numbers(files):
    """A registry model built by the Classifier on CPU runs on NHWC tensors (weights and
    inputs), with the logits of the NCHW model to float rounding; a module passed in stays as
    it is unless asked."""
    from dctnet.models import resolve

    for name, options in (("efficientnet_lite0", {}), ("efficientnet_lite0_dct", {"bands": 16})):
        fast = Classifier(name, batch_size=4, **options)
        plain = Classifier(name, batch_size=4, channels_last=False, **options)
        assert fast.channels_last and not plain.channels_last
        conv = next(m for m in fast.model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) and conv.weight.shape[1] > 1
        a, errors_a, _ = fast.predict_logits(files[:4])
        b, errors_b, _ = plain.predict_logits(files[:4])
        assert errors_a == errors_b == [None] * 4
        assert np.abs(a - b).max() <= 1e-4 * np.abs(b).max()
    mine = resolve("efficientnet_lite0").model
    assert not Classifier(mine, batch_size=4).channels_last
    assert Classifier(mine, batch_size=4, channels_last=True).channels_last
