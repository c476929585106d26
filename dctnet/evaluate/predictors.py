"""What `dctnet eval` runs: anything that turns JPEG bytes into class logits.

The :class:`Predictor` protocol is deliberately small so that any model fits:

* ``name: str`` — the model's name in results (registry name, ONNX file stem);
* ``num_classes: int`` — the width of the logits;
* ``identity: str`` — a string that changes whenever the weights or the preprocessing
  change (a hash): stored results are only reused for the same identity;
* ``accepts_pixels: bool`` (optional, default False) — the model also takes decoded images
  ``uint8 (H, W, 3)`` in place of JPEG bytes: `dctnet eval` gives such models the other
  codecs' versions (JPEG 2000, HEIF, AVIF, WebP) as their decode; models without it (DCT
  models, prepared pipelines) are evaluated on the JPEG settings only;
* ``predict_logits(jpegs) -> (logits, errors)`` — ``jpegs`` a sequence of N JPEG files as
  bytes (or decoded images, for models that accept pixels); ``logits``
  ``float32 (N, num_classes)``; ``errors`` a list of N entries, ``None``
  for items that worked and the exception (naming the problem) for items that did not, the
  batch-result convention of ``docs/architecture.md`` — a bad file must not lose the rest of
  the batch; its logits row is NaN.

Registered (torch) models and ONNX classifiers are run through :class:`dctnet.Classifier`
(:class:`ClassifierPredictor`), so evaluation feeds a model exactly as inference does:
the model's bundle and its input pipeline (:func:`dctnet.models.resolve`,
:mod:`dctnet.pipeline`).
"""

from __future__ import annotations

import os
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ..classify import Classifier
from ..imaging import IMAGENET_MEAN, IMAGENET_STD, RGBPreprocess
from ..models import resolve
from ..models.onnx import file_sha256

__all__ = ["ClassifierPredictor", "OnnxDCTPredictor", "OnnxPredictor", "Predictor", "file_sha256", "make_predictor"]


@runtime_checkable
class Predictor(Protocol):
    """JPEG bytes -> logits. See the module docstring for the contract."""

    name: str
    num_classes: int
    identity: str

    def predict_logits(self, jpegs: Sequence[bytes]) -> tuple[np.ndarray, list[Exception | None]]:
        """``N`` JPEGs -> ``(float32 (N, num_classes), errors)``; failed rows are NaN."""
        ...


class ClassifierPredictor:
    """A registered (torch) RGB or DCT model run through :class:`dctnet.Classifier`.

    Args:
        classifier: the Classifier (its ``name`` is the results name).
        identity: changes whenever weights or preprocessing change (default: the bundle's).
    """

    def __init__(self, classifier: Classifier, identity: str | None = None):
        self.classifier = classifier
        self.name = classifier.name
        self.num_classes = classifier.num_classes
        self.identity = identity or classifier.bundle.identity
        pipe = classifier.pipeline
        self.accepts_pixels = pipe.kind == "rgb" and getattr(pipe, "prepared", None) is None

    def __repr__(self) -> str:
        return f"ClassifierPredictor({self.classifier!r})"

    def predict_logits(self, jpegs: Sequence[bytes]) -> tuple[np.ndarray, list[Exception | None]]:
        """``N`` JPEGs -> ``(float32 (N, num_classes), errors)``; failed rows are NaN."""
        logits, errors, _ = self.classifier.predict_logits(list(jpegs))
        return logits, errors


class OnnxPredictor(ClassifierPredictor):
    """An ONNX image classifier (input ``float32 (N, 3, crop, crop)``, output logits) on CPU,
    run through :class:`dctnet.Classifier`.

    Args:
        path: the ``.onnx`` file.
        preprocess: JPEG -> ``float32 (3, crop, crop)``; default :class:`RGBPreprocess` with
            ImageNet's resize 256 / crop 224 / mean / std (what the shared models expect).
        threads: onnxruntime intra-op threads and preprocessing threads (default: all cores).
        batch_size: images per onnxruntime call.
        name: results name (default: the file's stem).

    Raises ``ValueError`` naming the file when the model does not take one 4-D float input
    of the preprocessing's size or does not give one 2-D output.
    """

    def __init__(self, path: str | os.PathLike, *, preprocess: RGBPreprocess | None = None,
                 threads: int | None = None, batch_size: int = 32, name: str | None = None):
        clf = Classifier(os.fspath(path), preprocess=preprocess, threads=threads, batch_size=batch_size)
        super().__init__(clf, clf.bundle.identity)
        self.path = clf.bundle.weights
        self.preprocess = clf.preprocess
        if name:
            self.name = name

    def __repr__(self) -> str:
        return f"OnnxPredictor({self.path!r}, preprocess={self.preprocess!r})"


class OnnxDCTPredictor(ClassifierPredictor):
    """An ONNX RGB classifier fed from DCT coefficients through the exact decode path
    (``mode="dct"``), or the reference: the same prepared files decoded by libjpeg-turbo
    (``mode="rgb"``). `dctnet eval --onnx-dct PATH:n,n,...` runs both. Arguments as
    :func:`dctnet.models.onnx_frontend.onnx_frontend_bundle`; ``batch_size`` images per call.
    """

    def __init__(self, path: str | os.PathLike, bands=64, *, mode: str = "dct", clamp: str = "libjpeg",
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 resize: int = 256, crop: int = 224, threads: int | None = None, batch_size: int = 32,
                 name: str | None = None):
        bundle = resolve(os.fspath(path), bands=bands, mode=mode, clamp=clamp, mean=tuple(mean), std=tuple(std),
                         resize=resize, crop=crop, threads=threads)
        super().__init__(Classifier(bundle, threads=threads, batch_size=batch_size))
        self.path, self.mode, self.layout = bundle.weights, mode, bundle.input
        if name:
            self.name = name

    def __repr__(self) -> str:
        return f"OnnxDCTPredictor({self.path!r}, bands={self.classifier.bundle.options['bands']}, mode={self.mode!r})"


def make_predictor(name: str, weights: str | os.PathLike | None | bool, *, threads: int | None = None,
                   batch_size: int = 64, device: str = "cpu", **options) -> Predictor:
    """A :class:`Predictor` for registered model ``name`` with local ``weights``, fed as
    :class:`dctnet.Classifier` feeds it (its bundle's pipeline). ``weights=None``: the model's
    default weights if it has some (e.g. ``efficientnet_lite0``), else untrained;
    ``weights=False``: untrained. ``options``: builder options (``bands=``)."""
    clf = Classifier(name, weights=weights, threads=threads, batch_size=batch_size, device=device, **options)
    return ClassifierPredictor(clf)
