"""numba CPU backend: crop + flip + band selection + dequantisation + normalisation + chroma
upsampling in one pass, straight from each image's own coefficient planes into the output.

The images' planes have different shapes, so the kernel gets flat tables (FFCV style): one
data address, row length and crop offset per image and component, built by vectorised
NumPy in the caller. The kernel runs ``prange`` over images; there is no per-image Python
in the hot loop. Chroma planes resampled in the DCT domain (non-4:2:0 files) are float32
arrays addressed the same way (``is_float``).
"""

from __future__ import annotations

import numpy as np
from numba import carray, njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["fused_gather"]


@intrinsic
def _voidptr(typingctx, address):
    """int64 address -> void* (so that ``numba.carray`` can view a plane the caller owns)."""
    sig = types.voidptr(types.int64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return sig, codegen


@njit(parallel=True, cache=True, nogil=True)
def _kernel(address, row_len, row0, col0, is_float, flip, qsteps, bands, nbands, ch_off, stat_off,
            mean, std, normalise, ncomp, hb, wb, out_y, out_c, chroma_up):
    """See :func:`fused_gather` (arrays as documented there)."""
    nimg = address.shape[0]
    hc = hb // 2
    wc = wb // 2
    for i in prange(nimg):
        for c in range(ncomp):
            if c == 0:
                h, w, out = hb, wb, out_y
            else:
                h, w, out = hc, wc, out_c
            ptr = address[i, c]
            nb = nbands[c]
            if ptr == 0:                      # grayscale source: zero chroma
                for j in range(nb):
                    ch = ch_off[c] + j
                    s = stat_off[c] + j
                    v = np.float32(0.0)
                    if normalise:
                        v = (v - mean[s]) / std[s]
                    if c > 0 and chroma_up:
                        out[i, ch, :2 * h, :2 * w] = v
                    else:
                        out[i, ch, :h, :w] = v
                continue
            fl = is_float[i, c]
            rl = row_len[i, c]
            size = (row0[i, c] + h) * rl * 64
            plane_i16 = carray(_voidptr(ptr), (size,), np.int16)
            plane_f32 = carray(_voidptr(ptr), (size,), np.float32)
            for r in range(h):
                for x in range(w):
                    sx = w - 1 - x if flip[i] else x
                    base = ((row0[i, c] + r) * rl + col0[i, c] + sx) * 64
                    for j in range(nb):
                        k = bands[c, j]
                        if fl:
                            v = plane_f32[base + k]
                        else:
                            v = np.float32(plane_i16[base + k])
                        v = v * qsteps[i, c, k]
                        if flip[i] and (k & 1):
                            v = -v
                        ch = ch_off[c] + j
                        if normalise:
                            s = stat_off[c] + j
                            v = (v - mean[s]) / std[s]
                        if c > 0 and chroma_up:
                            out[i, ch, 2 * r, 2 * x] = v
                            out[i, ch, 2 * r, 2 * x + 1] = v
                            out[i, ch, 2 * r + 1, 2 * x] = v
                            out[i, ch, 2 * r + 1, 2 * x + 1] = v
                        else:
                            out[i, ch, r, x] = v


def fused_gather(address, row_len, row0, col0, is_float, flip, qsteps, bands, nbands, ch_off, stat_off, mean, std,
                 normalise, ncomp, hb, wb, out_y, out_c, chroma_up):
    """Run the fused kernel.

    Args:
        address: ``int64 (B, 3)`` data address of each component plane (0: zero chroma).
        row_len: ``int64 (B, 3)`` plane width in blocks (row stride / 64).
        row0, col0: ``int64 (B, 3)`` first block of the crop in each plane.
        is_float: ``bool (B, 3)`` plane is float32 (resampled) rather than int16.
        flip: ``bool (B,)``; qsteps ``float32 (B, 3, 64)``.
        bands: ``int64 (3, 64)`` natural indices per component (first ``nbands[c]`` used);
            ch_off ``int64 (3,)`` first output channel of each component in its output;
            stat_off ``int64 (3,)`` its first entry in ``mean``/``std``.
        mean, std: ``float32 (C,)`` per channel of the whole layout (used if ``normalise``).
        hb, wb: Y grid; chroma grid is ``hb // 2, wb // 2``.
        out_y, out_c: ``float32`` channel-major outputs (the same array for ``upsampling``,
            with ``chroma_up`` writing each chroma value to 2x2 positions).
    """
    _kernel(address, row_len, row0, col0, is_float, flip, qsteps, bands, nbands, ch_off, stat_off, mean, std,
            normalise, ncomp, hb, wb, out_y, out_c, chroma_up)
