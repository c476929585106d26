"""Re-encoding a JPEG at a chosen quality: the "settings" of `dctnet eval`.

A :class:`Setting` is one version of every image:

* ``original``: the file's bytes as they are;
* ``qf<Q>``: the original decoded (libjpeg-turbo, islow IDCT, fancy upsampling, see
  :func:`dctnet.imaging.decode_rgb`) and re-encoded by libjpeg-turbo (PyTurboJPEG) at IJG
  quality ``Q`` with the standard (Annex K) tables scaled by ``Q``, 4:2:0 sampling, the
  accurate (islow) forward DCT, no Huffman optimisation, baseline: byte-identical to
  ``cjpeg -quality Q -sample 2x2 -dct int -baseline`` (:data:`dctnet.imaging.ENCODER`);
* ``gray-qf<Q>``: the luma plane only (the decoder's own YCbCr->gray, i.e. Y), encoded as
  a one-component JPEG at ``Q``;
* ``down<F>-qf<Q>`` (and ``gray-down<F>-qf<Q>``): the decoded image reduced by ``F`` in
  2, 4, 8 with a box filter (Pillow ``Image.reduce``: the mean of each FxF cell, a partial
  cell at the right/bottom edge averaging what it has) before encoding.

:func:`encode_setting` makes one version; :func:`make_settings` the list the CLI flags ask
for. :func:`reference_pixels` gives the pixels a version is compared with (PSNR/SSIM):
the original's decode, reduced and/or turned gray the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from ..codec import JPEGError
from ..imaging import decode_rgb, encode_jpeg

__all__ = ["DEFAULT_QFS", "Setting", "encode_setting", "make_settings", "parse_setting", "reference_pixels"]

DEFAULT_QFS = (100, 90, 80, 70, 60, 50, 40, 30, 20, 10)
DOWNSCALES = (2, 4, 8)

@dataclass(frozen=True, order=True)
class Setting:
    """One version of an image: ``qf=None`` is the original file (no other option allowed)."""

    qf: int | None = None
    gray: bool = False
    downscale: int = 1

    def __post_init__(self) -> None:
        if self.qf is None and (self.gray or self.downscale != 1):
            raise ValueError("the original setting cannot be gray or downscaled (give a quality)")
        if self.qf is not None and not 1 <= self.qf <= 100:
            raise ValueError(f"JPEG quality must be 1..100, got {self.qf}")
        if self.downscale not in (1,) + DOWNSCALES:
            raise ValueError(f"downscale factor must be one of 1, 2, 4, 8, got {self.downscale}")

    @property
    def name(self) -> str:
        """``original``, ``qf90``, ``gray-qf90``, ``down2-qf90``, ``gray-down4-qf50`` ..."""
        if self.qf is None:
            return "original"
        parts = (["gray"] if self.gray else []) + ([f"down{self.downscale}"] if self.downscale != 1 else [])
        return "-".join(parts + [f"qf{self.qf}"])

    @property
    def is_original(self) -> bool:
        return self.qf is None

    @property
    def is_plain_qf(self) -> bool:
        """A colour, full-size re-encoding: the versions the selectors choose among."""
        return self.qf is not None and not self.gray and self.downscale == 1


_NAME = re.compile(r"^(?:(gray)-)?(?:down(\d+)-)?qf(\d+)$")


def parse_setting(name: str) -> Setting:
    """Inverse of :attr:`Setting.name`."""
    if name == "original":
        return Setting()
    m = _NAME.match(name)
    if not m:
        raise ValueError(f"unknown setting {name!r} (expected original, qfQ, gray-qfQ, downF-qfQ, gray-downF-qfQ)")
    return Setting(int(m.group(3)), bool(m.group(1)), int(m.group(2) or 1))


def make_settings(qfs: Sequence[int] = DEFAULT_QFS, *, gray: bool = False,
                  downscales: Sequence[int] = ()) -> list[Setting]:
    """``original``, then every QF (descending), then the gray and/or downscaled variants of
    every QF (all combinations of the options asked for)."""
    qfs = sorted(set(int(q) for q in qfs), reverse=True)
    scales = [1] + sorted(set(int(d) for d in downscales) - {1})
    out = [Setting()]
    for g in ([False, True] if gray else [False]):
        for d in scales:
            out += [Setting(q, g, d) for q in qfs]
    return out


def _transform(rgb: np.ndarray, setting: Setting) -> np.ndarray:
    """Decoded original ``uint8 (H, W, 3)`` -> the pixels to encode (``(h, w, 3)`` or ``(h, w)`` gray)."""
    img = rgb
    if setting.gray:
        # BT.601 luma of the decoded RGB (Pillow "L": 16-bit fixed point 0.299/0.587/0.114,
        # the same constants libjpeg uses for RGB->Y).
        img = np.asarray(Image.fromarray(img).convert("L"))
    if setting.downscale != 1:
        img = np.asarray(Image.fromarray(img).reduce(setting.downscale))
    return np.ascontiguousarray(img)


def reference_pixels(original_rgb: np.ndarray, setting: Setting) -> np.ndarray:
    """What a version's decode is compared with: the original's decode, reduced and/or gray
    as the setting does before encoding. ``uint8 (h, w, 3)`` or ``(h, w)``."""
    if setting.is_original:
        return original_rgb
    return _transform(original_rgb, setting)


def encode_setting(original: bytes, setting: Setting, *, original_rgb: np.ndarray | None = None,
                   name: str = "<bytes>") -> bytes:
    """The bytes of one version of a JPEG.

    ``original_rgb`` (``uint8 (H, W, 3)``, the decode of ``original``) saves decoding again
    when making several versions. Raises :class:`~dctnet.JPEGError` naming ``name`` when
    the original cannot be decoded or the image is too small for the downscale factor.
    """
    if setting.is_original:
        return bytes(original)
    rgb = decode_rgb(original, name=name) if original_rgb is None else original_rgb
    if setting.downscale != 1 and min(rgb.shape[:2]) < setting.downscale:
        raise JPEGError(name, f"{rgb.shape[1]}x{rgb.shape[0]} is too small to downscale by {setting.downscale}")
    pixels = _transform(rgb, setting)
    return encode_jpeg(pixels, setting.qf, subsampling="gray" if pixels.ndim == 2 else "420")
