"""DCT-input ResNet-50s (Gueguen et al. 2018; dos Santos et al. 2020 with FBS), one family.

All are ``DCTResNet`` = the parameterised ``ResNet`` of ``resnet.py`` with a DCT stem and these
stages (n = bands per component, c = 3n input channels, m = 4n, o = 16n; docs/architecture.md §5):

- ``layer1`` (ResNet's stage 2) at 28x28, stride 1, receptive-field-aware (RFA): a conv block
  of 1x1 convs c->m->m->o with a 1x1 projection c->o, then identity blocks whose middle
  kernels are 2x2 ("same" padding) and 3x3.
- ``layer2`` (stage 3) at 28x28, stride 1: o->128->128->512, four blocks.
- ``layer3``, ``layer4`` as ResNet-50 (28->14->7), global average pool, FC.

Variants (registered names):

``resnet50_dct`` / ``resnet50_dct_fbs{n}``, n in 1..64 (UpSampling-RFA)
    Input ``(B, 3n, 28, 28)`` ("upsampling" layout: chroma already upsampled x2 by the data
    side), a BatchNorm, then the stages above. ``resnet50_dct`` is ``fbs64``.

``resnet50_dct_late_concat_rfa`` / ``..._thinner`` (our reconstruction of Late-Concat-RFA)
    Input ``y (B, n, 28, 28)`` and ``cbcr (B, 2n, 14, 14)`` ("late_concat" layout), each with
    its own BatchNorm. Y: the RFA ``layer1`` (n->m->m->o, widths below), then ``layer2``
    with stride 2 (28->14). CbCr: one RFA conv block of 1x1 convs 2n->mc->mc->oc at 14x14.
    The two join (channel concat) at the input of ``layer3``, which then runs at stride 1
    (14x14) and ``layer4`` at stride 2 (7x7). Widths: RFA m=4n, o=16n, mc=2n, oc=256 (n=64:
    256/1024/128/256); Thinner halves them (m=2n, o=8n, mc=n, oc=128). The paper gives the
    structure (separate BN and paths, CbCr joins where ResNet's resolution is 14x14) but not
    every width; these keep its Y path as wide as UpSampling-RFA's and its CbCr path small.

``resnet50_dct_deconv_rfa`` (our reconstruction of Deconvolution-RFA)
    "late_concat" input; Cb and Cr (each n channels) are lifted to 28x28 by a learned 2x2
    stride-2 transposed convolution (one per component: ``groups=2``) + BatchNorm, joined
    with the BatchNormed Y, then the UpSampling-RFA stages.

``stride_in_1x1`` (default True: v1, as the papers' tables) selects where downsampling blocks
put their stride. Every model has ``.layout`` (``DCTLayout``; normalisation statistics are
attached when weights come from a dctnet checkpoint) and ``.input_config``. A model also
accepts a ``BlockBatch`` (``dctnet.ops.layout``) instead of tensors; for "upsampling" models
in eval mode on CUDA its first stage then runs as one fused Triton kernel
(``dctnet.models.fused_stem``).
"""

from __future__ import annotations

import logging
import math
from typing import Sequence

import torch
from torch import nn

from ..ops.layout import BlockBatch, DCTLayout
from .checkpoint import read_state_dict
from .fused_stem import blocks_to_input, first_stage, supports_fused_stem
from .registry import register_model
from .resnet import Bottleneck, InputConfig, ResNet, StageSpec

__all__ = ["DCTResNet", "UpsamplingStem", "LateConcatStem", "DeconvStem", "dct_resnet50", "init_from_rgb"]

log = logging.getLogger(__name__)


class UpsamplingStem(nn.Module):
    """BatchNorm of the ``(B, C, h, w)`` "upsampling" input (no conv, no pooling)."""

    def __init__(self, channels: int):
        super().__init__()
        self.out_channels = channels
        self.bn_in = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.out_channels:
            raise ValueError(f"expected a (B, {self.out_channels}, H/8, W/8) tensor, got {tuple(x.shape)}")
        return self.bn_in(x)


def split_late_concat(y, cbcr):
    if cbcr is None and isinstance(y, (tuple, list)) and len(y) == 2:
        y, cbcr = y
    if cbcr is None:
        raise ValueError("late_concat models take two tensors: y (B, nY, H/8, W/8) and cbcr (B, nCb+nCr, H/16, W/16)")
    return y, cbcr


def _check_late_concat(y, cbcr, ny: int, nc: int) -> None:
    if y.dim() != 4 or cbcr.dim() != 4 or y.shape[1] != ny or cbcr.shape[1] != nc:
        raise ValueError(f"expected y (B, {ny}, h, w) and cbcr (B, {nc}, h/2, w/2), got "
                         f"{tuple(y.shape)} and {tuple(cbcr.shape)}")
    if (cbcr.shape[2] * 2, cbcr.shape[3] * 2) != tuple(y.shape[2:]):
        raise ValueError(f"cbcr {tuple(cbcr.shape[2:])} must be half the size of y {tuple(y.shape[2:])}")


class LateConcatStem(nn.Module):
    """Separate BatchNorms of Y and CbCr; returns ``(y, cbcr)`` (CbCr joins later)."""

    def __init__(self, y_channels: int, cbcr_channels: int):
        super().__init__()
        self.out_channels = y_channels
        self.bn_y = nn.BatchNorm2d(y_channels)
        self.bn_cbcr = nn.BatchNorm2d(cbcr_channels)

    def forward(self, y, cbcr=None):
        y, cbcr = split_late_concat(y, cbcr)
        _check_late_concat(y, cbcr, self.bn_y.num_features, self.bn_cbcr.num_features)
        return self.bn_y(y), self.bn_cbcr(cbcr)


class DeconvStem(nn.Module):
    """BN(Y) ++ BN(deconv2x2/2(BN(CbCr))): ``y (B, n, h, w), cbcr (B, 2n, h/2, w/2) -> (B, 3n, h, w)``."""

    def __init__(self, y_channels: int, cbcr_channels: int):
        super().__init__()
        if cbcr_channels % 2:
            raise ValueError("deconv stem needs the same number of Cb and Cr bands")
        self.out_channels = y_channels + cbcr_channels
        self.bn_y = nn.BatchNorm2d(y_channels)
        self.bn_cbcr = nn.BatchNorm2d(cbcr_channels)
        self.deconv = nn.ConvTranspose2d(cbcr_channels, cbcr_channels, 2, stride=2, groups=2, bias=False)
        self.bn_up = nn.BatchNorm2d(cbcr_channels)

    def forward(self, y, cbcr=None):
        y, cbcr = split_late_concat(y, cbcr)
        _check_late_concat(y, cbcr, self.bn_y.num_features, self.bn_cbcr.num_features)
        up = self.bn_up(self.deconv(self.bn_cbcr(cbcr)))
        return torch.cat([self.bn_y(y), up], dim=1)


class DCTResNet(ResNet):
    """``ResNet`` with a DCT stem and a ``layout``; also accepts a ``BlockBatch`` as input.

    ``forward(x)`` for "upsampling" models (``x``: ``(B, 3n, h, w)`` float), ``forward(y, cbcr)``
    or ``forward((y, cbcr))`` for "late_concat" ones, ``forward(blocks)`` for a ``BlockBatch``
    (the model gathers, dequantises and normalises with ``layout`` itself; fused on CUDA in
    eval mode for "upsampling" models). Returns logits ``(B, num_classes)`` float.
    """

    fused_stem_impl = "auto"  # "auto" | "triton" | "torch"; see dctnet.models.fused_stem.first_stage

    def forward_features(self, *inputs) -> torch.Tensor:
        if len(inputs) == 1 and isinstance(inputs[0], BlockBatch):
            blocks = inputs[0]
            if supports_fused_stem(self):
                x = first_stage(self, blocks, impl=self.fused_stem_impl)  # output of layer1[0]
                for block in list(self.layer1)[1:]:
                    x = block(x)
                return self.forward_stages(x, first_stage=2)
            inputs = blocks_to_input(blocks, self.layout)
        return super().forward_features(*inputs)


def _rfa_stage(width: int, out: int) -> StageSpec:
    return StageSpec(width, out, (1, 2, 3), stride=1, project=True)


def _dct_tail(stage3_stride: int, stage4_stride: int, layers: Sequence[int] = (4, 6, 3)) -> list[StageSpec]:
    # Every stage opens with a projecting "conv block", as in the papers' Keras ResNet-50.
    if len(layers) != 3 or any(n < 1 for n in layers):
        raise ValueError(f"layers must give 3 positive block counts (stages 3-5), got {layers}")
    return [StageSpec.uniform(128, 512, layers[0], stride=stage3_stride, project=True),
            StageSpec.uniform(256, 1024, layers[1], stride=stage4_stride, project=True),
            StageSpec.uniform(512, 2048, layers[2], stride=2, project=True)]


def _finish(model: DCTResNet, layout: DCTLayout, shapes) -> DCTResNet:
    model.layout = layout
    model.class_names = None
    model.input_config = InputConfig((224, 224), tuple(shapes))
    return model


def dct_resnet50(variant: str = "upsampling_rfa", bands: int | Sequence[Sequence[int]] = 64, num_classes: int = 1000,
                 stride_in_1x1: bool = True, widths: Sequence[int] | None = None,
                 layers: Sequence[int] = (4, 6, 3), zero_init_residual: bool = False) -> DCTResNet:
    """Build a DCT ResNet-50.

    Args:
        variant: ``"upsampling_rfa"``, ``"late_concat_rfa"``, ``"late_concat_rfa_thinner"`` or
            ``"deconv_rfa"`` (see the module docstring).
        bands: n (lowest zigzag frequencies per component) or one list of natural indices per
            component (Y, Cb, Cr; Cb and Cr must have equal lengths for late-concat variants).
        stride_in_1x1: v1 downsampling blocks (the papers') if True.
        widths: override the stage-2 widths: ``(m, o)`` for upsampling/deconv, ``(m, o, mc, oc)``
            for late-concat.
        layers: blocks in stages 3, 4, 5 (ResNet-50: 4, 6, 3; fewer for quick experiments/tests).
    """
    common = dict(num_classes=num_classes, stride_in_1x1=stride_in_1x1, zero_init_residual=zero_init_residual)
    if variant == "upsampling_rfa" or variant == "deconv_rfa":
        kind = "upsampling" if variant == "upsampling_rfa" else "late_concat"
        layout = DCTLayout(kind, bands)
        c = layout.num_channels
        m, o = widths if widths is not None else (4 * math.ceil(c / 3), 16 * math.ceil(c / 3))
        if variant == "upsampling_rfa":
            stem = UpsamplingStem(c)
            shapes = [(c, 28, 28)]
        else:
            ny, ncb, ncr = layout.channels_per_component
            if ncb != ncr:
                raise ValueError(f"deconv_rfa needs as many Cb as Cr bands, got {ncb} and {ncr}")
            stem = DeconvStem(ny, ncb + ncr)
            shapes = [(ny, 28, 28), (ncb + ncr, 14, 14)]
        model = DCTResNet(Bottleneck, [_rfa_stage(m, o)] + _dct_tail(1, 2, layers), stem, **common)
        return _finish(model, layout, shapes)
    if variant in ("late_concat_rfa", "late_concat_rfa_thinner"):
        layout = DCTLayout("late_concat", bands)
        ny, ncb, ncr = layout.channels_per_component
        nc = ncb + ncr
        if widths is not None:
            m, o, mc, oc = widths
        elif variant == "late_concat_rfa":
            m, o, mc, oc = 4 * ny, 16 * ny, nc, 256
        else:
            m, o, mc, oc = 2 * ny, 8 * ny, max(1, nc // 2), 128
        side = nn.Sequential(Bottleneck(nc, mc, oc, stride=1, kernel=1, project=True))
        stages = [_rfa_stage(m, o)] + _dct_tail(2, 1, layers)
        model = DCTResNet(Bottleneck, stages, LateConcatStem(ny, nc), side_path=side, side_channels=oc,
                          join_before=3, **common)
        return _finish(model, layout, [(ny, 28, 28), (nc, 14, 14)])
    raise ValueError(f"unknown DCT ResNet variant {variant!r}")


@register_model
def resnet50_dct(bands=64, **kwargs) -> DCTResNet:
    """UpSampling-RFA DCT ResNet-50 on 3x64 channels (5.40 GMACs): input ``(B, 192, 28, 28)``."""
    return dct_resnet50("upsampling_rfa", bands=bands, **kwargs)


def _fbs_builder(n: int):
    def builder(**kwargs) -> DCTResNet:
        return dct_resnet50("upsampling_rfa", bands=n, **kwargs)

    builder.__name__ = builder.__qualname__ = f"resnet50_dct_fbs{n}"
    builder.__doc__ = (f"UpSampling-RFA DCT ResNet-50 on the {n} lowest zigzag bands per component: "
                       f"input ``(B, {3 * n}, 28, 28)``, stage-2 widths {4 * n}/{16 * n}.")
    return builder


for _n in range(1, 65):
    register_model(_fbs_builder(_n))


@register_model
def resnet50_dct_late_concat_rfa(bands=64, **kwargs) -> DCTResNet:
    """Late-Concat-RFA (reconstruction): ``y (B, n, 28, 28)``, ``cbcr (B, 2n, 14, 14)``."""
    return dct_resnet50("late_concat_rfa", bands=bands, **kwargs)


@register_model
def resnet50_dct_late_concat_rfa_thinner(bands=64, **kwargs) -> DCTResNet:
    """Late-Concat-RFA-Thinner (reconstruction): Late-Concat-RFA with halved stage-2 widths."""
    return dct_resnet50("late_concat_rfa_thinner", bands=bands, **kwargs)


@register_model
def resnet50_dct_deconv_rfa(bands=64, **kwargs) -> DCTResNet:
    """Deconvolution-RFA (reconstruction): CbCr lifted by 2x2/2 transposed convs, then UpSampling-RFA."""
    return dct_resnet50("deconv_rfa", bands=bands, **kwargs)


def init_from_rgb(model: DCTResNet, source) -> dict:
    """Copy the stages a DCT ResNet-50 shares with an RGB ResNet-50 (``layer2..4``, ``fc``).

    Args:
        model: a DCT model from this module.
        source: path to an RGB ResNet-50 state dict / dctnet checkpoint, or a state dict.

    Tensors are copied where the key exists in both and the shapes agree (``fc`` only when the
    class counts match; ``layer2.0.conv1`` and the projection differ unless o = 256, i.e.
    FBS16). Running statistics come along with the BN weights.

    Returns:
        ``{"loaded": [keys], "skipped": [keys of layer2..4/fc not loaded]}``.

    Raises:
        ValueError: the source has none of these keys (not a ResNet-50 state dict).
    """
    name = source if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__") else "<state dict>"
    rgb = read_state_dict(source)
    own = model.state_dict()
    shared = [k for k in own if k.split(".", 1)[0] in ("layer2", "layer3", "layer4", "fc")]
    loaded, skipped = [], []
    update = {}
    for key in shared:
        if key in rgb and tuple(rgb[key].shape) == tuple(own[key].shape):
            update[key] = rgb[key]
            loaded.append(key)
        else:
            skipped.append(key)
    if not any(k.startswith("layer4.") for k in loaded):
        raise ValueError(f"{name}: not an RGB ResNet-50 state dict (no matching layer4 weights)")
    model.load_state_dict(update, strict=False)
    log.info("init_from_rgb(%s): loaded %d tensors, skipped %d", name, len(loaded), len(skipped))
    return {"loaded": loaded, "skipped": skipped}
