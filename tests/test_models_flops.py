"""GMACs and parameters: torch's counter vs hand formulas, and the table of docs/architecture.md §5."""

from __future__ import annotations

import json

import pytest
import torch

from dctnet.cli import main as cli_main
from dctnet.models import count_macs, count_params, create_model, model_complexity
from dctnet.models.flops import PAPER_TABLE, bottleneck_macs, conv_macs
from dctnet.models.resnet import Bottleneck


@pytest.mark.parametrize("cin,width,cout,size,stride,kernel,v1", [
    (256, 64, 256, 56, 1, 3, False),
    (256, 128, 512, 56, 2, 3, True),
    (256, 128, 512, 56, 2, 3, False),
    (48, 64, 256, 28, 1, 1, False),
    (256, 64, 256, 28, 1, 2, False),   # the 2x2 "same" conv
    (64, 32, 128, 15, 2, 3, True),     # odd size: ceil division
])
def test_counter_matches_hand_formula_for_one_bottleneck(cin, width, cout, size, stride, kernel, v1):
    block = Bottleneck(cin, width, cout, stride=stride, kernel=kernel, stride_in_1x1=v1).eval()
    x = torch.zeros(1, cin, size, size)
    assert count_macs(block, x) == bottleneck_macs(cin, width, cout, size, size, stride, kernel, v1)
    # And the formula itself, written out for the first case (ResNet-50 layer1 identity block).
    if (cin, width, cout, size) == (256, 64, 256, 56):
        assert bottleneck_macs(cin, width, cout, size, size) == 56 * 56 * (256 * 64 + 9 * 64 * 64 + 64 * 256)


def _resnet50_hand_macs(v1: bool) -> int:
    """Stem + 16 bottlenecks + FC of ResNet-50 at 224x224, from the hand formula only."""
    total = conv_macs(3, 64, 7, 112, 112)
    size, cin = 56, 64
    for i, blocks in enumerate([3, 4, 6, 3]):
        width = 64 * 2 ** i
        for j in range(blocks):
            stride = 2 if (i > 0 and j == 0) else 1
            total += bottleneck_macs(cin, width, 4 * width, size, size, stride, 3, v1)
            size, cin = -(-size // stride), 4 * width
    return total + 2048 * 1000


def _dct_hand_macs(n: int) -> int:
    """docs/architecture.md §5's UpSampling-RFA DCT ResNet-50 from the hand formula (v1 strides)."""
    c, m, o = 3 * n, 4 * n, 16 * n
    at28 = 28 * 28
    total = at28 * (c * m + m * m + m * o + c * o)            # conv block, all 1x1
    total += bottleneck_macs(o, m, o, 28, 28, kernel=2) + bottleneck_macs(o, m, o, 28, 28, kernel=3)
    total += at28 * (o * 128 + 9 * 128 * 128 + 128 * 512 + o * 512)  # stage 3 conv block (always projects)
    total += 3 * bottleneck_macs(512, 128, 512, 28, 28)
    cin, size = 512, 28
    for width, blocks in ((256, 6), (512, 3)):
        for j in range(blocks):
            stride = 2 if j == 0 else 1
            total += bottleneck_macs(cin, width, 4 * width, size, size, stride, 3, True)
            size, cin = -(-size // stride), 4 * width
    return total + 2048 * 1000


def test_whole_networks_match_hand_formula():
    assert model_complexity("resnet50_v1").macs == _resnet50_hand_macs(v1=True)
    assert model_complexity("resnet50").macs == _resnet50_hand_macs(v1=False)
    for n in (64, 32, 16, 5):
        assert model_complexity(f"resnet50_dct_fbs{n}").macs == _dct_hand_macs(n)


@pytest.mark.parametrize("name,channels,paper_gmacs,paper_mparams,ours_gmacs,ours_mparams", PAPER_TABLE)
def test_paper_table_within_one_percent(name, channels, paper_gmacs, paper_mparams, ours_gmacs, ours_mparams):
    c = model_complexity(name)
    assert abs(c.gmacs / paper_gmacs - 1) < 0.01, (name, c.gmacs)
    assert abs(c.mparams / paper_mparams - 1) < 0.01, (name, c.mparams)
    # docs/architecture.md §5's reconstruction column, to its printed precision.
    assert round(c.gmacs, 3) == ours_gmacs and round(c.mparams, 2) == ours_mparams


def test_params_on_meta_equal_real_model():
    real = create_model("resnet50_dct_fbs16")
    assert model_complexity("resnet50_dct_fbs16").params == count_params(real) == 25_489_224


def test_macs_scale_with_image_size():
    # Everything is convolutional except the FC: MACs - FC scale with the pixel count.
    fc = 2048 * 1000
    a, b = model_complexity("resnet50_dct_fbs16", 224), model_complexity("resnet50_dct_fbs16", 448)
    assert b.macs - fc == 4 * (a.macs - fc)
    assert b.input_shapes == ((48, 56, 56),)
    with pytest.raises(ValueError, match="multiple of 8x8"):
        model_complexity("resnet50_dct_fbs16", 100)


def test_bench_flops_cli_prints_table_and_convention(capsys):
    assert cli_main(["bench", "flops"]) == 0
    out = capsys.readouterr().out
    assert "multiply-accumulates of conv + linear" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("resnet50")}
    assert set(rows) == {r[0] for r in PAPER_TABLE}
    assert rows["resnet50_dct_fbs16"][3:5] == ["3.193", "25.49"]
    assert rows["resnet50_v1"][3:5] == ["3.858", "25.56"]


def test_bench_flops_cli_json_and_patterns(capsys):
    assert cli_main(["bench", "flops", "resnet50_dct_fbs1?", "-s", "112", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["model"] for r in rows] == [f"resnet50_dct_fbs1{i}" for i in range(10)]
    assert all(r["image_size"] == 112 for r in rows)
    assert rows[6]["input"] == "48x14x14"
    assert cli_main(["bench", "flops", "no_such_model"]) == 2
    assert "no registered model" in capsys.readouterr().err


def _lite0_dct_first_layer_macs(n: int, px: int = 224) -> int:
    """Hand formula of efficientnet_lite0_dct's converted stem (32 channels, r = 4 outputs per
    block and axis, so 16 * 32 = 512 conv channels): the Y conv (n bands, 2x2 blocks) on the
    px/8 grid, the chroma transposed conv (2n bands, 4x4 taps) on the px/16 grid, and the
    border term (edge samples of 2n bands on 4 sides; colour conversion of the strips' pixel
    windows, 3 rows / columns by the padded side; the 3x3x3 RGB conv on one output row or
    column per side)."""
    hb, ho = px // 8, px // 2
    conv_y = n * 2 * 2 * 512 * hb * hb
    deconv = 2 * n * 4 * 4 * 512 * (hb // 2) ** 2
    edge = 2 * n * 8 * 2 * 2 * (hb // 2)
    colour = 2 * 3 * (2 * 3 * (px + 1) + 2 * 3 * (px - 3))
    conv = 32 * 3 * 3 * 3 * (2 * ho + 2 * (ho - 2))
    return conv_y + deconv + edge + colour + conv


@pytest.mark.parametrize("n", [64, 32, 16, 8, 4])
def test_first_layer_macs_of_the_converted_lite0(n):
    c = model_complexity("efficientnet_lite0_dct", 224, bands=n)
    assert c.first_layer_name == "stem_conv"
    assert c.first_layer_macs == _lite0_dct_first_layer_macs(n)
    rgb = model_complexity("efficientnet_lite0", 224)
    assert rgb.first_layer_name == "_conv_stem" and rgb.first_layer_macs == 32 * 27 * 112 * 112
    # the rest of the network is the RGB one: the totals differ by the first layers only
    assert c.macs - c.first_layer_macs == rgb.macs - rgb.first_layer_macs


def test_bench_flops_bands_rows(capsys):
    assert cli_main(["bench", "flops", "efficientnet_lite0*", "--bands", "64,8", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    dct = [r for r in rows if r["model"] == "efficientnet_lite0_dct"]
    assert [r["bands"] for r in dct] == [64, 8]
    assert [r["input"] for r in dct] == ["64x28x28 + 128x14x14", "8x28x28 + 16x14x14"]
    assert [r["first_layer_mmacs"] for r in dct] == [round(_lite0_dct_first_layer_macs(n) / 1e6, 3) for n in (64, 8)]
    rgb = [r for r in rows if r["model"] == "efficientnet_lite0"]
    assert len(rgb) == 1 and "bands" not in rgb[0] and rgb[0]["first_layer"] == "_conv_stem"
    assert cli_main(["bench", "flops", "efficientnet_lite0_dct", "--bands", "8,65"]) == 2
    assert "--bands must be in 1..64" in capsys.readouterr().err
    assert cli_main(["bench", "flops", "resnet50_v1", "--bands", "8"]) == 2
    assert "none of resnet50_v1 is built with bands" in capsys.readouterr().err
