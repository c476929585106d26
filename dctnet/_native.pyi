"""Type stub of the native reader (kernels/native_module.cpp). Use dctnet.codec instead."""

from typing import Sequence, Union

import numpy as np

_Source = Union[str, bytes, bytearray, memoryview]
# Success: (width, height, colorspace, progressive, arithmetic, restart_interval, sampling,
#           qtables uint16 (ncomp, 64), planes (int16 (Hb, Wb, 64) ... or (Hb, Wb) when header_only),
#           corrupt (count, missing_blocks, total_blocks, scan, message) | None,
#           other_warnings (count, message) | None)
# Failure: (kind, errno, message) with kind 1 libjpeg, 2 OS, 3 limit, 4 memory, 5 invalid
_Result = tuple

LIBJPEG_VERSION: int
LIBJPEG_TURBO_VERSION: int

def read(src: _Source, strict: bool, header_only: bool, max_pixels: int, max_scans: int) -> _Result: ...
def read_batch(srcs: Sequence[_Source], strict: bool, header_only: bool, max_pixels: int, max_scans: int,
               threads: int, sink: int = 0, sink_context: int = 0) -> list[_Result | None]: ...
"""``sink``: address of ``int32 (*)(void* context, int64 index, const int64* view)`` called on the
worker thread after each successful read; returning 0 consumes the image (its result is None)."""
