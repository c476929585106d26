"""Coefficient reading against full RGB decoding and other readers (issue 2).

Corpora, made once from the shared sample photos:
  * ``orig``: the photos as they are (baseline; most 4:4:4, some 4:2:0, one gray);
  * ``420q90``: each photo re-encoded 4:2:0 quality 90 at its original size;
  * ``224q90``: each photo resized to 224x224 and encoded 4:2:0 quality 90.
Every benchmark call reads the whole corpus once (100 images), single thread unless said.

    python -m pytest benchmarks/bench_reader.py --benchmark-enable --benchmark-json=reader.json
"""

from __future__ import annotations

import numpy as np
import pytest

import dctnet

CORPORA = ("orig", "420q90", "224q90")


@pytest.fixture(scope="session")
def corpora(photos) -> dict[str, list[bytes]]:
    from PIL import Image
    from turbojpeg import TJPF_RGB, TJSAMP_420, TurboJPEG

    tj = TurboJPEG()
    out = {"orig": [p.read_bytes() for p in photos], "420q90": [], "224q90": []}
    for data in out["orig"]:
        rgb = tj.decode(data, pixel_format=TJPF_RGB)
        out["420q90"].append(tj.encode(rgb, quality=90, pixel_format=TJPF_RGB, jpeg_subsample=TJSAMP_420))
        small = np.asarray(Image.fromarray(rgb).resize((224, 224), Image.BILINEAR))
        out["224q90"].append(tj.encode(np.ascontiguousarray(small), quality=90, pixel_format=TJPF_RGB,
                                       jpeg_subsample=TJSAMP_420))
    return out


def megapixels(corpus: list[bytes]) -> float:
    return sum(h.width * h.height for h in map(dctnet.read_header, corpus)) / 1e6


def _setup(benchmark, corpus, name, baseline=False):
    benchmark.extra_info.update(items=len(corpus), mpix=megapixels(corpus), threads=1, baseline=baseline)
    benchmark.name = name  # shown in the ratio summary


@pytest.mark.parametrize("corpus_name", CORPORA)
def test_turbojpeg_rgb_decode(benchmark, corpora, corpus_name):
    """Reference: libjpeg-turbo's full decode to RGB (PyTurboJPEG over the system library)."""
    from turbojpeg import TJPF_RGB, TurboJPEG

    tj = TurboJPEG()
    corpus = corpora[corpus_name]
    benchmark.group = f"reader-{corpus_name}"
    _setup(benchmark, corpus, "rgb decode (PyTurboJPEG)", baseline=True)
    out = benchmark(lambda: [tj.decode(d, pixel_format=TJPF_RGB) for d in corpus])
    assert out[0].ndim == 3


@pytest.mark.parametrize("corpus_name", CORPORA)
def test_simplejpeg_rgb_decode(benchmark, corpora, corpus_name):
    import simplejpeg

    corpus = corpora[corpus_name]
    benchmark.group = f"reader-{corpus_name}"
    _setup(benchmark, corpus, "rgb decode (simplejpeg)")
    out = benchmark(lambda: [simplejpeg.decode_jpeg(d, colorspace="RGB") for d in corpus])
    assert out[0].ndim == 3


@pytest.mark.parametrize("corpus_name", CORPORA)
def test_read_dct(benchmark, corpora, corpus_name):
    corpus = corpora[corpus_name]
    benchmark.group = f"reader-{corpus_name}"
    _setup(benchmark, corpus, "dctnet.read_dct")
    out = benchmark(lambda: [dctnet.read_dct(d) for d in corpus])
    assert out[0].planes[0].dtype == np.int16


@pytest.mark.parametrize("corpus_name", CORPORA)
def test_jpeg2dct(benchmark, corpora, corpus_name):
    """jpeg2dct-numpy, the fastest Python reader (raw coefficients, its cheapest mode).

    Note: on non-4:2:0 colour files jpeg2dct re-encodes the image (measured; see benchmarks/README.md), so on
    ``orig`` it does different (and wrong) work; compare it on the 4:2:0 corpora.
    """
    from jpeg2dct.numpy import loads

    corpus = corpora[corpus_name]
    benchmark.group = f"reader-{corpus_name}"
    _setup(benchmark, corpus, "jpeg2dct-numpy loads")
    out = benchmark(lambda: [loads(d, normalized=False) for d in corpus])
    assert out[0][0].ndim == 3


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("corpus_name", ["420q90", "224q90"])
def test_read_dct_batch(benchmark, corpora, corpus_name, threads):
    corpus = corpora[corpus_name] * 2
    benchmark.group = f"batch-{corpus_name}"
    _setup(benchmark, corpus, f"read_dct_batch threads={threads}", baseline=threads == 1)
    benchmark.extra_info["threads"] = threads
    out = benchmark(lambda: dctnet.read_dct_batch(corpus, threads=threads))
    assert len(out) == len(corpus)
