"""Training data pipelines: seeded sharded samplers, the DCT loader (block-aligned random
crop + exact flip, checked against slices of the uncropped tensor), the torchvision-style RGB
pipeline, error reporting."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from dctnet import JPEGError, read_dct_batch
from dctnet.data.datasets import open_dataset
from dctnet.data.loaders import (BatchRequest, DCTDataset, DCTLoader, ItemRequest, RGBTrainDataset, SeededBatchSampler,
                                 SeededSampler, make_loader, random_resized_crop_box)
from dctnet.imaging import decode_rgb, resize_shorter
from dctnet.data.synthetic import SyntheticSpec, make_synthetic_dataset
from dctnet.ops import DCTLayout, to_tensor


def open_bytes(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    paths = make_synthetic_dataset(root, SyntheticSpec(train_per_class=3, val_per_class=1, size=64))
    return open_dataset(paths["train"], classes=paths["classes"])


# --------------------------------------------------------------------------- samplers

@pytest.mark.parametrize("drop_last", [True, False])
def test_batch_sampler_shards_cover_the_epoch_once(drop_last):
    n, b = 23, 4
    shards = [SeededBatchSampler(n, b, shuffle=True, drop_last=drop_last, seed=3, rank=r, world_size=2)
              for r in range(2)]
    seen = []
    for s in shards:
        s.set_epoch(5)
        batches = list(s)
        assert len(batches) == len(s)
        assert all(len(r.indices) == b for r in batches) or not drop_last
        seen += [i for r in batches for i in r.indices]
    if drop_last:
        assert len(seen) == len(set(seen))           # no image twice in an epoch
        assert len(seen) == 2 * ((n // 2) // b) * b
    else:
        assert set(seen) == set(range(n))            # DistributedSampler pads: every image at least once


def test_batch_sampler_is_deterministic_per_epoch_and_resumable():
    s = SeededBatchSampler(40, 8, seed=1)
    s.set_epoch(0)
    a = list(s)
    s.set_epoch(1)
    b = list(s)
    s.set_epoch(0)
    assert list(s) == a                               # same epoch, same order and seeds
    assert [r.indices for r in a] != [r.indices for r in b]
    assert len({r.seed for r in a + b}) == len(a + b)  # every batch its own augmentation seed
    s.set_epoch(1, start=2)
    assert list(s) == b[2:] and len(s) == len(b)


def test_eval_sharding_counts_every_image_once():
    order = []
    for r in range(3):
        s = SeededBatchSampler(10, 4, shuffle=False, drop_last=False, rank=r, world_size=3)
        order += [i for req in s for i in req.indices]
    assert sorted(order) == list(range(10))
    items = [q.index for r in range(2) for q in SeededSampler(7, shuffle=False, rank=r, world_size=2)]
    assert sorted(items) == list(range(7))


# --------------------------------------------------------------------------- DCT loader

def _odd_u_signs(layout: DCTLayout) -> torch.Tensor:
    signs = [(-1.0 if k % 8 % 2 else 1.0) for comp in layout.band_indices() for k in comp]
    return torch.tensor(signs).view(1, -1, 1, 1)


def test_dct_train_batches_are_block_aligned_crops_and_exact_flips(synth):
    # No normalisation, so a flip is exactly "reverse block columns, negate odd u".
    layout = DCTLayout("upsampling", 10)
    ds = DCTDataset(synth, layout, 32, train=True, crop="random")
    req = BatchRequest(tuple(range(len(synth))), seed=7)
    x, y = ds[req]
    assert x.shape == (len(synth), 30, 4, 4) and x.dtype == torch.float32
    assert y.tolist() == synth.labels
    full = to_tensor(read_dct_batch(synth.paths), layout, backend="torch")  # (B, 30, 8, 8): 64x64 px
    signs = _odd_u_signs(layout)
    flips = 0
    for i in range(len(synth)):
        matches = []
        for top in (0, 2, 4):            # 16-pixel steps = 2 blocks
            for left in (0, 2, 4):
                crop = full[i:i + 1, :, top:top + 4, left:left + 4]
                for flip in (False, True):
                    cand = crop.flip(-1) * signs if flip else crop
                    if torch.equal(cand, x[i:i + 1]):
                        matches.append(flip)
        assert matches, f"item {i} is not a block-aligned crop (or its exact flip) of the image"
        flips += matches[0]
    assert 0 < flips < len(synth)      # both branches taken over 24 images
    again, _ = ds[req]
    assert torch.equal(again, x)       # the seed decides everything
    other, _ = ds[BatchRequest(req.indices, seed=8)]
    assert not torch.equal(other, x)


def test_dct_eval_batches_are_centre_crops(synth):
    layout = DCTLayout("upsampling", 6).with_stats([1.0] * 18, [2.0] * 18)
    ds = DCTDataset(synth, layout, 48, train=False)
    x, _ = ds[BatchRequest((0, 5, 9), seed=0)]
    ref = to_tensor(read_dct_batch([synth.paths[i] for i in (0, 5, 9)]), layout, crop="center", size=48,
                    backend="torch")
    torch.testing.assert_close(x, ref, rtol=1e-6, atol=1e-5)
    single, label = ds[5]
    torch.testing.assert_close(single, ref[1], rtol=1e-6, atol=1e-5)
    assert label == synth.labels[5]


def test_dct_cpu_batches_are_read_fused_with_the_same_numbers(synth):
    """The CPU path (read_to_tensor: the reader's threads gather) equals the two-step path
    (read_dct_batch + to_tensor, taken for an explicit torch backend) draw for draw."""
    layout = DCTLayout("upsampling", 12).with_stats([3.0] * 36, [5.0] * 36)
    req = BatchRequest(tuple(range(10)), seed=11)
    fused, y_fused = DCTDataset(synth, layout, 32, train=True, threads=2)[req]
    two_step, y_two = DCTDataset(synth, layout, 32, train=True, backend="torch")[req]
    torch.testing.assert_close(fused, two_step, rtol=1e-6, atol=1e-5)
    assert torch.equal(y_fused, y_two)


def test_dct_loader_threads_do_not_change_batches(synth):
    layout = DCTLayout("upsampling", 4).with_stats([0.0] * 12, [1.0] * 12)
    ds = DCTDataset(synth, layout, 32, train=True)
    runs = []
    for workers in (0, 2):
        loader = DCTLoader(ds, SeededBatchSampler(len(ds), 5, seed=2), workers=workers, pin_memory=False)
        loader.set_epoch(3)
        runs.append(list(loader))
    assert len(runs[0]) == len(runs[1]) == len(synth) // 5
    for (xa, ya), (xb, yb) in zip(*runs):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_dct_loader_late_concat_layout(synth):
    layout = DCTLayout("late_concat", 3).with_stats([0.0] * 9, [1.0] * 9)
    x, y = DCTDataset(synth, layout, 32, train=True)[BatchRequest((0, 1), 0)]
    assert isinstance(x, tuple) and x[0].shape == (2, 3, 4, 4) and x[1].shape == (2, 6, 2, 2)


def test_bad_files_raise_with_their_name_or_are_skipped(synth, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(open_bytes(synth.paths[0])[:300])
    ds = synth.subset(range(4))
    ds.paths[2] = str(bad)
    layout = DCTLayout("upsampling", 2)
    with pytest.raises(JPEGError, match="broken.jpg"):
        DCTDataset(ds, layout, 32, train=True)[BatchRequest((0, 1, 2, 3), 0)]
    skipping = DCTDataset(ds, layout, 32, train=True, on_error="skip")
    x, y = skipping[BatchRequest((0, 1, 2, 3), 0)]
    assert x.shape[0] == 3 and y.tolist() == [ds.labels[i] for i in (0, 1, 3)]
    assert skipping.skipped == [str(bad)]


def test_images_smaller_than_the_crop_are_named(synth):
    with pytest.raises(ValueError, match=r"00000\.jpg.*smaller.*dctnet prepare"):
        DCTDataset(synth, DCTLayout("upsampling", 2), 80, train=True, crop="random")[BatchRequest((0,), 0)]
    with pytest.raises(ValueError, match="multiple of 16"):
        DCTDataset(synth, DCTLayout("upsampling", 2), 40, train=True)


def test_make_loader_requires_statistics(synth):
    from dctnet.models import create_model

    model = create_model("small_resnet_dct_fbs2", num_classes=8)
    with pytest.raises(ValueError, match="normalisation statistics"):
        make_loader(model, synth, train=True, batch_size=4)


# --------------------------------------------------------------------------- RGB pipeline

def test_random_resized_crop_box_follows_torchvision_rules():
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        top, left, h, w = random_resized_crop_box(90, 160, g)
        assert 0 <= top and top + h <= 90 and 0 <= left and left + w <= 160
        area = h * w / (90 * 160)
        assert 0.08 * 0.8 <= area <= 1.0 + 1e-9
        assert 3 / 4 * 0.85 <= w / h <= 4 / 3 * 1.15    # rounding of small crops
    # No attempt can fit: whole image clamped to the ratio range, centred (torchvision's fallback).
    assert random_resized_crop_box(100, 400, g, scale=(1.0, 1.0)) == (0, 133, 100, 133)  # w = round(100 * 4/3)
    assert random_resized_crop_box(400, 100, g, scale=(1.0, 1.0)) == (133, 0, 133, 100)  # h = round(100 / (3/4))


def test_rgb_crop_augmentation_is_a_crop_of_the_resized_decode(synth):
    ds = RGBTrainDataset(synth, 48, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), augment="crop")
    ref = resize_shorter(decode_rgb(synth.paths[3]), round(48 * 256 / 224))
    flips = set()
    for seed in range(12):
        x, label = ds[ItemRequest(3, seed)]
        assert x.shape == (3, 48, 48) and label == synth.labels[3]
        pixels = np.rint((x.numpy() * 0.25 + 0.5) * 255).astype(np.uint8).transpose(1, 2, 0)
        found = None
        for top in range(ref.shape[0] - 47):
            for left in range(ref.shape[1] - 47):
                win = ref[top:top + 48, left:left + 48]
                if np.array_equal(win, pixels):
                    found = False
                elif np.array_equal(win[:, ::-1], pixels):
                    found = True
                if found is not None:
                    break
            if found is not None:
                break
        assert found is not None, f"seed {seed}: not a crop of the resized image"
        flips.add(found)
    assert flips == {False, True}


def test_rgb_rrc_is_seeded_and_normalised(synth):
    ds = RGBTrainDataset(synth, 32, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    a, _ = ds[ItemRequest(0, 11)]
    b, _ = ds[ItemRequest(0, 11)]
    c, _ = ds[ItemRequest(0, 12)]
    assert torch.equal(a, b) and not torch.equal(a, c)
    lo = (0 - 0.485) / 0.229
    assert a.shape == (3, 32, 32) and a.min() >= lo - 1e-5 and a.max() <= (1 - 0.406) / 0.225 + 1e-5


def test_rgb_loader_batches(synth):
    from dctnet.models import create_model

    model = create_model("small_resnet_rgb", num_classes=8)
    loader = make_loader(model, synth, train=True, batch_size=5, workers=0, size=32)
    loader.set_epoch(0)
    batches = list(loader)
    assert len(batches) == len(loader) == len(synth) // 5
    x, y = batches[0]
    assert x.shape == (5, 3, 32, 32) and y.dtype == torch.int64
    val = make_loader(model, synth, train=False, batch_size=7, workers=0, size=32)
    assert sum(len(y) for _, y in val) == len(synth)
