"""Reading quantised DCT coefficients straight from JPEG bitstreams.

Entropy decoding only (libjpeg-turbo's ``jpeg_read_coefficients`` in ``dctnet._native``):
no inverse DCT, no colour conversion, no resampling, and nothing is ever re-encoded.
Conventions (``docs/architecture.md`` §4): ``planes[c]`` is ``int16`` of shape
``(Hb, Wb, 64)`` with each block's coefficients in natural (row-major, ``k = 8*v + u``)
order, still quantised; ``qtables`` is ``uint16 (ncomp, 64)`` in natural order.
"""

from __future__ import annotations

import errno
import os
import stat
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Literal, NamedTuple, Sequence, Union

import numpy as np

from . import _native

__all__ = [
    "BatchResult",
    "DCTImage",
    "JPEGHeader",
    "JPEGError",
    "JPEGWarning",
    "JPEGSource",
    "read_dct",
    "read_dct_batch",
    "requantize_jpeg",
    "read_batch_with_sink",
    "read_header",
    "scan_script",
    "Scan",
    "ScanScript",
    "transcode_progressive",
    "BandSampling",
    "DEFAULT_BAND_GROUPS",
    "DEFAULT_RESTART_INTERVAL",
    "estimate_quality",
    "ijg_qtables",
    "read_source",
    "check_limits",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_SCANS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_SCAN_BLOCKS",
]

#: Default pixel limit, checked against the header before anything image-sized is allocated.
DEFAULT_MAX_PIXELS = 100_000_000
#: Progressive files with more scans than this are rejected (a decoding-time bomb otherwise).
DEFAULT_MAX_SCANS = 1000
#: Largest input accepted, in bytes: a file's size is checked (``fstat``) before it is read.
DEFAULT_MAX_BYTES = 1 << 30
#: Work bound of entropy decoding: the blocks each scan codes, summed over the scans, checked
#: before each scan is decoded. A baseline file codes each block once, libjpeg's standard
#: progressive script about 5 times (a 100-Mpx 4:4:4 file: ~22M; 25 Mpx 4:2:0: ~3M). A
#: 25-Mpx file repeating a full-image scan 999 times would be ~400M (15 s here); it is
#: rejected after ~77 scans (~1 s).
DEFAULT_MAX_SCAN_BLOCKS = 30_000_000

#: The libjpeg-turbo version the reader was built against (reports and benchmarks).
LIBJPEG_TURBO_VERSION: str | None = getattr(_native, "LIBJPEG_TURBO_VERSION", None)

JPEGSource = Union[str, os.PathLike, bytes, bytearray, memoryview]

#: Which files a band-limited read applies to: ``"any"`` progressive file, or only those a
#: 4:2:0 layout takes without resampling (``"420"``: gray, or YCbCr sampled 2x2, 1x1, 1x1).
BandSampling = Literal["any", "420"]
_BAND_SAMPLING = {"any": 0, "420": 1}

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


class _JPEGDirectoryError(JPEGError, IsADirectoryError):
    """A directory given as a JPEG: a :class:`JPEGError` and, as before, an ``IsADirectoryError``."""

    def __init__(self, source: str, reason: str):
        IsADirectoryError.__init__(self, errno.EISDIR, reason, source)
        self.source = source
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


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
        missing_blocks: in lenient mode, how many blocks damaged data left undecoded (0
            otherwise; the rule is in :func:`read_dct`).
        bands_read: per component, how many of the lowest zigzag bands ``planes`` hold: 64
            when the file was read whole; ``n`` after a band-limited read that stopped early
            (``read_dct(..., bands=n)`` of a band-ordered progressive file), the bands above
            being zero.
        bytes_read: bytes of the source the reader used: read from the file (a path), or
            given to the decoder (bytes); less than the file after a band-limited read.
    """

    planes: tuple[np.ndarray, ...]
    missing_blocks: int = 0
    bands_read: tuple[int, ...] = ()
    bytes_read: int = 0

    def __post_init__(self):
        if not self.bands_read:  # built elsewhere (tests, resizing): whole
            object.__setattr__(self, "bands_read", (64,) * len(self.planes))

    @property
    def partial(self) -> bool:
        """Whether a band-limited read left out bands (see :attr:`bands_read`)."""
        return any(b < 64 for b in self.bands_read)

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


def _source_name(src: JPEGSource, index: int | None = None) -> tuple[object, str, bool]:
    """The object handed to the native reader, the name used in messages, and whether it is a
    path. Paths go to native code as file-system bytes (``os.fsencode``), so any name the OS
    accepts works, and names are ``os.fsdecode``'d for messages. A path the file-system
    encoding cannot represent is handed over as ``str``: the native reader makes it that
    item's error."""
    if isinstance(src, (str, os.PathLike)):
        path = os.fspath(src)
        name = os.fsdecode(path)
        try:
            return os.fsencode(path), name, True
        except UnicodeEncodeError:
            return name, name, True
    if isinstance(src, (bytes, bytearray, memoryview)):
        return src, "<bytes>" if index is None else f"<bytes #{index}>", False
    raise TypeError(f"expected a path or a bytes-like object, got {type(src).__name__}")


def check_limits(*, max_pixels: int | None = DEFAULT_MAX_PIXELS, max_scans: int | None = DEFAULT_MAX_SCANS,
                 max_bytes: int | None = DEFAULT_MAX_BYTES,
                 max_scan_blocks: int | None = DEFAULT_MAX_SCAN_BLOCKS) -> dict[str, int]:
    """Check the reader's limits and return them as the native reader takes them (0: no limit).

    Every limit is a non-negative ``int`` or ``None`` (no limit); 0 also means no limit.

    Args:
        max_pixels: largest ``width * height``, checked against the header before any
            image-sized allocation.
        max_scans: largest number of scans.
        max_bytes: largest input in bytes; a file's size is checked before it is read.
        max_scan_blocks: largest number of block decodes summed over the scans (each scan codes
            the blocks of its components), checked before each scan is decoded.

    Raises:
        ValueError: a limit is negative or not an integer.
    """
    out = {}
    for key, value in (("max_pixels", max_pixels), ("max_scans", max_scans), ("max_bytes", max_bytes),
                       ("max_scan_blocks", max_scan_blocks)):
        if value is None:
            value = 0
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{key} must be a non-negative int or None, not {value!r}")
        out[key] = int(value)
    out["max_scans"] = min(out["max_scans"], 2**31 - 1)
    return out


_FILE_TYPES = ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
               (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))


def _not_regular(name: str, mode: int) -> JPEGError:
    kind = next((label for test, label in _FILE_TYPES if test(mode)), "special file")
    cls = _JPEGDirectoryError if stat.S_ISDIR(mode) else JPEGError
    return cls(name, f"not a regular file ({kind})")


def _check_start(name: str, head: bytes) -> None:
    if len(head) == 0:
        raise JPEGError(name, "empty input (0 bytes)")
    if len(head) < 2:
        raise JPEGError(name, f"Not a JPEG file: only 1 byte (0x{head[0]:02x})")
    if head[0] != 0xFF or head[1] != 0xD8:
        raise JPEGError(name, f"Not a JPEG file: starts with 0x{head[0]:02x} 0x{head[1]:02x}")


def read_source(src: JPEGSource, *, max_bytes: int | None = DEFAULT_MAX_BYTES) -> tuple[bytes | bytearray | memoryview, str]:
    """Open a JPEG source the way the native reader does, for Python code that needs the bytes.

    Paths: opened non-blocking (a FIFO cannot hang the open), regular files only, size checked
    against ``max_bytes`` (``fstat``) and the first two bytes against the JPEG SOI marker
    before the rest is read. Bytes-like sources are checked the same way and returned as is.

    Args:
        src: a path (``str``, ``bytes`` paths via ``os.PathLike``) or the file's bytes.
        max_bytes: largest accepted size in bytes (``None`` or 0: no limit).

    Returns:
        ``(data, name)``: the file's bytes (a ``bytearray`` for paths, ``src`` itself for
        bytes-like input) and the name used in messages (the path, or ``"<bytes>"``).

    Raises:
        JPEGError: not a regular file (FIFO, device, directory: the latter is also an
            ``IsADirectoryError``), larger than ``max_bytes``, empty, not starting with SOI,
            or a path with a NUL byte. OSError: the file cannot be opened or read.
    """
    limit = check_limits(max_bytes=max_bytes)["max_bytes"]
    obj, name, is_path = _source_name(src)
    if not is_path:
        view = memoryview(obj)
        if limit and view.nbytes > limit:
            raise JPEGError(name, f"input of {view.nbytes} bytes exceeds the limit of {limit} bytes (max_bytes)")
        _check_start(name, view[:2].tobytes() if view.ndim == 1 and view.itemsize == 1 else bytes(view)[:2])
        return obj, name
    if isinstance(obj, str) or b"\0" in obj:
        raise JPEGError(name, "embedded null byte in path" if not isinstance(obj, str)
                        else "path cannot be encoded for the file system")
    fd = os.open(obj, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(name, st.st_mode)
        if limit and st.st_size > limit:
            raise JPEGError(name, f"file of {st.st_size} bytes exceeds the limit of {limit} bytes (max_bytes)")
        head = os.read(fd, 2)
        if len(head) == 1:
            head += os.read(fd, 1)
        _check_start(name, head)
        data = bytearray(max(st.st_size, 2))
        data[:2] = head
        view = memoryview(data)
        have = 2
        while have < len(data):
            got = os.readv(fd, [view[have:]])
            if got == 0:                     # the file shrank since fstat
                break
            have += got
        view.release()
        del data[have:]
        return data, name
    finally:
        os.close(fd)


def _warn(name: str, corrupt: tuple | None, other: tuple | None, stacklevel: int) -> int:
    """Emit the JPEGWarnings of a read; return its missing-block count."""
    missing = 0
    if other is not None:
        count, message = other
        warnings.warn(f"{name}: libjpeg warning: {message}" + (f" (+{count - 1} more)" if count > 1 else ""),
                      JPEGWarning, stacklevel=stacklevel + 1)
    if corrupt is not None:
        count, missing, total, scan, message = corrupt
        warnings.warn(
            f"{name}: corrupt JPEG data ({message}; {count} warning{'s' if count > 1 else ''}, first in scan {scan}): "
            f"{missing} of {total} blocks are missing and left zero",
            JPEGWarning, stacklevel=stacklevel + 1)
    return int(missing)


def _build(result: tuple | None, name: str, header_only: bool):
    """A native result as a DCTImage / JPEGHeader, an exception (returned, never raised: it has
    no traceback and so keeps no frame alive), or None for an image a sink consumed (after its
    warnings, if any, were emitted)."""
    if result is None:
        return None
    if len(result) == 2:                 # consumed by a sink, with warnings
        _warn(name, result[0], result[1], stacklevel=3)
        return None
    if len(result) == 3:
        kind, errno_, message = result
        if kind == _KIND_OS:
            return OSError(errno_, message, name)
        if kind == _KIND_MEMORY:
            return MemoryError(f"{name}: {message}")
        if errno_ == errno.EISDIR:
            return _JPEGDirectoryError(name, message)
        return JPEGError(name, message)
    (width, height, cs, progressive, arithmetic, restart, sampling, qtables, planes, corrupt, other, bands_read,
     bytes_read) = result
    missing = _warn(name, corrupt, other, stacklevel=3)
    common = dict(qtables=qtables, width=width, height=height, sampling=sampling,
                  colorspace=_COLORSPACES.get(cs, "unknown"), progressive=progressive, arithmetic=arithmetic,
                  restart_interval=restart, source=name)
    if header_only:
        return JPEGHeader(block_shapes=planes, **common)
    return DCTImage(planes=planes, missing_blocks=int(missing), bands_read=tuple(bands_read),
                    bytes_read=int(bytes_read), **common)


def _band_options(bands: int | None, chroma_bands: int | None, band_sampling: str) -> dict[str, int]:
    """The native reader's band-limited read options (64, -1: everything), checked."""
    def count(value, what, low):
        if value is None:
            return 64
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= 64:
            raise ValueError(f"{what} must be an int in {low}..64 or None, not {value!r}")
        return int(value)

    if band_sampling not in _BAND_SAMPLING:
        raise ValueError(f"band_sampling must be 'any' or '420', not {band_sampling!r}")
    luma = count(bands, "bands", 1)
    chroma = -1 if chroma_bands is None else count(chroma_bands, "chroma_bands", 0)
    return {"bands": luma, "chroma_bands": chroma, "band_sampling": _BAND_SAMPLING[band_sampling]}


def _read_one(src: JPEGSource, header_only: bool, strict: bool, limits: dict[str, int],
              band_options: dict[str, int] | None = None):
    """One read through the native reader: the DCTImage/JPEGHeader, or the exception to raise
    (every failure inside the native call, expected or not, names the source)."""
    obj, name, is_path = _source_name(src)
    try:
        result = _native.read(obj, strict, header_only, limits["max_pixels"], limits["max_scans"],
                              is_path=is_path, max_bytes=limits["max_bytes"],
                              max_scan_blocks=limits["max_scan_blocks"], **(band_options or {}))
    except (RuntimeError, ValueError) as e:   # not expected: the binding reports per item
        return JPEGError(name, f"{type(e).__name__}: {e}")
    return _build(result, name, header_only)


def read_dct(src: JPEGSource, *, strict: bool = True, max_pixels: int | None = DEFAULT_MAX_PIXELS,
             max_scans: int = DEFAULT_MAX_SCANS, max_bytes: int | None = DEFAULT_MAX_BYTES,
             max_scan_blocks: int | None = DEFAULT_MAX_SCAN_BLOCKS, bands: int | None = None,
             chroma_bands: int | None = None, band_sampling: BandSampling = "any") -> DCTImage:
    """Read the quantised DCT coefficients of one JPEG.

    Args:
        src: a path (``str`` or ``os.PathLike``; any name the file system accepts), or the
            file's bytes (``bytes``, ``bytearray``, ``memoryview``). Paths must be regular
            files: FIFOs, devices and directories are refused without being read.
        strict: corrupt entropy-coded data is an error (default), and so is a file that ends
            early, even if only its EOI marker is missing. With ``strict=False`` what could be
            decoded is returned with a :class:`JPEGWarning` naming the file and counting the
            missing blocks (``DCTImage.missing_blocks``): the blocks from the iMCU row where
            data was first lost (the decoder had to invent bits or skip data) to the end of
            that scan's components, plus every component no scan reached; they are left zero
            (in progressive files they keep what earlier scans gave them). The count is exact
            at iMCU-row granularity. The source running dry is not data loss by itself: a
            file missing only its EOI marker (or cut between scans) still warns, with 0
            missing blocks when every scan present was complete (except in arithmetic-coded
            files, whose decoder cannot tell, where the last iMCU row is counted).
        max_pixels: largest ``width * height`` accepted, checked before any allocation
            (``None``: no limit).
        max_scans: largest number of scans accepted.
        max_bytes: largest input accepted in bytes (default 1 GiB), checked against the file
            size before the file is read (``None``: no limit).
        max_scan_blocks: largest number of block decodes summed over all scans (default
            :data:`DEFAULT_MAX_SCAN_BLOCKS`), checked before each scan: bounds the work of
            progressive files with many scans (``None``: no limit).
        bands: read only the ``bands`` lowest zigzag bands (1..64; ``None``: all), when the
            file allows it: a progressive file is entropy-decoded only up to the end of the
            first scan after which those bands are complete at full precision in every
            component (a band-ordered file, ``dctnet prepare --progressive``, holds them in its
            first bytes), and a file given by path is read no further than that (plus at most
            one read chunk: 4 KiB or 1/8 of what was read). The bands above are zero and
            ``bands_read`` says ``n`` (also for a file made only of full-precision first scans
            whose read point is its last scan). Baseline files, and progressive files that
            complete those bands only at their end otherwise (``cjpeg -progressive``), are
            read whole (``bands_read`` 64). Corruption inside the scans read is an error as
            always; what follows the read point is not looked at.
        chroma_bands: bands needed of the components after the first (default: ``bands``;
            0: none, those planes are zero).
        band_sampling: ``"420"``: the band-limited read applies only to gray and 4:2:0 YCbCr
            files (the ones a 4:2:0 layout uses without resampling their chroma, which mixes
            bands); others are read whole. ``"any"`` (default): every file.

    Returns:
        A :class:`DCTImage` whose ``planes[c]`` is ``int16 (Hb, Wb, 64)``.

    Raises:
        JPEGError: the data is not a JPEG dctnet can read, a limit is exceeded, or the path is
            not a regular file or has a NUL byte; the message names the source and gives the
            reason. OSError: the file cannot be opened or read.
    """
    band_options = _band_options(bands, chroma_bands, band_sampling)
    return _value_or_raise(_read_one(src, False, strict, check_limits(
        max_pixels=max_pixels, max_scans=max_scans, max_bytes=max_bytes, max_scan_blocks=max_scan_blocks),
        band_options))


def read_header(src: JPEGSource, *, max_pixels: int | None = None,
                max_bytes: int | None = DEFAULT_MAX_BYTES) -> JPEGHeader:
    """Read only the header (no entropy decoding): geometry, coding process and tables.

    A file is read only up to the end of its first SOS segment (in chunks), never whole.
    Raises :class:`JPEGError` like :func:`read_dct` for anything up to the first scan;
    ``max_pixels`` and ``max_bytes`` as for :func:`read_dct` (no pixel limit by default).
    """
    return _value_or_raise(_read_one(src, True, True, check_limits(max_pixels=max_pixels, max_bytes=max_bytes)))


def _value_or_raise(out):
    """``out``, or raise it if it is an exception, without a frame that keeps it alive (the
    traceback references the frames it passes; none of them may hold the exception)."""
    if isinstance(out, BaseException):
        try:
            raise out
        finally:
            out = None
    return out


def _batch_arguments(srcs: Iterable[JPEGSource], threads: int | None) -> tuple[list, list[str], bytes, int]:
    """What the native batch reader takes (paths as file-system bytes / buffers), the names
    used in messages, the path flags (one byte per item), and the checked thread count
    (default ``os.cpu_count()``)."""
    objs, names, flags = [], [], bytearray()
    for i, src in enumerate(srcs):
        obj, name, is_path = _source_name(src, i)
        objs.append(obj)
        names.append(name)
        flags.append(is_path)
    if threads is None:
        threads = os.cpu_count() or 1
    if threads < 1:
        raise ValueError(f"threads must be >= 1, not {threads}")
    return objs, names, bytes(flags), threads


def _read_batch_native(objs: list, flags: bytes, threads: int, strict: bool, limits: dict[str, int],
                       sink: int = 0, sink_context: int = 0, band_options: dict[str, int] | None = None,
                       window: int = 0) -> list:
    """The native batch read (results, not yet built)."""
    return _native.read_batch(objs, strict, False, limits["max_pixels"], limits["max_scans"], threads, sink,
                              sink_context, path_flags=flags, max_bytes=limits["max_bytes"],
                              max_scan_blocks=limits["max_scan_blocks"], window=window, **(band_options or {}))


class BatchResult(NamedTuple):
    """What a batch function returns with ``on_error="return"`` (the batch-result convention of
    ``docs/architecture.md`` §4): ``values`` has one entry or row per source in input order
    (``None`` or zero rows for failed items), ``errors[i]`` is ``None`` or item i's exception
    (a :class:`JPEGError` naming it, or ``OSError`` / ``MemoryError``; without a traceback).
    A tuple, so ``values, errors = ...`` unpacks it."""

    values: Any
    errors: list[BaseException | None]


def read_batch_with_sink(srcs: Sequence[JPEGSource], sink: int, sink_context: int, *, threads: int | None = None,
                         strict: bool = True, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                         max_scans: int = DEFAULT_MAX_SCANS, max_bytes: int | None = DEFAULT_MAX_BYTES,
                         max_scan_blocks: int | None = DEFAULT_MAX_SCAN_BLOCKS, bands: int | None = None,
                         chroma_bands: int | None = None, band_sampling: BandSampling = "any",
                         window: int = 0) -> list:
    """The native batch read with an image sink: a C callback (``kernels/native_module.cpp``,
    ``ImageSink``) that each reader thread calls right after decoding an image, on its thread.
    The low-level step under :func:`dctnet.ops.read_to_tensor`.

    Args:
        srcs: paths and/or bytes-like objects.
        sink, sink_context: the callback's address and its context pointer (0, 0: none).
        threads, strict, max_pixels, max_scans, max_bytes, max_scan_blocks, bands, chroma_bands,
            band_sampling: as for :func:`read_dct_batch`.
        window: 0, or the address of the sink's window query (``SinkWindow``): a C callback
            that, given an image's header, names the blocks the sink will read. Band-ordered
            files with restart intervals then skip the intervals outside them (their
            contents are not looked at; ``docs/architecture.md`` §6). The query must refuse
            exactly the images the sink refuses; an image it gave a window for and the sink
            then refused is read again whole.

    Returns:
        One entry per source: ``None`` (the sink consumed the image, after its warnings were
        emitted), a :class:`DCTImage` (the sink handed it back), or the item's exception.
    """
    limits = check_limits(max_pixels=max_pixels, max_scans=max_scans, max_bytes=max_bytes,
                          max_scan_blocks=max_scan_blocks)
    band_options = _band_options(bands, chroma_bands, band_sampling)
    objs, names, flags, threads = _batch_arguments(srcs, threads)
    results = _read_batch_native(objs, flags, threads, strict, limits, sink, sink_context, band_options, window)
    del objs
    out = [_build(r, name, False) for r, name in zip(results, names)]
    del results
    return out


def read_dct_batch(srcs: Iterable[JPEGSource], *, threads: int | None = None,
                   on_error: Literal["raise", "return"] = "raise", strict: bool = True,
                   max_pixels: int | None = DEFAULT_MAX_PIXELS,
                   max_scans: int = DEFAULT_MAX_SCANS, max_bytes: int | None = DEFAULT_MAX_BYTES,
                   max_scan_blocks: int | None = DEFAULT_MAX_SCAN_BLOCKS, bands: int | None = None,
                   chroma_bands: int | None = None,
                   band_sampling: BandSampling = "any") -> list[DCTImage] | BatchResult:
    """Read many JPEGs on a pool of native threads (GIL released, one decompressor per thread).

    Args:
        srcs: paths and/or bytes-like objects.
        threads: worker threads (default: ``os.cpu_count()``). If the system cannot create
            that many (process or address-space limits), the batch runs on those it could
            create, with a ``RuntimeWarning``.
        on_error: ``"raise"`` raises the first failure (after all items were read);
            ``"return"`` returns every item: ``BatchResult(images, errors)``.
        strict, max_pixels, max_scans, max_bytes, max_scan_blocks: as for :func:`read_dct`.
        bands, chroma_bands, band_sampling: the band-limited read of :func:`read_dct`, for
            every item (each image's ``bands_read`` says what it holds).

    Returns:
        ``on_error="raise"``: the list of :class:`DCTImage` in input order.
        ``on_error="return"``: ``images, errors = read_dct_batch(...)`` (a
        :class:`BatchResult`): ``images[i]`` is a :class:`DCTImage` or ``None``, ``errors[i]``
        ``None`` or item i's :class:`JPEGError` (``OSError``, ``MemoryError``), without a
        traceback. (Before dctnet 0.2 the failures were returned in their items' places in one
        list; see the README's migration note.)
    """
    if on_error not in ("raise", "return"):
        raise ValueError(f"on_error must be 'raise' or 'return', not {on_error!r}")
    out = read_batch_with_sink(list(srcs), 0, 0, threads=threads, strict=strict, max_pixels=max_pixels,
                               max_scans=max_scans, max_bytes=max_bytes, max_scan_blocks=max_scan_blocks,
                               bands=bands, chroma_bands=chroma_bands, band_sampling=band_sampling)
    if on_error == "return":
        errors = [x if isinstance(x, BaseException) else None for x in out]
        return BatchResult([None if isinstance(x, BaseException) else x for x in out], errors)
    if on_error == "raise":
        error = next((x for x in out if isinstance(x, BaseException)), None)
        if error is not None:
            # The traceback keeps this frame: it must hold neither the batch nor the error (a
            # cycle that would keep every decoded image alive until the cyclic GC runs).
            del out
            try:
                raise error
            finally:
                error = None
    return out


# --- Scan scripts and band-ordered progressive files (docs/architecture.md §6) -------------

class Scan(NamedTuple):
    """One scan of a JPEG: its components (frame indices), zigzag bands ``ss..se``, successive
    approximation bits ``ah``/``al``, where it lies in the file (``start``: its SOS marker;
    ``end``: the marker after its entropy-coded data, 0 if the file ends inside it), and
    ``complete``: per component, how many leading bands are complete at full precision after
    it (the read point of a band-limited read is the first scan whose ``complete`` covers
    what is needed). ``irregular``: it overlaps or refines bands out of order."""

    components: tuple[int, ...]
    ss: int
    se: int
    ah: int
    al: int
    start: int
    end: int
    complete: tuple[int, ...]
    irregular: bool


@dataclass(frozen=True)
class ScanScript:
    """What :func:`scan_script` returns: the scans of a file, in file order.

    Attributes:
        scans: the :class:`Scan` s.
        progressive, arithmetic: coding process (from the frame header).
        num_components: components of the frame.
        size: bytes of the file.
        truncated: more scans than the scan limit (the rest are not listed).
        problem: why the walk stopped before the end (unusual markers), or ``""``.
    """

    scans: tuple[Scan, ...]
    progressive: bool
    arithmetic: bool
    num_components: int
    size: int
    truncated: bool = False
    problem: str = ""

    @property
    def band_groups(self) -> tuple[int, ...] | None:
        """The band-group boundaries if the file is band-ordered, else ``None``.

        Band-ordered: a progressive file whose scans are all at full precision (``ah = al =
        0``) and regular, and which delivers bands group by group: the boundaries are the
        distinct values of ``min(complete)`` after each scan (the read points; the last
        one 64), every scan's bands lie inside one group ``[b_{i-1}, b_i)`` and the groups
        of successive scans never decrease. Every prefix ending at a group boundary then
        holds exactly the bands below it, complete, and nothing else.
        """
        if not self.progressive or not self.scans or self.truncated or self.problem:
            return None
        if any(s.irregular or s.ah or s.al or not s.end for s in self.scans):
            return None
        points = sorted({min(s.complete) for s in self.scans} - {0})
        if not points or points[-1] != 64:
            return None
        group = lambda band: next(i for i, b in enumerate(points) if band < b)  # noqa: E731
        last = 0
        for s in self.scans:
            g = group(s.ss)
            if group(s.se) != g or g < last:
                return None
            last = g
        return tuple(points)

    @property
    def band_ordered(self) -> bool:
        """Whether :attr:`band_groups` is not ``None``."""
        return self.band_groups is not None

    def prefix_bytes(self, bands: int) -> int:
        """Bytes a band-limited read of ``bands`` (every component) decodes: the end of the
        first scan after which they are complete, or the whole file (also when that scan is
        the last)."""
        for s in self.scans[:-1]:
            if self.progressive and min(s.complete) >= bands and s.end:
                return s.end
        return self.size


def scan_script(src: JPEGSource, *, max_scans: int = DEFAULT_MAX_SCANS,
                max_bytes: int | None = DEFAULT_MAX_BYTES) -> ScanScript:
    """The scan script of a JPEG, found by walking its markers (no entropy decoding).

    The same walk the reader's band-limited read uses to find its read point
    (``kernels/scan_script.cpp``). The file is opened as :func:`read_source` does.

    Raises:
        JPEGError: as :func:`read_source`; OSError: the file cannot be read.
    """
    data, name = read_source(src, max_bytes=max_bytes)
    limit = check_limits(max_scans=max_scans)["max_scans"]
    progressive, arithmetic, ncomp, scans, truncated, problem = _native.scan_script(bytes(data), limit)
    return ScanScript(tuple(Scan(tuple(c), ss, se, ah, al, start, end, tuple(done), irregular)
                            for c, ss, se, ah, al, start, end, done, irregular in scans),
                      bool(progressive), bool(arithmetic), int(ncomp), len(data), bool(truncated), str(problem))


#: Default band groups of :func:`transcode_progressive`: DC, then 1-5, 6-15, 16-63
#: (the FBS models' 6, 16 and 64 bands each a prefix).
DEFAULT_BAND_GROUPS = (1, 6, 16, 64)


#: Restart interval (MCUs) of ``dctnet prepare --progressive``'s files: what lets
#: :func:`~dctnet.ops.read_to_tensor` decode only the restart intervals around its crop.
#: 8 MCUs cost about 5 % in size against no restart markers (about +1 % against the baseline
#: file) and read a 224 crop of 256 px files about 15 % faster (``benchmarks/README.md``).
DEFAULT_RESTART_INTERVAL = 8


def transcode_progressive(src: JPEGSource, bands: Sequence[int] = DEFAULT_BAND_GROUPS, *,
                          restart_interval: int = 0, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                          max_bytes: int | None = DEFAULT_MAX_BYTES) -> bytes:
    """Rewrite a JPEG as a band-ordered progressive JPEG, losslessly.

    The coefficients are read and written as they are (libjpeg-turbo's
    ``jpeg_read_coefficients`` / ``jpeg_write_coefficients``, as jpegtran does; no decoding,
    no requantisation), with a scan script ordered by band groups: the DC band of every
    component first, then for each group ``[b_{i-1}, b_i)`` one scan per component, at full
    precision (no successive approximation), Huffman tables optimised per scan. Every prefix
    of the file that ends at a group boundary then holds all bands below it, so
    ``read_dct(..., bands=n)`` decodes only up to the first boundary ``>= n``.
    APPn and COM markers are kept.

    Args:
        src: a path or the file's bytes (any JPEG libjpeg reads: baseline, progressive,
            arithmetic; corrupt data is an error).
        bands: strictly increasing group boundaries (band counts) in 1..64; 64 is added when
            missing. E.g. ``(1, 6, 16, 64)``.
        restart_interval: 0 (none), or a restart marker every that many MCUs (0..65535) in
            every scan; a non-interleaved scan's MCU is one block, the interleaved DC scan's
            one MCU of the sampling (e.g. 16x16 pixels for 4:2:0). Costs bytes (a marker,
            byte alignment and a fresh DC prediction per interval); in exchange
            :func:`~dctnet.ops.read_to_tensor` decodes only the intervals that hold blocks of
            its crop. :data:`DEFAULT_RESTART_INTERVAL` is ``dctnet prepare``'s choice.
        max_pixels, max_bytes: as for :func:`read_dct`.

    Returns:
        The new file's bytes.

    Raises:
        JPEGError: unreadable input or a limit exceeded, naming the source. ValueError: bad
        ``bands``.
    """
    groups = [int(b) for b in bands]
    if groups and groups[-1] != 64:
        groups.append(64)
    if not groups or any(not 1 <= b <= 64 for b in groups) or any(a >= b for a, b in zip(groups, groups[1:])):
        raise ValueError(f"bands must be strictly increasing band counts in 1..64, not {tuple(bands)}")
    return _transcode(src, groups, (), max_pixels, max_bytes, check_restart_interval(restart_interval))


def check_restart_interval(value) -> int:
    """``value`` as a restart interval (an integer number of MCUs in 0..65535), or ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= 65535:
        raise ValueError(f"restart_interval must be an integer number of MCUs in 0..65535, not {value!r}")
    return int(value)


def _transcode(src: JPEGSource, groups: Sequence[int], requant: Sequence[int], max_pixels: int | None,
               max_bytes: int | None, restart_interval: int = 0) -> bytes:
    """The native transcoder's output, or its failure raised naming the source."""
    data, name = read_source(src, max_bytes=max_bytes)
    limit = check_limits(max_pixels=max_pixels)["max_pixels"]
    out = _native.transcode(bytes(data), list(groups), limit, list(requant), restart_interval)
    if isinstance(out, tuple):
        kind, _, message = out
        if kind == _KIND_MEMORY:
            raise MemoryError(f"{name}: {message}")
        raise JPEGError(name, message)
    return out


def requantize_jpeg(src: JPEGSource, quality: int, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                    max_bytes: int | None = DEFAULT_MAX_BYTES) -> bytes:
    """The coefficient-domain analogue of decode + re-encode at IJG ``quality``, without decoding.

    Every quantised coefficient ``c`` with step ``q_old`` becomes ``round(c * q_old / q_new)``
    (half away from zero, as libjpeg's quantiser rounds), ``q_new`` the step of the standard
    tables scaled by ``quality`` (:func:`ijg_qtables`, baseline: the luma table for component 0,
    the chroma table for the others). Written by libjpeg-turbo as jpegtran would
    (``jpeg_read_coefficients``, the coefficients changed in place,
    ``jpeg_write_coefficients``): baseline sequential, the standard Huffman tables, the
    file's geometry and sampling kept; like a fresh encode, no APPn/COM markers (EXIF, ICC).

    Raises:
        JPEGError: unreadable input, a colour space other than YCbCr or grayscale, or a limit
        exceeded, naming the source.
    """
    tables = ijg_qtables(int(quality))
    return _transcode(src, (), [int(v) for v in tables.reshape(-1)], max_pixels, max_bytes)


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
