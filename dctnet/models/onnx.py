"""ONNX classifiers run with onnxruntime on CPU: the RGB baselines as models of dctnet.

:class:`OnnxModel` is to an ``.onnx`` file what an ``nn.Module`` is to a registry name: it
takes the prepared batch (``float32 (N, 3, crop, crop)``, NumPy) and gives logits. It is
built by :func:`dctnet.models.resolve` (``model="path/to/model.onnx"``), which pairs it with
its input (an :class:`~dctnet.imaging.RGBPreprocess`) in a :class:`~dctnet.models.ModelBundle`.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import onnxruntime as ort

__all__ = ["OnnxModel", "file_sha256"]


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file (identities of weights and models in stored results)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class OnnxModel:
    """An ONNX image classifier: one float input ``(N, 3, H, W)``, one ``(N, classes)`` output.

    Args:
        path: the ``.onnx`` file.
        crop: the input side the preprocessing produces (checked against the file's input
            shape where it is fixed).
        threads: onnxruntime intra-op threads (default: all cores).

    Attributes: ``path``, ``name`` (the file's stem), ``num_classes``, ``sha256``.

    Raises ``ValueError`` naming the file when onnxruntime cannot load it or its inputs and
    outputs are not those of an image classifier of this input size.
    """

    def __init__(self, path: str | os.PathLike, *, crop: int = 224, threads: int | None = None):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise ValueError(f"{self.path}: no such ONNX file")
        self.name = os.path.splitext(os.path.basename(self.path))[0]
        self.threads = threads or os.cpu_count() or 1
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # errors only; onnxruntime's info lines are noise here
        try:
            self.session = ort.InferenceSession(self.path, opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise ValueError(f"{self.path}: onnxruntime cannot load it as an ONNX model: {e}") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].type != "tensor(float)":
            raise ValueError(f"{self.path}: expected one float32 (N, 3, H, W) input, got "
                             f"{[(i.name, i.type, i.shape) for i in inputs]}")
        _, c, h, w = inputs[0].shape
        if (isinstance(c, int) and c != 3) or any(isinstance(s, int) and s != crop for s in (h, w)):
            raise ValueError(f"{self.path}: input {inputs[0].shape} does not match the preprocessing's "
                             f"(N, 3, {crop}, {crop})")
        if len(outputs[0].shape) != 2:
            raise ValueError(f"{self.path}: expected a 2-D (N, classes) output, got {outputs[0].shape}")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.crop = int(crop)
        classes = outputs[0].shape[1]
        if not isinstance(classes, int):  # symbolic: find it with one zero image
            probe = np.zeros((1, 3, crop, crop), np.float32)
            classes = int(self.session.run([self.output_name], {self.input_name: probe})[0].shape[1])
        self.num_classes = int(classes)
        self.sha256 = file_sha256(self.path)

    def __repr__(self) -> str:
        return f"OnnxModel({self.path!r})"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Preprocessed ``float32 (N, 3, crop, crop)`` -> logits ``float32 (N, num_classes)``."""
        return self.session.run([self.output_name], {self.input_name: batch})[0].astype(np.float32, copy=False)
