"""The 11-input topology of Yang, Amer and Jiang (Entropy 2021, §4), for when the label is unknown.

One JPEG becomes V = 11 versions: the original and its re-encodings at QF 100, 90, ..., 10
(the decoded original encoded by :func:`dctnet.imaging.encode_jpeg`, the faithful
accurate-DCT encoder, 4:2:0: byte for byte the ``qf<Q>`` settings of `dctnet eval`). All
versions go through *one* backbone (shared weights: 11 copies of the same network), and a
final linear layer ``fc`` maps their concatenated outputs to the classes:

    inputs (B, V, C, H, W) ──reshape──► (B*V, C, H, W) ──backbone──► (B*V, K)
           ──reshape──► (B, V*K) ──fc──► logits (B, num_classes)

``head="logits"``: K is the backbone's number of classes (its logits are concatenated);
``head="features"``: K is the backbone's pooled feature width (its classifier is not used).
``fc`` starts as the mean of the versions' logits (``[I/V ... I/V]`` for logits, the backbone
classifier's weights divided by V for features), where the widths allow it, so an untrained
head already is the training-free ensemble "mean of the 11 logits"; training (`dctnet train`,
backbone frozen by default, see :meth:`MultiQFNet.set_trainable_blocks`) improves on it.

Registered as ``multiqf`` with the builder options ``backbone`` (any registered model name,
default ``efficientnet_lite0``), ``head``, ``qfs``, ``backbone_classes`` and the backbone's own
options; they are stored in the checkpoint (``model_kwargs``), so
``resolve(None, weights="last.pt")`` rebuilds the model, and ``resolve("multiqf",
backbone="efficientnet_lite0")`` loads default weights when the backbone has some (its
pretrained weights and the mean-of-logits head, :func:`multiqf_weights`).

Input: the bundle of a ``multiqf`` model is the backbone's (an RGB preprocessing or a DCT
layout) plus ``versions`` (the QFs); its pipeline (:class:`dctnet.pipeline.VersionsPipeline`)
makes the versions of each file and feeds each through the backbone's own pipeline (for DCT
backbones the versions are JPEG files read as coefficients as usual). Given any JPEG, the model
treats it as the original: in `dctnet eval` the ``original`` row is the topology's accuracy,
and a ``qf<Q>`` row is its accuracy when the file it gets has already been through QF Q.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .checkpoint import Checkpoint
from .efficientnet import EfficientNetLite
from .registry import default_weights, register_model
from .resnet import InputConfig, ResNet
from .resolve import create_model, resolve

__all__ = ["DEFAULT_QFS", "MultiQFNet", "VersionsInputConfig", "backbone_blocks", "multiqf", "multiqf_weights"]

#: The re-encoding qualities of Yang et al. (the same as ``dctnet.data.encode.DEFAULT_QFS``).
DEFAULT_QFS = (100, 90, 80, 70, 60, 50, 40, 30, 20, 10)

HEADS = ("logits", "features")


@dataclass(frozen=True)
class VersionsInputConfig(InputConfig):
    """A backbone's :class:`~dctnet.models.resnet.InputConfig` taken ``versions`` times per image:
    every input tensor gains a version axis after the batch, ``(V, C, h, w)``."""

    versions: int = 1

    def shapes_at(self, height: int, width: int) -> tuple[tuple[int, ...], ...]:
        """Input tensor shapes ``(V, C, h, w)`` for an image of ``height x width`` pixels."""
        return tuple((self.versions,) + s for s in super().shapes_at(height, width))


def backbone_blocks(backbone: nn.Module) -> list[list[nn.Module]]:
    """The backbone's blocks in forward order, the unit of :meth:`MultiQFNet.set_trainable_blocks`.

    EfficientNet-Lite: its 16 MBConv blocks, then the head convolution with its BatchNorm;
    ResNets (RGB and DCT): the residual blocks of every stage. The classifier is not included.
    Raises ``ValueError`` for other networks.
    """
    if isinstance(backbone, EfficientNetLite):
        return [[b] for b in backbone._blocks] + [[backbone._conv_head, backbone._bn1]]
    if isinstance(backbone, ResNet):
        return [[b] for i in range(1, backbone.num_stages + 1) for b in getattr(backbone, f"layer{i}")]
    raise ValueError(f"{type(backbone).__name__}: no known block structure to unfreeze (EfficientNet-Lite and "
                     "ResNets have one)")


class MultiQFNet(nn.Module):
    """The topology (see the module docstring).

    Args:
        backbone: a registered network (an ``nn.Module`` with ``fc``, ``forward_features`` and
            ``forward_head``), shared by all versions.
        qfs: the re-encoding qualities; ``V = len(qfs) + 1`` versions with the original first.
        head: ``"logits"`` or ``"features"``: what of the backbone is concatenated.
        num_classes: outputs of the final linear layer ``fc``.

    ``forward(*inputs)``: each input ``float32 (B, V, C, h, w)`` (one tensor for RGB and
    "upsampling" DCT backbones, ``(y, cbcr)`` for late-concat ones), version 0 the original;
    returns logits ``float32 (B, num_classes)``. ``max_backbone_batch`` caps the images per
    backbone call when no gradient flows through the backbone (evaluation, frozen training).
    """

    max_backbone_batch = 64

    def __init__(self, backbone: nn.Module, qfs: Sequence[int] = DEFAULT_QFS, head: str = "logits",
                 num_classes: int = 1000):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, not {head!r}")
        qfs = tuple(int(q) for q in qfs)
        if not qfs or any(not 1 <= q <= 100 for q in qfs) or len(set(qfs)) != len(qfs):
            raise ValueError(f"qfs must be distinct JPEG qualities 1..100, got {qfs}")
        if not hasattr(backbone, "fc") or not hasattr(backbone, "forward_features"):
            raise ValueError(f"{type(backbone).__name__}: a multiqf backbone needs fc, forward_features and "
                             "forward_head (the registry's ResNets and EfficientNets have them)")
        self.backbone = backbone
        self.qfs, self.head = qfs, head
        self.num_versions = len(qfs) + 1
        self.width = backbone.fc.out_features if head == "logits" else backbone.fc.in_features
        self.num_features = self.num_versions * self.width
        self.fc = nn.Linear(self.num_features, num_classes)
        self.trainable_blocks: int | None = None
        if head == "features":  # the backbone's classifier only initialises fc
            backbone.fc.requires_grad_(False)
        self.reset_head()

    # --- the DCT layout is the backbone's ---------------------------------------------------
    @property
    def layout(self):
        """The backbone's :class:`~dctnet.ops.DCTLayout` (``None`` for RGB backbones)."""
        return getattr(self.backbone, "layout", None)

    @layout.setter
    def layout(self, value) -> None:
        self.backbone.layout = value

    def reset_head(self) -> None:
        """``fc`` := the mean of the versions' logits where the widths allow it (see the module
        docstring), else PyTorch's default initialisation."""
        v, k, c = self.num_versions, self.width, self.fc.out_features
        with torch.no_grad():
            if self.head == "logits" and k == c:
                self.fc.weight.copy_(torch.eye(c).repeat(1, v) / v)
                self.fc.bias.zero_()
            elif self.head == "features" and self.backbone.fc.out_features == c:
                self.fc.weight.copy_(self.backbone.fc.weight.repeat(1, v) / v)
                self.fc.bias.copy_(self.backbone.fc.bias)
            else:
                self.fc.reset_parameters()

    # --- forward --------------------------------------------------------------------------
    def _backbone(self, *flat: torch.Tensor) -> torch.Tensor:
        if self.head == "logits":
            return self.backbone(*flat)
        return self.backbone.forward_head(self.backbone.forward_features(*flat), pre_logits=True)

    def forward_versions(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Each version through the backbone: ``(B, V, C, h, w)`` inputs -> ``(B, V, K)``."""
        if not inputs:
            raise ValueError("multiqf takes at least one input tensor")
        b, v = inputs[0].shape[:2]
        for x in inputs:
            if x.dim() != 5 or tuple(x.shape[:2]) != (b, self.num_versions):
                raise ValueError(f"multiqf takes (B, {self.num_versions}, C, H, W) inputs (the original and its "
                                 f"re-encodings at QF {', '.join(map(str, self.qfs))}), got {tuple(x.shape)}")
        flat = [x.reshape(b * v, *x.shape[2:]) for x in inputs]
        grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.backbone.parameters())
        if grad or b * v <= self.max_backbone_batch:
            out = self._backbone(*flat)
        else:  # no gradient through the backbone: bounded memory, the same numbers
            step = self.max_backbone_batch
            with torch.no_grad():
                out = torch.cat([self._backbone(*(x[i:i + step] for x in flat)) for i in range(0, b * v, step)])
        return out.reshape(b, v, -1)

    def forward_features(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The versions' outputs concatenated: ``(B, num_features)`` with ``num_features = V * K``."""
        z = self.forward_versions(*inputs)
        return z.reshape(z.shape[0], -1)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The final linear layer (``x`` itself if ``pre_logits``): ``(B, num_classes)``."""
        return x if pre_logits else self.fc(x)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(*inputs))

    # --- what trains ----------------------------------------------------------------------
    def set_trainable_blocks(self, last: int | None) -> None:
        """Freeze the backbone except its ``last`` blocks (:func:`backbone_blocks`; with
        ``head="logits"`` the backbone's classifier counts as one more block, the last);
        ``fc`` always trains. ``last=0``: only ``fc`` (Yang et al.'s first setting); a
        ``last`` beyond the number of blocks unfreezes them all (not the stem); ``None``:
        everything trains. Frozen parts stay in eval mode in ``train()`` (their
        BatchNorm statistics and dropout are those of the backbone's weights)."""
        if last is not None and last < 0:
            raise ValueError(f"the number of blocks to unfreeze must be >= 0, not {last}")
        self.trainable_blocks = last
        if last is None:
            self.backbone.requires_grad_(True)
            if self.head == "features":
                self.backbone.fc.requires_grad_(False)
        else:
            self.backbone.requires_grad_(False)
            for group in self._unfrozen():
                for m in group:
                    m.requires_grad_(True)
        self.train(self.training)

    def _unfrozen(self) -> list[list[nn.Module]]:
        if self.trainable_blocks is None:
            return []
        groups = backbone_blocks(self.backbone) + ([[self.backbone.fc]] if self.head == "logits" else [])
        return groups[max(0, len(groups) - self.trainable_blocks):] if self.trainable_blocks else []

    def train(self, mode: bool = True) -> "MultiQFNet":
        super().train(mode)
        if mode and self.trainable_blocks is not None:
            self.backbone.eval()
            for group in self._unfrozen():
                for m in group:
                    m.train(True)
        return self


def _num_classes(backbone_classes: int | None, num_classes: int) -> int:
    return int(backbone_classes) if backbone_classes is not None else int(num_classes)


@register_model(default_weights=lambda **options: multiqf_weights(**options))
def multiqf(backbone: str = "efficientnet_lite0", head: str = "logits", qfs: Sequence[int] = DEFAULT_QFS,
            backbone_classes: int | None = None, num_classes: int = 1000, **backbone_options) -> MultiQFNet:
    """Yang et al.'s 11-input topology around the registered model ``backbone`` (see the module
    docstring). ``backbone_classes``: the backbone's classifier width (default
    ``num_classes``; give the pretrained backbone's, e.g. 1000, to train an ``fc`` for another
    class list on its logits); ``backbone_options``: the backbone builder's options. The
    backbone is built untrained (builders never load weights; :func:`multiqf_weights` are the
    default weights)."""
    if backbone == "multiqf":
        raise ValueError("multiqf cannot be its own backbone")
    net_b = create_model(backbone, weights=False, num_classes=_num_classes(backbone_classes, num_classes),
                         **backbone_options)
    net = MultiQFNet(net_b, qfs, head, num_classes)
    cfg = net_b.input_config
    net.input_config = VersionsInputConfig(cfg.image_size, cfg.input_shapes, cfg.mean, cfg.std,
                                           versions=net.num_versions)
    net.class_names = None
    net.model_kwargs = {"backbone": backbone, "head": head, "qfs": list(net.qfs),
                        "backbone_classes": backbone_classes, **dict(net_b.model_kwargs or {})}
    if backbone_classes is None:
        del net.model_kwargs["backbone_classes"]
    return net


_DEFAULTS: dict[tuple, Checkpoint] = {}


def multiqf_weights(backbone: str = "efficientnet_lite0", head: str = "logits", qfs: Sequence[int] = DEFAULT_QFS,
                    backbone_classes: int | None = None, **backbone_options) -> Checkpoint | None:
    """Default weights of ``multiqf``: the backbone's registered default weights (``None`` if it
    has none, or none of ``backbone_classes`` outputs) and the mean-of-logits head
    (:meth:`MultiQFNet.reset_head`), as an in-memory checkpoint for ``num_classes`` = the
    backbone's classes. Cached per options."""
    if default_weights(backbone) is None:
        return None
    key = (backbone, head, tuple(qfs), backbone_classes, repr(sorted(backbone_options.items())))
    hit = _DEFAULTS.get(key)
    if hit is not None:
        return hit
    with torch.device("cpu"), torch.no_grad():
        inner = resolve(backbone, num_classes=backbone_classes, **backbone_options)
        if not inner.trained:
            return None
        net = multiqf(backbone=backbone, head=head, qfs=qfs, backbone_classes=backbone_classes,
                      num_classes=inner.num_classes, **backbone_options)
        net.backbone.load_state_dict(inner.model.state_dict(), strict=True)
        net.backbone.layout = getattr(inner.model, "layout", None)
        net.reset_head()
    cfg = inner.model.input_config
    hit = Checkpoint(state_dict={k: v.detach().clone() for k, v in net.state_dict().items()}, model="multiqf",
                     model_kwargs=dict(net.model_kwargs), layout=net.layout, mean=cfg.mean, std=cfg.std,
                     class_names=list(inner.class_names) if inner.class_names else None,
                     extra={"backbone_weights": inner.weights, "head": "mean of the versions' logits"},
                     source=inner.weights)
    _DEFAULTS[key] = hit
    return hit

