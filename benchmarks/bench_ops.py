"""Speed of dctnet.ops (issue 3).

Groups (baseline of each marked with ``extra_info["baseline"]``, see benchmarks/conftest.py):
  ops-to_tensor-64x224-n<bands>-<threads>t
                         to_tensor on 64 images of 224x224 4:2:0 (q90), n = 64 and 16 bands,
                         torch reference (baseline) vs numba, 1 and 2 threads, into a
                         preallocated buffer.
  input-prep-<threads>t  per-image input preparation for deployment, the 100 sample photos:
                         RGB path (libjpeg-turbo decode of the original + resize shorter side
                         256 + centre crop 224 + normalise; dctnet.imaging) vs DCT path
                         (the same photos prepared once at shorter side 256, q90, 4:2:0:
                         read_dct_batch + centre crop 224 + to_tensor, n = 64 and 16; and the
                         same fused: read_to_tensor, each image gathered by the reader thread
                         that decoded it).
  resize-originals-<threads>t
                         the 100 original photos as users have them (mostly 4:4:4, ~500x375),
                         RGB path (baseline, as above) vs read_to_tensor(..., size=224,
                         resize=256): the same geometry in the DCT domain (issue 14), n = 64
                         and 16; and the reader alone on the originals (the ceiling).

Timing run, then the README tables (from each benchmark's fastest round; pass ``median`` as a
second argument for medians):
    python -m pytest benchmarks/bench_ops.py --benchmark-enable --benchmark-min-rounds=10 \
        --benchmark-json=results.json
    python benchmarks/bench_ops.py results.json
"""

from __future__ import annotations

import io
import json
import sys

import numba
import numpy as np
import pytest
import torch
from PIL import Image

import dctnet
from dctnet.imaging import RGBPreprocess, decode_rgb, resize_shorter
from dctnet.ops import DCTLayout, output_shapes, read_to_tensor, to_tensor
from dctnet.ops.resize import clear_plan_caches


def _encode(pixels: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality, subsampling=2)   # 4:2:0, IJG tables
    return buf.getvalue()


@pytest.fixture(scope="module")
def corpora(photos) -> dict[str, list[bytes]]:
    """Original photo bytes, the papers' preparation (shorter side 256, q90, 4:2:0), 224x224 crops."""
    original = [p.read_bytes() for p in photos]
    prepared, crops = [], []
    for data in original:
        pixels = resize_shorter(decode_rgb(data), 256)
        prepared.append(_encode(pixels))
        h, w = pixels.shape[:2]
        crops.append(_encode(np.ascontiguousarray(pixels[(h - 224) // 2:(h - 224) // 2 + 224,
                                                         (w - 224) // 2:(w - 224) // 2 + 224])))
    return {"original": original, "prepared": prepared, "crops224": crops}


@pytest.fixture
def threads(request):
    """Set numba's and torch's thread counts for one benchmark, restore afterwards."""
    n = request.param
    old_numba, old_torch = numba.get_num_threads(), torch.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(n)
    yield n
    numba.set_num_threads(old_numba)
    torch.set_num_threads(old_torch)


@pytest.mark.parametrize("threads", [1, 2], indirect=True)
@pytest.mark.parametrize("bands", [64, 16])
@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_to_tensor_batch64(benchmark, corpora, backend, bands, threads):
    benchmark.group = f"ops-to_tensor-64x224-n{bands}-{threads}t"
    images = dctnet.read_dct_batch(corpora["crops224"][:64])
    assert all(im.subsampling == "4:2:0" and im.block_shapes[0] == (28, 28) for im in images)
    layout = DCTLayout("upsampling", bands)
    out = torch.empty(output_shapes(layout, 64, 28, 28)[0])
    to_tensor(images, layout, backend=backend, out=out)                   # warm-up (numba: load the cache)
    benchmark.extra_info.update(device="cpu", batch=64, bands=bands, threads=threads, dtype="float32",
                                backend=backend, items=64, baseline=backend == "torch")
    result = benchmark(to_tensor, images, layout, backend=backend, out=out)
    assert result is out and out.shape == (64, 3 * bands, 28, 28)


def _read_only(data: list[bytes], threads: int):
    """The reader alone (the bound for a DCT path): read every file, keep a token of each."""
    def run():
        images = dctnet.read_dct_batch(data, threads=threads)
        return torch.from_numpy(np.stack([im.planes[0][:2, :2] for im in images]).astype(np.float32))
    return run


@pytest.mark.parametrize("threads", [1, 2], indirect=True)
@pytest.mark.parametrize("path", ["rgb", "dct-n64", "dct-n16", "fused-n64", "fused-n16", "dct-read-only"])
def test_input_preparation(benchmark, corpora, path, threads):
    benchmark.group = f"input-prep-{threads}t"
    n = len(corpora["original"])
    benchmark.extra_info.update(device="cpu", threads=threads, items=n, dtype="float32", path=path,
                                baseline=path == "rgb")
    if path == "rgb":
        prep = RGBPreprocess(resize=256, crop=224)
        out = np.empty((n, 3, 224, 224), np.float32)
        data = corpora["original"]

        def run():
            return prep.batch(data, threads=threads, out=out)[0]
    elif path == "dct-read-only":                 # the reader alone: the bound for the DCT path
        data = corpora["prepared"]

        run = _read_only(data, threads)
    else:
        layout = DCTLayout("upsampling", int(path.rsplit("-n", 1)[1]))
        out = torch.empty(output_shapes(layout, n, 28, 28)[0])
        data = corpora["prepared"]
        if path.startswith("fused"):
            read_to_tensor(data[:2], layout, size=224, out=out[:2])      # warm-up (load the cfunc)

            def run():
                return read_to_tensor(data, layout, size=224, out=out, threads=threads)
        else:
            to_tensor(dctnet.read_dct_batch(data[:2]), layout, crop="center", size=224, out=out[:2])

            def run():
                images = dctnet.read_dct_batch(data, threads=threads)
                return to_tensor(images, layout, crop="center", size=224, out=out)
    result = benchmark(run)
    assert result.shape[0] == n and bool(np.isfinite(np.asarray(result[:2])).all())


@pytest.mark.parametrize("threads", [1, 2], indirect=True)
@pytest.mark.parametrize("path", ["rgb", "resize-n64", "resize-n16", "resize-lc-n64", "resize-lc-n16", "resize-n16-uncached",
                                  "read-only"])
def test_resize_originals(benchmark, corpora, path, threads):
    benchmark.group = f"resize-originals-{threads}t"
    data = corpora["original"]
    n = len(data)
    benchmark.extra_info.update(device="cpu", threads=threads, items=n, dtype="float32", path=path,
                                baseline=path == "rgb")
    if path == "rgb":
        prep = RGBPreprocess(resize=256, crop=224)
        out = np.empty((n, 3, 224, 224), np.float32)

        def run():
            return prep.batch(data, threads=threads, out=out)[0]
    elif path == "read-only":
        run = _read_only(data, threads)
    else:
        # resize-n*: the ResNet DCT layout (chroma upsampled to the luma grid, 3n channels);
        # resize-lc-n*: the converted models' (efficientnet_lite0_dct: late_concat, dequantised)
        # resize-*-uncached: every round plans its operators anew (a stream of photo sizes never
        # seen before; 58 distinct sizes among the 100 photos)
        uncached = path.endswith("-uncached")
        bands = int(path.removesuffix("-uncached").rsplit("-n", 1)[1])
        layout = (DCTLayout("late_concat", bands, dequantize=True) if "-lc-" in path
                  else DCTLayout("upsampling", bands))
        out = tuple(torch.empty(s) for s in output_shapes(layout, n, 28, 28))
        read_to_tensor(data[:2], layout, size=224, resize=256, out=tuple(t[:2] for t in out))   # warm-up (numba cache)

        def run():
            if uncached:
                clear_plan_caches()
            read_to_tensor(data, layout, size=224, resize=256, out=out if len(out) > 1 else out[0], threads=threads)
            return out[0]
    result = benchmark(run)
    assert result.shape[0] == n and bool(np.isfinite(np.asarray(result[:2])).all())


def _ratios(path: str, stat: str = "min") -> None:
    """Print the tables of benchmarks/README.md from a --benchmark-json file.

    ``min`` by default: on a shared machine other processes only ever add time, so the
    fastest round is the most faithful estimate of the code's own cost.
    """
    bench = json.load(open(path))["benchmarks"]
    by = {(b["group"], b["name"]): b for b in bench}
    if ("ops-to_tensor-64x224-n64-1t", "test_to_tensor_batch64[torch-64-1]") in by:
        _ops_tables(by, stat)
    _resize_table(by, stat)


def _ops_tables(by: dict, stat: str) -> None:
    print("| bands | threads | torch ms/batch | numba ms/batch | speed-up |\n|---|---|---|---|---|")
    for bands in (64, 16):
        for t in (1, 2):
            ms = {be: by[(f"ops-to_tensor-64x224-n{bands}-{t}t", f"test_to_tensor_batch64[{be}-{bands}-{t}]")]
                  ["stats"][stat] * 1e3
                  for be in ("torch", "numba")}
            print(f"| {bands} | {t} | {ms['torch']:.2f} | {ms['numba']:.2f} | {ms['torch'] / ms['numba']:.1f}x |")
    paths = ("fused-n64", "fused-n16", "dct-n64", "dct-n16", "dct-read-only")
    print("\n| threads | RGB img/s | " + " | ".join(f"{p} img/s | ratio" for p in paths) + " |\n"
          + "|---" * (2 + 2 * len(paths)) + "|")
    for t in (1, 2):
        ips = {}
        for p in ("rgb", *paths):
            b = by[(f"input-prep-{t}t", f"test_input_preparation[{p}-{t}]")]
            ips[p] = b["extra_info"]["items"] / b["stats"][stat]
        print(f"| {t} | {ips['rgb']:.0f} | " + " | ".join(f"{ips[p]:.0f} | {ips[p] / ips['rgb']:.1f}x"
                                                         for p in paths) + " |")


def _resize_table(by: dict, stat: str) -> None:
    paths = [p for p in ("resize-n64", "resize-n16", "resize-lc-n64", "resize-lc-n16", "resize-n16-uncached", "read-only")
             if ("resize-originals-1t", f"test_resize_originals[{p}-1]") in by]
    if ("resize-originals-1t", "test_resize_originals[rgb-1]") not in by:
        return
    print("\n| threads | RGB img/s | " + " | ".join(f"{p} img/s | ratio" for p in paths) + " |\n"
          + "|---" * (2 + 2 * len(paths)) + "|")
    for t in (1, 2):
        if (f"resize-originals-{t}t", f"test_resize_originals[rgb-{t}]") not in by:
            continue
        ips = {p: by[(f"resize-originals-{t}t", f"test_resize_originals[{p}-{t}]")]["extra_info"]["items"]
               / by[(f"resize-originals-{t}t", f"test_resize_originals[{p}-{t}]")]["stats"][stat]
               for p in ("rgb", *paths)}
        print(f"| {t} | {ips['rgb']:.0f} | " + " | ".join(f"{ips[p]:.0f} | {ips[p] / ips['rgb']:.1f}x"
                                                         for p in paths) + " |")


if __name__ == "__main__":
    _ratios(sys.argv[1], *sys.argv[2:3])
