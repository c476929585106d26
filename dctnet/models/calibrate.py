"""Label-free recovery of a converted network run on fewer bands (issue 15, item 4).

A converted model (:func:`~dctnet.models.from_rgb`, e.g. ``efficientnet_lite0_dct``) is exact on
all 64 bands; with ``n < 64`` the dropped coefficients are simply zero, an input the network
never saw. :func:`calibrate` repairs that from unlabelled images, in steps:

``"lsq"``
    Closed form. Per component (Y, Cb, Cr), the dropped coefficients of a block are replaced by
    their linear least-squares estimate from the kept coefficients of the same block,
    ``d_hat = A @ k`` with ``A = G_dk G_kk^-1`` (``G`` the 64x64 second-moment matrix of the
    dequantised blocks of the calibration images, no intercept: the DC band is always kept).
    The estimate is linear in the kept bands, so it is folded into the converted first layer
    (:func:`fold_estimate`): the Y conv's kept input channels absorb ``W_dropped @ A_y``, the
    chroma transposed conv's ``A_cb^T W_dropped``, ``A_cr^T W_dropped``, and the border term's
    chroma patterns ``basis_dropped @ A``. Inference costs exactly what the n-band model costs.
    One estimate for every QF: inputs are dequantised, and the calibration set mixes the
    originals with re-encodings at QF 90, 75, 50 (:func:`calibration_set`).
``"wiener"`` (instead of ``"lsq"``)
    The same fold with ``G`` replaced by a prior that depends on no photo: the DCT covariance
    of a separable first-order Markov field (:func:`ar1_block_covariance`, pixel correlation
    :data:`WIENER_RHO`), so ``A = C_dk C_kk^-1`` is the Wiener estimate under that model.
``"stem"``
    The first layer's folded BatchNorm re-fitted: each output channel of the n-band first
    layer is mapped affinely so that its mean and standard deviation on the calibration images
    equal those of the full-band first layer (folded into its weights and bias, exact).
``"distill"`` (optional)
    A short distillation of the first layer and the first blocks from the full-band model on
    the same unlabelled inputs (:func:`distill`; EfficientNet-Lite only).
``"bn"``
    Every BatchNorm after the first layer gets its running mean and variance from the n-band
    inputs: train-mode forward passes (other modules in eval mode, no gradient) with
    ``momentum=None`` (the cumulative average over batches), then eval.
``"bn-delta"``
    The same measurement on the n-band model and on the full-band model, and only the
    difference applied to the original statistics (mean shifted by ``m_n - m_full``,
    variance scaled by ``v_n / v_full``): a small calibration set's own bias cancels (with
    50 photos, ``"bn"`` costs the full-band model 4 points top-1; ``"bn-delta"`` is the
    identity at 64 bands).

``"kd"`` (after ``"bn-delta"``; minutes)
    Knowledge distillation of the whole network but its first layer from the full-band model
    (:func:`knowledge_distill`): every iteration a fresh batch of unlabelled inputs (a random
    re-encoding of a calibration photo, :data:`KD_QFS`; a random crop of a random resize or
    a RandomResizedCrop, in the DCT domain; a random flip; mixup), the full-band teacher on
    all 64 bands, the student on n, Adam on the KL divergence of the student's class
    distribution from the teacher's, BatchNorm statistics fixed. The first layer stays the
    folded estimate; the other weights change (same shapes: inference costs what the n-band
    model costs).

The result is an ordinary n-band model of the same registry name (``model_name``,
``model_kwargs`` with ``bands=n``, ``layout``) plus ``calibration`` (what was done, for the
checkpoint's ``extra``): :func:`save_calibrated` writes a dctnet checkpoint that
``resolve(None, weights=path)`` / ``Classifier("efficientnet_lite0_dct", weights=path)``
load back.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..imaging import decode_rgb, encode_jpeg, read_bytes
from ..ops import ZIGZAG, read_to_tensor
from ..ops.dct_domain import DCT8
from .checkpoint import save_checkpoint
from .convert import ConvertedFirstLayer
from .decode_path import converted_layout
from .resolve import create_model, resolve

__all__ = ["DEFAULT_STEPS", "STEPS", "WIENER_RHO", "ar1_block_covariance", "factored_first_layers", "block_gram",
           "calibrate", "calibration_set", "distill", "fold_estimate", "lsq_estimate", "bn_statistics",
           "reestimate_bn", "save_calibrated", "slice_first_layer", "match_stem", "KD_QFS", "KD_RESIZES", "KD_RRC",
           "kd_batch", "kd_divergence", "reencoded_versions", "knowledge_distill"]

#: The steps :func:`calibrate` knows, in the order they are applied.
STEPS = ("lsq", "wiener", "stem", "distill", "bn", "bn-delta", "kd")

#: Pixel correlation of the ``"wiener"`` step's prior per component (Y, Cb, Cr): the
#: classic separable first-order Markov model of natural images (chroma smoother).
WIENER_RHO = (0.95, 0.97, 0.97)

#: Augmentation of :func:`calibration_set`: re-encodings (None = the file as it is), shorter
#: side before the 224 centre crop, horizontal flips.
DEFAULT_QFS = (None, 90, 75, 50)

#: The default steps of :func:`calibrate` and `dctnet calibrate`: the folded same-block estimate,
#: then the BatchNorm statistics' *change* (``"bn"`` on a small set costs the full-band model
#: accuracy; held-out numbers in the README).
DEFAULT_STEPS = ("lsq", "bn-delta")
DEFAULT_RESIZES = (256, 292)
DEFAULT_FLIPS = (False, True)

Inputs = tuple[torch.Tensor, torch.Tensor]


# --- calibration data ----------------------------------------------------------------------------

def calibration_set(images: Iterable, *, qfs: Sequence[int | None] = DEFAULT_QFS,
                    resizes: Sequence[int] = DEFAULT_RESIZES, flips: Sequence[bool] = DEFAULT_FLIPS,
                    size: int = 224, threads: int | None = None, progress: bool = False) -> Inputs:
    """Full-band inputs of unlabelled JPEGs with augmentation, as the Classifier makes them.

    Every image (a path or JPEG bytes) is used as it is (``qf=None``) and re-encoded from its
    decoded pixels at each other ``qfs`` entry (:func:`~dctnet.imaging.encode_jpeg`, 4:2:0);
    each version is read with :func:`~dctnet.ops.read_to_tensor` in the DCT domain at every
    shorter side in ``resizes`` (then the ``size`` centre crop), with and without a
    horizontal flip (``flips``).

    Returns:
        ``(y, cbcr)``: float32 ``(N, 64, size/8, size/8)`` and ``(N, 128, size/16, size/16)``
        (:func:`converted_layout` ``(64)``: late_concat, dequantised, zigzag band order), with
        ``N = len(images) * len(qfs) * len(resizes) * len(flips)``.

    Raises:
        JPEGError / OSError naming the file that cannot be read.
    """
    layout = converted_layout(64)
    versions = reencoded_versions(images, qfs=qfs, progress=progress)
    ys, cs = [], []
    for resize in resizes:
        for flip in flips:
            y, c = read_to_tensor(versions, layout, size=size, resize=int(resize), flip=bool(flip), threads=threads)
            ys.append(y)
            cs.append(c)
    return torch.cat(ys), torch.cat(cs)


def _batches(inputs: Inputs, batch_size: int) -> Iterable[Inputs]:
    y, c = inputs
    for i in range(0, y.shape[0], batch_size):
        yield y[i:i + batch_size], c[i:i + batch_size]


def _select(inputs: Inputs, bands: int) -> Inputs:
    """Full-band ``(y, cbcr)`` -> the n-band input (first n zigzag bands per component)."""
    y, c = inputs
    return y[:, :bands], torch.cat([c[:, :bands], c[:, 64:64 + bands]], 1)


# --- the closed-form estimate ---------------------------------------------------------------------

def block_gram(y: torch.Tensor, cbcr: torch.Tensor) -> torch.Tensor:
    """Second moments of the blocks: ``float64 (3, 64, 64)``, ``G[c] = sum_blocks z z^T`` for
    component c (Y, Cb, Cr), ``z`` the block's 64 coefficients in the input's band order.

    Args:
        y: ``(B, 64, h, w)``; cbcr: ``(B, 128, h2, w2)`` (Cb bands then Cr bands), any float dtype.
    """
    if y.shape[1] != 64 or cbcr.shape[1] != 128:
        raise ValueError(f"block_gram needs all 64 bands per component, got y {tuple(y.shape)}, "
                         f"cbcr {tuple(cbcr.shape)}")
    out = []
    for part in (y, cbcr[:, :64], cbcr[:, 64:]):
        z = part.detach().double().permute(1, 0, 2, 3).reshape(64, -1)
        out.append(z @ z.T)
    return torch.stack(out)


def lsq_estimate(gram: torch.Tensor, bands: int, ridge: float = 0.0) -> torch.Tensor:
    """Least-squares map from the first ``bands`` coefficients to the others.

    Args:
        gram: ``(64, 64)`` or ``(3, 64, 64)`` second-moment matrix (:func:`block_gram`).
        bands: ``n``, the kept (leading) bands.
        ridge: added to the diagonal of ``G_kk`` relative to its mean diagonal (0: plain
            least squares).

    Returns:
        ``float64 (64 - n, n)`` (or ``(3, 64 - n, n)``): ``A = G_dk G_kk^-1``, so that
        ``d_hat = A @ k`` minimises the summed squared error over the blocks ``gram`` was
        accumulated from.
    """
    g = gram.double()
    if g.shape[-2:] != (64, 64) or not 1 <= bands <= 64:
        raise ValueError(f"need a (.., 64, 64) gram and 1 <= bands <= 64, got {tuple(g.shape)}, {bands}")
    gkk = g[..., :bands, :bands]
    if ridge:
        diag = torch.diagonal(gkk, dim1=-2, dim2=-1).mean(-1)[..., None, None]
        gkk = gkk + ridge * diag * torch.eye(bands, dtype=g.dtype)
    gdk = g[..., bands:, :bands]
    # A G_kk = G_dk  <=>  G_kk A^T = G_kd (G_kk symmetric)
    return torch.linalg.solve(gkk, gdk.transpose(-1, -2)).transpose(-1, -2)


def ar1_block_covariance(rho: float) -> torch.Tensor:
    """``float64 (64, 64)``: covariance of the 64 orthonormal DCT coefficients of an 8x8 block
    of a separable first-order Markov field (unit variance, correlation ``rho ** |d|`` between
    pixels ``d`` apart along either axis), in zigzag band order. A prior that depends on no
    photo: ``lsq_estimate(ar1_block_covariance(rho), n)`` is the Wiener (conditional mean)
    estimate of the dropped bands under it."""
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"rho must be in [0, 1), got {rho}")
    i = np.arange(8)
    c1 = DCT8 @ (rho ** np.abs(i[:, None] - i[None, :])) @ DCT8.T       # 1-D: frequency x frequency
    c2 = np.kron(c1, c1)                                                # natural order 8 * v + u
    z = np.asarray(ZIGZAG)
    return torch.from_numpy(c2[np.ix_(z, z)].copy())


# --- the first layer ---------------------------------------------------------------------------

@contextlib.contextmanager
def factored_first_layers(*layers: ConvertedFirstLayer):
    """Within the block, ``layers`` run :meth:`~dctnet.models.convert.ConvertedFirstLayer.forward_factored`
    (the same function, computed as IDCT + decode + RGB conv: several times cheaper on CPU);
    their previous mode is restored afterwards. Not for layers changed by :func:`distill`."""
    before = [layer.factored for layer in layers]
    try:
        for layer in layers:
            layer.factored = True
        yield
    finally:
        for layer, mode in zip(layers, before):
            layer.factored = mode


def _first_layer(model: nn.Module) -> ConvertedFirstLayer:
    layer = getattr(model, "stem_conv", None)
    if not isinstance(layer, ConvertedFirstLayer):
        raise ValueError(f"{type(model).__name__} has no converted first layer (stem_conv): calibrate takes "
                         "models converted with from_rgb, e.g. efficientnet_lite0_dct")
    return layer


@torch.no_grad()
def slice_first_layer(full: ConvertedFirstLayer, target: ConvertedFirstLayer) -> ConvertedFirstLayer:
    """Copy a full-band first layer's weights for the kept bands into ``target`` (an n-band
    layer of the same geometry): the plain n-band conversion, dropped bands zero."""
    n = target.ny
    if full.ny != 64 or full.ncb != 64 or full.ncr != 64:
        raise ValueError("slice_first_layer needs a full-band (64 per component) first layer")
    if (target.ncb, target.ncr) != (n, n) or target.layout.band_indices()[0] != full.layout.band_indices()[0][:n]:
        raise ValueError("the target must keep the n lowest zigzag bands of every component")
    target.conv_y.weight.copy_(full.conv_y.weight[:, :n])
    target.deconv_c.weight.copy_(torch.cat([full.deconv_c.weight[:n], full.deconv_c.weight[64:64 + n]]))
    target.edge_basis_cb.copy_(full.edge_basis_cb[:, :n])
    target.edge_basis_cr.copy_(full.edge_basis_cr[:, :n])
    target.pixel_basis_y.copy_(full.pixel_basis_y[:, :n])
    for name in ("bias", "frame_weight", "const_taps"):
        getattr(target, name).copy_(getattr(full, name))
    return target


@torch.no_grad()
def fold_estimate(full: ConvertedFirstLayer, target: ConvertedFirstLayer, estimate: torch.Tensor) -> ConvertedFirstLayer:
    """Fold ``d_hat = A_c @ k`` into the n-band ``target`` (weights from the full-band ``full``).

    Args:
        full: the 64-band converted first layer.
        target: an n-band layer of the same geometry (overwritten).
        estimate: ``(3, 64 - n, n)`` (Y, Cb, Cr), e.g. :func:`lsq_estimate`.

    Afterwards ``target(k)`` equals ``full([k, A k])`` (per block and component), border term
    included, up to float32 rounding.
    """
    slice_first_layer(full, target)
    n = target.ny
    a = estimate.double()
    if a.shape != (3, 64 - n, n):
        raise ValueError(f"estimate must be (3, {64 - n}, {n}) for {n} bands, got {tuple(a.shape)}")
    if n == 64:
        return target
    wy = full.conv_y.weight.double()                                   # (O, 64, kh, kw)
    target.conv_y.weight.copy_((wy[:, :n] + torch.einsum("odij,dk->okij", wy[:, n:], a[0])).float())
    wc = full.deconv_c.weight.double()                                 # (128, O, 4, 4)
    parts = []
    for comp, lo in ((1, 0), (2, 64)):
        w = wc[lo:lo + 64]
        parts.append(w[:n] + torch.einsum("dk,doij->koij", a[comp], w[n:]))
    target.deconv_c.weight.copy_(torch.cat(parts).float())
    for comp, name in ((0, "pixel_basis_y"), (1, "edge_basis_cb"), (2, "edge_basis_cr")):
        basis = getattr(full, name).double()                           # (64 pixels, 64 bands)
        getattr(target, name).copy_((basis[:, :n] + basis[:, n:] @ a[comp]).float())
    return target


@torch.no_grad()
def _stem_moments(layer: ConvertedFirstLayer, batches: Iterable[Inputs]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (float64 ``(C,)``) of the first layer's output."""
    s1 = s2 = None
    count = 0
    for y, c in batches:
        z = layer(y, c).double()
        s1 = z.sum((0, 2, 3)) if s1 is None else s1 + z.sum((0, 2, 3))
        s2 = (z * z).sum((0, 2, 3)) if s2 is None else s2 + (z * z).sum((0, 2, 3))
        count += z.numel() // z.shape[1]
    mean = s1 / count
    return mean, (s2 / count - mean * mean).clamp_min(1e-12).sqrt()


@torch.no_grad()
def match_stem(full: ConvertedFirstLayer, target: ConvertedFirstLayer, inputs: Inputs,
               batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-fit the first layer's folded BatchNorm: per output channel ``o``, scale ``target``
    by ``s_o = std_full / std_n`` and shift it so that its mean on ``inputs`` (full-band
    ``(y, cbcr)``, the n bands selected here) equals the full-band layer's. Exact: every
    term of the layer is linear in its weights, so the scale goes into ``conv_y``,
    ``deconv_c``, ``frame_weight``, ``const_taps`` and ``bias``. Returns ``(scale, shift)``
    (float64 ``(C,)``)."""
    n = target.ny
    m_full, s_full = _stem_moments(full, _batches(inputs, batch_size))
    m_n, s_n = _stem_moments(target, (_select(b, n) for b in _batches(inputs, batch_size)))
    scale = s_full / s_n
    shift = m_full - scale * m_n
    rr = target.r * target.r
    per_out = scale.repeat_interleave(rr)                             # conv channel o*r*r + (i*r + j)
    target.conv_y.weight.mul_(per_out.float().view(-1, 1, 1, 1))
    target.deconv_c.weight.mul_(per_out.float().view(1, -1, 1, 1))
    target.frame_weight.mul_(scale.float().view(-1, 1, 1, 1))
    target.const_taps.mul_(scale.float().view(-1, 1, 1))
    target.bias.copy_((target.bias.double() * scale + shift).float())
    # (the layer's constant-map cache is keyed on const_taps' version: the in-place update renews it)
    return scale, shift


# --- BatchNorm ---------------------------------------------------------------------------------

def _bn_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d,
                                                                            nn.BatchNorm3d))}


@torch.no_grad()
def bn_statistics(model: nn.Module, batches: Iterable[Inputs], *, progress: bool = False,
                  total: int | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Measure every BatchNorm's input statistics on ``batches`` without changing ``model``:
    ``{name: (mean, var)}`` (float32 ``(C,)`` each) as :func:`reestimate_bn` would set them."""
    saved = {name: (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for name, m in _bn_layers(model).items()}
    reestimate_bn(model, batches, progress=progress, total=total)
    out = {}
    for name, m in _bn_layers(model).items():
        out[name] = (m.running_mean.clone(), m.running_var.clone())
        mean, var, count = saved[name]
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)
        m.num_batches_tracked.copy_(count)
    return out


@torch.no_grad()
def reestimate_bn(model: nn.Module, batches: Iterable[Inputs], *, progress: bool = False,
                  total: int | None = None, reference: dict | None = None) -> int:
    """Running mean/var of every BatchNorm in ``model`` from ``batches`` (its inputs, e.g.
    n-band ``(y, cbcr)``): statistics reset, ``momentum=None`` (cumulative average of the
    batch means and unbiased batch variances), BN in train mode and everything else in eval
    mode (no dropout or drop-connect), no gradient; the model is left in eval mode with the
    original momenta. Returns the number of BN layers.

    ``reference``: :func:`bn_statistics` of the full-band model on the same images. Then only
    the *change* is applied to the model's original statistics (``mean + m_n - m_full``,
    ``var * v_n / v_full``): what dropping bands does, without replacing statistics measured
    on the training set by those of a small calibration set."""
    bns = _bn_layers(model)
    if not bns:
        raise ValueError(f"{type(model).__name__} has no BatchNorm layers")
    if reference is not None and set(reference) != set(bns):
        raise ValueError("reference statistics are for other BatchNorm layers")
    original = {name: (m.running_mean.clone(), m.running_var.clone()) for name, m in bns.items()}
    momenta = {name: m.momentum for name, m in bns.items()}
    model.eval()
    for m in bns.values():
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        for batch in tqdm(batches, desc="BatchNorm statistics", unit="batch", total=total, disable=not progress):
            model(*batch)
    finally:
        for name, m in bns.items():
            m.momentum = momenta[name]
        model.eval()
    if reference is not None:
        for name, m in bns.items():
            mean0, var0 = original[name]
            m_ref, v_ref = reference[name]
            m.running_mean.copy_(mean0 + m.running_mean - m_ref)
            m.running_var.copy_(var0 * m.running_var / v_ref.clamp_min(1e-12))
    return len(bns)


# --- distillation of the early layers ------------------------------------------------------------

def _early_features(model: nn.Module, depth: int, inputs: Inputs) -> torch.Tensor:
    """EfficientNet-Lite features after the first layer and ``depth`` blocks."""
    x = model.forward_stem(*inputs)
    for block in model._blocks[:depth]:
        x = block(x)
    return x


def distill(student: nn.Module, teacher: nn.Module, inputs: Inputs, bands: int, *, depth: int = 3,
            iterations: int = 150, batch_size: int = 16, lr: float = 1e-3, seed: int = 0, target: str = "features",
            progress: bool = False) -> list[float]:
    """Train the n-band ``student``'s first layer and first ``depth`` blocks to reproduce the
    full-band ``teacher``'s features after those blocks (mean squared error, unlabelled
    ``inputs``: full-band ``(y, cbcr)``, the n bands selected for the student), BatchNorm in
    eval mode (its running statistics fixed), Adam with a step size of ``lr`` times each
    tensor's RMS (the first layer's weights act on dequantised coefficients and are small).
    ``target="logits"``: the loss is instead the KL divergence of the student's class
    distribution from the teacher's (whole network run, still only the early layers trained).

    Only for EfficientNet-Lite-like models (``forward_stem``, ``_blocks``). The student's
    first layer stops being a pure fold of the conversion (its ``edge_basis_*`` buffers stay
    as they are: the border term keeps its exact decode-path form). Returns the loss per
    iteration (float list)."""
    if target not in ("features", "logits"):
        raise ValueError(f"target must be 'features' or 'logits', not {target!r}")
    if not hasattr(student, "forward_stem") or not hasattr(student, "_blocks"):
        raise ValueError(f"distill needs an EfficientNet-Lite (forward_stem, _blocks), not {type(student).__name__}")
    params = list(student.stem_conv.parameters()) + [p for b in student._blocks[:depth] for p in b.parameters()]
    groups = [{"params": [p], "lr": lr * float(p.detach().pow(2).mean().sqrt().clamp_min(1e-8))} for p in params]
    opt = torch.optim.Adam(groups)
    teacher.eval()
    student.eval()
    gen = torch.Generator().manual_seed(seed)
    total = inputs[0].shape[0]
    losses = []
    for p in student.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    try:
        for _ in tqdm(range(iterations), desc="distilling", unit="it", disable=not progress):
            idx = torch.randperm(total, generator=gen)[:batch_size]
            batch = (inputs[0][idx], inputs[1][idx])
            if target == "logits":
                with torch.no_grad():
                    want = torch.log_softmax(teacher(*batch), 1)
                got = torch.log_softmax(student(*_select(batch, bands)), 1)
                loss = torch.nn.functional.kl_div(got, want, log_target=True, reduction="batchmean")
            else:
                with torch.no_grad():
                    want = _early_features(teacher, depth, batch)
                loss = torch.nn.functional.mse_loss(_early_features(student, depth, _select(batch, bands)), want)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    finally:
        for p in student.parameters():
            p.requires_grad_(True)
    return losses


# --- knowledge distillation of the whole network -------------------------------------------------

#: ``"kd"`` step: re-encodings of every calibration photo (None = the file as it is) the batches
#: draw from; shorter sides of the ``"random"`` crops; the share of torchvision
#: RandomResizedCrop batches (area 8-100 %, aspect 3/4-4/3).
KD_QFS = (None, 95, 90, 80, 70, 60, 50)
KD_RESIZES = (224, 240, 256, 272, 288, 320)
KD_RRC = 0.5


def reencoded_versions(images: Iterable, *, qfs: Sequence[int | None] = KD_QFS, progress: bool = False) -> list[bytes]:
    """JPEG bytes of every image (path or bytes) as it is (``qf=None``) and re-encoded from its
    pixels at each other ``qfs`` entry (4:2:0): what :func:`calibration_set` reads and the
    ``"kd"`` step draws its batches from.
    ``len(images) * len(qfs)`` entries, image-major."""
    out: list[bytes] = []
    for i, src in enumerate(tqdm(list(images), desc="re-encoding", unit="img", disable=not progress)):
        name = os.fsdecode(src) if isinstance(src, (str, os.PathLike)) else f"<bytes #{i}>"
        data, _ = read_bytes(src, name)
        pixels = None
        for qf in qfs:
            if qf is None:
                out.append(bytes(data))
                continue
            if pixels is None:
                pixels = decode_rgb(data, name=name)
            out.append(encode_jpeg(pixels, int(qf)))
    if not out:
        raise ValueError("no calibration images")
    return out


def kd_batch(sources: Sequence[bytes], batch_size: int, generator: torch.Generator, *, size: int = 224,
             resizes: Sequence[int] = KD_RESIZES, rrc: float = KD_RRC, threads: int | None = None) -> Inputs:
    """One augmented full-band batch, drawn afresh: ``batch_size`` entries of ``sources`` (with
    replacement), then with probability ``rrc`` torchvision's RandomResizedCrop to ``size``,
    else the shorter side resized to one of ``resizes`` and a random ``size`` crop; random
    horizontal flips. All in the DCT domain (:func:`~dctnet.ops.read_to_tensor`), all draws from
    ``generator``.

    Returns:
        ``(y, cbcr)``: float32 ``(batch_size, 64, size/8, size/8)``, ``(batch_size, 128,
        size/16, size/16)`` (:func:`converted_layout` ``(64)``).
    """
    idx = torch.randint(len(sources), (batch_size,), generator=generator).tolist()
    batch = [sources[i] for i in idx]
    if float(torch.rand(1, generator=generator)) < rrc:
        crop, resize = "random-resized", None
    else:
        crop, resize = "random", int(resizes[int(torch.randint(len(resizes), (1,), generator=generator))])
    return read_to_tensor(batch, converted_layout(64), size=size, resize=resize, crop=crop, flip="random",
                          generator=generator, threads=threads)


def kd_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``T^2 * KL(softmax(t / T) || softmax(s / T))``, mean over the batch (float32 scalar)."""
    t = float(temperature)
    return torch.nn.functional.kl_div(torch.log_softmax(student_logits / t, 1),
                                      torch.log_softmax(teacher_logits / t, 1),
                                      log_target=True, reduction="batchmean") * (t * t)


def _mix(batch: Inputs, alpha: float, generator: torch.Generator) -> Inputs:
    """Mixup of a ``(y, cbcr)`` batch with a permutation of itself (one Beta(alpha, alpha)
    weight per image)."""
    b = batch[0].shape[0]
    perm = torch.randperm(b, generator=generator)
    lam = torch.tensor(np.random.default_rng(int(torch.randint(2 ** 31, (1,), generator=generator))).beta(
        alpha, alpha, b), dtype=torch.float32).view(b, 1, 1, 1)
    return tuple(lam * x + (1 - lam) * x[perm] for x in batch)


def _kd_parameters(model: nn.Module, train: str) -> set[str]:
    """Names of the parameters :func:`knowledge_distill` trains for ``train``."""
    names = [name for name, _ in model.named_parameters()]
    if train == "all":
        out = {n for n in names if not n.startswith("stem_conv.")}
    elif train == "everything":
        out = set(names)
    elif train == "first":
        out = {n for n in names if n.startswith("stem_conv.")}
    elif train == "bn":
        bns = [name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        out = {f"{b}.{w}" for b in bns for w in ("weight", "bias")} & set(names)
    elif train.startswith("blocks:") and train[7:].isdigit() and hasattr(model, "_blocks"):
        k = int(train[7:])
        out = {n for n in names if any(n.startswith(f"_blocks.{i}.") for i in range(k))}
    else:
        raise ValueError(f"train must be 'all', 'everything', 'first', 'bn' or 'blocks:k' (EfficientNet-Lite), "
                         f"not {train!r}")
    if not out:
        raise ValueError(f"train={train!r} selects no parameter of {type(model).__name__}")
    return out


def knowledge_distill(student: nn.Module, teacher: nn.Module, sources: Sequence[bytes], bands: int, *,
                      iterations: int = 200, batch_size: int = 16, lr: float = 2e-5, temperature: float = 2.0,
                      warmup: float = 0.05, resizes: Sequence[int] = KD_RESIZES, rrc: float = KD_RRC,
                      train: str = "all", mixup: float = 1.0, seed: int = 0, threads: int | None = None,
                      progress: bool = False, monitor=None, monitor_every: int = 0) -> list[float]:
    """Distil the full-band ``teacher``'s class distribution into the n-band ``student``: the
    whole network but its first layer, on unlabelled, freshly augmented batches.

    Every iteration draws a new batch (:func:`kd_batch`: a random re-encoding of a random
    photo, a random(-resized) crop, a random flip; then ``mixup``), runs the teacher on all 64 bands and the
    student on the first ``bands``, and takes an Adam step on :func:`kd_divergence` (KL of
    the student's distribution from the teacher's, ``temperature``); learning rate ``lr``
    with a linear warm-up over ``warmup`` of the iterations, then a cosine decay to 0.
    BatchNorm stays in eval mode (statistics fixed: run ``bn-delta`` before), dropout and
    drop-connect off. The first layer (the folded estimate) is frozen unless
    ``train`` says so, so its factored form stays valid; both first layers run factored here
    (the same map, cheaper) unless the student's is trained.

    Args:
        student: the n-band model (trained in place); teacher: the full-band model (unchanged).
        sources: JPEG bytes (:func:`reencoded_versions`).
        train: which parameters are trained: ``"all"`` (all but the first layer), ``"bn"``
            (the BatchNorms' affine weights and biases only), ``"blocks:k"`` (the first ``k``
            blocks, EfficientNet-Lite), ``"first"`` (the first layer's folded convolutions and
            bias only), ``"everything"`` (all, first layer included).
        mixup: if > 0, every batch is mixed with a permutation of itself, ``lam * x + (1 - lam)
            * x[perm]`` with one ``lam ~ Beta(mixup, mixup)`` per image (coefficients are
            linear in the pixels, so this is pixel mixup; teacher and student see the same mix).
        monitor: optional ``callable(iteration) -> dict`` run every ``monitor_every``
            iterations and at the end (e.g. the KL on held-back inputs); its results are
            printed with the progress bar.

    Returns:
        The loss per iteration (float list, ``iterations`` entries).
    """
    if iterations < 1 or batch_size < 1:
        raise ValueError(f"iterations and batch_size must be >= 1, got {iterations}, {batch_size}")
    teacher.eval()
    student.eval()
    t_first, s_first = _first_layer(teacher), _first_layer(student)
    chosen = _kd_parameters(student, train)
    train_first_layer = any(name.startswith("stem_conv.") for name in chosen)
    params = [p for name, p in student.named_parameters() if name in chosen]
    opt = torch.optim.Adam(params, lr=lr)
    ramp = max(1, int(round(warmup * iterations)))

    def factor(i: int) -> float:
        if i < ramp:
            return (i + 1) / ramp
        return 0.5 * (1.0 + float(np.cos(np.pi * (i - ramp) / max(1, iterations - ramp))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    gen = torch.Generator().manual_seed(seed)
    frozen = {name: p.requires_grad for name, p in student.named_parameters()}
    for name, p in student.named_parameters():
        p.requires_grad_(name in chosen)
    losses: list[float] = []
    bar = tqdm(range(iterations), desc="distilling (kd)", unit="it", disable=not progress)
    layers = (t_first,) if train_first_layer else (t_first, s_first)
    try:
        # (enable_grad: callers such as the held-out table run under torch.no_grad)
        with factored_first_layers(*layers), torch.enable_grad():
            for i in bar:
                batch = kd_batch(sources, batch_size, gen, resizes=resizes, rrc=rrc, threads=threads)
                if mixup > 0:
                    batch = _mix(batch, mixup, gen)
                with torch.no_grad():
                    want = teacher(*batch)
                loss = kd_divergence(student(*_select(batch, bands)), want, temperature)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                losses.append(float(loss.detach()))
                if monitor is not None and monitor_every and (i + 1) % monitor_every == 0 and i + 1 < iterations:
                    bar.write(f"kd {i + 1}/{iterations}: loss {np.mean(losses[-monitor_every:]):.4f} "
                              f"{monitor(i + 1)}")
            if monitor is not None:
                bar.write(f"kd {iterations}/{iterations}: loss {np.mean(losses[-max(1, monitor_every):]):.4f} "
                          f"{monitor(iterations)}")
    finally:
        for name, p in student.named_parameters():
            p.requires_grad_(frozen[name])
        student.eval()
    return losses


# --- the whole procedure -------------------------------------------------------------------------

def _full_model(bundle_or_name) -> nn.Module:
    if isinstance(bundle_or_name, str):
        return resolve(bundle_or_name, bands=64).model
    model = getattr(bundle_or_name, "model", bundle_or_name)
    if not isinstance(model, nn.Module):
        raise ValueError(f"calibrate takes a registry name, a ModelBundle or an nn.Module, not "
                         f"{type(bundle_or_name).__name__}")
    return model


def calibrate(bundle_or_name, bands: int, images, *, steps: Sequence[str] = DEFAULT_STEPS, progress: bool = True,
              batch_size: int = 32, threads: int | None = None, qfs: Sequence[int | None] = DEFAULT_QFS,
              resizes: Sequence[int] = DEFAULT_RESIZES, flips: Sequence[bool] = DEFAULT_FLIPS,
              ridge: float = 0.0, reference_stats: dict | None = None,
              distill_options: dict | None = None, kd_images=None, kd_options: dict | None = None) -> nn.Module:
    """An n-band copy of a converted network, recovered without labels (module docstring).

    Args:
        bundle_or_name: a registry name of a converted model (``"efficientnet_lite0_dct"``,
            resolved with its default weights at 64 bands), or the full-band (64 bands per
            component) model / :class:`~dctnet.models.ModelBundle` itself.
        bands: ``n``, 1..64: keep the n lowest zigzag bands of every component.
        images: unlabelled JPEGs (paths or bytes), or precomputed full-band inputs ``(y,
            cbcr)`` (:func:`calibration_set`).
        steps: a subset of ``("lsq" or "wiener", "stem", "distill", "bn" or "bn-delta", "kd")``
            (:data:`STEPS`; applied in that order).
            ``()``: the plain n-band model. Default :data:`DEFAULT_STEPS` (``lsq``, ``bn-delta``).
        progress: tqdm progress bars on stderr.
        batch_size: images per forward pass; threads: reader threads.
        qfs, resizes, flips: augmentation (:func:`calibration_set`).
        ridge: relative ridge of the least-squares estimate (:func:`lsq_estimate`).
        distill_options: keyword arguments of :func:`distill` (``"distill"`` step).
        kd_images: for ``"kd"`` when ``images`` are precomputed inputs: the unlabelled JPEGs
            (paths or bytes) it draws fresh batches from (default: ``images``).
        kd_options: keyword arguments of :func:`knowledge_distill` (``"kd"`` step), and
            ``qfs`` for :func:`reencoded_versions`.
        reference_stats: for ``"bn-delta"``, :func:`bn_statistics` of the full-band model on
            these calibration inputs (computed when not given).

    Returns:
        The n-band model (eval mode, on the CPU) with ``model_name``, ``model_kwargs``
        (``bands=n``), ``layout``, ``input_config``, and ``calibration`` (a dict: steps, bands,
        number of calibration inputs, augmentation).
    """
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ValueError(f"unknown calibration step(s) {', '.join(map(repr, unknown))}; choose from {', '.join(STEPS)}")
    if not isinstance(bands, (int, np.integer)) or not 1 <= int(bands) <= 64:
        raise ValueError(f"bands must be an integer 1..64, got {bands!r}")
    n = int(bands)
    full = _full_model(bundle_or_name).eval()
    full_first = _first_layer(full)
    if (full_first.ny, full_first.ncb, full_first.ncr) != (64, 64, 64):
        raise ValueError("calibrate needs the full-band model (64 bands per component): the weights of the "
                         "dropped bands are what the estimate is folded through")
    name = getattr(full, "model_name", None)
    if name is None:
        raise ValueError("the model has no registry name (model_name); build it with resolve/create_model")
    kwargs = {**(getattr(full, "model_kwargs", None) or {}), "bands": n}
    num_classes = full.fc.out_features if hasattr(full, "fc") else 1000
    with torch.device("cpu"):
        model = create_model(name, weights=False, num_classes=num_classes, **kwargs)
    state = {k: v for k, v in full.state_dict().items() if not k.startswith("stem_conv.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("stem_conv.") for k in missing):
        raise ValueError(f"{name}: the n-band model does not match the full-band one ({unexpected or missing})")
    model.class_names = getattr(full, "class_names", None)
    first = _first_layer(model)
    slice_first_layer(full_first, first)

    augmentation = None
    if isinstance(images, tuple) and len(images) == 2 and isinstance(images[0], torch.Tensor):
        inputs = images
    else:
        inputs = calibration_set(images, qfs=qfs, resizes=resizes, flips=flips, threads=threads, progress=progress)
        augmentation = {"qfs": list(qfs), "resizes": list(resizes), "flips": list(flips)}
    info = {"steps": [s for s in STEPS if s in steps], "bands": n, "calibration_inputs": int(inputs[0].shape[0]),
            "augmentation": augmentation}
    if "lsq" in steps:
        gram = torch.zeros(3, 64, 64, dtype=torch.float64)
        for y, c in tqdm(list(_batches(inputs, 256)), desc="block statistics", unit="batch", disable=not progress):
            gram += block_gram(y, c)
        fold_estimate(full_first, first, lsq_estimate(gram, n, ridge))
        info["lsq"] = {"estimate": "same block, per component, once for all QFs", "ridge": ridge}
    if "wiener" in steps:
        if "lsq" in steps:
            raise ValueError("choose one of the steps 'lsq' and 'wiener' (two estimates of the same bands)")
        prior = torch.stack([ar1_block_covariance(r) for r in WIENER_RHO])
        fold_estimate(full_first, first, lsq_estimate(prior, n))
        info["wiener"] = {"estimate": "same block, separable AR(1) prior, no photo statistics", "rho": list(WIENER_RHO)}
    if "stem" in steps:
        match_stem(full_first, first, inputs, batch_size)
    if "distill" in steps:
        losses = distill(model, full, inputs, n, progress=progress, **(distill_options or {}))
        info["distill"] = {**(distill_options or {}), "loss_first": losses[0], "loss_last": losses[-1]}
    if "bn" in steps and "bn-delta" in steps:
        raise ValueError("choose one of the steps 'bn' and 'bn-delta'")
    if "kd" in steps and "distill" in steps:
        raise ValueError("choose one of the steps 'distill' and 'kd'")
    if "bn" in steps or "bn-delta" in steps:
        batches = [_select(b, n) for b in _batches(inputs, batch_size)]
        # the measurement passes run the first layers factored (the same map, cheaper on CPU)
        # unless distillation trained the folded convolutions away from the bases
        with factored_first_layers(*((full_first,) if "distill" in steps else (full_first, first))):
            if "bn-delta" in steps and reference_stats is None:
                reference_stats = bn_statistics(full, list(_batches(inputs, batch_size)), progress=progress)
            info["bn_layers"] = reestimate_bn(model, batches, progress=progress, total=len(batches),
                                              reference=reference_stats if "bn-delta" in steps else None)
    if "kd" in steps:
        sources_from = images if kd_images is None else kd_images
        if isinstance(sources_from, tuple) and len(sources_from) == 2 and isinstance(sources_from[0], torch.Tensor):
            raise ValueError("the 'kd' step reads fresh augmentations of the JPEGs: pass kd_images (paths or bytes) "
                             "with precomputed inputs")
        options = dict(kd_options or {})
        qfs_kd = options.pop("qfs", KD_QFS)
        t0 = time.time()
        sources = reencoded_versions(sources_from, qfs=qfs_kd, progress=progress)
        options.setdefault("threads", threads)
        losses = knowledge_distill(model, full, sources, n, progress=progress, **options)
        w = max(1, min(20, len(losses) // 5))
        info["kd"] = {**{k: v for k, v in options.items() if k not in ("monitor", "threads")},
                      "qfs": list(qfs_kd), "images": len(sources) // len(qfs_kd),
                      "loss_first": float(np.mean(losses[:w])), "loss_last": float(np.mean(losses[-w:])),
                      "seconds": round(time.time() - t0, 1)}
    model.calibration = info
    return model.eval()


def save_calibrated(path, model: nn.Module, *, extra: dict | None = None) -> None:
    """Write a :func:`calibrate` result as a dctnet checkpoint (its ``calibration`` dict goes
    into ``extra["calibration"]``); ``resolve(None, weights=path)`` loads it back."""
    save_checkpoint(path, model, extra={"calibration": copy.deepcopy(getattr(model, "calibration", {})),
                                        **(extra or {})})
