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

* ``requant-qf<Q>``: no decoding: the original's quantised coefficients requantised with
  the tables of IJG quality ``Q`` (:func:`dctnet.codec.requantize_jpeg`, ``round(coef *
  q_old / q_new)`` with libjpeg's rounding, half away from zero), written as a baseline JPEG
  (standard Huffman tables) by libjpeg-turbo's ``jpeg_write_coefficients``. It keeps the
  original's chroma sampling and size; the study compares it with ``qf<Q>``, the true
  decode + re-encode (:func:`coefficient_agreement`);
* ``<codec>-q<Q>`` / ``jpeg2000-cr<R>``: the decoded original encoded by another codec
  (:data:`dctnet.imaging.CODECS`: ``jpeg2000``, ``heif``, ``avif``, ``webp``) at its own
  parameter (quality, or JPEG 2000's compression ratio). These are not JPEG files: RGB models
  get their decode (:func:`decode_setting`), DCT models do not apply (they read JPEG
  coefficients). :data:`DEFAULT_LADDERS` are the parameters whose bits per pixel span about
  the same range as JPEG QF 100 .. 10 on the shared 100-photo sample (README).

:func:`encode_setting` makes one version; :func:`make_settings` the list the CLI flags ask
for. :func:`reference_pixels` gives the pixels a version is compared with (PSNR/SSIM):
the original's decode, reduced and/or turned gray the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from PIL import Image

from ..codec import DCTImage, JPEGError, requantize_jpeg
from ..imaging import CODECS, check_codec, decode_image, decode_rgb, encode_image, encode_jpeg

__all__ = ["DEFAULT_LADDERS", "DEFAULT_QFS", "Setting", "coefficient_agreement", "decode_setting", "encode_setting",
           "make_settings", "parse_setting", "reference_pixels"]

DEFAULT_QFS = (100, 90, 80, 70, 60, 50, 40, 30, 20, 10)
DOWNSCALES = (2, 4, 8)

#: Each codec's parameters, best first, chosen so that their bits per pixel on the shared
#: 100-photo sample span about what JPEG QF 100 .. 10 gives (6.4 .. 0.38 bpp; measured, see
#: the README). Lossy WebP and AVIF do not reach 6 bpp at any quality (about 4.2 and 3.2).
DEFAULT_LADDERS: dict[str, tuple[int, ...]] = {
    "jpeg2000": (4, 10, 14, 17, 20, 24, 28, 32, 42, 64),   # compression ratio: 24 / R bpp
    "heif": (90, 80, 70, 60, 55, 50, 45, 40, 35, 30),
    "avif": (95, 90, 80, 75, 70, 65, 60, 55, 50, 40),
    "webp": (100, 95, 90, 80, 70, 55, 40, 25, 10, 5),
}

@dataclass(frozen=True, order=True)
class Setting:
    """One version of an image: ``qf=None`` is the original file (no other option allowed).

    ``codec`` is ``"jpeg"`` (then ``qf`` is the IJG quality, and ``requantize`` chooses the
    coefficient-domain route) or one of :data:`dctnet.imaging.CODECS` (then ``qf`` is that
    codec's parameter: quality 0..100, JPEG 2000's compression ratio; no gray, downscale or
    requantize).
    """

    qf: int | None = None
    gray: bool = False
    downscale: int = 1
    codec: str = "jpeg"
    requantize: bool = False

    def __post_init__(self) -> None:
        if self.qf is None and (self.gray or self.downscale != 1 or self.codec != "jpeg" or self.requantize):
            raise ValueError("the original setting cannot be gray, downscaled, requantised or another codec "
                             "(give a quality)")
        if self.codec != "jpeg":
            if self.codec not in CODECS:
                raise ValueError(f"unknown codec {self.codec!r}; choose from jpeg, {', '.join(CODECS)}")
            if self.gray or self.downscale != 1 or self.requantize:
                raise ValueError(f"{self.codec} settings are colour and full size (gray, downscale and "
                                 "requantize are JPEG settings)")
            if self.codec == "jpeg2000" and not 1 <= self.qf <= 1000:
                raise ValueError(f"JPEG 2000 compression ratio must be 1..1000, got {self.qf}")
            if self.codec != "jpeg2000" and not 0 <= self.qf <= 100:
                raise ValueError(f"{self.codec} quality must be 0..100, got {self.qf}")
            return
        if self.qf is not None and not 1 <= self.qf <= 100:
            raise ValueError(f"JPEG quality must be 1..100, got {self.qf}")
        if self.downscale not in (1,) + DOWNSCALES:
            raise ValueError(f"downscale factor must be one of 1, 2, 4, 8, got {self.downscale}")
        if self.requantize and (self.gray or self.downscale != 1):
            raise ValueError("requantised settings are colour and full size (the original's coefficients)")

    @property
    def name(self) -> str:
        """``original``, ``qf90``, ``gray-qf90``, ``down2-qf90``, ``gray-down4-qf50``,
        ``requant-qf50``, ``webp-q80``, ``jpeg2000-cr20`` ... (the key of results)."""
        if self.qf is None:
            return "original"
        if self.codec != "jpeg":
            return f"{self.codec}-{CODECS[self.codec]['param']}{self.qf}"
        if self.requantize:
            return f"requant-qf{self.qf}"
        parts = (["gray"] if self.gray else []) + ([f"down{self.downscale}"] if self.downscale != 1 else [])
        return "-".join(parts + [f"qf{self.qf}"])

    @property
    def is_original(self) -> bool:
        return self.qf is None

    @property
    def is_jpeg(self) -> bool:
        """The version is a JPEG file (DCT models take it): the original, ``qf``, ``requant``."""
        return self.codec == "jpeg"

    @property
    def is_plain_qf(self) -> bool:
        """A colour, full-size re-encoding: the versions the selectors choose among."""
        return self.qf is not None and self.codec == "jpeg" and not self.requantize and not self.gray \
            and self.downscale == 1

    @property
    def family(self) -> str:
        """The curve a setting belongs to in plots: ``jpeg``, ``gray``, ``down2``, ``requant``,
        ``webp`` ... (``original`` for the original)."""
        if self.qf is None:
            return "original"
        if self.codec != "jpeg":
            return self.codec
        if self.requantize:
            return "requant"
        parts = (["gray"] if self.gray else []) + ([f"down{self.downscale}"] if self.downscale != 1 else [])
        return "-".join(parts) or "jpeg"


_NAME = re.compile(r"^(?:(gray)-)?(?:down(\d+)-)?qf(\d+)$")
_CODEC_NAME = re.compile(r"^(jpeg2000-cr|heif-q|avif-q|webp-q)(\d+)$")


def parse_setting(name: str) -> Setting:
    """Inverse of :attr:`Setting.name`."""
    if name == "original":
        return Setting()
    m = _CODEC_NAME.match(name)
    if m:
        return Setting(int(m.group(2)), codec=m.group(1).split("-")[0])
    if name.startswith("requant-qf") and name[10:].isdigit():
        return Setting(int(name[10:]), requantize=True)
    m = _NAME.match(name)
    if not m:
        raise ValueError(f"unknown setting {name!r} (expected original, qfQ, gray-qfQ, downF-qfQ, gray-downF-qfQ, "
                         "requant-qfQ, jpeg2000-crR, heif-qQ, avif-qQ, webp-qQ)")
    return Setting(int(m.group(3)), bool(m.group(1)), int(m.group(2) or 1))


def make_settings(qfs: Sequence[int] = DEFAULT_QFS, *, gray: bool = False,
                  downscales: Sequence[int] = (), requantize: bool = False,
                  codecs: Sequence[str] | Mapping[str, Sequence[int]] = ()) -> list[Setting]:
    """``original``, then every QF (descending), then the gray and/or downscaled variants of
    every QF (all combinations of the options asked for), then ``requant-qf<Q>`` for every QF
    (``requantize``), then each codec's ladder, best first (``codecs``: names, for
    :data:`DEFAULT_LADDERS`, or ``{name: parameters}``).

    Raises ``ValueError`` naming the problem for an unknown codec or one this installation
    cannot encode (:func:`dctnet.imaging.check_codec`)."""
    qfs = sorted(set(int(q) for q in qfs), reverse=True)
    scales = [1] + sorted(set(int(d) for d in downscales) - {1})
    out = [Setting()]
    for g in ([False, True] if gray else [False]):
        for d in scales:
            out += [Setting(q, g, d) for q in qfs]
    if requantize:
        out += [Setting(q, requantize=True) for q in qfs]
    ladders = dict(codecs) if isinstance(codecs, Mapping) else {c: None for c in codecs}
    for codec, params in ladders.items():
        check_codec(codec)
        params = DEFAULT_LADDERS[codec] if params is None else params
        # Best first: quality descending, JPEG 2000's compression ratio ascending.
        params = sorted(set(int(p) for p in params), reverse=codec != "jpeg2000")
        out += [Setting(p, codec=codec) for p in params]
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


def coefficient_agreement(a: DCTImage, b: DCTImage) -> tuple[float | None, float | None]:
    """How many quantised coefficients two JPEGs of the same picture share:
    ``(luma, all)``, each the share of equal coefficients, ``luma`` over component 0 when
    its blocks line up (same size), ``all`` over every component when the geometries are
    the same (sampling and blocks per component); ``None`` where they differ (e.g. a 4:4:4
    original requantised against a 4:2:0 re-encode has a luma share but no overall one)."""
    y = None
    if a.planes[0].shape == b.planes[0].shape:
        y = int(np.count_nonzero(a.planes[0] == b.planes[0])) / a.planes[0].size
    if a.sampling != b.sampling or len(a.planes) != len(b.planes) or \
            any(p.shape != r.shape for p, r in zip(a.planes, b.planes)):
        return y, None
    equal = sum(int(np.count_nonzero(p == r)) for p, r in zip(a.planes, b.planes))
    return y, equal / sum(p.size for p in a.planes)


def encode_setting(original: bytes, setting: Setting, *, original_rgb: np.ndarray | None = None,
                   name: str = "<bytes>") -> bytes:
    """The bytes of one version of a JPEG (a JPEG file, or another codec's file).

    ``original_rgb`` (``uint8 (H, W, 3)``, the decode of ``original``) saves decoding again
    when making several versions. Raises :class:`~dctnet.JPEGError` naming ``name`` when
    the original cannot be decoded or the image is too small for the downscale factor.
    """
    if setting.is_original:
        return bytes(original)
    if setting.requantize:
        try:
            return requantize_jpeg(original, setting.qf)
        except JPEGError as e:
            raise JPEGError(name, e.reason) from None
    rgb = decode_rgb(original, name=name) if original_rgb is None else original_rgb
    if setting.codec != "jpeg":
        return encode_image(rgb, setting.codec, setting.qf)
    if setting.downscale != 1 and min(rgb.shape[:2]) < setting.downscale:
        raise JPEGError(name, f"{rgb.shape[1]}x{rgb.shape[0]} is too small to downscale by {setting.downscale}")
    pixels = _transform(rgb, setting)
    return encode_jpeg(pixels, setting.qf, subsampling="gray" if pixels.ndim == 2 else "420")


def decode_setting(data: bytes, setting: Setting, *, name: str = "<bytes>") -> np.ndarray:
    """A version's pixels: ``uint8 (H, W, 3)`` (libjpeg-turbo for JPEG settings,
    :func:`dctnet.imaging.decode_image` for the other codecs). Raises
    :class:`~dctnet.JPEGError` naming ``name``."""
    if setting.codec != "jpeg":
        return decode_image(data, setting.codec, name=name)
    return decode_rgb(data, name=name)
