"""numba CPU backend: crop + flip + band selection + dequantisation + normalisation + chroma
upsampling in one pass, straight from each image's own coefficient planes into the output.

The images' planes have different shapes, so the kernel gets flat tables (FFCV style): one
data address, row length and crop offset per image and component, built in the caller
(offsets by vectorised NumPy; one short Python pass collects the planes' addresses, about
2 us per plane). The kernel runs ``prange`` over images; there is no per-image Python in
the hot loop. Chroma planes resampled in the DCT domain (non-4:2:0 files) are float32
arrays addressed the same way (``is_float``).
"""

from __future__ import annotations

import threading

import numpy as np
from numba import carray, njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["fused_gather"]

# numba's default "workqueue" threading layer aborts the process when two Python threads
# launch parallel kernels at once (e.g. a thread-pool data loader); the kernel already uses
# every numba thread, so concurrent calls are serialised instead.
_LAUNCH_LOCK = threading.Lock()


@intrinsic
def _voidptr(typingctx, address):
    """int64 address -> void* (so that ``numba.carray`` can view a plane the caller owns)."""
    sig = types.voidptr(types.int64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return sig, codegen


@njit(cache=True, nogil=True, inline="always")
def _component(src, base0, step, row_stride, h, w, ks, scales, means, inv_stds, out, ch0):
    """All channels of one component of one image, ``out[ch0 + j, r, x]``.

    Row of blocks by row of blocks, channel by channel: the source row (``w`` blocks of 128
    bytes) stays in L1 while each band is written as one contiguous output row (measured
    faster here than scattering each block to all channels). Without normalisation the
    caller passes ``means = 0, inv_stds = 1``, which is exact.
    """
    for r in range(h):
        rowbase = base0 + r * row_stride
        for j in range(ks.shape[0]):
            first = rowbase + ks[j]
            scale = scales[j]
            mean = means[j]
            inv = inv_stds[j]
            d = out[ch0 + j, r]
            for x in range(w):
                d[x] = (np.float32(src[first + step * x]) * scale - mean) * inv


@njit(cache=True, nogil=True, inline="always")
def _component_up(src, base0, step, row_stride, h, w, ks, scales, means, inv_stds, out, ch0):
    """As :func:`_component`, each value written to its 2x2 nearest-neighbour positions."""
    for r in range(h):
        rowbase = base0 + r * row_stride
        for j in range(ks.shape[0]):
            first = rowbase + ks[j]
            scale = scales[j]
            mean = means[j]
            inv = inv_stds[j]
            d0 = out[ch0 + j, 2 * r]
            d1 = out[ch0 + j, 2 * r + 1]
            for x in range(w):
                v = (np.float32(src[first + step * x]) * scale - mean) * inv
                d0[2 * x] = v
                d0[2 * x + 1] = v
                d1[2 * x] = v
                d1[2 * x + 1] = v


@njit(parallel=True, cache=True, nogil=True)
def _kernel(address, row_len, row0, col0, is_float, flip, qsteps, bands, nbands, ch_off, stat_off,
            mean, inv_std, ncomp, hb, wb, out_y, out_c, chroma_up):
    """See :func:`fused_gather` (arrays as documented there)."""
    nimg = address.shape[0]
    for i in prange(nimg):
        ks = np.empty(64, np.int64)
        scales = np.empty(64, np.float32)
        for c in range(ncomp):
            if c == 0:
                h, w, out, up = hb, wb, out_y, False
            else:
                h, w, out, up = hb // 2, wb // 2, out_c, chroma_up
            nb = nbands[c]
            st = stat_off[c]
            means = mean[st:st + nb]
            inv_stds = inv_std[st:st + nb]
            ptr = address[i, c]
            if ptr == 0:                       # grayscale source: zero chroma
                for j in range(nb):
                    out[i, ch_off[c] + j] = (np.float32(0.0) - means[j]) * inv_stds[j]
                continue
            for j in range(nb):
                k = bands[c, j]
                ks[j] = k
                # flip: walk source rows backwards and negate odd horizontal frequencies
                scales[j] = -qsteps[i, c, k] if (flip[i] and (k & 1)) else qsteps[i, c, k]
            rl = row_len[i, c]
            if flip[i]:
                base0 = (row0[i, c] * rl + col0[i, c] + w - 1) * 64
                step = -64
            else:
                base0 = (row0[i, c] * rl + col0[i, c]) * 64
                step = 64
            size = (row0[i, c] + h) * rl * 64
            o = out[i]
            if is_float[i, c]:
                src_f = carray(_voidptr(ptr), (size,), np.float32)
                if up:
                    _component_up(src_f, base0, step, rl * 64, h, w, ks[:nb], scales[:nb], means, inv_stds, o, ch_off[c])
                else:
                    _component(src_f, base0, step, rl * 64, h, w, ks[:nb], scales[:nb], means, inv_stds, o, ch_off[c])
            else:
                src_i = carray(_voidptr(ptr), (size,), np.int16)
                if up:
                    _component_up(src_i, base0, step, rl * 64, h, w, ks[:nb], scales[:nb], means, inv_stds, o, ch_off[c])
                else:
                    _component(src_i, base0, step, rl * 64, h, w, ks[:nb], scales[:nb], means, inv_stds, o, ch_off[c])


def fused_gather(address, row_len, row0, col0, is_float, flip, qsteps, bands, nbands, ch_off, stat_off, mean, inv_std,
                 ncomp, hb, wb, out_y, out_c, chroma_up):
    """Run the fused kernel.

    Args:
        address: ``int64 (B, 3)`` data address of each component plane (0: zero chroma).
        row_len: ``int64 (B, 3)`` plane width in blocks (row stride / 64).
        row0, col0: ``int64 (B, 3)`` first block of the crop in each plane.
        is_float: ``bool (B, 3)`` plane is float32 (resampled) rather than int16.
        flip: ``bool (B,)``; qsteps ``float32 (B, 3, 64)``.
        bands: ``int64 (3, 64)`` natural indices per component (first ``nbands[c]`` used);
            ch_off ``int64 (3,)`` first output channel of each component in its output;
            stat_off ``int64 (3,)`` its first entry in ``mean``/``inv_std``.
        mean, inv_std: ``float32 (C,)`` per channel of the whole layout (zeros and ones
            without normalisation: ``(v - 0) * 1 == v`` exactly).
        hb, wb: Y grid; chroma grid is ``hb // 2, wb // 2``.
        out_y, out_c: ``float32`` channel-major outputs (the same array for ``upsampling``,
            with ``chroma_up`` writing each chroma value to 2x2 positions).
    """
    with _LAUNCH_LOCK:
        _kernel(address, row_len, row0, col0, is_float, flip, qsteps, bands, nbands, ch_off, stat_off, mean, inv_std,
                ncomp, hb, wb, out_y, out_c, chroma_up)
