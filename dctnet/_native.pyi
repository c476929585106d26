"""Type stub of the native reader (kernels/native_module.cpp). Use dctnet.codec instead."""

from typing import Sequence, Union

import numpy as np

# A path (str: encoded with the file-system encoding; bytes when is_path / path_flags say so:
# os.fsencode'd, opened as is) or the file's bytes (any contiguous buffer).
_Source = Union[str, bytes, bytearray, memoryview]
# Success: (width, height, colorspace, progressive, arithmetic, restart_interval, sampling,
#           qtables uint16 (ncomp, 64), planes (int16 (Hb, Wb, 64) ... or (Hb, Wb) when header_only),
#           corrupt (count, missing_blocks, total_blocks, scan, message) | None,
#           other_warnings (count, message) | None,
#           bands_read (per component: 64, or the bands a band-limited read kept), bytes_read)
# Consumed by a sink: None, or (corrupt, other_warnings) when the read had warnings
# Failure: (kind, errno, message) with kind 1 libjpeg/file type, 2 OS, 3 limit, 4 memory, 5 invalid
#          (kind 1 with errno EISDIR: a directory)
_Result = tuple | None

LIBJPEG_VERSION: int
LIBJPEG_TURBO_VERSION: int

def read(src: _Source, strict: bool, header_only: bool, max_pixels: int, max_scans: int, is_path: bool = False,
         max_bytes: int = 0, max_scan_blocks: int = 0, bands: int = 64, chroma_bands: int = -1,
         band_sampling: int = 0, direct_decoder: bool = True) -> _Result: ...
"""Limits: 0 means none. ``max_bytes`` bounds the input (a file's size is checked before it is
read); ``max_scan_blocks`` bounds the blocks decoded summed over all scans. ``bands``,
``chroma_bands`` (-1: ``bands``), ``band_sampling`` (0 any, 1 gray/4:2:0 only): the band-limited
read (dctnet.codec.read_dct). ``direct_decoder=False``: libjpeg decodes band-ordered files too
(tests compare the two routes)."""

def read_batch(srcs: Sequence[_Source], strict: bool, header_only: bool, max_pixels: int, max_scans: int,
               threads: int, sink: int = 0, sink_context: int = 0, path_flags: bytes | None = None,
               max_bytes: int = 0, max_scan_blocks: int = 0, bands: int = 64, chroma_bands: int = -1,
               band_sampling: int = 0, window: int = 0) -> list[_Result]:
    """``sink``: address of ``int32 (*)(void* context, int64 index, const int64* view)`` called on the
    worker thread after each successful read; returning 0 consumes the image (its result is None, or
    its warnings). ``window`` (with a sink): address of ``int32 (*)(void* context, int64 index,
    const int64* view, int64* window)``, asked after the header (the view without planes) for the
    blocks the sink will read (``[row0, row1, col0, col1]`` per component, 3; 0: given); restart
    intervals outside them are skipped by the direct decoder. ``path_flags``: one byte per source, nonzero for a path given as bytes. Problems
    of one item (bad path, non-contiguous buffer) are that item's result. Threads that cannot be
    created give a RuntimeWarning and the batch is read on fewer. ``bands``, ``chroma_bands``,
    ``band_sampling``: as for :func:`read`."""

def scan_script(data: bytes, max_scans: int) -> tuple:
    """(progressive, arithmetic, num_components, [(components, Ss, Se, Ah, Al, start, end, complete,
    irregular), ...], truncated, problem) of a JPEG in memory (a marker walk, no decoding)."""

def transcode(data: bytes, group_ends: list[int], max_pixels: int, requant: list[int] = ...,
              restart_interval: int = 0) -> bytes | tuple:
    """The band-ordered progressive version of a JPEG (``group_ends`` strictly increasing, ending with
    64; empty: sequential with optimised Huffman tables), or ``(kind, 0, message)`` on failure.
    ``requant`` (128 steps, luma then chroma, natural order; ``group_ends`` empty): every coefficient
    requantised with these tables, written baseline with the standard Huffman tables, no APPn/COM.
    ``restart_interval``: MCUs between restart markers (0: none)."""
