"""Other codecs and requantised coefficients as `dctnet eval` settings (issue 16, items 2 and 4)."""

from __future__ import annotations

import json
import os
import sys

import jpeglib
import numpy as np
import pytest
from jpeg_fixtures import sample_photos

import dctnet.evaluate.study as study_mod
from dctnet.cli import main as cli_main
from dctnet.codec import JPEGError, read_dct, requantize_jpeg
from dctnet.data.datasets import open_dataset
from dctnet.data.encode import (DEFAULT_LADDERS, Setting, coefficient_agreement, decode_setting, encode_setting,
                                make_settings, parse_setting)
from dctnet.evaluate.metrics import psnr
from dctnet.evaluate.plots import curves
from dctnet.evaluate.store import ResultStore, StaleResultsError
from dctnet.evaluate.study import run_study
from dctnet.imaging import CODECS, check_codec, decode_image, decode_rgb, encode_image, encode_jpeg

NUM_CLASSES = 7


def _photo(h=96, w=128, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 2) % 256, (yy * 3) % 256, (xx + yy) % 256], -1).astype(np.float64)
    return np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)


# --- codecs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("codec", list(CODECS))
def test_each_codec_round_trips_and_its_parameter_trades_size_for_quality(codec):
    img = _photo()
    lo, hi = (64, 4) if codec == "jpeg2000" else (10, 90)
    small, large = encode_image(img, codec, lo), encode_image(img, codec, hi)
    assert len(small) < len(large)
    a, b = decode_image(small, codec), decode_image(large, codec)
    assert a.shape == b.shape == img.shape and a.dtype == np.uint8
    assert 20 < psnr(img, a) < psnr(img, b)
    # The format is checked: another codec's file is an error naming the source.
    other = "webp" if codec != "webp" else "avif"
    with pytest.raises(JPEGError, match=rf"x\.bin.*{codec} decode failed"):
        decode_image(encode_image(img, other, 50), codec, name="x.bin")


def test_codec_errors_name_the_problem(monkeypatch):
    with pytest.raises(ValueError, match="unknown codec 'bpg'"):
        check_codec("bpg")
    with pytest.raises(ValueError, match="quality must be 0..100"):
        encode_image(_photo(), "webp", 101)
    with pytest.raises(ValueError, match="uint8"):
        encode_image(_photo().astype(np.float32), "avif", 50)
    with pytest.raises(JPEGError, match="exceeds the limit"):
        decode_image(encode_image(_photo(), "webp", 50), "webp", max_pixels=100)
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # as if pillow-heif were not installed
    with pytest.raises(ValueError, match="heif needs pillow-heif"):
        make_settings((50,), codecs=["heif"])
    monkeypatch.setattr("dctnet.imaging.features.check", lambda name: False)
    with pytest.raises(ValueError, match="codec avif is not available.*without avif"):
        encode_image(_photo(), "avif", 50)


def test_setting_names_are_stable_keys():
    settings = make_settings((90, 10), requantize=True, codecs={"webp": [10, 90], "jpeg2000": [40, 8]})
    names = [s.name for s in settings]
    assert names == ["original", "qf90", "qf10", "requant-qf90", "requant-qf10", "webp-q90", "webp-q10",
                     "jpeg2000-cr8", "jpeg2000-cr40"]
    assert all(parse_setting(n) == s for n, s in zip(names, settings))
    assert [s.family for s in settings] == ["original", "jpeg", "jpeg", "requant", "requant", "webp", "webp",
                                            "jpeg2000", "jpeg2000"]
    assert [s.is_jpeg for s in settings] == [True] * 5 + [False] * 4
    assert [s.is_plain_qf for s in settings] == [False, True, True] + [False] * 6
    avif = [s.name for s in make_settings((50,), codecs=["avif"])][2:]
    assert avif == [f"avif-q{q}" for q in DEFAULT_LADDERS["avif"]]
    for bad in (dict(qf=50, codec="webp", gray=True), dict(qf=0, codec="jpeg2000"), dict(qf=50, codec="bpg"),
                dict(qf=50, requantize=True, downscale=2), dict(requantize=True)):
        with pytest.raises(ValueError):
            Setting(**bad)
    with pytest.raises(ValueError, match="unknown setting"):
        parse_setting("webp-cr10")


def test_default_ladders_are_monotone_in_bpp_and_psnr_falls_with_bpp():
    """On shared photos: each codec's ladder, best first, gives fewer bits at every step and a
    lower PSNR, and spans about JPEG QF 100..10's range (README: 6.4 .. 0.38 bpp)."""
    photos = sample_photos()[::17][:5]
    rgbs = [decode_rgb(p) for p in photos]
    pixels = sum(r.shape[0] * r.shape[1] for r in rgbs)
    for codec, ladder in DEFAULT_LADDERS.items():
        settings = [s for s in make_settings((50,), codecs=[codec]) if s.codec == codec]
        assert [s.qf for s in settings] == list(ladder)
        bpp, quality = [], []
        for s in settings:
            blobs = [encode_setting(b"", s, original_rgb=r) for r in rgbs]
            bpp.append(8 * sum(map(len, blobs)) / pixels)
            quality.append(np.mean([psnr(r, decode_setting(b, s)) for r, b in zip(rgbs, blobs)]))
        assert all(a > b for a, b in zip(bpp, bpp[1:])), (codec, bpp)
        assert all(a > b for a, b in zip(quality, quality[1:])), (codec, quality)
        assert bpp[0] > 2.5 and bpp[-1] < 0.6, (codec, bpp)


# --- requantisation -------------------------------------------------------------------------------

def _by_sampling() -> dict:
    out = {}
    for p in sample_photos():
        out.setdefault(read_dct(p).sampling, p)
    return out


@pytest.mark.parametrize("sampling", ["420", "444", "gray"])
@pytest.mark.parametrize("quality", [75, 30, 5])
def test_requantised_file_matches_an_independent_float64_formula(sampling, quality, tmp_path):
    """jpeglib (its own libjpeg) reads the original and the requantised file
    (dctnet.codec.requantize_jpeg); the requantised coefficients are round(c * q_old / q_new),
    half away from zero, computed here in float64."""
    want = {"420": ((2, 2), (1, 1), (1, 1)), "444": ((1, 1), (1, 1), (1, 1)), "gray": ((1, 1),)}[sampling]
    path = _by_sampling()[want]
    (tmp_path / "r.jpg").write_bytes(requantize_jpeg(path, quality))
    ref, out = jpeglib.read_dct(str(path)), jpeglib.read_dct(str(tmp_path / "r.jpg"))
    # IJG tables scaled by quality, from libjpeg itself (a file encoded at that quality).
    tables = read_dct(encode_jpeg(np.zeros((16, 16, 3), np.uint8), quality)).qtables
    comps = [ref.Y] + ([ref.Cb, ref.Cr] if ref.has_chrominance else [])
    got = [out.Y] + ([out.Cb, out.Cr] if out.has_chrominance else [])
    for c, (a, b) in enumerate(zip(comps, got)):
        q_old = ref.qt[ref.quant_tbl_no[c]].astype(np.float64)
        q_new = tables[0 if c == 0 else 1].reshape(8, 8).astype(np.float64)
        x = a.astype(np.float64) * q_old / q_new
        expected = np.sign(x) * np.floor(np.abs(x) + 0.5)
        assert np.array_equal(b, expected), c
        assert np.array_equal(out.qt[out.quant_tbl_no[c]], q_new)
    assert (out.height, out.width) == (ref.height, ref.width)


def test_requantising_with_the_files_own_tables_is_lossless():
    path = _by_sampling()[((2, 2), (1, 1), (1, 1))]
    data = encode_jpeg(decode_rgb(path), 60)
    q, again = read_dct(data), read_dct(requantize_jpeg(data, 60))
    assert all(np.array_equal(a, b) for a, b in zip(q.planes, again.planes))
    assert np.array_equal(q.qtables, again.qtables) and again.sampling == q.sampling


def test_requantised_is_close_to_the_true_reencode():
    """A 4:2:0 original: requantising agrees with decode + re-encode on nearly every coefficient."""
    path = _by_sampling()[((2, 2), (1, 1), (1, 1))]
    original = path.read_bytes()
    for q in (90, 50, 10):
        req, true = encode_setting(original, Setting(q, requantize=True)), encode_setting(original, Setting(q))
        y, everything = coefficient_agreement(read_dct(req), read_dct(true))
        assert 0.95 < everything <= y < 1.0 or 0.95 < y <= everything < 1.0
        assert psnr(decode_rgb(req), decode_rgb(true)) > 30
    gray = read_dct(_by_sampling()[((1, 1),)].read_bytes())
    y, everything = coefficient_agreement(gray, read_dct(encode_setting(_by_sampling()[((1, 1),)].read_bytes(),
                                                                       Setting(50))))
    assert everything is None and y is None or 0 <= y <= 1


def test_requantised_version_of_a_broken_file_names_it():
    with pytest.raises(JPEGError, match="broken.jpg"):
        encode_setting(b"\xff\xd8\xff\xdbnot a jpeg", Setting(50, requantize=True), name="broken.jpg")


def test_requantize_refuses_other_colour_spaces(tmp_path):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_photo()).convert("CMYK").save(buf, "JPEG", quality=80)
    (tmp_path / "c.jpg").write_bytes(buf.getvalue())
    with pytest.raises(JPEGError, match="c.jpg.*YCbCr or grayscale"):
        requantize_jpeg(tmp_path / "c.jpg", 50)
    with pytest.raises(JPEGError, match="c.jpg.*YCbCr or grayscale"):
        encode_setting(buf.getvalue(), Setting(50, requantize=True), name="c.jpg")


# --- the study ------------------------------------------------------------------------------------

class PixelPredictor:
    """Class = a function of the decoded pixels, for JPEG bytes and decoded images alike."""

    num_classes = NUM_CLASSES

    def __init__(self, name="rgb", accepts_pixels=True):
        self.name, self.identity, self.accepts_pixels = name, name + "-1", accepts_pixels
        self.seen: list = []

    def predict_logits(self, items):
        logits = np.zeros((len(items), NUM_CLASSES), np.float32)
        for i, x in enumerate(items):
            if isinstance(x, np.ndarray):
                assert self.accepts_pixels, "a JPEG-only model was given pixels"
                pixels = x
            else:
                pixels = decode_rgb(x)
            self.seen.append(type(x).__name__)
            logits[i, int(pixels.mean()) % NUM_CLASSES] = 1.0
        return logits, [None] * len(items)


def _summary(out) -> dict:
    with open(os.path.join(out, "summary.json")) as fh:
        return json.load(fh)


def _dataset(root):
    root.mkdir()
    for i in range(3):
        (root / "data" / f"c{i}").mkdir(parents=True)
        img = _photo(64 + 8 * i, 80, seed=i)
        (root / "data" / f"c{i}" / "img.jpg").write_bytes(encode_jpeg(img, 92))
    (root / "classes.tsv").write_text("".join(f"c{i}\tclass {i}\n" for i in range(NUM_CLASSES)))
    return open_dataset(root / "data", classes=root / "classes.tsv")


SETTINGS = make_settings((80, 30), requantize=True, codecs={"webp": [80, 20], "jpeg2000": [10, 40]})


def test_codec_settings_go_to_pixel_models_and_not_to_dct_models(tmp_path, monkeypatch):
    ds = _dataset(tmp_path / "d")
    rgb, dct = PixelPredictor("rgb"), PixelPredictor("dct", accepts_pixels=False)
    out = str(tmp_path / "out")
    run_study(ds, [rgb, dct], SETTINGS, out, progress=False, report_options={"plots": False})
    assert rgb.seen.count("ndarray") == 3 * 4 and rgb.seen.count("bytes") == 3 * 5
    assert dct.seen == ["bytes"] * (3 * 5)
    summ = _summary(out)
    codec_names = ["webp-q80", "webp-q20", "jpeg2000-cr10", "jpeg2000-cr40"]
    assert summ["models"]["dct"]["not_applicable"] == codec_names
    assert list(summ["models"]["dct"]["settings"]) == ["original", "qf80", "qf30", "requant-qf80", "requant-qf30"]
    assert summ["models"]["rgb"]["not_applicable"] == [] and len(summ["models"]["rgb"]["settings"]) == 9
    assert summ["run"]["jpeg_only"] == ["dct"]
    assert summ["codecs"]["jpeg2000"]["ladder"] == [10, 40] and summ["codecs"]["webp"]["param"] == "q"
    # Per setting: bytes, bpp and PSNR of every codec; the ladder trades bits for quality.
    q = summ["settings"]
    for a, b in (("webp-q80", "webp-q20"), ("jpeg2000-cr10", "jpeg2000-cr40"), ("requant-qf80", "requant-qf30")):
        assert q[a]["bpp"] > q[b]["bpp"] and q[a]["psnr"] > q[b]["psnr"] and q[a]["ssim"] > q[b]["ssim"]
    # JPEG 2000's rate is a compression ratio against 24-bit RGB.
    assert q["jpeg2000-cr10"]["bpp"] == pytest.approx(2.4, rel=0.05)
    # The requantised versions against the true re-encodes (4:2:0 originals: same geometry).
    vs = q["requant-qf30"]["vs_reencode"]
    assert vs["reference"] == "qf30" and vs["count"] == 3 and vs["geometry_count"] == 3
    assert 90 < vs["coef_agreement"] < 100 and vs["psnr"] > 30
    assert set(summ["models"]["rgb"]["requant"]) == {"requant-qf80", "requant-qf30"}
    assert summ["models"]["rgb"]["worst"]["setting"] in q
    # Interrupted and resumed: nothing is recomputed on a rerun, codec settings included.
    monkeypatch.setattr(study_mod, "_make_versions", lambda *a, **k: pytest.fail("recomputed"))
    again = PixelPredictor("rgb")
    run_study(ds, [again, PixelPredictor("dct", accepts_pixels=False)], SETTINGS, out, progress=False,
              report_options={"plots": False})
    assert again.seen == [] and _summary(out)["models"] == summ["models"]


def test_an_interrupted_codec_run_resumes_where_it_stopped(tmp_path):
    ds = _dataset(tmp_path / "d")

    class Interrupting(PixelPredictor):
        def predict_logits(self, items):
            if len(self.seen) >= len(SETTINGS):  # after one image
                raise KeyboardInterrupt
            return super().predict_logits(items)

    out = str(tmp_path / "out")
    with pytest.raises(KeyboardInterrupt):
        run_study(ds, [Interrupting("rgb")], SETTINGS, out, progress=False, chunk=1)
    second = PixelPredictor("rgb")
    run_study(ds, [second], SETTINGS, out, progress=False, chunk=1, report_options={"plots": False})
    assert len(second.seen) == 2 * len(SETTINGS)
    fresh = str(tmp_path / "fresh")
    run_study(ds, [PixelPredictor("rgb")], SETTINGS, fresh, progress=False, report_options={"plots": False})
    a, b = _summary(out), _summary(fresh)
    assert a["models"] == b["models"] and a["settings"] == b["settings"]


def test_codec_versions_made_by_other_libraries_are_refused(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as store:
        store.register_codecs({"webp": {"libwebp": "1.6.0"}})
        store.register_codecs({"webp": {"libwebp": "1.6.0"}})
        with pytest.raises(StaleResultsError, match="other codec settings or libraries"):
            store.register_codecs({"webp": {"libwebp": "1.7.0"}})


def test_plots_are_drawn_from_the_summary(tmp_path):
    """The curves of accuracy_vs_bpp are the summary's numbers, one per codec."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dctnet.evaluate.plots import accuracy_figure

    ds = _dataset(tmp_path / "d")
    out = tmp_path / "out"
    run_study(ds, [PixelPredictor("rgb")], SETTINGS, str(out), progress=False)
    summ = json.loads((out / "summary.json").read_text())
    assert {"accuracy_vs_bpp.png", "accuracy_vs_qf.png"} <= set(summ["plots"])
    data = curves(summ, "bpp")
    assert set(data) == {("rgb", f) for f in ("jpeg", "requant", "webp", "jpeg2000")}
    m = summ["models"]["rgb"]["settings"]
    assert data[("rgb", "webp")] == ([m["webp-q20"]["bpp"], m["webp-q80"]["bpp"]],
                                     [m["webp-q20"]["top1"], m["webp-q80"]["top1"]])
    assert set(curves(summ, "qf")) == {("rgb", "jpeg"), ("rgb", "requant")}
    fig = accuracy_figure(summ, "bpp", plt)
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    assert np.allclose(lines["jpeg2000"].get_xdata(), data[("rgb", "jpeg2000")][0])
    assert np.allclose(lines["jpeg2000"].get_ydata(), data[("rgb", "jpeg2000")][1])
    plt.close(fig)


def test_cli_names_bad_codec_arguments(tmp_path, capsys):
    ds = _dataset(tmp_path / "d")
    base = ["eval", str(ds.root), "--classes", str(tmp_path / "d" / "classes.tsv"), "--onnx", "x.onnx",
            "--out", str(tmp_path / "o")]
    assert cli_main(base + ["--codecs", "webp,bpg"]) == 1
    assert "unknown codec 'bpg'" in capsys.readouterr().err
    assert cli_main(base + ["--codecs", "webp", "--ladder", "avif:50"]) == 1
    assert "--ladder expects CODEC:P,P,... for a codec of --codecs (webp)" in capsys.readouterr().err


def test_eval_command_with_codecs_end_to_end(tmp_path, capsys):
    """An ONNX model gets the codec versions (as an independent Pillow + onnxruntime run on the
    codec's files sees them); a DCT model is evaluated at the JPEG settings and says so."""
    import shutil
    import sqlite3

    from jpeg_fixtures import ONNX_MODEL
    from test_eval_onnx import PHOTOS, _independent_logits

    photos = [sample_photos()[i] for i in PHOTOS]
    data = tmp_path / "data"
    data.mkdir()
    for p in photos:
        shutil.copy(p, data / p.name)
    out = tmp_path / "out"
    code = cli_main(["eval", str(data), "--onnx", str(ONNX_MODEL), "--model", "efficientnet_lite0_dct", "--bands",
                     "16", "--out", str(out), "--qf", "50", "--codecs", "webp,jpeg2000", "--ladder", "webp:80,20",
                     "--ladder", "jpeg2000:30", "--requantize", "--threads", "2", "--no-progress"])
    assert code == 0
    assert "efficientnet_lite0_dct takes JPEG files" in capsys.readouterr().err
    summary = _summary(out)
    onnx, dct = summary["models"]["mobilenetv2-12-int8"], summary["models"]["efficientnet_lite0_dct"]
    assert list(onnx["settings"]) == ["original", "qf50", "requant-qf50", "webp-q80", "webp-q20", "jpeg2000-cr30"]
    assert list(dct["settings"]) == ["original", "qf50", "requant-qf50"]
    assert dct["not_applicable"] == ["webp-q80", "webp-q20", "jpeg2000-cr30"]
    assert (out / "report.html").stat().st_size > 0 and (out / "requant.csv").stat().st_size > 0
    # The stored webp-q20 predictions equal Pillow + onnxruntime on the WebP files themselves.
    files = []
    for p in photos:
        f = tmp_path / (p.stem + ".webp")
        f.write_bytes(encode_image(decode_rgb(p), "webp", 20))
        files.append(f)
    ref = _independent_logits(files)
    with sqlite3.connect(out / "results.sqlite") as db:
        rows = dict(db.execute("SELECT image, top5 FROM predictions WHERE setting = 'webp-q20' "
                               "AND model = 'mobilenetv2-12-int8'"))
    assert [json.loads(rows[p.name])[0] for p in photos] == ref.argmax(1).tolist()
    with sqlite3.connect(out / "results.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM predictions WHERE model = 'efficientnet_lite0_dct' "
                          "AND setting LIKE 'webp%'").fetchone() == (0,)


def test_rgb_pipelines_take_decoded_pixels_and_dct_pipelines_refuse_them():
    from dctnet.imaging import RGBPreprocess
    from dctnet.ops import DCTLayout
    from dctnet.pipeline import DCTPipeline, RGBPipeline

    jpeg = encode_jpeg(_photo(240, 300), 85)
    pixels = decode_rgb(jpeg)
    pre = RGBPreprocess()
    batch = RGBPipeline(pre, threads=2)([jpeg, pixels, pixels[:, :, :2].copy()])
    assert batch.errors[0] is None and batch.errors[1] is None
    assert np.array_equal(batch.inputs[0].numpy(), batch.inputs[1].numpy())
    assert "<pixels #2>" in str(batch.errors[2]) and "uint8 (H, W, 3)" in str(batch.errors[2])
    with pytest.raises(TypeError, match=r"<pixels #0>: DCT models take JPEG files or DCTImages"):
        DCTPipeline(DCTLayout(kind="upsampling", bands=8), 224)([pixels])
    prepared = RGBPipeline(RGBPreprocess(resize=None), prepared=(256, 224))([pixels])
    assert "not decoded pixels" in str(prepared.errors[0])
