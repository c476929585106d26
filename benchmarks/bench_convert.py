"""Converted resnet50 (exact decode path folded into conv1, issue 8) vs the RGB resnet50, CPU.

Same 8 prepared JPEGs (shared photos, shorter side 256, 224 crop on 16-pixel boundaries,
4:2:0) through both paths, float32, eval mode, batch 8:

* ``convert-prepare``: RGB = libjpeg-turbo decode (simplejpeg, islow, fancy upsampling) +
  normalise to ``(8, 3, 224, 224)`` [baseline]; DCT = ``read_dct_batch`` + ``to_tensor``
  (numba) to ``late_concat`` ``(8, n, 28, 28) + (8, 2n, 14, 14)``.
* ``convert-first-layer``: RGB ``bn1(conv1(x))`` [baseline] vs the converted first layer
  (Y conv + chroma transposed conv + constant + border term) at n = 64, 16, 8.
* ``convert-forward``: whole network on prepared inputs, RGB [baseline] vs converted.
* ``convert-end2end``: JPEG bytes -> logits, preparation + forward.

    python -m pytest benchmarks/bench_convert.py --benchmark-enable --benchmark-json=convert.json

With benchmarks disabled (the default test run) each body runs once on batch 1.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jpeg_fixtures import sample_photos
from dctnet import read_dct_batch
from dctnet.imaging import RGBPreprocess
from dctnet.models import create_model, from_rgb
from dctnet.imaging import prepare_jpeg
from dctnet.models import converted_layout
from dctnet.ops import to_tensor

BATCH = 8
ROUNDS = 5
BANDS = (64, 16, 8)


@pytest.fixture(scope="module")
def jpegs():
    photos = sample_photos()
    return [prepare_jpeg(photos[i].read_bytes()) for i in range(0, 80, 10)][:BATCH]


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    rgb = create_model("resnet50").eval()
    return {"rgb": rgb, **{n: from_rgb(rgb, n) for n in BANDS}}


PREP = RGBPreprocess(resize=None, crop=224)


def _prepare_rgb(data):
    batch, _ = PREP.batch(data, threads=2)
    return (torch.from_numpy(batch),)


def _prepare_dct(data, n):
    return to_tensor(read_dct_batch(data, threads=2), converted_layout(n))


def _info(benchmark, group, name, batch, baseline, **extra):
    benchmark.group = f"convert-{group}-cpu-b{BATCH}"
    benchmark.name = name
    benchmark.extra_info.update(items=batch, baseline=baseline, device="cpu", dtype="float32", batch=batch,
                                threads=torch.get_num_threads(), **extra)


def _measure(benchmark, fn):
    if benchmark.disabled:
        return benchmark(fn)
    fn()  # oneDNN primitive creation, numba compilation: outside the measured rounds
    return benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=1, iterations=1)


def _batch(benchmark, jpegs):
    return jpegs if not benchmark.disabled else jpegs[:1]


@pytest.mark.parametrize("path", ["rgb"] + [f"dct{n}" for n in BANDS])
def test_prepare(benchmark, jpegs, path):
    data = _batch(benchmark, jpegs)
    _info(benchmark, "prepare", path, len(data), path == "rgb")
    fn = (lambda: _prepare_rgb(data)) if path == "rgb" else (lambda: _prepare_dct(data, int(path[3:])))
    out = _measure(benchmark, fn)
    assert out[0].shape[0] == len(data)


@pytest.mark.parametrize("path", ["rgb"] + [f"dct{n}" for n in BANDS])
def test_first_layer(benchmark, jpegs, models, path):
    data = _batch(benchmark, jpegs)
    _info(benchmark, "first-layer", path, len(data), path == "rgb")
    if path == "rgb":
        (x,) = _prepare_rgb(data)
        rgb = models["rgb"]
        layer = lambda: rgb.bn1(rgb.conv1(x))  # noqa: E731
    else:
        y, cbcr = _prepare_dct(data, int(path[3:]))
        stem = models[int(path[3:])].stem_conv
        layer = lambda: stem(y, cbcr)  # noqa: E731

    def run():
        with torch.inference_mode():
            return layer()

    assert _measure(benchmark, run).shape == (len(data), 64, 112, 112)


@pytest.mark.parametrize("path", ["rgb"] + [f"dct{n}" for n in BANDS])
def test_forward(benchmark, jpegs, models, path):
    data = _batch(benchmark, jpegs)
    _info(benchmark, "forward", path, len(data), path == "rgb")
    inputs = _prepare_rgb(data) if path == "rgb" else _prepare_dct(data, int(path[3:]))
    model = models["rgb" if path == "rgb" else int(path[3:])]

    def run():
        with torch.inference_mode():
            return model(*inputs)

    out = _measure(benchmark, run)
    assert out.shape == (len(data), 1000) and torch.isfinite(out).all()


@pytest.mark.parametrize("path", ["rgb"] + [f"dct{n}" for n in BANDS])
def test_end2end(benchmark, jpegs, models, path):
    data = _batch(benchmark, jpegs)
    _info(benchmark, "end2end", path, len(data), path == "rgb")
    if path == "rgb":
        prep, model = (lambda: _prepare_rgb(data)), models["rgb"]
    else:
        n = int(path[3:])
        prep, model = (lambda: _prepare_dct(data, n)), models[n]

    def run():
        with torch.inference_mode():
            return model(*prep())

    out = _measure(benchmark, run)
    assert out.shape == (len(data), 1000) and np.isfinite(out.numpy()).all()
