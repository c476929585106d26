"""Fused first stage: Triton kernel (interpreted, in a subprocess) vs the unfused modules, the
torch gather vs a float64 NumPy loop, the BN folding vs float64 matrix algebra, dispatch rules.

The Triton comparison runs in a child process with TRITON_INTERPRET=1 set before triton is
imported: the interpreter is chosen when a kernel is defined, and this pytest process may
already hold triton (other test files) with the flag unset.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dctnet.models import create_model
from dctnet.models.resnet_dct import dct_resnet50
from dctnet.models.fused_stem import (blocks_to_input, first_stage, first_stage_torch, first_stage_triton,
                                   fold_first_stage, supports_fused_stem)
from dctnet.ops.layout import BlockBatch

REPO = Path(__file__).resolve().parents[1]

# Shared by this process and the child: a model with randomised BN statistics and a BlockBatch.
HELPERS = '''
import torch
from torch import nn
from dctnet.models.resnet_dct import dct_resnet50
from dctnet.ops.layout import BlockBatch

def make_model(bands, stats=True, seed=0):
    torch.manual_seed(seed)
    model = dct_resnet50("upsampling_rfa", bands=bands, num_classes=4, layers=(1, 1, 1))
    c = model.layout.num_channels
    if stats:
        g = torch.Generator().manual_seed(seed + 1)
        model.layout = model.layout.with_stats((torch.randn(c, generator=g) * 3).tolist(),
                                               (torch.rand(c, generator=g) * 40 + 20).tolist())
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
            elif isinstance(m, nn.Conv2d):
                m.weight.mul_(0.5)
    return model.eval()

def make_blocks(b, h, w, hc, wc, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    def plane(hh, ww):
        v = torch.randint(-40, 41, (b, hh, ww, 64), generator=g, dtype=torch.int16)
        return v if dtype == "int16" else v.to(torch.float32) + 0.25
    y = plane(h, w)
    cb, cr = plane(hc, wc), plane(hc, wc)
    q = torch.randint(1, 12, (b, 3, 64), generator=g).to(torch.float32)
    return BlockBatch(y, cb, cr, q, torch.ones(b, dtype=torch.bool))
'''
exec(HELPERS)  # make_model, make_blocks in this module too

# (bands, B, Hb, Wb, Hc, Wc, dtype, layout stats)
CASES = [
    (3, 2, 5, 7, 3, 3, "int16", True),        # n not a power of two; odd sizes: chroma ceil rows, floor cols
    (5, 1, 6, 9, 3, 5, "float32", True),      # float32 planes (resampled images)
    (1, 3, 4, 4, 2, 2, "int16", False),       # no normalisation statistics
    ([[0, 1, 8, 16, 9], [0, 1], [0]], 2, 3, 3, 2, 1, "int16", True),  # explicit band lists (c = 8)
    (11, 1, 2, 5, 1, 2, "int16", True),       # c = 33 > 32: two BLOCK_M chunks, o = 176: three BLOCK_O chunks
]

CHILD = HELPERS + '''
import json, sys
from dctnet.models.fused_stem import first_stage, first_stage_triton, blocks_to_input
results = []
for bands, b, h, w, hc, wc, dtype, stats in json.loads(sys.argv[1]):
    model = make_model(bands, stats)
    blocks = make_blocks(b, h, w, hc, wc, dtype)
    with torch.no_grad():
        ref = first_stage(model, blocks, impl="torch")
        out = first_stage(model, blocks, impl="triton")
        small = first_stage_triton(model, blocks, block_p=16)  # several programs, a partial last one
        full_ref = model(blocks_to_input(blocks, model.layout))
        model.fused_stem_impl = "triton"
        full = model(blocks)
    model.train()
    try:
        first_stage(model, blocks, impl="triton")
        train_error = None
    except RuntimeError as exc:
        train_error = str(exc)
    results.append({"shape": list(out.shape), "ref_shape": list(ref.shape),
                    "max_ref": ref.abs().max().item(),
                    "err": (out - ref).abs().max().item(), "err_small": (small - ref).abs().max().item(),
                    "err_logits": (full - full_ref).abs().max().item(), "max_logits": full_ref.abs().max().item(),
                    "train_error": train_error})
print(json.dumps(results))
'''


def test_triton_kernel_matches_unfused_modules_interpreted():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(CASES)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == len(CASES)
    for case, r in zip(CASES, results):
        bands, b, h, w = case[:4]
        c = len(sum(bands, [])) if isinstance(bands, list) else 3 * bands
        o = 16 * -(-c // 3)
        assert r["shape"] == r["ref_shape"] == [b, o, h, w], case
        assert r["max_ref"] > 1.0, case  # a meaningful signal, not all zeros after ReLU
        assert r["err"] <= 1e-4 and r["err_small"] <= 1e-4, (case, r)
        assert r["err_logits"] <= 1e-4 * max(1.0, r["max_logits"]), (case, r)
        assert "model.eval()" in r["train_error"], r


def _gather_float64(blocks: BlockBatch, layout) -> np.ndarray:
    """Independent reference: per position and channel, a plain loop in float64."""
    y, cb, cr = (t.numpy().astype(np.float64) for t in (blocks.y, blocks.cb, blocks.cr))
    q = blocks.qsteps.numpy().astype(np.float64)
    b, h, w, _ = y.shape
    channels = [(comp, k) for comp, bands in enumerate(layout.band_indices()) for k in bands]
    out = np.zeros((b, len(channels), h, w))
    for j, (comp, k) in enumerate(channels):
        for i in range(b):
            for r in range(h):
                for s in range(w):
                    if comp == 0:
                        v = y[i, r, s, k]
                    else:
                        plane = cb if comp == 1 else cr
                        v = plane[i, min(r // 2, plane.shape[1] - 1), min(s // 2, plane.shape[2] - 1), k]
                    v *= q[i, comp, k]
                    if layout.mean is not None:
                        v = (v - layout.mean[j]) / layout.std[j]
                    out[i, j, r, s] = v
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda c: str(c[0]).replace(" ", ""))
def test_torch_gather_matches_float64_loop(case):
    bands, b, h, w, hc, wc, dtype, stats = case
    model = make_model(bands, stats)
    blocks = make_blocks(b, h, w, hc, wc, dtype)
    x = blocks_to_input(blocks, model.layout)
    assert x.dtype == torch.float32 and x.shape == (b, model.layout.num_channels, h, w)
    np.testing.assert_allclose(x.numpy(), _gather_float64(blocks, model.layout), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=lambda c: str(c[0]).replace(" ", ""))
def test_folded_parameters_reproduce_unfused_stage(case):
    """The kernel's math (FoldedStem) in float64 NumPy equals the unfused modules."""
    bands, b, h, w, hc, wc, dtype, stats = case
    model = make_model(bands, stats)
    blocks = make_blocks(b, h, w, hc, wc, dtype)
    f = {k: v.double().numpy() for k, v in fold_first_stage(model)._asdict().items()}
    planes = [t.numpy().astype(np.float64) for t in (blocks.y, blocks.cb, blocks.cr)]
    q = blocks.qsteps.double().numpy()
    x = np.zeros((b, h, w, len(f["col_k"])))
    for j, (k, comp) in enumerate(zip(f["col_k"].astype(int), f["col_comp"].astype(int))):
        p = planes[comp]
        rows = np.minimum(np.arange(h) // 2, p.shape[1] - 1) if comp else np.arange(h)
        cols = np.minimum(np.arange(w) // 2, p.shape[2] - 1) if comp else np.arange(w)
        x[..., j] = p[:, rows][:, :, cols][..., k] * q[:, comp, k][:, None, None] * f["col_scale"][j] + f["col_shift"][j]
    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    h2 = relu(relu(x @ f["w1"] + f["b1"]) @ f["w2"] + f["b2"])
    out = relu(h2 @ f["w3"] + x @ f["wp"] + f["b_out"]).transpose(0, 3, 1, 2)
    with torch.no_grad():
        ref = first_stage_torch(model, blocks).double().numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_auto_dispatch_uses_unfused_path_on_cpu(monkeypatch):
    import dctnet.models.fused_stem as fs
    model = make_model(4)
    blocks = make_blocks(2, 4, 6, 2, 3, "int16")

    def boom(*a, **k):
        raise AssertionError("Triton path must not run for CPU inputs")

    monkeypatch.setattr(fs, "first_stage_triton", boom)
    with torch.no_grad():
        out = first_stage(model, blocks)  # impl="auto"
        torch.testing.assert_close(out, first_stage_torch(model, blocks))
        # The model accepts the BlockBatch itself and equals the tensor path.
        torch.testing.assert_close(model(blocks), model(blocks_to_input(blocks, model.layout)))


def test_explicit_triton_request_raises_with_reason(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    model = make_model(2)
    blocks = make_blocks(1, 2, 2, 1, 1, "int16")
    with pytest.raises(RuntimeError, match="CUDA tensors"):
        first_stage_triton(model, blocks)
    model.train()
    with pytest.raises(RuntimeError, match=r"model\.eval\(\)"):
        first_stage(model, blocks, impl="triton")
    with pytest.raises(ValueError, match="impl must be"):
        first_stage(model, blocks, impl="cuda")


def test_training_mode_blockbatch_forward_backpropagates():
    model = make_model(2).train()
    blocks = make_blocks(2, 4, 4, 2, 2, "float32")
    model(blocks).sum().backward()
    assert model.bn_in.weight.grad is not None and model.layer1[0].conv1.weight.grad.abs().sum() > 0


def test_late_concat_models_take_blockbatch_through_the_gather():
    model = create_model("resnet50_dct_late_concat_rfa_thinner", bands=3, num_classes=2, layers=(1, 1, 1)).eval()
    assert not supports_fused_stem(model)
    blocks = make_blocks(1, 4, 6, 2, 3, "int16")
    y, cbcr = blocks_to_input(blocks, model.layout)
    assert y.shape == (1, 3, 4, 6) and cbcr.shape == (1, 6, 2, 3)
    with torch.no_grad():
        torch.testing.assert_close(model(blocks), model(y, cbcr))
    with pytest.raises(ValueError, match="fused first stage needs"):
        fold_first_stage(model)


def test_bad_block_batches_are_rejected_with_the_reason():
    model = make_model(2)
    good = make_blocks(1, 4, 4, 2, 2, "int16")
    with pytest.raises(ValueError, match=r"BlockBatch\.cb must be \(B, Hb/2, Wb/2, 64\)"):
        first_stage(model, good._replace(cb=torch.zeros(1, 4, 4, 64, dtype=torch.int16)))
    with pytest.raises(ValueError, match="int16 or float32"):
        first_stage(model, good._replace(y=good.y.to(torch.int32)))
    with pytest.raises(ValueError, match="qsteps"):
        first_stage(model, good._replace(qsteps=torch.ones(1, 64)))
    with pytest.raises(ValueError, match="needs BlockBatch.cr"):
        first_stage(model, good._replace(cr=None))


def test_supports_fused_stem_only_for_upsampling_rfa():
    assert supports_fused_stem(make_model(3))
    assert not supports_fused_stem(create_model("resnet50", num_classes=2))
    assert not supports_fused_stem(dct_resnet50("deconv_rfa", bands=2, num_classes=2, layers=(1, 1, 1)))
    model = make_model(3)
    model.layer1[0].conv2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
    assert not supports_fused_stem(model)
