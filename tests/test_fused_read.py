"""dctnet.ops.read_to_tensor: the reader's threads gather each image straight into the output.

Reference: ``to_tensor(read_dct_batch(srcs), ..., backend="numba")`` and the torch reference
backend (themselves tested against float64 pixel-domain formulas in test_ops.py). The
fused path must give the same numbers bit for bit, for every sampling (the fast path and
the general one), layout, crop, flip and thread count, and report bad items per item.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import dctnet
from dctnet.codec import JPEGError, _native
from dctnet.ops import DCTLayout, output_shapes, read_to_tensor, to_tensor
from dctnet.ops import _numba

# Variants every crop below fits (tiny17x9 does not; CMYK cannot be a DCT input).
USABLE = ["baseline_420", "baseline_444", "baseline_422", "baseline_440", "baseline_411", "progressive_420",
          "progressive_444", "restart_rows", "restart_blocks", "arithmetic", "optimized", "gray",
          "gray_progressive", "q10", "odd225x223_baseline_420", "odd225x223_baseline_444", "odd225x223_gray",
          "jpegtran-flip_horizontal", "jpegtran-transpose"]


def _stats(layout: DCTLayout, seed: int = 0) -> DCTLayout:
    rng = np.random.default_rng(seed)
    c = layout.num_channels
    return layout.with_stats(rng.normal(0, 20, c).tolist(), rng.uniform(0.5, 50, c).tolist())


def _reference(srcs, layout, **kw):
    return to_tensor(dctnet.read_dct_batch(srcs), layout, backend="numba", **kw)


def _equal(a, b) -> bool:
    if isinstance(a, tuple):
        return all(torch.equal(x, y) for x, y in zip(a, b))
    return torch.equal(a, b)


@pytest.mark.parametrize("layout", [
    DCTLayout("upsampling", 64),
    _stats(DCTLayout("upsampling", 16)),
    _stats(DCTLayout("upsampling", [[0, 1, 8, 9, 16], [0, 1], [0, 2, 8]])),
    _stats(DCTLayout("late_concat", 24)),
    DCTLayout("late_concat", 64, dequantize=False),
    _stats(DCTLayout("y_only", 10)),
], ids=["up64", "up16-stats", "up-lists", "late24", "late64-raw", "y10"])
@pytest.mark.parametrize("threads", [1, 2])
def test_matches_two_step_path_centre(variants, layout, threads):
    srcs = [variants[name] for name in USABLE]
    got = read_to_tensor(srcs, layout, size=(96, 128), threads=threads)
    want = _reference(srcs, layout, crop="center", size=(96, 128))
    assert _equal(got, want)


@pytest.mark.parametrize("layout", [_stats(DCTLayout("upsampling", 32)), _stats(DCTLayout("late_concat", 8)),
                                    DCTLayout("y_only", 6)], ids=["up32", "late8", "y6"])
def test_matches_two_step_path_random_crop_and_flip(variants, layout):
    srcs = [variants[name] for name in USABLE] * 2          # repeated: different draws per item
    got = read_to_tensor(srcs, layout, size=112, crop="random", flip="random",
                         generator=torch.Generator().manual_seed(7))
    want = _reference(srcs, layout, crop="random", size=112, flip="random",
                      generator=torch.Generator().manual_seed(7))
    assert _equal(got, want)
    first = got[0] if isinstance(got, tuple) else got
    # the draws really vary: not every copy of an image got the same crop and flip
    half = len(USABLE)
    assert not torch.equal(first[:half], first[half:])


def test_matches_torch_reference_on_real_photos(photos):
    """Photos re-encoded as the papers prepare them (4:2:0, q90), against the torch backend."""
    srcs = []
    for p in photos[:12]:
        buf = io.BytesIO()
        Image.open(p).convert("RGB").save(buf, "JPEG", quality=90, subsampling=2)
        srcs.append(buf.getvalue())
    layout = _stats(DCTLayout("upsampling", 16))
    flips = np.arange(len(srcs)) % 2 == 1
    got = read_to_tensor(srcs, layout, size=224, flip=flips, threads=2)
    want = to_tensor(dctnet.read_dct_batch(srcs), layout, crop="center", size=224, flip=flips, backend="torch")
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_fast_path_takes_420_and_gray_and_hands_back_the_rest(variants):
    """The reader's sink consumes 4:2:0 and gray files (result None) and returns the others."""
    names = ["baseline_420", "gray", "progressive_420", "baseline_444", "baseline_422", "cmyk", "tiny17x9_baseline_420"]
    layout = DCTLayout("upsampling", 8)
    out = torch.zeros(output_shapes(layout, len(names), 12, 16)[0])
    from dctnet.ops.fused_read import _context
    ctx, keep = _context(layout, len(names), 12, 16, (out,), "center", np.zeros((len(names), 2)),
                         np.zeros(len(names), np.bool_))
    results = _native.read_batch([str(variants[n]) for n in names], True, False, 0, 1000, 2,
                                 _numba.sink_address(), ctx.ctypes.data)
    consumed = [r is None for r in results]
    assert consumed == [True, True, True, False, False, False, False]
    assert out[:3].abs().sum() > 0 and out[3:].abs().sum() == 0


def test_bad_items_are_reported_per_item_and_the_rest_is_returned(variants, tmp_path):
    truncated = variants["baseline_420"].read_bytes()[:3000]
    missing = tmp_path / "missing.jpg"
    srcs = [variants["baseline_420"], truncated, variants["tiny17x9_baseline_420"], variants["cmyk"],
            str(missing), variants["baseline_444"], b"not a jpeg"]
    layout = _stats(DCTLayout("upsampling", 16))
    out, errors = read_to_tensor(srcs, layout, size=(96, 128), on_error="return")
    kinds = [type(e).__name__ if e is not None else None for e in errors]
    assert kinds == [None, "JPEGError", "ValueError", "ValueError", "FileNotFoundError", None, "JPEGError"]
    assert "<bytes #1>" in str(errors[1]) and "<bytes #6>" in str(errors[6])
    assert "tiny17x9" in str(errors[2]) and "smaller than" in str(errors[2])
    assert "cmyk" in str(errors[3]) and str(missing) in str(errors[4])
    good = [0, 5]
    want = _reference([srcs[i] for i in good], layout, crop="center", size=(96, 128))
    assert torch.equal(out[good], want)
    bad = [1, 2, 3, 4, 6]
    assert out[bad].abs().sum() == 0                     # failed rows are zero, never stale data
    with pytest.raises(JPEGError, match="<bytes #1>"):
        read_to_tensor(srcs, layout, size=(96, 128))


def test_writes_into_the_callers_buffer(variants):
    layout = DCTLayout("late_concat", 4)
    srcs = [variants["baseline_420"], variants["gray"]]
    y = torch.full((2, 4, 12, 16), float("nan"))
    c = torch.full((2, 8, 6, 8), float("nan"))
    result = read_to_tensor(srcs, layout, size=(96, 128), out=(y, c))
    assert result[0] is y and result[1] is c
    assert torch.isfinite(y).all() and torch.isfinite(c).all()
    assert (c[1] == 0).all()                               # gray: zero chroma (no statistics)


@pytest.mark.parametrize("kwargs, match", [
    (dict(crop=None), "crop='center' or crop='random'"),
    (dict(size=None), "needs size="),
    (dict(size=100), "multiples of 16"),
    (dict(threads=0), "threads must be >= 1"),
    (dict(on_error="ignore"), "on_error"),
    (dict(out=torch.empty(1, 48, 12, 16)), "expected torch.float32"),
    (dict(out=torch.empty(1, 48, 12, 16, dtype=torch.float16)), "expected torch.float32"),
])
def test_argument_errors(variants, kwargs, match):
    args = dict(size=(96, 128))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        read_to_tensor([variants["baseline_420"], variants["gray"]], DCTLayout("upsampling", 16), **args)


def test_empty_batch():
    with pytest.raises(ValueError, match="empty batch"):
        read_to_tensor([], DCTLayout("upsampling", 16), size=224)
