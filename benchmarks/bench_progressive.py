"""Band-ordered progressive files and the band-limited read (issue 17).

Corpora, made once from the 100 shared sample photos (each as a baseline file and as its
band-ordered version, groups 1, 6, 16, 64, made with ``transcode_progressive``):
  * ``256``: shorter side 256, 4:2:0 quality 90 (``dctnet prepare``'s output);
  * ``orig420``: original size, 4:2:0 quality 90 (``dctnet prepare --short-side 0``);
  * ``orig``: the photos as they are (baseline; 74 4:4:4, 25 4:2:0, 1 gray).
Every call reads the whole corpus once, single thread. The reference of each ``reader-*``
group is libjpeg-turbo's RGB decode of the band-ordered file (PyTurboJPEG), as in
bench_reader.py; ``tensor-*`` groups compare ``read_to_tensor`` (FBS-16 layout) on the
band-ordered files with the same on the baseline files.

    python -m pytest benchmarks/bench_progressive.py --benchmark-enable --benchmark-min-rounds=10

The README table comes from the interleaved runner (every round times each contender once,
in turn, so that load from other processes hits them alike; medians and quartiles of the
per-round ratios) and the deterministic size / bytes-read report:

    DCTNET_SHARED=/path/to/shared python benchmarks/bench_progressive.py [rounds]
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import dctnet
from dctnet.codec import DEFAULT_RESTART_INTERVAL, scan_script, transcode_progressive

GROUPS = (1, 6, 16, 64)
#: Groups matched to an FBS-16 model: DC, bands 1-15, the rest. One AC scan per component
#: before the read point instead of two (one end-of-band symbol per block, not two).
MATCHED_GROUPS = (1, 16, 64)
CORPORA = ("256", "orig420", "orig")
TENSOR_SIZE = {"256": 224, "orig420": 96}   # crops that every image of the corpus holds


def make_corpora(photos) -> dict[str, tuple[list[bytes], list[bytes]]]:
    """corpus -> (baseline files, band-ordered files)."""
    from dctnet.imaging import decode_rgb, encode_jpeg, resize_shorter

    out = {}
    rgbs = [decode_rgb(p) for p in photos]
    base = {"256": [encode_jpeg(resize_shorter(rgb, 256), 90, subsampling="420") for rgb in rgbs],
            "orig420": [encode_jpeg(rgb, 90, subsampling="420") for rgb in rgbs],
            "orig": [p.read_bytes() for p in photos]}
    for name, files in base.items():
        out[name] = (files, [transcode_progressive(f, GROUPS) for f in files])
    return out


@pytest.fixture(scope="session")
def band_corpora(photos):
    return make_corpora(photos)


def contenders(base: list[bytes], prog: list[bytes], corpus: str) -> dict[str, callable]:
    """name -> one pass over the corpus; the first is the reference."""
    from turbojpeg import TJPF_RGB, TurboJPEG

    tj = TurboJPEG()
    return {
        "rgb decode, band-ordered file (PyTurboJPEG)": lambda: [tj.decode(d, pixel_format=TJPF_RGB) for d in prog],
        "rgb decode, baseline file": lambda: [tj.decode(d, pixel_format=TJPF_RGB) for d in base],
        "read_dct, baseline file": lambda: [dctnet.read_dct(d) for d in base],
        "read_dct, band-ordered file (whole)": lambda: [dctnet.read_dct(d) for d in prog],
        "read_dct(bands=16), band-ordered": lambda: [dctnet.read_dct(d, bands=16) for d in prog],
        "read_dct(bands=6), band-ordered": lambda: [dctnet.read_dct(d, bands=6) for d in prog],
    }


def tensor_contenders(base: list[bytes], prog: list[bytes], corpus: str,
                      matched: list[bytes] | None = None) -> dict[str, callable]:
    """The reference (baseline files) first; ``matched``: the same files band-ordered with
    :data:`MATCHED_GROUPS` (made here when not given)."""
    from dctnet.ops import DCTLayout, read_to_tensor

    layout, size = DCTLayout("upsampling", 16), TENSOR_SIZE[corpus]
    matched = [transcode_progressive(f, MATCHED_GROUPS) for f in base] if matched is None else matched
    # what `dctnet prepare --progressive 1,16,64` writes: restart intervals, so that the crop
    # route decodes only the intervals around the crop
    prepared = [transcode_progressive(f, MATCHED_GROUPS, restart_interval=DEFAULT_RESTART_INTERVAL) for f in base]
    # the converted EfficientNet-Lite0's layout: chroma at half resolution, dequantised
    converted = DCTLayout("late_concat", 16, dequantize=True)
    return {
        "read_to_tensor n=16, baseline files": lambda: read_to_tensor(base, layout, size=size, threads=1),
        "read_to_tensor n=16, band-ordered files": lambda: read_to_tensor(prog, layout, size=size, threads=1),
        "read_to_tensor n=16, band-ordered 1,16,64 files":
            lambda: read_to_tensor(matched, layout, size=size, threads=1),
        f"read_to_tensor n=16, band-ordered 1,16,64 + restart {DEFAULT_RESTART_INTERVAL} files":
            lambda: read_to_tensor(prepared, layout, size=size, threads=1),
        "late_concat layout: baseline files": lambda: read_to_tensor(base, converted, size=size, threads=1),
        "late_concat layout: band-ordered 1,16,64 files":
            lambda: read_to_tensor(matched, converted, size=size, threads=1),
        f"late_concat layout: band-ordered 1,16,64 + restart {DEFAULT_RESTART_INTERVAL} files":
            lambda: read_to_tensor(prepared, converted, size=size, threads=1),
        # the Classifier's geometry (resampled in the DCT domain, every band read)
        "late_concat, resize=256: baseline files":
            lambda: read_to_tensor(base, converted, size=224, resize=256, threads=1),
        f"late_concat, resize=256: band-ordered 1,16,64 + restart {DEFAULT_RESTART_INTERVAL} files":
            lambda: read_to_tensor(prepared, converted, size=224, resize=256, threads=1),
    }

#: The tensor contenders' groups, each against its first (its own baseline).
TENSOR_GROUPS = ((0, 1, 2, 3), (4, 5, 6), (7, 8))


@pytest.mark.parametrize("index", range(6))
@pytest.mark.parametrize("corpus", CORPORA)
def test_reader(benchmark, band_corpora, corpus, index):
    base, prog = band_corpora[corpus]
    name, run = list(contenders(base, prog, corpus).items())[index]
    benchmark.group = f"reader-{corpus}"
    benchmark.name = name
    benchmark.extra_info.update(items=len(base), threads=1, baseline=index == 0)
    out = benchmark(run)
    assert len(out) == len(base)


@pytest.mark.parametrize("index", range(9))
@pytest.mark.parametrize("corpus", ["256", "orig420"])
def test_read_to_tensor(benchmark, band_corpora, corpus, index):
    base, prog = band_corpora[corpus]
    name, run = list(tensor_contenders(base, prog, corpus).items())[index]
    benchmark.group = f"tensor-{corpus}"
    benchmark.name = name
    benchmark.extra_info.update(items=len(base), threads=1, baseline=index in [g[0] for g in TENSOR_GROUPS])
    out = benchmark(run)
    out = out[0] if isinstance(out, tuple) else out          # late_concat: (y, cbcr)
    assert out.shape[0] == len(base)


# --- the README tables ------------------------------------------------------------------

def interleaved(runs: dict[str, callable], rounds: int) -> dict[str, tuple[float, float, float]]:
    """name -> (median, 25%, 75%) of its time / the first contender's time, round by round."""
    for run in runs.values():
        run()                                            # warm up
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    ref = np.array(times[next(iter(runs))])
    return {name: tuple(np.percentile(np.array(t) / ref, [50, 25, 75])) for name, t in times.items()}


def sizes(base: list[bytes], prog: list[bytes], tmp: Path) -> dict[str, float]:
    """Total bytes of the corpus in each form, and what band-limited reads of paths read."""
    optimized, standard = [], []
    for i, data in enumerate(base):
        src = tmp / f"{i}.jpg"
        src.write_bytes(data)
        optimized.append(len(subprocess.run(["jpegtran", "-optimize", str(src)], capture_output=True, check=True).stdout))
        standard.append(len(subprocess.run(["jpegtran", "-progressive", str(src)], capture_output=True,
                                           check=True).stdout))
        (tmp / f"{i}p.jpg").write_bytes(prog[i])
    out = {"baseline": sum(map(len, base)), "baseline, Huffman-optimised": sum(optimized),
           "progressive (jpegtran standard script)": sum(standard), "band-ordered 1,6,16,64": sum(map(len, prog)),
           f"band-ordered 1,16,64 + restart {DEFAULT_RESTART_INTERVAL}": sum(
               len(transcode_progressive(f, MATCHED_GROUPS, restart_interval=DEFAULT_RESTART_INTERVAL)) for f in base),
           "band-ordered 1,16,64": sum(len(transcode_progressive(f, MATCHED_GROUPS)) for f in base)}
    for n in (1, 6, 16, 32):
        out[f"read from disk, bands={n}"] = sum(dctnet.read_dct(tmp / f"{i}p.jpg", bands=n).bytes_read
                                                for i in range(len(prog)))
        out[f"decoded prefix, bands={n}"] = sum(scan_script(p).prefix_bytes(n) for p in prog)
    return out


def main(rounds: int) -> None:
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from jpeg_fixtures import sample_photos

    corpora = make_corpora(sample_photos())
    for corpus, (base, prog) in corpora.items():
        with tempfile.TemporaryDirectory() as tmp:
            size = sizes(base, prog, Path(tmp))
        print(f"\n[{corpus}] bytes (per image) and against baseline")
        for name, value in size.items():
            print(f"  {name:<45} {value / len(base):10.0f}  {value / size['baseline']:6.3f}")
        print(f"[{corpus}] time / RGB decode of the band-ordered file: median [25%..75%] of {rounds} rounds")
        for name, (med, lo, hi) in interleaved(contenders(base, prog, corpus), rounds).items():
            print(f"  {name:<45} {med:6.3f} [{lo:.3f}..{hi:.3f}]")
        if corpus in TENSOR_SIZE:
            runs = tensor_contenders(base, prog, corpus)
            names = list(runs)
            # each layout against its own baseline: the ResNet layout's runs, then the converted model's
            for group in ([names[i] for i in g] for g in TENSOR_GROUPS):
                ratios = interleaved({n: runs[n] for n in group}, rounds)
                for name, (med, lo, hi) in list(ratios.items())[1:]:
                    print(f"  {name}: time / baseline files' {med:.3f} [{lo:.3f}..{hi:.3f}] "
                          f"-> {1 / med:.2f}x [{1 / hi:.2f}..{1 / lo:.2f}] the speed")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
