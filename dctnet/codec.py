"""Reading quantised DCT coefficients straight from JPEG bitstreams.

Entropy decoding only (libjpeg-turbo's ``jpeg_read_coefficients`` in ``dctnet._native``):
no inverse DCT, no colour conversion, no resampling, and nothing is ever re-encoded.
Conventions are those of ``design.md`` section 2: ``planes[c]`` is ``int16`` of shape
``(Hb, Wb, 64)`` with each block's coefficients in natural (row-major, ``k = 8*v + u``)
order, still quantised; ``qtables`` is ``uint16 (ncomp, 64)`` in natural order.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Literal, Sequence, Union

import numpy as np

from . import _native

__all__ = [
    "DCTImage",
    "JPEGHeader",
    "JPEGError",
    "JPEGWarning",
    "JPEGSource",
    "read_dct",
    "read_dct_batch",
    "read_header",
    "estimate_quality",
    "ijg_qtables",
    "DEFAULT_MAX_PIXELS",
]

#: Default pixel limit, checked against the header before anything image-sized is allocated.
DEFAULT_MAX_PIXELS = 100_000_000
#: Progressive files with more scans than this are rejected (a decoding-time bomb otherwise).
DEFAULT_MAX_SCANS = 1000

#: The libjpeg-turbo version the reader was built against (reports and benchmarks).
LIBJPEG_TURBO_VERSION: str | None = getattr(_native, "LIBJPEG_TURBO_VERSION", None)

JPEGSource = Union[str, os.PathLike, bytes, bytearray, memoryview]

_COLORSPACES = {0: "unknown", 1: "gray", 2: "rgb", 3: "ycbcr", 4: "cmyk", 5: "ycck"}
_KIND_JPEG, _KIND_OS, _KIND_LIMIT, _KIND_MEMORY, _KIND_INVALID = 1, 2, 3, 4, 5


class JPEGError(ValueError):
    """A JPEG could not be read.

    Attributes:
        source: name of the input (its path, or ``"<bytes>"``/``"<bytes #i>"`` for buffers).
        reason: libjpeg's message, or dctnet's own for limits and invalid tables.
    """

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason

    def __reduce__(self):  # picklable across process pools
        return (type(self), (self.source, self.reason))


class JPEGWarning(UserWarning):
    """Emitted for corrupt data read in lenient mode and for non-fatal libjpeg warnings."""


class _JPEGProperties:
    """Properties shared by :class:`DCTImage` and :class:`JPEGHeader`."""

    sampling: tuple[tuple[int, int], ...]
    qtables: np.ndarray

    @property
    def num_components(self) -> int:
        return len(self.sampling)

    @property
    def subsampling(self) -> str:
        """Chroma subsampling label: ``"4:4:4"``, ``"4:2:0"``, ..., ``"gray"`` or ``"other"``."""
        return subsampling_label(self.sampling)

    @property
    def quality(self) -> float | None:
        """Estimated IJG quality factor (see :func:`estimate_quality`)."""
        return estimate_quality(self.qtables)

    @property
    def coding(self) -> str:
        """``"baseline"`` or ``"progressive"``, with ``"+arithmetic"`` for arithmetic coding."""
        kind = "progressive" if self.progressive else "baseline"
        return kind + ("+arithmetic" if self.arithmetic else "")


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class _JPEGInfo(_JPEGProperties):
    """Header fields shared by :class:`DCTImage` and :class:`JPEGHeader` (keyword-only)."""

    qtables: np.ndarray
    width: int
    height: int
    sampling: tuple[tuple[int, int], ...]
    colorspace: str
    progressive: bool = False
    arithmetic: bool = False
    restart_interval: int = 0
    source: str = "<bytes>"


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class DCTImage(_JPEGInfo):
    """Quantised DCT coefficients of one JPEG, exactly as stored in the file.

    Attributes:
        planes: one ``int16`` array of shape ``(Hb, Wb, 64)`` per component (Y, Cb, Cr for
            YCbCr files): blocks in raster order, coefficients in natural order, quantised.
            ``Hb, Wb`` are libjpeg's ``height_in_blocks, width_in_blocks`` (not MCU-padded).
        qtables: ``uint16 (ncomp, 64)``, the quantisation step of every coefficient, natural
            order, one row per component.
        width, height: image size in pixels.
        sampling: ``(h, v)`` sampling factors per component.
        colorspace: ``"gray"``, ``"ycbcr"``, ``"rgb"``, ``"cmyk"``, ``"ycck"`` or ``"unknown"``.
        progressive, arithmetic: coding process of the file.
        restart_interval: MCUs between restart markers (0: none).
        source: the file's path or ``"<bytes>"``.
        missing_blocks: in lenient mode, how many blocks corrupt data left zero (0 otherwise).
    """

    planes: tuple[np.ndarray, ...]
    missing_blocks: int = 0

    @property
    def block_shapes(self) -> tuple[tuple[int, int], ...]:
        """``(Hb, Wb)`` of every component."""
        return tuple((int(p.shape[0]), int(p.shape[1])) for p in self.planes)

    def dequantized(self, component: int) -> np.ndarray:
        """Coefficients of one component times their quantisation steps, ``float32 (Hb, Wb, 64)``."""
        return self.planes[component].astype(np.float32) * self.qtables[component].astype(np.float32)

    def __repr__(self) -> str:
        return (f"DCTImage({self.source!r}, {self.width}x{self.height}, {self.colorspace} {self.subsampling}, "
                f"{self.coding}, blocks={list(self.block_shapes)})")


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class JPEGHeader(_JPEGInfo):
    """What :func:`read_header` returns: a :class:`DCTImage` without its coefficients."""

    block_shapes: tuple[tuple[int, int], ...]

    def __repr__(self) -> str:
        return (f"JPEGHeader({self.source!r}, {self.width}x{self.height}, {self.colorspace} {self.subsampling}, "
                f"{self.coding}, blocks={list(self.block_shapes)})")


def subsampling_label(sampling: Sequence[tuple[int, int]]) -> str:
    if len(sampling) == 1:
        return "gray"
    if len(sampling) >= 3 and all(s == (1, 1) for s in sampling[1:]):
        names = {(1, 1): "4:4:4", (2, 1): "4:2:2", (1, 2): "4:4:0", (2, 2): "4:2:0", (4, 1): "4:1:1", (4, 2): "4:1:0"}
        return names.get(tuple(sampling[0]), "other")
    return "other"


def _source_name(src: JPEGSource, index: int | None = None) -> tuple[object, str]:
    """Return the object handed to the native reader and the name used in messages."""
    if isinstance(src, (str, os.PathLike)):
        path = os.fsdecode(src)
        return path, path
    if isinstance(src, (bytes, bytearray, memoryview)):
        return src, "<bytes>" if index is None else f"<bytes #{index}>"
    raise TypeError(f"expected a path or a bytes-like object, got {type(src).__name__}")


def _build(result: tuple, name: str, header_only: bool):
    if len(result) == 3:
        kind, errno_, message = result
        if kind == _KIND_OS:
            return OSError(errno_, message, name)
        if kind == _KIND_MEMORY:
            return MemoryError(f"{name}: {message}")
        return JPEGError(name, message)
    width, height, cs, progressive, arithmetic, restart, sampling, qtables, planes, corrupt, other = result
    missing = 0
    if other is not None:
        count, message = other
        warnings.warn(f"{name}: libjpeg warning: {message}" + (f" (+{count - 1} more)" if count > 1 else ""),
                      JPEGWarning, stacklevel=3)
    if corrupt is not None:
        count, missing, total, scan, message = corrupt
        warnings.warn(
            f"{name}: corrupt JPEG data ({message}; {count} warning{'s' if count > 1 else ''}, first in scan {scan}): "
            f"{missing} of {total} blocks are missing and left zero",
            JPEGWarning, stacklevel=3)
    common = dict(qtables=qtables, width=width, height=height, sampling=sampling,
                  colorspace=_COLORSPACES.get(cs, "unknown"), progressive=progressive, arithmetic=arithmetic,
                  restart_interval=restart, source=name)
    if header_only:
        return JPEGHeader(block_shapes=planes, **common)
    return DCTImage(planes=planes, missing_blocks=int(missing), **common)


def read_dct(src: JPEGSource, *, strict: bool = True, max_pixels: int | None = DEFAULT_MAX_PIXELS,
             max_scans: int = DEFAULT_MAX_SCANS) -> DCTImage:
    """Read the quantised DCT coefficients of one JPEG.

    Args:
        src: a path, or the file's bytes (``bytes``, ``bytearray``, ``memoryview``).
        strict: corrupt entropy-coded data is an error (default). With ``strict=False`` what
            could be decoded is returned, missing blocks left zero, with a :class:`JPEGWarning`
            that counts them.
        max_pixels: largest ``width * height`` accepted, checked before any allocation
            (``None``: no limit).
        max_scans: largest number of scans accepted in a progressive file.

    Returns:
        A :class:`DCTImage` whose ``planes[c]`` is ``int16 (Hb, Wb, 64)``.

    Raises:
        JPEGError: the data is not a JPEG dctnet can read; the message names the source and
            gives libjpeg's reason. OSError: the file cannot be read.
    """
    obj, name = _source_name(src)
    result = _native.read(obj, strict, False, max_pixels or 0, max_scans)
    out = _build(result, name, False)
    if isinstance(out, BaseException):
        raise out
    return out


def read_header(src: JPEGSource, *, max_pixels: int | None = None) -> JPEGHeader:
    """Read only the header (no entropy decoding): geometry, coding process and tables.

    Raises :class:`JPEGError` like :func:`read_dct` for anything up to the first scan.
    """
    obj, name = _source_name(src)
    result = _native.read(obj, True, True, max_pixels or 0, DEFAULT_MAX_SCANS)
    out = _build(result, name, True)
    if isinstance(out, BaseException):
        raise out
    return out


def _batch_arguments(srcs: Iterable[JPEGSource], threads: int | None) -> tuple[list, list[str], int]:
    """What the native batch reader takes (paths / buffers), the names used in messages, and
    the checked thread count (default ``os.cpu_count()``)."""
    objs, names = [], []
    for i, src in enumerate(srcs):
        obj, name = _source_name(src, i)
        objs.append(obj)
        names.append(name)
    if threads is None:
        threads = os.cpu_count() or 1
    if threads < 1:
        raise ValueError(f"threads must be >= 1, not {threads}")
    return objs, names, threads


def read_dct_batch(srcs: Iterable[JPEGSource], *, threads: int | None = None,
                   on_error: Literal["raise", "return"] = "raise", strict: bool = True,
                   max_pixels: int | None = DEFAULT_MAX_PIXELS,
                   max_scans: int = DEFAULT_MAX_SCANS) -> list[DCTImage | Exception]:
    """Read many JPEGs on a pool of native threads (GIL released, one decompressor per thread).

    Args:
        srcs: paths and/or bytes-like objects.
        threads: worker threads (default: ``os.cpu_count()``).
        on_error: ``"raise"`` raises the first failure (after all items were read);
            ``"return"`` puts each failure (a :class:`JPEGError` or ``OSError``) in its
            item's place and returns every good item.
        strict, max_pixels, max_scans: as for :func:`read_dct`.

    Returns:
        A list in input order of :class:`DCTImage` (and, with ``on_error="return"``,
        exceptions).
    """
    if on_error not in ("raise", "return"):
        raise ValueError(f"on_error must be 'raise' or 'return', not {on_error!r}")
    objs, names, threads = _batch_arguments(srcs, threads)
    results = _native.read_batch(objs, strict, False, max_pixels or 0, max_scans, threads)
    out = [_build(r, name, False) for r, name in zip(results, names)]
    if on_error == "raise":
        for item in out:
            if isinstance(item, BaseException):
                raise item
    return out


# --- Quality estimation -------------------------------------------------------------------

# ITU-T T.81 Annex K tables (natural order), the base of the IJG quality scaling.
_STD_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.int64)
_STD_CHROMA = np.full(64, 99, dtype=np.int64)
_STD_CHROMA[[0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 24, 25]] = [17, 18, 24, 47, 18, 21, 26, 66, 24, 26, 56, 47, 66]


def _ijg_scale(quality: int) -> int:
    quality = min(max(int(quality), 1), 100)
    return 5000 // quality if quality < 50 else 200 - 2 * quality


def ijg_qtables(quality: int, *, baseline: bool = True) -> np.ndarray:
    """The IJG (libjpeg ``jpeg_set_quality``) tables for a quality: ``uint16 (2, 64)``, natural order.

    Row 0 is the luminance table, row 1 the chrominance table.
    """
    scale = _ijg_scale(quality)
    hi = 255 if baseline else 32767
    return np.stack([np.clip((t * scale + 50) // 100, 1, hi) for t in (_STD_LUMA, _STD_CHROMA)]).astype(np.uint16)


_IJG_TABLES = {(q, b): ijg_qtables(q, baseline=b) for q in range(1, 101) for b in (True, False)}


def estimate_quality(qtables: np.ndarray | Sequence[Sequence[int]]) -> float | None:
    """Estimate the IJG quality factor (1-100) that produced a file's quantisation tables.

    ``qtables`` is ``(ncomp, 64)`` in natural order (``DCTImage.qtables``); row 0 is compared
    with the scaled luminance table, rows 1-2 (if any) with the chrominance table.

    Returns the quality as a float: an integer value when the tables are exactly IJG tables,
    a fractional one when they are IJG-scaled tables at a scale between two integer
    qualities (within rounding), and ``None`` when they are not IJG-scaled at all (custom
    tables of cameras and other encoders).
    """
    tables = np.asarray(qtables, dtype=np.int64).reshape(-1, 64)
    if tables.shape[0] == 0:
        return None
    luma = tables[0]
    chroma = [t for t in tables[1:3]]
    for q in range(100, 0, -1):
        for baseline in (True, False):
            ref = _IJG_TABLES[(q, baseline)]
            if np.array_equal(luma, ref[0]) and all(np.array_equal(c, ref[1]) for c in chroma):
                return float(q)
    # Not an exact match: fit one scale to the unclamped entries and accept it if the
    # rescaled standard tables reproduce every entry within rounding.
    pairs = [(luma, _STD_LUMA)] + [(c, _STD_CHROMA) for c in chroma]
    ratios = np.concatenate([100.0 * t[(t > 1) & (t < 255)] / b[(t > 1) & (t < 255)] for t, b in pairs])
    if ratios.size < 8:
        return None
    scale = float(np.median(ratios))
    for t, b in pairs:
        pred = np.clip(np.floor((b * scale + 50) / 100), 1, 255 if t.max() <= 255 else 32767)
        if np.abs(pred - t).max() > 1:
            return None
    quality = 100.0 - scale / 2.0 if scale <= 100 else 5000.0 / scale
    return float(min(max(quality, 1.0), 100.0))
