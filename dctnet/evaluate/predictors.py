"""What `dctnet eval` runs: anything that turns JPEG bytes into class logits.

The :class:`Predictor` protocol is deliberately small so that any model fits:

* ``name: str`` — the model's name in results (registry name, ONNX file stem);
* ``num_classes: int`` — the width of the logits;
* ``identity: str`` — a string that changes whenever the weights or the preprocessing
  change (a hash): stored results are only reused for the same identity;
* ``predict_logits(jpegs) -> (logits, errors)`` — ``jpegs`` a sequence of N JPEG files as
  bytes; ``logits`` ``float32 (N, num_classes)``; ``errors`` a list of N entries, ``None``
  for items that worked and a message (naming the problem) for items that did not — a bad
  file must not lose the rest of the batch; its logits row is NaN.

:class:`OnnxPredictor` runs an ONNX RGB classifier with onnxruntime on CPU after a declared
preprocessing (:class:`dctnet.data.rgb.RGBPreprocess`, default: the shared MobileNetV2's).
:func:`make_predictor` builds predictors for registered (torch) models; it is the hook the
inference API fills in.
"""

from __future__ import annotations

import hashlib
import os
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ..data.rgb import RGBPreprocess

__all__ = ["ClassifierPredictor", "OnnxPredictor", "Predictor", "make_predictor"]


@runtime_checkable
class Predictor(Protocol):
    """JPEG bytes -> logits. See the module docstring for the contract."""

    name: str
    num_classes: int
    identity: str

    def predict_logits(self, jpegs: Sequence[bytes]) -> tuple[np.ndarray, list[str | None]]:
        """``N`` JPEGs -> ``(float32 (N, num_classes), errors)``; failed rows are NaN."""
        ...


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file (identities of weights and models in stored results)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class OnnxPredictor:
    """An ONNX image classifier (input ``float32 (N, 3, crop, crop)``, output logits) on CPU.

    Args:
        path: the ``.onnx`` file.
        preprocess: JPEG -> ``float32 (3, crop, crop)``; default :class:`RGBPreprocess` with
            ImageNet's resize 256 / crop 224 / mean / std (what the shared MobileNetV2 expects).
        threads: onnxruntime intra-op threads and preprocessing threads (default: all cores).
        batch_size: images per onnxruntime call.
        name: results name (default: the file's stem).

    Raises ``ValueError`` naming the file when the model does not take one 4-D float input
    of the preprocessing's size or does not give one 2-D output.
    """

    def __init__(self, path: str | os.PathLike, *, preprocess: RGBPreprocess | None = None,
                 threads: int | None = None, batch_size: int = 32, name: str | None = None):
        import onnxruntime as ort

        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise ValueError(f"{self.path}: no such ONNX file")
        self.preprocess = preprocess or RGBPreprocess()
        self.threads = threads or os.cpu_count() or 1
        self.batch_size = int(batch_size)
        self.name = name or os.path.splitext(os.path.basename(self.path))[0]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # errors only; onnxruntime's info lines are noise here
        try:
            self.session = ort.InferenceSession(self.path, opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise ValueError(f"{self.path}: onnxruntime cannot load it: {e}") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].type != "tensor(float)":
            raise ValueError(f"{self.path}: expected one float32 (N, 3, H, W) input, got "
                             f"{[(i.name, i.type, i.shape) for i in inputs]}")
        crop = self.preprocess.crop
        _, c, h, w = inputs[0].shape
        if (isinstance(c, int) and c != 3) or any(isinstance(s, int) and s != crop for s in (h, w)):
            raise ValueError(f"{self.path}: input {inputs[0].shape} does not match the preprocessing's "
                             f"(N, 3, {crop}, {crop})")
        if len(outputs[0].shape) != 2:
            raise ValueError(f"{self.path}: expected a 2-D (N, classes) output, got {outputs[0].shape}")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        classes = outputs[0].shape[1]
        if not isinstance(classes, int):  # symbolic: find it with one zero image
            probe = np.zeros((1, 3, crop, crop), np.float32)
            classes = int(self.session.run([self.output_name], {self.input_name: probe})[0].shape[1])
        self.num_classes = int(classes)
        self.identity = f"onnx:{file_sha256(self.path)}:{self.preprocess!r}"

    def __repr__(self) -> str:
        return f"OnnxPredictor({self.path!r}, preprocess={self.preprocess!r})"

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Preprocessed ``float32 (N, 3, crop, crop)`` -> logits ``float32 (N, num_classes)``."""
        return self.session.run([self.output_name], {self.input_name: batch})[0].astype(np.float32, copy=False)

    def predict_logits(self, jpegs: Sequence[bytes]) -> tuple[np.ndarray, list[str | None]]:
        """``N`` JPEGs -> ``(float32 (N, num_classes), errors)``; failed rows are NaN."""
        n = len(jpegs)
        logits = np.full((n, self.num_classes), np.nan, np.float32)
        errors: list[str | None] = [None] * n
        for start in range(0, n, self.batch_size):
            chunk = list(jpegs[start:start + self.batch_size])
            batch, errs = self.preprocess.batch(chunk, threads=self.threads, on_error="return")
            ok = [i for i, e in enumerate(errs) if e is None]
            for i, e in enumerate(errs):
                if e is not None:
                    errors[start + i] = str(e)
            if ok:
                logits[[start + i for i in ok]] = self.run(batch[ok])
        return logits, errors


class ClassifierPredictor:
    """A registered (torch) RGB or DCT model run through :class:`dctnet.Classifier`.

    Args:
        classifier: the Classifier (its ``name`` is the results name).
        identity: changes whenever weights or preprocessing change.
    """

    def __init__(self, classifier, identity: str):
        self.classifier = classifier
        self.name = classifier.name
        self.num_classes = classifier.num_classes
        self.identity = identity

    def __repr__(self) -> str:
        return f"ClassifierPredictor({self.classifier!r})"

    def predict_logits(self, jpegs: Sequence[bytes]) -> tuple[np.ndarray, list[str | None]]:
        """``N`` JPEGs -> ``(float32 (N, num_classes), errors)``; failed rows are NaN."""
        logits, errors, _ = self.classifier.predict_logits(list(jpegs))
        return logits, [None if e is None else str(e) for e in errors]


def make_predictor(name: str, weights: str | os.PathLike | None, *, threads: int | None = None,
                   batch_size: int = 64, device: str = "cpu") -> Predictor:
    """A :class:`Predictor` for registered model ``name`` with local ``weights``.

    DCT models read coefficients (centre crop on block boundaries; images smaller than the
    crop are resized and re-encoded first, see :class:`dctnet.Classifier`); RGB models get
    the standard resize-256 / centre-crop-224 preprocessing with their own mean and std.
    ``weights=None`` evaluates an untrained model (only meaningful for tests).
    """
    from ..classify import Classifier

    clf = Classifier(name, weights=weights, threads=threads, batch_size=batch_size, device=device)
    digest = file_sha256(os.fspath(weights)) if weights is not None else "untrained"
    layout = clf.layout.to_dict() if clf.kind == "dct" else repr(clf.preprocess)
    return ClassifierPredictor(clf, identity=f"torch:{name}:{digest}:{layout}")
