"""The one function that turns "a model, maybe weights" into a :class:`ModelBundle`.

:func:`resolve` is the only place where a registry name, a checkpoint, a built network or an
ONNX file becomes a model and its input: the checks that a checkpoint is for this model, the
number of classes read from the weights, the builder options a checkpoint records, the class
names, the ONNX model checks. :func:`create_model`, :func:`load_model`,
:class:`dctnet.Classifier`, `dctnet convert`, `dctnet train`, `dctnet eval` and
`dctnet bench` all go through it. A checkpoint written by :func:`save_checkpoint` holds
everything :func:`resolve` needs to rebuild the bundle.
"""

from __future__ import annotations

import os

import torch

from ..imaging import RGBPreprocess, resize_for_crop
from .bundle import ModelBundle
from .checkpoint import Checkpoint, load_checkpoint, load_weights
from .onnx import OnnxModel, file_sha256
from .onnx_frontend import onnx_frontend_bundle
from .registry import default_weights, model_builder
from .resnet_dct import init_from_rgb as copy_rgb_stages

__all__ = ["create_model", "load_model", "resolve"]

#: Options of :func:`resolve` that make an ONNX file an ``"onnx-dct"`` bundle
#: (:func:`~dctnet.models.onnx_frontend.onnx_frontend_bundle`).
ONNX_FRONTEND_OPTIONS = ("bands", "mode", "clamp", "mean", "std", "resize", "crop")


def _num_classes(ckpt: Checkpoint | None, default: int) -> int:
    """The classifier width stored in weights (``fc.weight``, or ``_fc.weight`` for
    EfficientNets), else ``default``."""
    sd = ckpt.state_dict if ckpt is not None else {}
    fc = sd.get("fc.weight", sd.get("_fc.weight"))
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
    # DCT models see images at the scale of their RGB twins: resized in the DCT domain.
    resize = resize_for_crop(size[0]) if kind == "dct" else None
    identity = f"torch:{name}:{digest}:{spec.to_dict() if kind == 'dct' else repr(spec)}"
    if resize is not None:  # (stored `dctnet eval` results of the exact-crop geometry are not reused)
        identity += f":resize{resize}"
    # Models that take several versions of each file (multiqf: the original and its re-encodings).
    versions = tuple(net.qfs) if hasattr(net, "qfs") else None
    if versions is not None:
        identity += f":versions{list(versions)}"
    return ModelBundle(name=name, kind=kind, input=spec, image_size=size[0], num_classes=num_classes,
                       class_names=tuple(names) if names is not None else None,
                       options=dict(getattr(net, "model_kwargs", None) or options), weights=weights,
                       identity=identity, model=net, resize=resize, versions=versions)


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
            with ``weights`` a dctnet checkpoint (which names its model). An ``.onnx`` path
            with ``bands=n`` (and optionally ``mode``, ``clamp``, ``mean``, ``std``,
            ``resize``, ``crop``) is the ONNX RGB classifier fed from DCT coefficients
            (:func:`~dctnet.models.onnx_frontend.onnx_frontend_bundle`).
        weights: a local file (or loaded :class:`~dctnet.models.Checkpoint`): a dctnet
            checkpoint or a plain state dict, loaded with ``strict=True``. A checkpoint
            supplies its builder options (where not given here), its number of classes, its
            layout statistics, input normalisation and class names; one for another model is
            refused. ``None`` (default): the model's registered default weights if it has
            any (``efficientnet_lite0``, ``efficientnet_lite0_dct``; see
            :func:`~dctnet.models.registry.register_model`), else untrained; default weights
            are skipped (untrained model) when ``num_classes`` asks for another classifier
            width than theirs, and on the meta device. ``False``: untrained even when the
            model has default weights (e.g. to train from scratch). ``bundle.trained`` says
            which happened.
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
    if weights is not None and not isinstance(weights, (str, os.PathLike, dict, Checkpoint)):
        if weights is not False:
            raise TypeError(f"weights must be a path, a Checkpoint, None (default weights) or False (untrained), "
                            f"not {weights!r}")
    untrained = weights is False
    weights = None if untrained else weights
    options = {k: v for k, v in options.items() if v is not None}
    if isinstance(model, (str, os.PathLike)) and os.fspath(model).lower().endswith(".onnx"):
        path = os.fspath(model)
        unknown = sorted(set(options) - set(ONNX_FRONTEND_OPTIONS))
        if weights is not None or init_from_rgb is not None or unknown:
            raise ValueError(f"{path}: an ONNX classifier carries its own weights; options "
                             f"{', '.join(ONNX_FRONTEND_OPTIONS)} only (got {unknown or 'weights'})")
        if options:  # fed from DCT coefficients through the exact decode path
            if preprocess is not None:
                raise ValueError(f"{path}: preprocess is for RGB inputs; the DCT front end takes "
                                 "mean/std/resize/crop")
            return onnx_frontend_bundle(path, threads=threads, **options)
        return _onnx_bundle(path, preprocess, threads)
    ckpt = load_checkpoint(weights) if weights is not None else None
    weights_name = ckpt.source if ckpt is not None else None
    if isinstance(model, torch.nn.Module):
        if ckpt is not None:
            load_weights(model, ckpt)
        return _from_module(model, weights_name, options)
    if model is None:
        if untrained:
            raise ValueError("weights=False needs a model name")
        if ckpt is None or ckpt.model is None:
            raise ValueError("give a model name (a plain state dict does not name its model)")
        model = ckpt.model
    if not isinstance(model, str):
        raise TypeError(f"model must be a registry name, an nn.Module, a ModelBundle or an .onnx path, "
                        f"not {type(model).__name__}")
    default = default_weights(model) if ckpt is None and not untrained else None
    if default is not None and not torch.empty(()).is_meta:  # meta device: shapes only, no weights
        # The model's registered default weights (a file or a Checkpoint; None: none for these options),
        # where they fit.
        found = default(**options)
        candidate = load_checkpoint(found) if found is not None else None
        if candidate is not None and (num_classes is None or num_classes == _num_classes(candidate, 1000)):
            ckpt, weights_name = candidate, candidate.source
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
        copy_rgb_stages(net, init_from_rgb)
    if ckpt is not None:
        load_weights(net, ckpt)
    return _from_module(net, weights_name, options)


def create_model(name: str, *, num_classes: int = 1000, weights=None, init_from_rgb=None, **kwargs):
    """Build the model registered as ``name``: ``resolve(name, ...).model``.

    Args:
        name: a name from ``list_models()``.
        num_classes: size of the classifier output (weights that say otherwise are refused).
        weights: ``None`` (the model's default weights, if registered), ``False``
            (untrained) or a local file: plain state dict or dctnet checkpoint (see :func:`resolve`).
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
