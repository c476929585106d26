"""Issue 8: exact conversion of RGB networks to DCT input (decode path, from_rgb, ONNX front end,
`dctnet convert`, `dctnet eval --onnx-dct`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jpeg_fixtures import ONNX_MODEL, read_pnm, run_tool, sample_photos
from dctnet import read_dct
from dctnet.cli import main
from dctnet.imaging import decode_rgb, prepare_jpeg, resize_shorter
from dctnet.models import create_model, from_rgb, load_model, model_complexity, save_checkpoint, stem_macs
from dctnet.models.convert import ConvertedFirstLayer
from dctnet.models.decode_path import CLAMP_TOLERANCE, DCTFrontEnd, converted_layout, fancy_upsample2x
from dctnet.ops import to_tensor

# tench (4:4:4 colour) and a spread of the sample: 4:4:4, 4:2:0 and grayscale sources.
PHOTOS = [0, 11, 23, 37, 52, 64, 81, 95]


@pytest.fixture(scope="module")
def prepared():
    """The test photos prepared as the papers do (shorter side 256, 224 crop on 16-pixel
    boundaries, re-encoded 4:2:0): ``(jpeg bytes list, y, cbcr)`` at n = 64."""
    photos = sample_photos()
    jpegs = [prepare_jpeg(photos[i].read_bytes(), name=str(photos[i])) for i in PHOTOS]
    y, cbcr = to_tensor([read_dct(j) for j in jpegs], converted_layout(64), backend="torch")
    return jpegs, y, cbcr


def _libjpeg_pixels(jpegs) -> np.ndarray:
    """libjpeg-turbo's decode (islow, fancy upsampling): float64 (N, 3, H, W)."""
    return np.stack([decode_rgb(j) for j in jpegs]).transpose(0, 3, 1, 2).astype(np.float64)


def _normalise(pixels: np.ndarray) -> torch.Tensor:
    mean = np.array([0.485, 0.456, 0.406])[:, None, None]
    std = np.array([0.229, 0.224, 0.225])[:, None, None]
    return torch.from_numpy((pixels / 255.0 - mean) / std).float()


@pytest.fixture(scope="module")
def resnet50_pair():
    """A randomly initialised resnet50 with random BN statistics, and its conversion at n = 64."""
    torch.manual_seed(0)
    rgb = create_model("resnet50").eval()
    for m in rgb.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
    return rgb, from_rgb(rgb, 64)


# --- the decode path ---------------------------------------------------------------------

def test_prepared_file_is_the_block_aligned_crop(prepared):
    jpegs, y, cbcr = prepared
    img = read_dct(jpegs[0])
    assert (img.width, img.height, img.subsampling) == (224, 224, "4:2:0")
    assert y.shape == (len(PHOTOS), 64, 28, 28) and cbcr.shape == (len(PHOTOS), 128, 14, 14)
    # Encoding the crop == cropping the blocks of the whole resized image encoded at once.
    from turbojpeg import TJPF_RGB, TJSAMP_420, TurboJPEG
    src = sample_photos()[PHOTOS[0]].read_bytes()
    rgb = resize_shorter(decode_rgb(src), 256)
    h, w = rgb.shape[:2]
    top, left = ((h - 224) // 2) // 16 * 16, ((w - 224) // 2) // 16 * 16
    whole = read_dct(TurboJPEG().encode(np.ascontiguousarray(rgb), quality=int(round(img.quality)),
                                        pixel_format=TJPF_RGB, jpeg_subsample=TJSAMP_420))
    np.testing.assert_array_equal(whole.planes[0][top // 8:top // 8 + 28, left // 8:left // 8 + 28], img.planes[0])
    np.testing.assert_array_equal(whole.planes[1][top // 16:top // 16 + 14, left // 16:left // 16 + 14],
                                  img.planes[1])


def test_libjpeg_mode_is_bit_exact_with_libjpeg_turbo(prepared):
    jpegs, y, cbcr = prepared
    ours = DCTFrontEnd(converted_layout(64), clamp="libjpeg").pixels(y, cbcr).numpy()
    np.testing.assert_array_equal(ours, _libjpeg_pixels(jpegs))
    # djpeg (the command-line decoder, islow and fancy upsampling by default) agrees too.
    np.testing.assert_array_equal(ours[1], read_pnm(run_tool("djpeg", "-dct", "int", stdin=jpegs[1])).transpose(2, 0, 1))


def test_float_decode_path_within_rounding_of_libjpeg(prepared):
    jpegs, y, cbcr = prepared
    ref = _libjpeg_pixels(jpegs)
    fe = DCTFrontEnd(converted_layout(64), clamp="clamp").double()
    d = np.abs(fe.pixels(y.double(), cbcr.double()).numpy() - ref)
    # Only libjpeg's integer rounding separates them once the clamps are applied.
    assert d.max() <= CLAMP_TOLERANCE and d.mean() < 0.6
    fe.clamp = "none"
    lin = fe.pixels(y.double(), cbcr.double()).numpy()
    d = np.abs(lin - ref)
    # The purely linear map differs by more only where the decoder clamps: the pixel or one of
    # the samples it was interpolated from lies outside [0, 255].
    out_of_range = torch.from_numpy(((lin < -0.5) | (lin > 255.5)).any(1, keepdims=True).astype(np.float32))
    near = F.max_pool2d(out_of_range, 5, stride=1, padding=2).numpy().astype(bool)
    assert (d[~np.broadcast_to(near, d.shape)] <= CLAMP_TOLERANCE).all()


def test_fancy_upsampling_matches_float64_formula():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(2, 1, 5, 7)) * 50

    def up_matrix(n: int, edge: str) -> np.ndarray:
        """libjpeg's triangular filter as a matrix: replicated edges (2n x n), or zero samples
        outside with the two extra pixels -1 and 2n ((2n + 2) x n)."""
        m = np.zeros((2 * n + 2, n + 2))                       # pixels -1..2n from samples -1..n
        for i in range(-1, n + 1):
            for q, other in ((2 * i, i - 1), (2 * i + 1, i + 1)):
                if -1 <= q <= 2 * n:
                    m[q + 1, i + 1] += 0.75
                    if -1 <= other <= n:
                        m[q + 1, other + 1] += 0.25
        pad = np.zeros((n + 2, n))
        pad[1:-1] = np.eye(n)
        if edge == "replicate":
            pad[0, 0] = pad[-1, -1] = 1.0
            return (m @ pad)[1:-1]
        return m @ pad

    for edge in ("replicate", "zero"):
        ref = np.einsum("yh,bchw,xw->bcyx", up_matrix(5, edge), s, up_matrix(7, edge))
        np.testing.assert_allclose(fancy_upsample2x(torch.from_numpy(s), edge).numpy(), ref, atol=1e-12)
    assert fancy_upsample2x(torch.from_numpy(s), "zero").shape == (2, 1, 12, 16)


# --- from_rgb ----------------------------------------------------------------------------

@pytest.mark.parametrize("bands,grid", [(64, (6, 10)), (10, (4, 4)),
                                        ([[0, 1, 8, 9, 2], [0, 1, 8], [0, 9]], (2, 6))])
def test_first_layer_equals_bn_conv1_of_the_decode(bands, grid):
    torch.manual_seed(1)
    rgb = create_model("resnet18").eval()
    rgb.bn1.running_mean.normal_(0, 0.2)
    rgb.bn1.running_var.uniform_(0.5, 2.0)
    layout = converted_layout(bands)
    ny, ncb, ncr = layout.channels_per_component
    hb, wb = grid
    g = torch.Generator().manual_seed(2)
    y = torch.randn(2, ny, hb, wb, generator=g) * 80
    cbcr = torch.randn(2, ncb + ncr, hb // 2, wb // 2, generator=g) * 60
    layer = ConvertedFirstLayer(layout, 64).fill_from(rgb.conv1, rgb.bn1, (0.485, 0.456, 0.406),
                                                       (0.229, 0.224, 0.225))
    with torch.no_grad():
        ref = rgb.bn1(rgb.conv1(DCTFrontEnd(layout)(y, cbcr)))
        got = layer(y, cbcr)
    assert got.shape == (2, 64, 4 * hb, 4 * wb)
    torch.testing.assert_close(got, ref, atol=2e-5 * ref.abs().max().item(), rtol=0)


def test_converted_resnet50_matches_rgb_on_libjpeg_decode(prepared, resnet50_pair):
    jpegs, y, cbcr = prepared
    rgb, dct = resnet50_pair
    fe = DCTFrontEnd(converted_layout(64))
    float_pixels = fe.pixels(y.double(), cbcr.double())
    fe.clamp = "clamp"
    clamped_pixels = fe.pixels(y.double(), cbcr.double())
    djpeg_float = np.stack([read_pnm(run_tool("djpeg", "-dct", "float", stdin=j)) for j in jpegs])
    inputs = torch.cat([_normalise(float_pixels.numpy()), _normalise(clamped_pixels.numpy()),
                        _normalise(_libjpeg_pixels(jpegs)), _normalise(djpeg_float.transpose(0, 3, 1, 2) * 1.0)])
    with torch.no_grad():
        got = dct(y, cbcr)
        exact, clamped, on_libjpeg, on_float_idct = rgb(inputs).split(len(jpegs))
    scale = on_libjpeg.abs().max().item()
    # The conversion is the decode path's linear map folded into conv1: same logits as the RGB
    # network on the unclamped float decode, up to float32 rounding.
    torch.testing.assert_close(got, exact, atol=1e-4 * scale, rtol=0)
    # Against libjpeg-turbo's integer decode the only differences are the clamp and rounding.
    # Tolerance: what clamping our float decode changes in this network's logits, plus twice
    # what libjpeg's own choice of IDCT (islow vs float, both rounded) changes.
    clamp_effect = (clamped - exact).abs().max().item()
    rounding_effect = (on_float_idct - on_libjpeg).abs().max().item()
    deviation = (got - on_libjpeg).abs().max().item()
    assert deviation <= clamp_effect + 2 * rounding_effect + 1e-4 * scale
    assert deviation <= 0.01 * scale
    assert (got.argmax(1) == on_libjpeg.argmax(1)).float().mean().item() >= 0.99


def test_onnx_front_end_gives_the_rgb_logits(prepared):
    from dctnet.evaluate.predictors import Predictor
    from dctnet.evaluate.predictors import OnnxDCTPredictor
    from dctnet.models.onnx_frontend import frontend_macs

    photos = sample_photos()
    data = [photos[i].read_bytes() for i in PHOTOS] + [b"\xff\xd8 not a jpeg"]
    ref = OnnxDCTPredictor(ONNX_MODEL, mode="rgb", threads=2)
    dct64 = OnnxDCTPredictor(ONNX_MODEL, 64, threads=2)
    assert isinstance(dct64, Predictor) and dct64.name == "mobilenetv2-12-int8-dct64"
    assert ref.name == "mobilenetv2-12-int8-prepared-rgb" and ref.identity != dct64.identity
    lr, er = ref.predict_logits(data)
    ld, ed = dct64.predict_logits(data)
    assert er[-1] and ed[-1] and np.isnan(ld[-1]).all() and all(e is None for e in ed[:-1])
    # Bit-exact decode: identical inputs, identical logits, 100% top-1 agreement.
    np.testing.assert_array_equal(ld[:-1], lr[:-1])
    # Fewer bands change the input (and cost less).
    l8, _ = OnnxDCTPredictor(ONNX_MODEL, 8, threads=2).predict_logits(data[:2])
    assert not np.allclose(l8, lr[:2])
    assert frontend_macs(8) * 8 == frontend_macs(64)


def test_bands_drop_weights_and_macs():
    counted = {}
    for n in (64, 16, 4):
        with torch.device("meta"):
            m = create_model("resnet_from_rgb", bands=n)
        assert m.stem_conv.conv_y.in_channels == n and m.stem_conv.deconv_c.in_channels == 2 * n
        counted[n] = model_complexity("resnet_from_rgb", bands=n).macs
    rest = model_complexity("resnet50").macs - stem_macs(64)["rgb_conv1"]
    for n, macs in counted.items():
        assert macs == rest + stem_macs(n)["total"]        # hand formula == torch's count
    assert counted[64] > counted[16] > counted[4]


def test_checkpoint_via_cli_loads_everywhere(tmp_path, prepared):
    jpegs, y, cbcr = prepared
    torch.manual_seed(3)
    rgb = create_model("resnet18")
    weights = tmp_path / "r18.pt"
    torch.save(rgb.state_dict(), weights)
    out = tmp_path / "r18_dct8.pt"
    assert main(["convert", "--model", "resnet18", "--weights", str(weights), "--bands", "8", "--out", str(out)]) == 0
    loaded = load_model(out)
    assert loaded.model_name == "resnet_from_rgb" and loaded.layout == converted_layout(8)
    direct = from_rgb(rgb.eval(), 8)
    y8, c8 = to_tensor([read_dct(j) for j in jpegs[:2]], converted_layout(8))
    with torch.no_grad():
        torch.testing.assert_close(loaded(y8, c8), direct(y8, c8))
    from dctnet.classify import Classifier
    clf = Classifier("resnet_from_rgb", weights=out, batch_size=2)
    assert clf.kind == "dct" and clf.layout == converted_layout(8)
    preds = clf.predict(jpegs[:2], topk=1)
    assert [p.path for p in preds] == ["dct", "dct"]
    # The Classifier resizes like the RGB twin (shorter side 256, centre crop 224) in the DCT domain.
    assert clf.bundle.resize == 256
    yr, cr = to_tensor([read_dct(j) for j in jpegs[:2]], converted_layout(8), crop="center", size=224, resize=256)
    with torch.no_grad():
        assert [p[0][0] for p in preds] == direct(yr, cr).argmax(1).tolist()
    # Errors name the problem.
    assert main(["convert", "--model", "resnet18", "--weights", str(tmp_path / "missing.pt"), "--out",
                 str(tmp_path / "x.pt")]) == 1
    assert main(["convert", "--model", "resnet50_dct", "--weights", str(weights), "--out", str(tmp_path / "x.pt")]) == 1


def test_bad_inputs_raise(resnet50_pair):
    rgb, dct = resnet50_pair
    with pytest.raises(ValueError, match="already a DCT model"):
        from_rgb(dct)
    with pytest.raises(ValueError, match="late_concat"):
        dct(torch.zeros(1, 64, 28, 28), torch.zeros(1, 64, 14, 14))
    with pytest.raises(ValueError, match="half the y grid"):
        dct(torch.zeros(1, 64, 28, 28), torch.zeros(1, 128, 7, 14))
    with pytest.raises(ValueError, match="half the y grid"):   # odd grids: not whole 4:2:0 macroblocks
        dct(torch.zeros(1, 64, 27, 28), torch.zeros(1, 128, 13, 14))
    with pytest.raises(ValueError, match="two tensors"):
        dct(torch.zeros(1, 64, 28, 28))
    with pytest.raises(ValueError, match="clamp"):
        DCTFrontEnd(converted_layout(4), clamp="sometimes")
    with pytest.raises(ValueError, match="7x7 stride-2"):
        ConvertedFirstLayer(converted_layout(4), 64).fill_from(torch.nn.Conv2d(3, 64, 3), None, (0,) * 3, (1,) * 3)


def test_eval_gains_converted_rows(tmp_path):
    out = tmp_path / "run"
    code = main(["eval", str(sample_photos()[0].parent), "--limit", "2", "--qf", "50", "--no-plots", "--no-progress",
                 "--onnx-dct", f"{ONNX_MODEL}:64,4", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    text = json.dumps(summary)
    for name in ("mobilenetv2-12-int8-prepared-rgb", "mobilenetv2-12-int8-dct64", "mobilenetv2-12-int8-dct4"):
        assert name in text
    assert main(["eval", str(sample_photos()[0].parent), "--limit", "1", "--onnx-dct", f"{ONNX_MODEL}",
                 "--out", str(tmp_path / "bad")]) == 1


# --- any first convolution (issue 15) ----------------------------------------------------

def _first_convs():
    from dctnet.models.efficientnet import Conv2dSame
    return [Conv2dSame(3, 8, 3, stride=2), Conv2dSame(3, 8, 5, stride=2), Conv2dSame(3, 8, 3, stride=1),
            torch.nn.Conv2d(3, 8, 4, 4, 0), torch.nn.Conv2d(3, 8, 8, 8, 0), torch.nn.Conv2d(3, 8, 1, 2, 0),
            torch.nn.Conv2d(3, 8, 11, 4, 5), torch.nn.Conv2d(3, 8, (3, 5), 2, (1, 2)),
            torch.nn.Conv2d(3, 8, 9, 1, "same"), torch.nn.Conv2d(3, 8, 15, 2, 7)]


@pytest.mark.parametrize("index", range(10))
@pytest.mark.parametrize("bands,grid", [(64, (4, 6)), (6, (2, 2))])
def test_any_first_convolution_converts_exactly(index, bands, grid):
    from dctnet.models.convert import conv_geometry

    torch.manual_seed(index)
    conv = _first_convs()[index]
    bn = torch.nn.BatchNorm2d(8, eps=1e-3).eval()
    bn.running_mean.normal_(0, 0.2)
    bn.running_var.uniform_(0.5, 2.0)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.3, 0.25)
    layout = converted_layout(bands)
    ny, ncb, ncr = layout.channels_per_component
    g = torch.Generator().manual_seed(2)
    y = torch.randn(2, ny, *grid, generator=g) * 80
    cbcr = torch.randn(2, ncb + ncr, grid[0] // 2, grid[1] // 2, generator=g) * 60
    kernel, stride, padding = conv_geometry(conv)
    layer = ConvertedFirstLayer(layout, 8, kernel, stride, padding).fill_from(conv, bn, mean, std)
    with torch.no_grad():
        ref = bn(conv(DCTFrontEnd(layout, mean, std)(y, cbcr)))
        got = layer(y, cbcr)
    assert got.shape == ref.shape == (2, 8, 8 * grid[0] // stride, 8 * grid[1] // stride)
    torch.testing.assert_close(got, ref, atol=2e-5 * ref.abs().max().item(), rtol=0)


@pytest.mark.parametrize("kernel,stride,padding", [(3, 3, 1), (7, 2, 8), (7, 2, 2), (3, 2, (2, 2, 1, 1))])
def test_unconvertible_geometries_raise(kernel, stride, padding):
    with pytest.raises(ValueError, match="cannot convert"):
        ConvertedFirstLayer(converted_layout(4), 8, kernel, stride, padding)


def test_classifier_runs_converted_first_layers_factored_only_where_that_is_the_same_map():
    """Classifier switches the converted first layer of a model it builds to the factored form
    (cheaper on CPU) only when that gives the folded form's numbers; a caller's module is left
    alone, and a layer whose folded weights were changed (distillation, training) keeps them."""
    import copy
    import dctnet
    from dctnet.models import resolve
    from dctnet.models.convert import prefer_factored

    photos = [p.read_bytes() for p in sample_photos()[:4]]
    clf = dctnet.Classifier("efficientnet_lite0_dct", bands=16, batch_size=4)
    first = [m for m in clf.model.modules() if isinstance(m, ConvertedFirstLayer)]
    assert [m.factored for m in first] == [True]
    mine = resolve("efficientnet_lite0_dct", bands=16).model
    folded = dctnet.Classifier(mine, batch_size=4)
    assert not [m for m in folded.model.modules() if isinstance(m, ConvertedFirstLayer)][0].factored
    a, errors_a, _ = clf.predict_logits(photos)
    b, errors_b, _ = folded.predict_logits(photos)
    assert errors_a == errors_b == [None] * 4
    assert np.abs(a - b).max() <= 1e-4 * np.abs(b).max()
    assert (a.argmax(1) == b.argmax(1)).all()
    trained = copy.deepcopy(first[0])
    trained.factored = False
    with torch.no_grad():
        trained.conv_y.weight[:, 0] *= 1.01          # no longer the fold of its bases
    assert not trained.factored_matches()
    assert prefer_factored(trained) == 0 and not trained.factored
