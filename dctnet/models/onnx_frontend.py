"""DCT coefficients into unchanged ONNX RGB classifiers.

An ONNX network cannot have the decode path folded into its first convolution from here,
so the path runs in front of it: :class:`~dctnet.models.decode_path.DCTFrontEnd` (torch) turns
the ``late_concat`` coefficients of a prepared JPEG (:func:`~dctnet.imaging.prepare_jpeg`:
shorter side 256, 224 crop on 16-pixel boundaries, 4:2:0) into the normalised float RGB
``(N, 3, 224, 224)`` the model takes. With ``n < 64`` bands the other coefficients are zero:
this measures how a pretrained RGB network copes with n bands (it was not trained on them).

:func:`onnx_frontend_bundle` makes the :class:`~dctnet.models.ModelBundle` of such a model
(``resolve("model.onnx", bands=n)``): kind ``"onnx-dct"``, an :class:`OnnxDCTModel`, fed by a
DCT pipeline on prepared files. ``mode="rgb"`` gives the reference: the same prepared file
through libjpeg-turbo's own decode into the same ONNX model (the row the DCT rows should
match at n = 64). `dctnet eval --onnx-dct PATH:n,n,...` runs both
(:class:`dctnet.evaluate.predictors.OnnxDCTPredictor`).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch

from ..imaging import IMAGENET_MEAN, IMAGENET_STD, RGBPreprocess
from .bundle import ModelBundle
from .decode_path import DCTFrontEnd, converted_layout
from .onnx import OnnxModel

__all__ = ["OnnxDCTModel", "frontend_macs", "onnx_frontend_bundle"]


def frontend_macs(bands=64, image_size: int = 224) -> int:
    """MACs of the front end's inverse DCT for one image (``n`` coefficients -> 64 pixels per
    block and component; upsampling and colour conversion are additions/scalings, not counted)."""
    ny, ncb, ncr = converted_layout(bands).channels_per_component
    hb = image_size // 8
    return 64 * (ny * hb * hb + (ncb + ncr) * (hb // 2) ** 2)


class OnnxDCTModel:
    """An ONNX RGB classifier behind the DCT front end: ``(y, cbcr)`` coefficients -> logits.

    Args:
        frontend: the decode path (:class:`DCTFrontEnd`, eval mode).
        onnx: the RGB classifier.
    """

    def __init__(self, frontend: DCTFrontEnd, onnx: OnnxModel):
        self.frontend, self.onnx = frontend, onnx
        self.path, self.name, self.num_classes = onnx.path, onnx.name, onnx.num_classes

    def __repr__(self) -> str:
        return f"OnnxDCTModel({self.path!r}, bands={self.frontend.layout.bands})"

    def __call__(self, y: torch.Tensor, cbcr: torch.Tensor) -> np.ndarray:
        """``float32 (N, nY, h, w)`` and ``(N, nCb + nCr, h/2, w/2)`` -> logits ``float32 (N, classes)``."""
        with torch.inference_mode():
            rgb = self.frontend(y, cbcr).numpy()
        return self.onnx(rgb)


def onnx_frontend_bundle(path: str | os.PathLike, bands=64, *, mode: str = "dct", clamp: str = "libjpeg",
                         mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                         resize: int = 256, crop: int = 224, threads: int | None = None) -> ModelBundle:
    """The bundle of an ONNX RGB classifier fed from DCT coefficients (``mode="dct"``) or,
    as the reference, from libjpeg-turbo's decode of the same prepared file (``mode="rgb"``).

    Args:
        path: the ``.onnx`` file (one float input ``(N, 3, crop, crop)``, logits output).
        bands: ``n`` lowest zigzag bands per component (or per-component lists).
        clamp: the front end's arithmetic (:class:`DCTFrontEnd`): ``"libjpeg"`` (default:
            libjpeg-turbo's integer decode, bit-exact), ``"round"``, ``"clamp"`` or ``"none"``.
        mean, std: the model's input normalisation (ImageNet's by default).
        resize, crop: :func:`~dctnet.imaging.prepare_jpeg` geometry.
        threads: onnxruntime intra-op threads.

    Names: ``<file stem>-dct<n>`` or ``<file stem>-prepared-rgb``.
    """
    if mode not in ("dct", "rgb"):
        raise ValueError(f"mode must be 'dct' or 'rgb', not {mode!r}")
    layout = converted_layout(bands)
    resize, crop = int(resize), int(crop)
    onnx = OnnxModel(path, crop=crop, threads=threads)  # checks the model's input and output
    b = layout.bands
    tag = f"dct{b}" if isinstance(b, int) else "dct" + "-".join(str(len(x)) for x in b)
    # the identity format of stored `dctnet eval` results (keep it stable)
    identity = (f"onnx-{mode}:{onnx.sha256}:{layout.to_json() if mode == 'dct' else ''}:"
                f"{clamp if mode == 'dct' else ''}:{resize}/{crop}:{tuple(mean)}:{tuple(std)}")
    common = dict(image_size=crop, num_classes=onnx.num_classes, class_names=None, weights=onnx.path,
                  identity=identity, prepared=(resize, crop),
                  options={"bands": b, "mode": mode, "clamp": clamp, "resize": resize, "crop": crop})
    if mode == "rgb":
        return ModelBundle(name=f"{onnx.name}-prepared-rgb", kind="onnx",
                           input=RGBPreprocess(resize=None, crop=crop, mean=tuple(mean), std=tuple(std)),
                           model=onnx, **common)
    frontend = DCTFrontEnd(layout, mean, std, clamp=clamp).eval()
    return ModelBundle(name=f"{onnx.name}-{tag}", kind="onnx-dct", input=layout, model=OnnxDCTModel(frontend, onnx),
                       **common)
