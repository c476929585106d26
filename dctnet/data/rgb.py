"""The RGB input path: JPEG -> RGB pixels -> resize -> centre crop -> normalised tensor.

This is the standard ImageNet evaluation preprocessing (torchvision's ``Resize(256)`` +
``CenterCrop(224)`` + ``Normalize``), written without torchvision and pinned down to the
letter of ``shared/data/README.md`` so that accuracies reproduce across machines:

* decode with libjpeg-turbo (islow IDCT, fancy upsampling; grayscale files become 3
  equal channels). simplejpeg is used because it releases the GIL and turns every libjpeg
  warning (corrupt data) into an error, which dctnet requires;
* resize with Pillow's ``Image.BILINEAR`` (antialiased when downscaling) so that the
  shorter side is ``resize``; the new size is ``(round(w*s), round(h*s))``,
  ``s = resize / min(w, h)``, with Python's ``round``;
* crop ``crop x crop`` at ``((w - crop) // 2, (h - crop) // 2)``;
* scale to [0, 1] and normalise per channel with ``mean`` and ``std``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import simplejpeg
from PIL import Image

from ..codec import JPEGError, JPEGSource

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "RGBPreprocess", "decode_rgb", "resize_shorter", "center_crop"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _read_bytes(src: JPEGSource) -> tuple[bytes | bytearray | memoryview, str]:
    if isinstance(src, (str, os.PathLike)):
        path = os.fsdecode(src)
        with open(path, "rb") as f:
            return f.read(), path
    if isinstance(src, (bytes, bytearray, memoryview)):
        return src, "<bytes>"
    raise TypeError(f"expected a path or a bytes-like object, got {type(src).__name__}")


def decode_rgb(src: JPEGSource, *, name: str | None = None) -> np.ndarray:
    """Decode a JPEG to RGB with libjpeg-turbo (islow IDCT, fancy upsampling).

    Returns ``uint8 (H, W, 3)``. Grayscale files give three equal channels. Raises
    :class:`~dctnet.JPEGError` naming the source for anything libjpeg-turbo rejects or warns
    about (corrupt data is an error, as in :func:`dctnet.read_dct`).
    """
    data, default_name = _read_bytes(src)
    name = name or default_name
    if len(data) == 0:
        raise JPEGError(name, "empty input (0 bytes)")
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=False, fastupsample=False, strict=True)
    except ValueError as e:
        raise JPEGError(name, str(e)) from None


def resize_shorter(image: np.ndarray, size: int) -> np.ndarray:
    """Resize ``uint8 (H, W, 3)`` so its shorter side is ``size`` (Pillow BILINEAR, antialiased).

    The new size is ``(round(w * s), round(h * s))`` with ``s = size / min(w, h)``.
    """
    h, w = image.shape[:2]
    s = size / min(w, h)
    new_w, new_h = round(w * s), round(h * s)
    if (new_w, new_h) == (w, h):
        return image
    return np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Crop ``size x size`` at ``((w - size) // 2, (h - size) // 2)`` of ``(H, W, C)``."""
    h, w = image.shape[:2]
    if h < size or w < size:
        raise ValueError(f"image of {w}x{h} is smaller than the {size}x{size} crop")
    top, left = (h - size) // 2, (w - size) // 2
    return image[top:top + size, left:left + size]


@dataclass(frozen=True)
class RGBPreprocess:
    """Decode + resize + centre crop + normalise, as one callable.

    Args:
        resize: shorter side after resizing (pixels); ``None`` skips the resize.
        crop: side of the square centre crop (pixels).
        mean, std: per-channel normalisation of values scaled to [0, 1].
    """

    resize: int | None = 256
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def pixels(self, src: JPEGSource, *, name: str | None = None) -> np.ndarray:
        """Decoded, resized and cropped pixels: ``uint8 (crop, crop, 3)``."""
        data, default_name = _read_bytes(src)
        name = name or default_name
        image = decode_rgb(data, name=name)
        if self.resize is not None:
            image = resize_shorter(image, self.resize)
        try:
            return center_crop(image, self.crop)
        except ValueError as e:
            raise JPEGError(name, str(e)) from None

    def normalize(self, pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``uint8 (H, W, 3)`` -> ``float32 (3, H, W)``: ``(x / 255 - mean) / std``."""
        scale = (1.0 / (255.0 * np.asarray(self.std, np.float32))).astype(np.float32)
        offset = (-np.asarray(self.mean, np.float32) / np.asarray(self.std, np.float32)).astype(np.float32)
        if out is None:
            out = np.empty((3,) + pixels.shape[:2], np.float32)
        chw = pixels.transpose(2, 0, 1)
        np.multiply(chw, scale[:, None, None], out=out, casting="unsafe")
        out += offset[:, None, None]
        return out

    def __call__(self, src: JPEGSource, *, name: str | None = None) -> np.ndarray:
        """One image: ``float32 (3, crop, crop)``."""
        return self.normalize(self.pixels(src, name=name))

    def batch(self, srcs: Sequence[JPEGSource], *, threads: int | None = None, out: np.ndarray | None = None,
              on_error: Literal["raise", "return"] = "raise") -> tuple[np.ndarray, list[Exception | None]]:
        """Many images on a thread pool (decoding and resizing release the GIL).

        Returns ``(tensor float32 (N, 3, crop, crop), errors)`` where ``errors[i]`` is the
        exception of item i (its slot in the tensor is zero) or ``None``. With
        ``on_error="raise"`` the first failure is raised instead.
        """
        n = len(srcs)
        if out is None:
            out = np.empty((n, 3, self.crop, self.crop), np.float32)
        elif out.shape != (n, 3, self.crop, self.crop) or out.dtype != np.float32:
            raise ValueError(f"out must be float32 {(n, 3, self.crop, self.crop)}, got {out.dtype} {out.shape}")
        errors: list[Exception | None] = [None] * n

        def work(i: int) -> None:
            try:
                self.normalize(self.pixels(srcs[i]), out=out[i])
            except (JPEGError, OSError) as e:
                out[i] = 0.0
                errors[i] = e

        threads = threads or os.cpu_count() or 1
        if threads == 1 or n == 1:
            for i in range(n):
                work(i)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(work, range(n)))
        if on_error == "raise":
            for e in errors:
                if e is not None:
                    raise e
        return out, errors
