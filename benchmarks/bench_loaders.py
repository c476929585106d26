"""Training data loaders (issue 7): DCT-domain loader vs a torchvision-style RGB loader.

Files: the 100 shared ImageNet photos prepared as the papers do (``dctnet prepare
--short-side 256 --qf 90``: 4:2:0 JPEGs, shorter side 256), one class per photo.

Groups (one training epoch per round, batch 32, last partial batch dropped: 96 images):
  loaders-<W>w   the same files with W workers each:
                 baseline: RGB ``DataLoader`` (W worker processes) doing libjpeg-turbo decode +
                 RandomResizedCrop(224) (torchvision's sampling, Pillow bilinear) + horizontal
                 flip + normalise, per image, default collate;
                 DCT ``DCTLoader`` (W threads): batch read (read_dct_batch) + block-aligned
                 random crop 224 + DCT-domain flip + band selection (n = 64 and 16) +
                 dequantise + normalise (numba) for a whole batch.
  dct-batching   DCT pipeline without workers: per-image ``__getitem__`` + collate (what a
                 plain ``Dataset`` does) vs one read + one kernel per batch.

Timing run:
    python -m pytest benchmarks/bench_loaders.py --benchmark-enable --benchmark-json=loaders.json
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from dctnet.data.datasets import ClassList, open_dataset
from dctnet.data.loaders import (DCTDataset, DCTLoader, RGBTrainDataset, SeededBatchSampler, SeededSampler)
from dctnet.data.prepare import prepare_tree
from dctnet.ops import DCTLayout

SHARED = Path(os.environ.get("DCTNET_SHARED", Path(__file__).resolve().parents[2] / "shared"))
SAMPLE_DIR = SHARED / "data" / "imagenet-sample"
BATCH = 32
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    if not sorted(SAMPLE_DIR.glob("*.JPEG")):
        raise RuntimeError(f"no sample photos under {SAMPLE_DIR} (set DCTNET_SHARED)")
    dst = tmp_path_factory.mktemp("prepared256q90")
    report = prepare_tree(SAMPLE_DIR, dst, short_side=256, qfs=[90], progress=False)
    assert not report.failed
    ds = open_dataset(dst, classes=SHARED / "data" / "imagenet-classes.tsv")
    assert len(ds) == 100
    return ds


def _layout(n: int) -> DCTLayout:
    c = 3 * n
    return DCTLayout("upsampling", n).with_stats([0.0] * c, [1.0] * c)


def _epoch_runner(loader):
    state = {"epoch": 0}

    def run() -> int:
        loader.set_epoch(state["epoch"])
        state["epoch"] += 1
        count = 0
        for x, y in loader:
            count += len(y)
        return count

    return run


def _rgb_loader(ds, workers: int):
    sampler = SeededSampler(len(ds), shuffle=True, drop_last=True)
    loader = torch.utils.data.DataLoader(RGBTrainDataset(ds, 224, MEAN, STD), batch_size=BATCH, sampler=sampler,
                                         num_workers=workers, drop_last=True, persistent_workers=workers > 0)

    class Wrapped:
        def set_epoch(self, e):
            sampler.set_epoch(e)

        def __iter__(self):
            return iter(loader)

    return Wrapped()


def _dct_loader(ds, n: int, workers: int):
    dataset = DCTDataset(ds, _layout(n), 224, train=True, threads=1 if workers else (os.cpu_count() or 1))
    return DCTLoader(dataset, SeededBatchSampler(len(ds), BATCH, seed=0), workers=workers, pin_memory=False)


def _measure(benchmark, run, **info):
    count = run()  # warm-up: worker start, numba compilation, page cache
    benchmark.extra_info.update(items=count, batch=BATCH, **info)
    result = benchmark.pedantic(run, rounds=5, warmup_rounds=0, iterations=1)
    assert result == count == 96


@pytest.mark.parametrize("workers", [2])
@pytest.mark.benchmark(group="loaders-2w")
def test_rgb_dataloader_rrc_flip_normalise(benchmark, prepared, workers):
    _measure(benchmark, _epoch_runner(_rgb_loader(prepared, workers)), workers=workers, baseline=True,
             pipeline="decode + RandomResizedCrop 224 + flip + normalise (processes)")


@pytest.mark.parametrize("n", [64, 16])
@pytest.mark.parametrize("workers", [2])
@pytest.mark.benchmark(group="loaders-2w")
def test_dct_loader_random_crop_flip(benchmark, prepared, workers, n):
    _measure(benchmark, _epoch_runner(_dct_loader(prepared, n, workers)), workers=workers, bands=n,
             pipeline="read_dct_batch + block crop 224 + DCT flip + to_tensor (threads)")


@pytest.mark.benchmark(group="dct-batching")
def test_dct_per_item_getitem_and_collate(benchmark, prepared):
    dataset = DCTDataset(prepared, _layout(64), 224, train=True)
    sampler = SeededSampler(len(prepared), shuffle=True, drop_last=True)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, sampler=sampler, num_workers=0, drop_last=True)

    class Wrapped:
        def set_epoch(self, e):
            sampler.set_epoch(e)

        def __iter__(self):
            return iter(loader)

    _measure(benchmark, _epoch_runner(Wrapped()), workers=0, bands=64, baseline=True,
             pipeline="per-image read_dct + to_tensor, default collate")


@pytest.mark.benchmark(group="dct-batching")
def test_dct_batch_level(benchmark, prepared):
    _measure(benchmark, _epoch_runner(_dct_loader(prepared, 64, 0)), workers=0, bands=64,
             pipeline="read_dct_batch + to_tensor per batch")


def test_classes_of_the_sample_are_known(prepared):
    assert isinstance(prepared.classes, ClassList) and len(set(prepared.labels)) == 100
