"""DCT coefficients into unchanged ONNX RGB classifiers (issue 8).

An ONNX network cannot have the decode path folded into its first convolution from here,
so the path runs in front of it: :class:`~dctnet.models.decode_path.DCTFrontEnd` (torch) turns
the ``late_concat`` coefficients of a prepared JPEG (:func:`~dctnet.imaging.prepare_jpeg`:
shorter side 256, 224 crop on 16-pixel boundaries, 4:2:0) into the normalised float RGB
``(N, 3, 224, 224)`` the model takes. With ``n < 64`` bands the other coefficients are zero:
this measures how a pretrained RGB network copes with n bands (it was not trained on them).

:class:`OnnxDCTPredictor` is a :class:`~dctnet.evaluate.predictors.Predictor` for
`dctnet eval` (flag ``--onnx-dct PATH:n,n,...``). ``mode="rgb"`` runs the same prepared
file through libjpeg-turbo's own decode instead: the reference row the DCT rows should
match at n = 64.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import torch

from ..codec import JPEGError, read_dct
from ..imaging import RGBPreprocess, prepare_jpeg
from ..ops import to_tensor
from .decode_path import DCTFrontEnd, converted_layout
from .onnx import OnnxModel, file_sha256

__all__ = ["OnnxDCTPredictor", "frontend_macs", "prepared"]


def frontend_macs(bands=64, image_size: int = 224) -> int:
    """MACs of the front end's inverse DCT for one image (``n`` coefficients -> 64 pixels per
    block and component; upsampling and colour conversion are additions/scalings, not counted)."""
    ny, ncb, ncr = converted_layout(bands).channels_per_component
    hb = image_size // 8
    return 64 * (ny * hb * hb + (ncb + ncr) * (hb // 2) ** 2)


@functools.lru_cache(maxsize=512)
def prepared(data: bytes, resize: int = 256, crop: int = 224) -> bytes:
    """:func:`prepare_jpeg` with a small cache (`dctnet eval` hands the same version to
    several predictors in a row)."""
    return prepare_jpeg(data, resize=resize, crop=crop)


class OnnxDCTPredictor:
    """An ONNX RGB classifier fed from DCT coefficients through :class:`DCTFrontEnd`.

    Args:
        path: the ``.onnx`` file (one float input ``(N, 3, crop, crop)``, logits output).
        bands: ``n`` lowest zigzag bands per component (or per-component lists).
        mode: ``"dct"`` (coefficients -> front end -> model) or ``"rgb"`` (the same prepared
            JPEG decoded by libjpeg-turbo -> model; the reference).
        clamp: the front end's arithmetic (:class:`DCTFrontEnd`): ``"libjpeg"`` (default:
            libjpeg-turbo's integer decode, bit-exact), ``"round"``, ``"clamp"`` or ``"none"``
            (the purely linear float map).
        mean, std: the model's input normalisation (ImageNet's by default).
        resize, crop: :func:`prepare_jpeg` geometry.
        threads, batch_size: preparation threads / onnxruntime intra-op threads; images per call.
        name: results name (default ``<file stem>-dct<n>`` or ``<file stem>-prepared-rgb``).
    """

    def __init__(self, path: str | os.PathLike, bands=64, *, mode: str = "dct", clamp: str = "libjpeg",
                 mean: Sequence[float] = (0.485, 0.456, 0.406), std: Sequence[float] = (0.229, 0.224, 0.225),
                 resize: int = 256, crop: int = 224, threads: int | None = None, batch_size: int = 32,
                 name: str | None = None):
        if mode not in ("dct", "rgb"):
            raise ValueError(f"mode must be 'dct' or 'rgb', not {mode!r}")
        self.mode = mode
        self.layout = converted_layout(bands)
        self.resize, self.crop = int(resize), int(crop)
        self.threads = threads or os.cpu_count() or 1
        self.batch_size = int(batch_size)
        self.rgb = RGBPreprocess(resize=None, crop=self.crop, mean=tuple(mean), std=tuple(std))
        # OnnxModel checks the model (one 4-D float input of the crop size, 2-D output).
        self.onnx = OnnxModel(path, crop=self.crop, threads=self.threads)
        self.path = self.onnx.path
        self.num_classes = self.onnx.num_classes
        stem = os.path.splitext(os.path.basename(self.path))[0]
        b = self.layout.bands
        tag = f"dct{b}" if isinstance(b, int) else "dct" + "-".join(str(len(x)) for x in b)
        self.name = name or (f"{stem}-{tag}" if mode == "dct" else f"{stem}-prepared-rgb")
        self.frontend = DCTFrontEnd(self.layout, mean, std, clamp=clamp).eval()
        self.identity = (f"onnx-{mode}:{file_sha256(self.path)}:{self.layout.to_json() if mode == 'dct' else ''}:"
                         f"{clamp if mode == 'dct' else ''}:{self.resize}/{self.crop}:{tuple(mean)}:{tuple(std)}")

    def __repr__(self) -> str:
        return f"OnnxDCTPredictor({self.path!r}, bands={self.layout.bands}, mode={self.mode!r})"

    def inputs(self, jpegs: Sequence[bytes]) -> tuple[np.ndarray, list[Exception | None]]:
        """The model inputs ``float32 (N, 3, crop, crop)`` for N JPEGs (rows of failed items
        are zero) and per-item error messages."""
        n = len(jpegs)
        out = np.zeros((n, 3, self.crop, self.crop), np.float32)
        errors: list[Exception | None] = [None] * n

        def prep(i: int):
            try:
                data = prepared(bytes(jpegs[i]), self.resize, self.crop)
                if self.mode == "rgb":
                    self.rgb.normalize(self.rgb.pixels(data), out=out[i])
                    return None
                return read_dct(data)
            except (JPEGError, OSError, ValueError) as e:
                errors[i] = e if isinstance(e, JPEGError) else JPEGError(f"<bytes #{i}>", str(e))
                return None

        if self.threads == 1 or n == 1:
            images = [prep(i) for i in range(n)]
        else:
            with ThreadPoolExecutor(self.threads) as pool:
                images = list(pool.map(prep, range(n)))
        if self.mode == "dct":
            ok = [i for i in range(n) if errors[i] is None]
            if ok:
                y, cbcr = to_tensor([images[i] for i in ok], self.layout)
                with torch.inference_mode():
                    out[ok] = self.frontend(y, cbcr).numpy()
        return out, errors

    def predict_logits(self, jpegs: Sequence[bytes]) -> tuple[np.ndarray, list[Exception | None]]:
        """``N`` JPEGs -> ``(float32 (N, num_classes), errors)``; failed rows are NaN."""
        n = len(jpegs)
        logits = np.full((n, self.num_classes), np.nan, np.float32)
        errors: list[Exception | None] = [None] * n
        for start in range(0, n, self.batch_size):
            x, errs = self.inputs(jpegs[start:start + self.batch_size])
            ok = [i for i, e in enumerate(errs) if e is None]
            for i, e in enumerate(errs):
                errors[start + i] = e
            if ok:
                logits[[start + i for i in ok]] = self.onnx(x[ok])
        return logits, errors
