"""The model bundle: what a model is and how it is fed (built by :func:`dctnet.models.resolve`).

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

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from ..imaging import RGBPreprocess
from ..ops import DCTLayout
from ..pipeline import DCTPipeline, Pipeline, RGBPipeline, VersionsPipeline

__all__ = ["ModelBundle"]

Kind = Literal["dct", "rgb", "onnx", "onnx-dct"]


@dataclass(eq=False)
class ModelBundle:
    """A model and its input.

    Attributes:
        name: registry name (``dctnet.models.list_models()``) or the ONNX file's stem.
        kind: ``"dct"`` (coefficients in), ``"rgb"`` (torch, pixels in), ``"onnx"`` (an ONNX
            RGB classifier) or ``"onnx-dct"`` (an ONNX RGB classifier behind the DCT front end,
            :mod:`dctnet.models.onnx_frontend`).
        input: the input the model takes: :class:`~dctnet.ops.DCTLayout` or
            :class:`~dctnet.imaging.RGBPreprocess`.
        image_size: side in pixels of the (square) image one input represents.
        num_classes: width of the logits.
        class_names: one per output, or ``None`` (the caller's labels, else ImageNet's).
        options: builder options (``bands``, ``stride_in_1x1``, ``base`` ...).
        weights: the weights' file (``.onnx`` file for ONNX models), ``None`` if untrained.
        identity: a string that changes whenever the weights or the input change (stored
            results of `dctnet eval` are reused only for the same identity).
        model: the network (an ``nn.Module`` as built, on CPU, an ``OnnxModel`` or an
            ``OnnxDCTModel``).
        prepared: ``(resize, crop)`` when the model is evaluated on files re-encoded as the
            papers prepare them (see :mod:`dctnet.pipeline`), else ``None``.
        resize: DCT models: the shorter side images are resized to (in the DCT domain) before
            the centre crop of ``image_size``, as the RGB twin's preprocessing does
            (``round(image_size * 256 / 224)``: 256 for 224); ``None``: exact block crops of
            the original.
        versions: models fed several versions of each file (``multiqf``,
            :mod:`dctnet.models.multiqf`): the JPEG qualities of the re-encodings that come
            after the original; their pipeline is a :class:`~dctnet.pipeline.VersionsPipeline`
            around the backbone's. ``None`` for every other model.
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
    prepared: tuple[int, int] | None = None
    resize: int | None = None
    versions: tuple[int, ...] | None = None

    @property
    def trained(self) -> bool:
        """Whether weights were loaded (a model without them predicts nothing meaningful)."""
        return self.weights is not None

    def to_dict(self) -> dict:
        """JSON-ready description (results files, `dctnet bench`)."""
        return {"name": self.name, "kind": self.kind, "image_size": self.image_size,
                "num_classes": self.num_classes, "options": dict(self.options), "weights": self.weights,
                "identity": self.identity, "prepared": self.prepared, "resize": self.resize,
                "versions": list(self.versions) if self.versions is not None else None,
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
        if train and (self.kind not in ("dct",) or self.prepared is not None or self.versions is not None):
            raise ValueError(f"{self.name}: only DCT models have training pipelines here (RGB training "
                             "augmentation is dctnet.data.loaders.make_loader's; models of several versions "
                             "train on this evaluation pipeline)")
        if self.versions is not None:
            inner = dataclasses.replace(self, versions=None).pipeline(
                threads=threads, device=device, backend=backend, small=small, preprocess=preprocess)
            return VersionsPipeline(inner, self.versions, threads=threads)
        if self.kind in ("dct", "onnx-dct"):
            return DCTPipeline(self.input, self.image_size, train=train, threads=threads,
                               device=device if self.kind == "dct" else "cpu", backend=backend, small=small,
                               prepared=self.prepared, resize=None if train else self.resize)
        return RGBPipeline(preprocess or self.input, threads=threads,
                           output="numpy" if self.kind == "onnx" else "torch", path=self.kind,
                           prepared=self.prepared)
