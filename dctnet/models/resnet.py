"""One parameterised ResNet (stem as a parameter) and the RGB builders.

State-dict keys of the RGB models equal torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``,
..., ``fc``): the stem's modules are registered on the model itself, not under a prefix, so a
torchvision ResNet state dict loads with ``strict=True``. The DCT family
(``dctnet.models.resnet_dct``) uses the same ``ResNet`` with other stems and stage specs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..imaging import IMAGENET_MEAN, IMAGENET_STD
from .registry import register_model

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "RGBStem", "StageSpec", "InputConfig", "SamePadConv2d",
           "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet50_v1"]



@dataclass(frozen=True)
class InputConfig:
    """What a model expects as input.

    Attributes:
        image_size: ``(H, W)`` in pixels of the image the input represents (224 x 224).
        input_shapes: per input tensor ``(C, h, w)`` at ``image_size``: ``((3, 224, 224),)`` for
            RGB, ``((3n, 28, 28),)`` for "upsampling" DCT models, ``((nY, 28, 28), (nCb+nCr,
            14, 14))`` for "late_concat" ones.
        mean, std: RGB models: per-channel normalisation of [0, 1] pixels. ``None`` for DCT
            models (their statistics travel in ``model.layout``).
    """

    image_size: tuple[int, int]
    input_shapes: tuple[tuple[int, int, int], ...]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def shapes_at(self, height: int, width: int) -> tuple[tuple[int, int, int], ...]:
        """Input tensor shapes ``(C, h, w)`` for an image of ``height x width`` pixels."""
        h0, w0 = self.image_size
        out = []
        for c, h, w in self.input_shapes:
            fy, fx = h0 // h, w0 // w  # pixels per input position (1, 8 or 16)
            if height % fy or width % fx:
                raise ValueError(f"image size {height}x{width} is not a multiple of {fy}x{fx} pixels, "
                                 f"which input {(c, h, w)} needs")
            out.append((c, height // fy, width // fx))
        return tuple(out)


class SamePadConv2d(nn.Conv2d):
    """Stride-1 convolution with Keras-style "same" padding for any kernel size.

    Even kernels (the 2x2 of the RFA stage) pad one more row/column at the bottom/right,
    done by an explicit ``F.pad`` (``padding="same"`` with an even kernel makes PyTorch warn).
    State-dict keys are those of ``nn.Conv2d``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, stride=1, padding=0, bias=bias)
        total = kernel_size - 1
        self._pad = (total // 2, total - total // 2, total // 2, total - total // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self._pad):
            x = F.pad(x, self._pad)
        return super().forward(x)


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    if kernel == 1:
        return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
    if kernel % 2 == 1:
        return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
    if stride != 1:
        raise ValueError(f"even kernel {kernel} is only supported with stride 1")
    return SamePadConv2d(cin, cout, kernel)


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34). ``(B, cin, H, W) -> (B, cout, H/stride, W/stride)``."""

    def __init__(self, cin: int, width: int, cout: int, stride: int = 1, kernel: int = 3,
                 stride_in_1x1: bool = False, project: bool = False):
        super().__init__()
        if width != cout:
            raise ValueError("BasicBlock needs width == cout")
        self.conv1 = _conv(cin, width, kernel, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv(width, cout, kernel)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = _projection(cin, cout, stride, project)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 cin->width, kxk width->width, 1x1 width->cout, plus a projection when the shape changes.

    ``stride_in_1x1`` puts the stride on the first 1x1 (ResNet v1, Caffe/Keras, the papers'
    tables) instead of the kxk conv (v1.5, torchvision). ``kernel`` is the middle kernel size
    (3 in ResNet; 1 and 2 in the receptive-field-aware stage of the DCT models). ``project``
    forces the 1x1 projection shortcut even when shapes agree (a Keras "conv block").
    ``(B, cin, H, W) -> (B, cout, H/stride, W/stride)``.
    """

    def __init__(self, cin: int, width: int, cout: int, stride: int = 1, kernel: int = 3,
                 stride_in_1x1: bool = False, project: bool = False):
        super().__init__()
        s1, s2 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = _conv(cin, width, 1, s1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv(width, width, kernel, s2)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv(width, cout, 1)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _projection(cin, cout, stride, project)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _projection(cin: int, cout: int, stride: int, force: bool = False) -> nn.Sequential | None:
    if cin == cout and stride == 1 and not force:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


@dataclass(frozen=True)
class StageSpec:
    """One stage (``layer{i}``): ``len(kernels)`` blocks; the first has stride ``stride``.

    ``width`` is the bottleneck (middle) width, ``out`` the output channels, ``kernels`` the
    middle kernel size of each block. ``project`` gives the first block a projection shortcut
    even when its input and output shapes agree (the papers' Keras ResNet always does; e.g.
    FBS32's stage 3 maps 512 -> 512 channels at stride 1).
    """

    width: int
    out: int
    kernels: tuple[int, ...]
    stride: int = 1
    project: bool = False

    @classmethod
    def uniform(cls, width: int, out: int, blocks: int, stride: int = 1, kernel: int = 3,
                project: bool = False) -> "StageSpec":
        return cls(width, out, (kernel,) * blocks, stride, project)


class RGBStem(nn.Module):
    """7x7/2 conv, BN, ReLU, 3x3/2 max-pool: ``(B, 3, H, W) -> (B, 64, H/4, W/4)``."""

    out_channels = 64

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))


class ResNet(nn.Module):
    """A ResNet with a pluggable stem.

    Args:
        block: ``Bottleneck`` or ``BasicBlock``.
        stages: one ``StageSpec`` per stage; stage i is the attribute ``layer{i+1}``.
        stem: a module with ``out_channels`` whose ``forward`` maps the model input(s) to the
            first stage's input. Its child modules are registered on the ResNet itself (no
            ``stem.`` prefix), which keeps torchvision's state-dict keys for ``RGBStem``.
            A stem may return ``(x, side)``: ``side`` is then fed to ``side_path`` and
            concatenated (channels) with the features entering stage ``join_before``.
        num_classes: classifier outputs.
        stride_in_1x1: v1 (True) or v1.5 (False) downsampling blocks.
        side_path, side_channels, join_before: the late-concat join (see above).
        zero_init_residual: zero the last BN of each block (as torchvision's option).
    """

    def __init__(self, block: type[nn.Module], stages: Sequence[StageSpec], stem: nn.Module, num_classes: int = 1000,
                 *, stride_in_1x1: bool = False, side_path: nn.Module | None = None, side_channels: int = 0,
                 join_before: int | None = None, zero_init_residual: bool = False):
        super().__init__()
        if (side_path is None) != (join_before is None):
            raise ValueError("side_path and join_before go together")
        # Register the stem's modules flat (see the docstring); keep a plain reference to call it.
        self._stem_names = [name for name, _ in stem.named_children()]
        for name, module in stem.named_children():
            self.add_module(name, module)
        object.__setattr__(self, "_stem", stem)
        if side_path is not None:
            self.side_path = side_path
        self.join_before = join_before
        self.stride_in_1x1 = stride_in_1x1

        channels = stem.out_channels
        for i, spec in enumerate(stages, start=1):
            if join_before == i:
                channels += side_channels
            blocks = []
            for j, kernel in enumerate(spec.kernels):
                first = j == 0
                blocks.append(block(channels, spec.width, spec.out, spec.stride if first else 1, kernel, stride_in_1x1,
                                    project=first and spec.project))
                channels = spec.out
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
        self.num_stages = len(stages)
        self.num_features = channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    @property
    def stem(self) -> nn.Module:
        return self._stem

    def forward_stem(self, *inputs):
        """Stem output: a tensor, or ``(x, side)`` for late-concat models."""
        return self._stem(*inputs)

    def forward_stages(self, x, first_stage: int = 1) -> torch.Tensor:
        """Run stages ``first_stage..`` on ``x`` (a tensor or the stem's ``(x, side)``)."""
        side = None
        if isinstance(x, tuple):
            x, side = x
        for i in range(first_stage, self.num_stages + 1):
            if self.join_before == i:
                x = torch.cat([x, self.side_path(side)], dim=1)
            x = getattr(self, f"layer{i}")(x)
        return x

    def forward_features(self, *inputs) -> torch.Tensor:
        """Features before pooling: ``(B, num_features, h, w)``."""
        return self.forward_stages(self.forward_stem(*inputs))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool (+ the classifier unless ``pre_logits``): ``(B, num_classes)``."""
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, *inputs) -> torch.Tensor:
        return self.forward_head(self.forward_features(*inputs))


def resnet_stages(layers: Sequence[int], expansion: int, stride_first: int = 1) -> list[StageSpec]:
    """torchvision's four stages: widths 64, 128, 256, 512, out = width * expansion."""
    return [StageSpec.uniform(64 * 2 ** i, 64 * 2 ** i * expansion, n, stride=stride_first if i == 0 else 2)
            for i, n in enumerate(layers)]


def _rgb_resnet(block, layers, num_classes: int = 1000, stride_in_1x1: bool = False, **kwargs) -> ResNet:
    expansion = 4 if block is Bottleneck else 1
    model = ResNet(block, resnet_stages(layers, expansion), RGBStem(), num_classes, stride_in_1x1=stride_in_1x1, **kwargs)
    model.layout = None
    model.class_names = None
    model.input_config = InputConfig((224, 224), ((3, 224, 224),), IMAGENET_MEAN, IMAGENET_STD)
    return model


@register_model
def resnet18(**kwargs) -> ResNet:
    """ResNet-18 (torchvision keys)."""
    return _rgb_resnet(BasicBlock, [2, 2, 2, 2], **kwargs)


@register_model
def resnet34(**kwargs) -> ResNet:
    """ResNet-34 (torchvision keys)."""
    return _rgb_resnet(BasicBlock, [3, 4, 6, 3], **kwargs)


@register_model
def resnet50(**kwargs) -> ResNet:
    """ResNet-50 v1.5 (stride on the 3x3; torchvision keys, 4.09 GMACs)."""
    return _rgb_resnet(Bottleneck, [3, 4, 6, 3], **kwargs)


@register_model
def resnet101(**kwargs) -> ResNet:
    """ResNet-101 v1.5 (torchvision keys)."""
    return _rgb_resnet(Bottleneck, [3, 4, 23, 3], **kwargs)


@register_model
def resnet152(**kwargs) -> ResNet:
    """ResNet-152 v1.5 (torchvision keys)."""
    return _rgb_resnet(Bottleneck, [3, 8, 36, 3], **kwargs)


@register_model
def resnet50_v1(**kwargs) -> ResNet:
    """ResNet-50 v1 (stride on the first 1x1; the papers' baseline, 3.86 GMACs). Same keys as resnet50."""
    kwargs.setdefault("stride_in_1x1", True)
    return _rgb_resnet(Bottleneck, [3, 4, 6, 3], **kwargs)
