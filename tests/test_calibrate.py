"""Issue 15 item 4: label-free recovery of converted models on fewer bands
(dctnet.models.calibrate, `dctnet calibrate`)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from jpeg_fixtures import sample_photos
from dctnet.classify import Classifier
from dctnet.cli import main
from dctnet.models import create_model, load_checkpoint, resolve
from dctnet.models.calibrate import (WIENER_RHO, ar1_block_covariance, block_gram, bn_statistics, calibrate, calibration_set, fold_estimate,
                                     lsq_estimate, reestimate_bn, save_calibrated)


def _synthetic(batch=3, h=4, w=4, seed=0):
    """Correlated full-band inputs: y ``(B, 64, 2h, 2w)``, cbcr ``(B, 128, h, w)`` float32,
    every block ``M @ g`` with g Gaussian (so the dropped bands are partly predictable)."""
    gen = torch.Generator().manual_seed(seed)
    mix = torch.randn(3, 64, 64, generator=gen) / 8 + torch.eye(64)
    decay = torch.linspace(40, 1, 64)

    def part(c, hh, ww):
        g = torch.randn(batch, 64, hh, ww, generator=gen)
        return torch.einsum("kj,bjhw->bkhw", mix[c] * decay[:, None], g)

    return part(0, 2 * h, 2 * w), torch.cat([part(1, h, w), part(2, h, w)], 1)


def test_lsq_estimate_is_numpy_least_squares():
    y, cbcr = _synthetic()
    gram = block_gram(y, cbcr)
    for n in (1, 10, 37):
        a = lsq_estimate(gram, n)
        assert a.shape == (3, 64 - n, n) and a.dtype == torch.float64
        for comp, part in enumerate((y, cbcr[:, :64], cbcr[:, 64:])):
            z = part.double().numpy().transpose(0, 2, 3, 1).reshape(-1, 64)      # (blocks, 64)
            sol, *_ = np.linalg.lstsq(z[:, :n], z[:, n:], rcond=None)         # (n, 64 - n)
            np.testing.assert_allclose(a[comp].numpy(), sol.T, rtol=1e-7, atol=1e-9)
    assert torch.allclose(lsq_estimate(gram[0], 64), torch.zeros(0, 64, dtype=torch.float64))


@pytest.fixture(scope="module")
def random_full():
    """The converted EfficientNet-Lite0 of a random initialisation, all 64 bands (no download)."""
    torch.manual_seed(0)
    return create_model("efficientnet_lite0_dct", weights=False, bands=64).eval()


@pytest.mark.parametrize("n", [6, 16])
def test_folding_is_exact(random_full, n):
    y, cbcr = _synthetic(batch=2, h=3, w=5, seed=n)        # 48x80 pixels: every border strip used
    model = calibrate(random_full, n, (y, cbcr), steps=("lsq",), progress=False)
    a = lsq_estimate(block_gram(y, cbcr), n)

    def filled(part, est):                                    # kept bands + their estimate of the rest
        k = part[:, :n].double()
        return torch.cat([k, torch.einsum("dk,bkhw->bdhw", est, k)], 1).float()

    kept = (y[:, :n], torch.cat([cbcr[:, :n], cbcr[:, 64:64 + n]], 1))
    full_in = (filled(y, a[0]), torch.cat([filled(cbcr[:, :64], a[1]), filled(cbcr[:, 64:], a[2])], 1))
    with torch.no_grad():
        ours = model.stem_conv(*kept)
        want = random_full.stem_conv(*full_in)
        plain = resolve("efficientnet_lite0_dct", weights=False, bands=n).model
        plain.load_state_dict({k: v for k, v in random_full.state_dict().items() if not k.startswith("stem_conv.")},
                              strict=False)
        fold_estimate(random_full.stem_conv, plain.stem_conv, torch.zeros(3, 64 - n, n, dtype=torch.float64))
        zero = plain.stem_conv(*kept)
        zero_full = random_full.stem_conv(
            torch.cat([y[:, :n], torch.zeros_like(y[:, n:])], 1),
            torch.cat([cbcr[:, :n], torch.zeros_like(cbcr[:, n:64]), cbcr[:, 64:64 + n],
                       torch.zeros_like(cbcr[:, 64 + n:])], 1))
    scale = want.abs().max()
    assert (ours - want).abs().max() <= 1e-5 * scale
    assert (zero - zero_full).abs().max() <= 1e-5 * scale          # zero estimate = plain n-band model
    assert (ours - zero).abs().max() > 1e-2 * scale                # and the estimate does change it
    # the border term carries the estimate too: the output frame is exact as well
    assert (ours[..., 0, :] - want[..., 0, :]).abs().max() <= 1e-5 * scale
    assert model.model_kwargs["bands"] == n and model.layout.channels_per_component == (n, n, n)


def test_default_steps_are_lsq_and_bn_delta(random_full):
    """The library's default (issue 15): lsq then bn-delta, which leaves a full-band model's
    BatchNorm statistics as they are (the old default, plain "bn", replaced them)."""
    y, cbcr = _synthetic(batch=4, h=3, w=3, seed=5)
    same = calibrate(random_full, 64, (y, cbcr), progress=False)
    assert same.calibration["steps"] == ["lsq", "bn-delta"]
    full_sd, sd = random_full.state_dict(), same.state_dict()
    for k in full_sd:
        if k.endswith(("running_mean", "running_var")):
            torch.testing.assert_close(sd[k], full_sd[k], rtol=1e-5, atol=1e-6)
    replaced = calibrate(random_full, 64, (y, cbcr), steps=("lsq", "bn"), progress=False).state_dict()
    assert not torch.allclose(replaced["_blocks.3._bn1.running_mean"], full_sd["_blocks.3._bn1.running_mean"],
                              atol=1e-3)


def test_bn_reestimation_sets_the_measured_statistics():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5), nn.ReLU(), nn.Dropout(0.5),
                        nn.Conv2d(5, 4, 1), nn.BatchNorm2d(4, momentum=0.3)).eval()
    batches = [(torch.randn(4, 3, 6, 6) * 3 + 2,) for _ in range(3)]
    before = net[1].running_mean.clone()
    assert reestimate_bn(net, batches) == 2
    assert not net.training and net[1].momentum == 0.1 and net[5].momentum == 0.3
    with torch.no_grad():
        a = [net[0](x) for (x,) in batches]
        b = [net[4](torch.relu((z - z.mean((0, 2, 3), keepdim=True))
                               / torch.sqrt(z.var((0, 2, 3), unbiased=False, keepdim=True) + 1e-5)
                               * net[1].weight[:, None, None] + net[1].bias[:, None, None])) for z in a]
    for bn, outs in ((net[1], a), (net[5], b)):
        mean = torch.stack([z.mean((0, 2, 3)) for z in outs]).mean(0)
        var = torch.stack([z.var((0, 2, 3), unbiased=True) for z in outs]).mean(0)
        torch.testing.assert_close(bn.running_mean, mean, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(bn.running_var, var, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(before, net[1].running_mean)
    # relative: the same batches as reference leave the statistics unchanged
    mean0, var0 = net[1].running_mean.clone(), net[1].running_var.clone()
    ref = bn_statistics(net, batches)
    torch.testing.assert_close(net[1].running_mean, mean0)      # bn_statistics does not change the model
    reestimate_bn(net, batches, reference=ref)
    torch.testing.assert_close(net[1].running_mean, mean0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(net[1].running_var, var0, rtol=1e-5, atol=1e-5)
    shifted = [(x + 1.0,) for (x,) in batches]
    reestimate_bn(net, shifted, reference=ref)
    assert not torch.allclose(net[1].running_mean, mean0, atol=1e-3)


def test_calibration_set_shapes_and_augmentation():
    photos = [str(p) for p in sample_photos()[:2]]
    y, cbcr = calibration_set(photos, qfs=(None, 50), resizes=(256,), flips=(False, True), threads=1)
    assert y.shape == (8, 64, 28, 28) and cbcr.shape == (8, 128, 14, 14) and y.dtype == torch.float32
    # rows: resize-major, then flip, then image x version; a flip negates odd horizontal frequencies
    assert torch.allclose(y[4, 1], -y[0, 1].flip(-1), atol=1e-3)      # band 1 = natural (0, 1): odd u
    assert not torch.allclose(y[0], y[1])                              # the QF 50 re-encoding differs


def test_command_writes_a_checkpoint_the_classifier_loads(tmp_path, capsys):
    photos = [str(p) for p in sample_photos()[:3]]
    out = tmp_path / "lite0_n8.pt"
    assert main(["calibrate", "efficientnet_lite0_dct", "--bands", "8", *photos, "-o", str(out), "-q",
                 "-j", "2"]) == 0
    assert "wrote" in capsys.readouterr().out
    ckpt = load_checkpoint(out)
    assert ckpt.model == "efficientnet_lite0_dct" and ckpt.model_kwargs["bands"] == 8
    assert ckpt.extra["calibration"]["steps"] == ["lsq", "bn-delta"]     # the default steps
    clf = Classifier("efficientnet_lite0_dct", weights=str(out), threads=2)
    assert clf.layout.channels_per_component == (8, 8, 8)
    plain = resolve("efficientnet_lite0_dct", bands=8).model
    assert not torch.equal(clf.model.stem_conv.conv_y.weight, plain.stem_conv.conv_y.weight)
    assert torch.equal(clf.model.stem_conv.edge_basis_cb, ckpt.state_dict["stem_conv.edge_basis_cb"])
    bundle = resolve(None, weights=str(out))
    assert bundle.model.model_kwargs["bands"] == 8
    preds = clf.predict(photos[:1], topk=1)
    assert preds[0].error is None and len(preds[0]) == 1


def test_command_errors_are_one_line(tmp_path, capsys):
    photo = str(sample_photos()[0])
    assert main(["calibrate", "efficientnet_lite0_dct", "--bands", "8", photo, "-o", str(tmp_path / "x.pt"),
                 "--steps", "lsq,magic"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dctnet calibrate: unknown calibration step") and "\n" not in err
    assert main(["calibrate", "efficientnet_lite0", "--bands", "8", photo, "-o", str(tmp_path / "x.pt")]) == 2
    assert "RGB model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["calibrate", "efficientnet_lite0_dct", "--bands", "65", photo, "-o", str(tmp_path / "x.pt")])
    capsys.readouterr()
    for flag, value in (("--kd-temperature", "0"), ("--kd-lr", "-1"), ("--kd-iterations", "0")):
        assert main(["calibrate", "efficientnet_lite0_dct", "--bands", "8", photo, "-o", str(tmp_path / "x.pt"),
                     "--steps", "lsq,bn-delta,kd", flag, value]) == 2
        err = capsys.readouterr().err.strip()
        assert flag in err and "\n" not in err


def test_kd_options_reach_knowledge_distill():
    import argparse

    from dctnet.commands.calibrate import _kd_options
    args = argparse.Namespace(kd_iterations=7, kd_lr=1e-4, kd_temperature=3.0)
    assert _kd_options(args) == {"iterations": 7, "lr": 1e-4, "temperature": 3.0}
    assert _kd_options(argparse.Namespace(kd_iterations=None, kd_lr=None, kd_temperature=None)) == {}


@pytest.mark.parametrize("target", ["features", "logits"])
def test_distill_reduces_the_error_and_trains_only_early_layers(random_full, target):
    y, cbcr = _synthetic(batch=4, h=4, w=4, seed=3)
    base = calibrate(random_full, 8, (y, cbcr), steps=("lsq",), progress=False)
    model = calibrate(random_full, 8, (y, cbcr), steps=("lsq", "distill"), progress=False,
                      distill_options={"iterations": 12, "batch_size": 4, "depth": 2, "lr": 3e-2, "target": target})
    info = model.calibration["distill"]
    assert info["loss_last"] < info["loss_first"]
    before, after = base.state_dict(), model.state_dict()
    changed = {k.split(".")[0] + ("." + k.split(".")[1] if k.startswith("_blocks") else "")
               for k in after if not torch.equal(before[k], after[k])}
    assert changed and changed <= {"stem_conv", "_blocks.0", "_blocks.1"}
    assert "stem_conv" in changed and all(p.requires_grad for p in model.parameters())


def test_heldout_table_command(tmp_path, capsys):
    """`dctnet calibrate --heldout`: calibrate on the even photos, top-1/top-5 on the odd ones;
    the plain row equals the Classifier's own predictions on the held-out files."""
    import json

    from dctnet.data.datasets import imagenet_classes, synset_of_path
    from dctnet.evaluate.calibration import heldout_split

    photos = [str(p) for p in sample_photos()[:6]]
    out = tmp_path / "rows.json"
    assert main(["calibrate", "efficientnet_lite0_dct", *photos, "--heldout", "--bands", "64,8", "--variants",
                 "plain,lsq", "--settings", "original,50", "--json", str(out), "-j", "2"]) == 0
    captured = capsys.readouterr()
    assert "| n | variant | original | qf50 |" in captured.out
    assert "n=8 lsq qf50: top-1" in captured.err                          # progress, row by row
    rows = json.loads(out.read_text())
    assert [(r["bands"], r["variant"], r["setting"]) for r in rows] == [
        (64, "plain", "original"), (64, "plain", "qf50"), (8, "plain", "original"), (8, "plain", "qf50"),
        (8, "lsq", "original"), (8, "lsq", "qf50")]
    calib, held = heldout_split(photos)
    assert held == photos[1::2] and rows[0]["heldout_files"] == 3 and rows[0]["calibration_files"] == 3
    index = imagenet_classes().index
    for n, row in ((64, rows[0]), (8, rows[2])):
        preds = Classifier("efficientnet_lite0_dct", bands=n, threads=2).predict(held, topk=5)
        want1 = [p[0][0] == index[synset_of_path(f)] for p, f in zip(preds, held)]
        want5 = [index[synset_of_path(f)] in [c for c, *_ in p] for p, f in zip(preds, held)]
        assert row["top1"] == pytest.approx(100 * sum(want1) / 3)
        assert row["top5"] == pytest.approx(100 * sum(want5) / 3)
    assert main(["calibrate", "efficientnet_lite0_dct", *photos, "--bands", "16,8", "-o", str(tmp_path / "x.pt")]) == 2
    assert "a list only with --heldout" in capsys.readouterr().err
    assert main(["calibrate", "efficientnet_lite0_dct", *photos, "--bands", "8"]) == 2
    assert "--out PATH is required" in capsys.readouterr().err


def test_ar1_prior_is_the_dct_of_the_pixel_covariance():
    from dctnet.models.decode_path import idct_basis
    from dctnet.ops import ZIGZAG

    rho = 0.9
    yy, xx = np.divmod(np.arange(64), 8)
    pixel_cov = rho ** (np.abs(yy[:, None] - yy[None, :]) + np.abs(xx[:, None] - xx[None, :]))   # (64, 64)
    basis = idct_basis(list(ZIGZAG))                           # (64 pixels, 64 bands), zigzag columns
    want = basis.T @ pixel_cov @ basis
    np.testing.assert_allclose(ar1_block_covariance(rho).numpy(), want, atol=1e-12)
    assert ar1_block_covariance(0.0).allclose(torch.eye(64, dtype=torch.float64))
    with pytest.raises(ValueError, match="rho"):
        ar1_block_covariance(1.0)


def test_wiener_step_uses_no_photo_statistics(random_full):
    a_in, b_in = _synthetic(batch=2, h=3, w=3, seed=1), _synthetic(batch=2, h=3, w=3, seed=2)
    a = calibrate(random_full, 10, a_in, steps=("wiener",), progress=False)
    b = calibrate(random_full, 10, b_in, steps=("wiener",), progress=False)
    lsq = calibrate(random_full, 10, a_in, steps=("lsq",), progress=False)
    assert torch.equal(a.stem_conv.conv_y.weight, b.stem_conv.conv_y.weight)        # the inputs do not matter
    assert not torch.allclose(a.stem_conv.conv_y.weight, lsq.stem_conv.conv_y.weight)
    want = resolve("efficientnet_lite0_dct", weights=False, bands=10).model
    prior = torch.stack([ar1_block_covariance(r) for r in WIENER_RHO])
    fold_estimate(random_full.stem_conv, want.stem_conv, lsq_estimate(prior, 10))
    assert torch.equal(a.stem_conv.deconv_c.weight, want.stem_conv.deconv_c.weight)
    assert a.calibration["steps"] == ["wiener"] and a.calibration["wiener"]["rho"] == list(WIENER_RHO)
    with pytest.raises(ValueError, match="one of the steps 'lsq' and 'wiener'"):
        calibrate(random_full, 10, a_in, steps=("lsq", "wiener"), progress=False)


@pytest.mark.parametrize("steps", [("lsq",), ("wiener", "stem"), ()])
def test_factored_first_layer_equals_the_folded_one(random_full, steps):
    """forward_factored (per-block IDCT with the estimate in its bases, then the RGB conv)
    computes what the folded convolutions compute, after every step that changes the layer."""
    y, cbcr = _synthetic(batch=2, h=3, w=4, seed=7)
    model = calibrate(random_full, 12, (y, cbcr), steps=steps, progress=False)
    kept = (y[:, :12], torch.cat([cbcr[:, :12], cbcr[:, 64:76]], 1))
    layer = model.stem_conv
    with torch.no_grad():
        folded = layer(*kept)
        layer.factored = True
        try:
            factored = layer(*kept)
            logits = model(*kept)
        finally:
            layer.factored = False
        want_logits = model(*kept)
    scale = folded.abs().max()
    assert (factored - folded).abs().max() <= 2e-5 * scale
    torch.testing.assert_close(logits, want_logits, rtol=1e-4, atol=1e-4 * want_logits.abs().max().item())


@pytest.fixture(scope="module")
def pretrained_full():
    """The pretrained converted EfficientNet-Lite0 on all 64 bands."""
    return resolve("efficientnet_lite0_dct", bands=64).model.eval()


def test_kd_batch_draws_fresh_augmented_full_band_inputs():
    from dctnet.models.calibrate import kd_batch, reencoded_versions

    photos = [str(p) for p in sample_photos()[:2]]
    sources = reencoded_versions(photos, qfs=(None, 50))
    assert len(sources) == 4 and sources[0] == Path(photos[0]).read_bytes() and sources[1] != sources[0]
    gen = torch.Generator().manual_seed(0)
    a = kd_batch(sources, 3, gen, threads=1)
    b = kd_batch(sources, 3, gen, threads=1)
    assert a[0].shape == (3, 64, 28, 28) and a[1].shape == (3, 128, 14, 14) and a[0].dtype == torch.float32
    assert not torch.equal(a[0], b[0])                                     # a new draw every batch
    again = kd_batch(sources, 3, torch.Generator().manual_seed(0), threads=1)
    assert torch.equal(again[0], a[0])                                     # reproducible from the seed


def test_kd_lowers_the_divergence_on_held_back_photos(pretrained_full, tmp_path):
    """The kd step (default augmentation, mixup included), trained on 8 photos, brings the
    n-band model's class distribution closer to the full-band model's on 4 other photos
    (centre crops, original and QF 50); it leaves the first layer (the folded estimate) alone,
    and its checkpoint loads back in the Classifier."""
    from dctnet.models.calibrate import _select, kd_divergence

    photos = [str(p) for p in sample_photos()]
    train, back = photos[:8], photos[8:12]
    inputs = calibration_set(back, qfs=(None, 50), resizes=(256,), flips=(False,), threads=1)
    opts = {"iterations": 30, "batch_size": 8, "threads": 1}
    cal = calibration_set(train, qfs=(None, 50), resizes=(256,), flips=(False, True), threads=1)
    base = calibrate(pretrained_full, 8, cal, steps=("lsq", "bn-delta"), progress=False, threads=1)
    model = calibrate(pretrained_full, 8, cal, steps=("lsq", "bn-delta", "kd"), progress=False, threads=1,
                      kd_images=train, kd_options=opts)
    with torch.no_grad():
        want = pretrained_full(*inputs)
        before = float(kd_divergence(base(*_select(inputs, 8)), want))
        after = float(kd_divergence(model(*_select(inputs, 8)), want))
    print(f"KL to the full-band model on held-back photos: {before:.3f} -> {after:.3f}")
    assert after < 0.9 * before, (before, after)
    info = model.calibration
    assert info["steps"] == ["lsq", "bn-delta", "kd"] and info["kd"]["iterations"] == 30 and info["kd"]["images"] == 8
    for k, v in base.state_dict().items():
        if k.startswith("stem_conv."):
            assert torch.equal(model.state_dict()[k], v), k                # the fold is untouched
    assert not torch.equal(model.state_dict()["_fc.weight"], base.state_dict()["_fc.weight"])
    assert all(p.requires_grad for p in model.parameters()) and not model.training
    path = tmp_path / "kd.pt"
    save_calibrated(path, model)
    clf = Classifier("efficientnet_lite0_dct", weights=str(path), threads=1)
    assert clf.layout.channels_per_component == (8, 8, 8)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(clf.model.state_dict()[k], v)
    with torch.no_grad():
        # the Classifier runs the first layer factored (the same map, other float rounding)
        got, want = clf.model(*_select(inputs, 8)), model(*_select(inputs, 8))
        assert (got - want).abs().max() <= 1e-4 * want.abs().max()
    assert load_checkpoint(path).extra["calibration"]["kd"]["loss_last"] == info["kd"]["loss_last"]


def test_kd_trains_only_the_chosen_parameters(random_full):
    from dctnet.models.calibrate import reencoded_versions, knowledge_distill

    photos = [str(p) for p in sample_photos()[:2]]
    y, cbcr = _synthetic(batch=2, h=3, w=3, seed=4)
    base = calibrate(random_full, 8, (y, cbcr), steps=("lsq",), progress=False)
    model = copy.deepcopy(base)
    with torch.no_grad():                                   # as the held-out table calls it
        losses = knowledge_distill(model, random_full, reencoded_versions(photos, qfs=(None,)), 8, iterations=2,
                                   batch_size=2, lr=1e-2, train="bn", threads=1)
    assert len(losses) == 2 and all(np.isfinite(losses))
    changed = {k for k, v in model.state_dict().items() if not torch.equal(base.state_dict()[k], v)}
    bn_affine = {f"{name}.{w}" for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)
                 for w in ("weight", "bias")}
    assert changed and changed <= bn_affine, changed - bn_affine       # running statistics too stay (eval mode)
    with pytest.raises(ValueError, match="train must be"):
        knowledge_distill(model, random_full, reencoded_versions(photos, qfs=(None,)), 8, iterations=1, train="magic")
    with pytest.raises(ValueError, match="kd_images"):
        calibrate(random_full, 8, (y, cbcr), steps=("kd",), progress=False)
