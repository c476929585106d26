"""Small RGB and DCT ResNets for CPU-sized experiments (``dctnet study``, tests).

Twins that differ only where the papers' models differ: the DCT model has no stem (its
input is already at 1/8 resolution, ``(B, 3n, H/8, W/8)`` in the "upsampling" layout,
BatchNormed), the RGB model has a stem of three 3x3 stride-2 convs that brings
``(B, 3, H, W)`` to 1/8. Both then run the same two stages of ``BasicBlock`` s (``width``
channels at 1/8, ``2 * width`` at 1/16), global average pooling and a linear classifier.

Input size: 112 x 112 (``input_config.image_size``; what ``dctnet.Classifier`` crops to:
RGB images are resized to a 128-pixel shorter side first, the ImageNet 256/224 ratio).

Registered: ``small_resnet_rgb``, ``small_resnet_dct`` (64 bands) and
``small_resnet_dct_fbs{n}`` for n in 1, 2, 4, 8, 16, 32 (other n: ``small_resnet_dct`` with
``bands=n``).
"""

from __future__ import annotations

from torch import nn

from ..ops.layout import DCTLayout
from .registry import register_model
from ..imaging import IMAGENET_MEAN, IMAGENET_STD
from .resnet import BasicBlock, InputConfig, ResNet, StageSpec
from .resnet_dct import DCTResNet, UpsamplingStem

__all__ = ["SmallRGBStem", "small_resnet"]

IMAGE_SIZE = 112


class SmallRGBStem(nn.Module):
    """Three 3x3 stride-2 conv + BN + ReLU: ``(B, 3, H, W) -> (B, width, H/8, W/8)``."""

    def __init__(self, width: int):
        super().__init__()
        self.out_channels = width
        half = max(8, width // 2)
        self.stem_conv1 = nn.Conv2d(3, half, 3, stride=2, padding=1, bias=False)
        self.stem_bn1 = nn.BatchNorm2d(half)
        self.stem_conv2 = nn.Conv2d(half, width, 3, stride=2, padding=1, bias=False)
        self.stem_bn2 = nn.BatchNorm2d(width)
        self.stem_conv3 = nn.Conv2d(width, width, 3, stride=2, padding=1, bias=False)
        self.stem_bn3 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) RGB tensor, got {tuple(x.shape)}")
        x = self.relu(self.stem_bn1(self.stem_conv1(x)))
        x = self.relu(self.stem_bn2(self.stem_conv2(x)))
        return self.relu(self.stem_bn3(self.stem_conv3(x)))


def _stages(width: int, blocks: tuple[int, int]) -> list[StageSpec]:
    return [StageSpec.uniform(width, width, blocks[0], stride=1, project=True),
            StageSpec.uniform(2 * width, 2 * width, blocks[1], stride=2, project=True)]


def small_resnet(kind: str = "dct", bands=64, num_classes: int = 1000, width: int = 32,
                 blocks: tuple[int, int] = (1, 1)) -> ResNet:
    """Build a small RGB (``kind="rgb"``) or DCT (``kind="dct"``, "upsampling" layout with
    ``bands``) ResNet; see the module docstring. ``width``: channels at 1/8 resolution;
    ``blocks``: BasicBlocks in the two stages."""
    if width < 1 or len(blocks) != 2 or min(blocks) < 1:
        raise ValueError(f"width must be >= 1 and blocks two positive counts, got {width}, {blocks}")
    if kind == "rgb":
        model = ResNet(BasicBlock, _stages(width, tuple(blocks)), SmallRGBStem(width), num_classes)
        model.layout = None
        model.input_config = InputConfig((IMAGE_SIZE, IMAGE_SIZE), ((3, IMAGE_SIZE, IMAGE_SIZE),),
                                         IMAGENET_MEAN, IMAGENET_STD)
    elif kind == "dct":
        layout = DCTLayout("upsampling", bands)
        c = layout.num_channels
        model = DCTResNet(BasicBlock, _stages(width, tuple(blocks)), UpsamplingStem(c), num_classes)
        model.layout = layout
        model.input_config = InputConfig((IMAGE_SIZE, IMAGE_SIZE), ((c, IMAGE_SIZE // 8, IMAGE_SIZE // 8),))
    else:
        raise ValueError(f"kind must be 'rgb' or 'dct', not {kind!r}")
    model.class_names = None
    return model


@register_model
def small_resnet_rgb(**kwargs) -> ResNet:
    """Small RGB ResNet (3-conv stride-8 stem, two BasicBlock stages), 112x112 input."""
    return small_resnet("rgb", **kwargs)


@register_model
def small_resnet_dct(bands=64, **kwargs) -> DCTResNet:
    """Small DCT ResNet on all 64 bands: input ``(B, 192, 14, 14)`` for 112x112 pixels."""
    return small_resnet("dct", bands=bands, **kwargs)


def _fbs_builder(n: int):
    def builder(**kwargs) -> DCTResNet:
        return small_resnet("dct", bands=n, **kwargs)

    builder.__name__ = builder.__qualname__ = f"small_resnet_dct_fbs{n}"
    builder.__doc__ = f"Small DCT ResNet on the {n} lowest zigzag bands per component: input ``(B, {3 * n}, 14, 14)``."
    return builder


for _n in (1, 2, 4, 8, 16, 32):
    register_model(_fbs_builder(_n))
