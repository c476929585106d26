"""The model bundle: what a model is and how it is fed, resolved by one function.

A :class:`ModelBundle` is to dctnet what torchvision's ``Weights`` enums and timm's
``pretrained_cfg`` are to theirs: the model's registry name and builder options, its class
names, its weights' identity, and its *input*: a :class:`~dctnet.ops.DCTLayout` (with the
normalisation statistics measured for these weights) or an
:class:`~dctnet.imaging.RGBPreprocess` (resize, crop, mean, std). ``bundle.model`` is the
built network (an ``nn.Module``, or an :class:`~dctnet.models.onnx.OnnxModel`) and
``bundle.pipeline(...)`` the input pipeline that feeds it (:mod:`dctnet.pipeline`).

:func:`resolve` is the only place where "a name, maybe weights" becomes a model: the checks
that a checkpoint is for this model, the number of classes read from the weights, the
builder options a checkpoint records, the class names. :func:`create_model`,
:func:`load_model`, :class:`dctnet.Classifier`, `dctnet convert`, `dctnet train` and
`dctnet eval` all go through it. A checkpoint written by :func:`save_checkpoint` holds
everything :func:`resolve` needs to rebuild the bundle.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from ..imaging import RGBPreprocess
from ..ops import DCTLayout
from ..pipeline import DCTPipeline, Pipeline, RGBPipeline
from .checkpoint import Checkpoint, load_checkpoint, load_weights
from .onnx import OnnxModel, file_sha256
from .registry import model_builder

__all__ = ["ModelBundle", "create_model", "load_model", "resolve"]

Kind = Literal["dct", "rgb", "onnx"]


@dataclass(eq=False)
class ModelBundle:
    """A model and its input.

    Attributes:
        name: registry name (``dctnet.models.list_models()``) or the ONNX file's stem.
        kind: ``"dct"`` (coefficients in), ``"rgb"`` (torch, pixels in) or ``"onnx"``.
        input: the input the model takes: :class:`~dctnet.ops.DCTLayout` or
            :class:`~dctnet.imaging.RGBPreprocess`.
        image_size: side in pixels of the (square) image one input represents.
        num_classes: width of the logits.
        class_names: one per output, or ``None`` (the caller's labels, else ImageNet's).
        options: builder options (``bands``, ``stride_in_1x1``, ``base`` ...).
        weights: the weights' file (``.onnx`` file for ONNX models), ``None`` if untrained.
        identity: a string that changes whenever the weights or the input change (stored
            results of `dctnet eval` are reused only for the same identity).
        model: the network (an ``nn.Module`` as built, on CPU, or an ``OnnxModel``).
    """

    name: str
    kind: Kind
    input: DCTLayout | RGBPreprocess
    image_size: int
    num_classes: int
    class_names: tuple[str, ...] | None
    options: dict[str, Any]
    weights: str | None
    identity: str
    model: Any = field(repr=False, default=None)

    @property
    def trained(self) -> bool:
        """Whether weights were loaded (a model without them predicts nothing meaningful)."""
        return self.weights is not None

    def to_dict(self) -> dict:
        """JSON-ready description (results files, `dctnet bench`)."""
        return {"name": self.name, "kind": self.kind, "image_size": self.image_size,
                "num_classes": self.num_classes, "options": dict(self.options), "weights": self.weights,
                "identity": self.identity,
                "input": self.input.to_dict() if self.input is not None else None}

    def pipeline(self, *, train: bool = False, threads: int | None = None, device: str | torch.device = "cpu",
                 backend: str = "auto", small: Literal["resize", "error"] = "resize",
                 preprocess: RGBPreprocess | None = None) -> Pipeline:
        """The input pipeline of this model (:mod:`dctnet.pipeline`).

        Args:
            train: DCT models: random crop and flip, seeded per batch (RGB training
                augmentation is :class:`dctnet.data.loaders.RGBTrainDataset`).
            threads: reader / decoding threads (default: all cores).
            device: DCT models: where inputs are made (CUDA: Triton rearrangement).
            backend: DCT models: :func:`~dctnet.ops.to_tensor` backend.
            small: DCT models, images smaller than the crop: ``"resize"`` (evaluation
                fallback) or ``"error"``.
            preprocess: RGB and ONNX models: use this instead of the bundle's own.
        """
        if self.kind == "dct":
            return DCTPipeline(self.input, self.image_size, train=train, threads=threads, device=device,
                               backend=backend, small=small)
        if train:
            raise ValueError(f"{self.name}: training pipelines of RGB models are dctnet.data.loaders.make_loader's")
        return RGBPipeline(preprocess or self.input, threads=threads,
                           output="numpy" if self.kind == "onnx" else "torch", path=self.kind)


def _num_classes(ckpt: Checkpoint | None, default: int) -> int:
    """The classifier width stored in weights (``fc.weight``), else ``default``."""
    fc = ckpt.state_dict.get("fc.weight") if ckpt is not None else None
    return int(fc.shape[0]) if fc is not None else default


def _from_module(net: torch.nn.Module, weights: str | None, options: dict) -> ModelBundle:
    """Describe a built network (attributes set by the builders and :func:`load_weights`)."""
    name = getattr(net, "model_name", type(net).__name__)
    layout = getattr(net, "layout", None)
    config = net.input_config
    size = tuple(config.image_size)
    if size[0] != size[1]:
        raise ValueError(f"{name}: only square inputs are supported, not {size}")
    if layout is not None:
        kind, spec = "dct", layout
    else:
        kind, spec = "rgb", RGBPreprocess.for_crop(size[0], config.mean, config.std)
    num_classes = int(net.fc.out_features) if hasattr(net, "fc") else int(options.get("num_classes", 1000))
    names = getattr(net, "class_names", None)
    digest = file_sha256(weights) if weights is not None and os.path.isfile(weights) else (weights or "untrained")
    return ModelBundle(name=name, kind=kind, input=spec, image_size=size[0], num_classes=num_classes,
                       class_names=tuple(names) if names is not None else None,
                       options=dict(getattr(net, "model_kwargs", None) or options), weights=weights,
                       # the identity format of stored `dctnet eval` results (keep it stable)
                       identity=f"torch:{name}:{digest}:{spec.to_dict() if kind == 'dct' else repr(spec)}", model=net)


def _onnx_bundle(path: str, preprocess: RGBPreprocess | None, threads: int | None) -> ModelBundle:
    preprocess = preprocess or RGBPreprocess()
    net = OnnxModel(path, crop=preprocess.crop, threads=threads)
    return ModelBundle(name=net.name, kind="onnx", input=preprocess, image_size=preprocess.crop,
                       num_classes=net.num_classes, class_names=None, options={}, weights=net.path,
                       identity=f"onnx:{net.sha256}:{preprocess!r}", model=net)


def resolve(model, *, weights=None, num_classes: int | None = None, init_from_rgb=None,
            preprocess: RGBPreprocess | None = None, threads: int | None = None, **options) -> ModelBundle:
    """The one function that turns "a model, maybe weights" into a :class:`ModelBundle`.

    Args:
        model: a registry name, the path of an ``.onnx`` classifier, a built ``nn.Module``
            (from :func:`create_model`), a :class:`ModelBundle` (returned as is), or ``None``
            with ``weights`` a dctnet checkpoint (which names its model).
        weights: a local file (or loaded :class:`~dctnet.models.Checkpoint`): a dctnet
            checkpoint or a plain state dict, loaded with ``strict=True``. A checkpoint
            supplies its builder options (where not given here), its number of classes, its
            layout statistics, input normalisation and class names; one for another model is
            refused.
        num_classes: classifier width (default: the weights', else 1000).
        init_from_rgb: DCT models: an RGB ResNet-50's weights to start the shared stages from.
        preprocess: ONNX models: their RGB preprocessing (default: ImageNet's 256/224).
        threads: ONNX models: onnxruntime threads.
        **options: builder options; ``None`` values are dropped so that they never override
            a model's own defaults (timm's ``create_model`` rule).

    Raises:
        KeyError: unknown registry name (with close matches).
        ValueError / FileNotFoundError: weights that do not fit, or are for another model
            (the message names the file).
    """
    if isinstance(model, ModelBundle):
        return model
    options = {k: v for k, v in options.items() if v is not None}
    if isinstance(model, (str, os.PathLike)) and os.fspath(model).lower().endswith(".onnx"):
        if weights is not None or options or init_from_rgb is not None:
            raise ValueError(f"{os.fspath(model)}: an ONNX classifier carries its own weights and options")
        return _onnx_bundle(os.fspath(model), preprocess, threads)
    ckpt = load_checkpoint(weights) if weights is not None else None
    weights_name = ckpt.source if ckpt is not None else None
    if isinstance(model, torch.nn.Module):
        if ckpt is not None:
            load_weights(model, ckpt)
        return _from_module(model, weights_name, options)
    if model is None:
        if ckpt is None or ckpt.model is None:
            raise ValueError("give a model name (a plain state dict does not name its model)")
        model = ckpt.model
    if not isinstance(model, str):
        raise TypeError(f"model must be a registry name, an nn.Module, a ModelBundle or an .onnx path, "
                        f"not {type(model).__name__}")
    if ckpt is not None and ckpt.model is not None and ckpt.model != model:
        raise ValueError(f"{ckpt.source}: checkpoint is for model {ckpt.model!r}, not {model!r}")
    if ckpt is not None and ckpt.model == model:
        options = {**ckpt.model_kwargs, **options}  # e.g. the bands of a converted model
    builder = model_builder(model)
    net = builder(num_classes=num_classes or _num_classes(ckpt, 1000), **options)
    net.model_name = model
    if getattr(net, "model_kwargs", None) is None:  # converted models record their own
        net.model_kwargs = dict(options)
    if init_from_rgb is not None:
        if getattr(net, "layout", None) is None:
            raise ValueError(f"init_from_rgb is for DCT models; {model!r} is an RGB model (use weights=)")
        from .resnet_dct import init_from_rgb as copy_rgb_stages  # resnet_dct imports this module's registry

        copy_rgb_stages(net, init_from_rgb)
    if ckpt is not None:
        load_weights(net, ckpt)
    return _from_module(net, weights_name, options)


def create_model(name: str, *, num_classes: int = 1000, weights=None, init_from_rgb=None, **kwargs):
    """Build the model registered as ``name``: ``resolve(name, ...).model``.

    Args:
        name: a name from ``list_models()``.
        num_classes: size of the classifier output (weights that say otherwise are refused).
        weights: ``None`` or a local file: plain state dict or dctnet checkpoint (see
            :func:`resolve`).
        init_from_rgb: DCT models only: an RGB ResNet-50 state dict / checkpoint whose stages
            the DCT model shares are copied in.
        **kwargs: builder options (``stride_in_1x1``, ``bands``, ...); ``None`` values dropped.

    Returns:
        ``nn.Module`` (train mode, as built) with attributes ``model_name``, ``model_kwargs``,
        ``layout`` (``DCTLayout`` or ``None`` for RGB models), ``input_config`` and
        ``class_names`` (``None`` unless loaded).
    """
    return resolve(name, weights=weights, num_classes=num_classes, init_from_rgb=init_from_rgb, **kwargs).model


def load_model(path, **kwargs):
    """Rebuild the model a dctnet checkpoint names and load it: ``resolve(None, weights=path).model``.

    ``kwargs`` override the stored builder options; ``num_classes`` comes from the weights.
    """
    return resolve(None, weights=path, **kwargs).model
