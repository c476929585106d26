"""Multiply-accumulates and parameter counts.

Convention (the papers'): MACs of convolutions (incl. transposed) and linear layers for ONE
image at the given size (default 224x224, i.e. 28x28 DCT blocks); BatchNorm, ReLU, pooling,
additions and concatenations are not counted. Counted by ``torch.utils.flop_counter``
(which reports 2 FLOPs per MAC) on a forward pass with meta tensors, so no real compute runs.
Parameters are PyTorch's learnable parameters (no BN running statistics).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from .convert import ConvertedFirstLayer
from .resolve import create_model

__all__ = ["CONVENTION", "PAPER_TABLE", "Complexity", "count_macs", "count_params", "first_layer",
           "model_complexity", "conv_macs", "bottleneck_macs"]

CONVENTION = ("GMACs = 1e9 multiply-accumulates of conv + linear layers per image (BN, ReLU, pooling, "
              "additions not counted); params = learnable parameters")

#: docs/architecture.md §5: (model, input channels, paper GMACs, paper params [M], our reconstruction GMACs, params [M]).
PAPER_TABLE = (
    ("resnet50_v1", "3x1", 3.86, 25.6, 3.858, 25.56),
    ("resnet50_dct", "3x64", 5.40, 28.4, 5.397, 28.31),
    ("resnet50_dct_fbs32", "3x32", 3.68, 26.2, 3.685, 26.12),
    ("resnet50_dct_fbs16", "3x16", 3.18, 25.6, 3.193, 25.49),
)


@dataclass(frozen=True)
class Complexity:
    name: str
    image_size: tuple[int, int]
    input_shapes: tuple[tuple[int, ...], ...]
    macs: int
    params: int
    #: MACs of the first layer (:func:`first_layer`) and its module name; ``None`` if the model has none.
    first_layer_macs: int | None = None
    first_layer_name: str | None = None

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def mparams(self) -> float:
        return self.params / 1e6


def count_macs(model: torch.nn.Module, *inputs: torch.Tensor) -> int:
    """MACs of conv and linear layers in ``model(*inputs)`` (whole batch), counted by torch."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(*inputs)
    flops = counter.get_total_flops()
    return flops // 2


def count_params(model: torch.nn.Module) -> int:
    """Number of learnable parameters."""
    return sum(p.numel() for p in model.parameters())


def first_layer(model: torch.nn.Module) -> tuple[str, torch.nn.Module] | None:
    """``(name, module)`` of the layer that first sees the input: a converted first layer
    (``stem_conv``, :class:`~dctnet.models.convert.ConvertedFirstLayer`: the decode path folded
    into the RGB first convolution) or else the first ``nn.Conv2d`` in module order (an RGB
    network's ``conv1`` / ``_conv_stem``); ``None`` if there is neither."""
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, ConvertedFirstLayer)]
    convs = convs or [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    return convs[0] if convs else None


def model_complexity(name: str, image_size: int | tuple[int, int] = 224, **kwargs) -> Complexity:
    """GMACs and parameters of registered model ``name`` for one ``image_size`` image, and
    the MACs of its first layer (:func:`first_layer`, counted on the input it gets in the
    same forward pass).

    The model is built on the meta device (no memory, no compute) and untrained (default
    weights are not loaded); ``kwargs`` go to ``create_model`` (e.g. ``num_classes``,
    ``stride_in_1x1``, ``bands``).
    """
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    kwargs.setdefault("weights", False)
    with torch.device("meta"):
        model = create_model(name, **kwargs).eval()
        shapes = model.input_config.shapes_at(h, w)
        inputs = [torch.empty(1, *s) for s in shapes]
        first = first_layer(model)
        seen: list = []
        hook = first[1].register_forward_hook(lambda mod, args, out: seen.append(args)) if first else None
        macs = count_macs(model, *inputs)
        if hook is not None:
            hook.remove()
        first_macs = count_macs(first[1], *seen[0]) if seen else None
    return Complexity(name, (h, w), shapes, macs, count_params(model), first_macs, first[0] if seen else None)


def conv_macs(cin: int, cout: int, kernel: int, h_out: int, w_out: int, groups: int = 1) -> int:
    """Hand formula: MACs of a ``kernel x kernel`` convolution producing ``cout x h_out x w_out``."""
    return cin // groups * kernel * kernel * cout * h_out * w_out


def bottleneck_macs(cin: int, width: int, cout: int, h: int, w: int, stride: int = 1, kernel: int = 3,
                    stride_in_1x1: bool = False) -> int:
    """Hand formula for one ``Bottleneck`` on an ``h x w`` input ("same" padding, ceil division)."""
    ho, wo = -(-h // stride), -(-w // stride)
    h1, w1 = (ho, wo) if stride_in_1x1 else (h, w)
    macs = conv_macs(cin, width, 1, h1, w1) + conv_macs(width, width, kernel, ho, wo) + conv_macs(width, cout, 1, ho, wo)
    if stride != 1 or cin != cout:
        macs += conv_macs(cin, cout, 1, ho, wo)
    return macs
