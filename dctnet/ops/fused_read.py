"""``read_to_tensor``: JPEG files straight to network inputs in one pass per image.

``read_to_tensor(srcs, layout, crop="center", size=224)`` gives what
``to_tensor(read_dct_batch(srcs), layout, crop="center", size=224)`` gives, bit for bit, but
each image is gathered into the output by the reader's own native thread right after its
entropy decoding, while its coefficients are still in that core's cache: no second pass
over memory, no per-image Python objects, and decoding and gathering share one thread
pool (on 2 cores, a separate numba pool and the reader's threads only take turns).

The gather is the numba backend's own per-image function (``dctnet.ops._numba``), compiled
as a C callback (a numba ``cfunc``) that the reader calls (``kernels/native_module.cpp``,
``ImageSink``). The callback takes the files it can read directly: 4:2:0 YCbCr and
grayscale (any YCbCr for ``y_only``). Everything else (4:4:4 and other chroma samplings,
which need DCT-domain resampling; files too small for the crop; CMYK) comes back to Python
as a ``DCTImage`` and goes through ``plan_geometry`` + the numba kernel with the same crop
draws and flip, which resamples it or raises the precise error. Both routes write the same
numbers (tested).
"""

from __future__ import annotations

from typing import Iterable, Literal, Sequence

import numpy as np
import torch

from .. import codec
from ..codec import BatchResult, DCTImage, JPEGSource, read_batch_with_sink
from . import _numba as nk
from .align import Crop, Flip, Size, flip_flags, pixels_to_blocks, plan_geometry, random_crop_draws
from .layout import DCTLayout
from .outputs import Output, check_out, output_shapes
from .rearrange import gather_tables, run_plan
from .resize import SinkPlan, check_resize_arguments, crop_draws, image_window, resize_image_into, \
    resize_sink_address, resize_window_address

__all__ = ["read_to_tensor"]

_KINDS = {"upsampling": 0, "late_concat": 1, "y_only": 2}


def _context(layout: DCTLayout, batch: int, hb: int, wb: int, outs: Sequence[torch.Tensor], crop: str,
             uniform: np.ndarray, flips: np.ndarray) -> tuple[np.ndarray, list]:
    """The cfunc's int64 context array (fields ``CTX_*`` of ``dctnet.ops._numba``), and the
    arrays it points to (which must stay alive while the reader runs)."""
    bands, nbands, ch_off, stat_off, mean, inv_std = gather_tables(layout)
    flip_u8 = np.ascontiguousarray(flips, np.uint8)
    uniform = np.ascontiguousarray(uniform, np.float64)
    keep = [bands, nbands, ch_off, stat_off, mean, inv_std, flip_u8, uniform]
    ctx = np.zeros(nk.CTX_SIZE, np.int64)
    ctx[nk.CTX_BATCH] = batch
    ctx[nk.CTX_HB], ctx[nk.CTX_WB] = hb, wb
    ctx[nk.CTX_KIND] = _KINDS[layout.kind]
    ctx[nk.CTX_NCOMP] = layout.num_components
    ctx[nk.CTX_RANDOM] = crop == "random"
    ctx[nk.CTX_DEQUANTIZE] = bool(layout.dequantize)
    ctx[nk.CTX_OUT_Y] = outs[0].data_ptr()
    ctx[nk.CTX_OUT_C] = outs[-1].data_ptr()
    ctx[nk.CTX_CH_Y] = outs[0].shape[1]
    ctx[nk.CTX_CH_C] = outs[-1].shape[1]
    ctx[nk.CTX_BANDS] = bands.ctypes.data
    ctx[nk.CTX_NBANDS] = nbands.ctypes.data
    ctx[nk.CTX_CH_OFF] = ch_off.ctypes.data
    ctx[nk.CTX_STAT_OFF] = stat_off.ctypes.data
    ctx[nk.CTX_MEAN] = mean.ctypes.data
    ctx[nk.CTX_INV_STD] = inv_std.ctypes.data
    ctx[nk.CTX_CHANNELS] = mean.shape[0]
    ctx[nk.CTX_UNIFORM] = uniform.ctypes.data
    ctx[nk.CTX_FLIP] = flip_u8.ctypes.data
    return ctx, keep


def _general_path(images: list[DCTImage], rows: list[int], layout: DCTLayout, crop: str, size: Size,
                  flips: np.ndarray, uniform: np.ndarray, outs: tuple[torch.Tensor, ...], errors: list) -> None:
    """The images the reader's callback handed back, into their ``rows`` of ``outs``: as one
    batch (one plan, one kernel launch), or one by one when the batch has a bad item, so
    that each error names its own file. Errors are stored without traceback (see
    :func:`_detached`)."""
    try:
        plan = plan_geometry(images, layout, crop=crop, size=size, flip=flips[rows], uniform=uniform[rows])
    except ValueError:
        plan = None
    if plan is None:                     # outside the except block: no exception context
        for img, i in zip(images, rows):
            try:
                one = plan_geometry([img], layout, crop=crop, size=size, flip=flips[i:i + 1],
                                    uniform=uniform[i:i + 1])
            except ValueError as e:
                errors[i] = _detached(e)
                continue
            run_plan(one, layout, "numba", tuple(t[i:i + 1] for t in outs))
        return
    if rows == list(range(rows[0], rows[0] + len(rows))):          # contiguous: write in place
        run_plan(plan, layout, "numba", tuple(t[rows[0]:rows[0] + len(rows)] for t in outs))
        return
    parts = tuple(torch.empty((len(rows), *t.shape[1:]), dtype=t.dtype) for t in outs)
    run_plan(plan, layout, "numba", parts)
    index = torch.tensor(rows)
    for t, part in zip(outs, parts):
        t.index_copy_(0, index, part)


def _detached(error: BaseException) -> BaseException:
    """``error`` holding no frames: its traceback, and those of the exceptions chained to it,
    are dropped. A returned error otherwise keeps every frame it was raised through alive,
    and with them the output tensors and decoded images, in a reference cycle only the
    cyclic GC frees."""
    seen: set[int] = set()
    stack = [error]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        e.__traceback__ = None
        stack += [e.__cause__, e.__context__]
    return error


def read_to_tensor(srcs: Iterable[JPEGSource], layout: DCTLayout, *, size: Size, crop: Crop = "center",
                   flip: Flip = False, generator: torch.Generator | None = None, out: Output | None = None,
                   threads: int | None = None, on_error: Literal["raise", "return"] = "raise",
                   strict: bool = True, max_pixels: int | None = codec.DEFAULT_MAX_PIXELS,
                   max_scans: int = codec.DEFAULT_MAX_SCANS, max_bytes: int | None = codec.DEFAULT_MAX_BYTES,
                   max_scan_blocks: int | None = codec.DEFAULT_MAX_SCAN_BLOCKS, resize: int | None = None,
                   partial: bool = True):
    """Read JPEGs and write the network input tensor(s) in one pass per image (CPU, float32).

    Equal to ``to_tensor(read_dct_batch(srcs), layout, crop=crop, size=size, flip=flip,
    generator=generator, out=out, backend="numba")`` (the same random draws from
    ``generator``, in the same order), but faster: see the module docstring.

    Args:
        srcs: paths and/or bytes-like objects.
        layout: the model's :class:`DCTLayout`.
        size: crop size in pixels, ``int`` or ``(height, width)`` (multiples of 16; of 8 for
            ``y_only``). Required: the output is allocated before any file is read.
        crop: ``"center"`` or ``"random"``.
        flip, generator: as in :func:`~dctnet.ops.to_tensor`.
        out: CPU float32 tensor(s) to write into (e.g. pinned; a tuple ``(y, cbcr)`` for
            ``late_concat``); allocated when None.
        threads: reader threads, each decoding and gathering whole images (default:
            ``os.cpu_count()``). If the system cannot create that many, fewer are used, with
            a ``RuntimeWarning`` (as in :func:`~dctnet.codec.read_dct_batch`).
        on_error: ``"raise"``: raise the first item's error after the whole batch was
            processed. ``"return"``: return ``(output, errors)`` with ``errors[i]`` the
            exception of item ``i`` (a :class:`~dctnet.codec.JPEGError`, ``OSError`` or
            ``ValueError`` naming the file; without traceback, so that it keeps nothing of
            the batch alive) or None; failed items' rows are zero.
        strict, max_pixels, max_scans, max_bytes, max_scan_blocks: as for
            :func:`~dctnet.codec.read_dct`. With ``strict=False`` a damaged file's blocks
            that could not be decoded are zero in its output row, with the same
            :class:`~dctnet.codec.JPEGWarning` (naming the file and counting the missing
            blocks) that :func:`~dctnet.codec.read_dct` gives.

        resize: resize in the DCT domain as the RGB pipeline does (shorter side to ``resize``
            pixels, then the ``size`` centre crop), any sampling and any image size: see
            :func:`~dctnet.ops.to_tensor`. The files are read on ``threads`` native threads,
            then resized on as many threads (the kernel releases the GIL).

    Returns:
        The output of :func:`~dctnet.ops.to_tensor` (``(B, C, Hb, Wb)`` float32, or ``(y,
        cbcr)`` for ``late_concat``); with ``on_error="return"``, ``(output, errors)``.
    """
    if on_error not in ("raise", "return"):
        raise ValueError(f"on_error must be 'raise' or 'return', not {on_error!r}")
    if resize is not None or crop == "random-resized":
        output, errors = _read_resized(srcs, layout, size, resize, crop, flip, generator, out, threads, strict,
                                       max_pixels, max_scans, max_bytes, max_scan_blocks)
    else:
        output, errors = _read_to_tensor(srcs, layout, size, crop, flip, generator, out, threads, strict,
                                         max_pixels, max_scans, max_bytes, max_scan_blocks,
                                         layout.read_bands() if partial else {})
    if on_error == "return":
        return BatchResult(output, errors)
    error = next((e for e in errors if e is not None), None)
    if error is not None:
        # The traceback keeps this frame: it must hold neither the output nor the error (a
        # cycle that would keep the output alive until the cyclic GC runs).
        del output, errors
        try:
            raise error
        finally:
            error = None
    return output


def _read_resized(srcs, layout, size, resize, crop, flip, generator, out, threads, strict, max_pixels, max_scans,
                  max_bytes, max_scan_blocks):
    """read_to_tensor's resampling route: ``(output, errors)``.

    Each file's header is read first (microseconds: no entropy decoding) to plan its
    operators (:class:`~dctnet.ops.resize.SinkPlan`); the reader's threads then resample each
    image right after decoding it, while its coefficients are in cache. Images the sink hands
    back (no plan: a header that did not read, a colour space no layout takes, or a file that
    changed between the two reads) take :func:`~dctnet.ops.resize.resize_image_into` with the
    same window and flip, which gives the same numbers or names the problem."""
    srcs = list(srcs)
    batch = len(srcs)
    if batch == 0:
        raise ValueError("empty batch: no images")
    check_resize_arguments(layout, size, resize, crop)
    g = size // 8
    shapes = output_shapes(layout, batch, g, g)
    outs = tuple(torch.empty(s, dtype=torch.float32) for s in shapes) if out is None else check_out(
        out, shapes, torch.float32)
    if outs[0].device.type != "cpu":
        raise ValueError(f"read_to_tensor writes CPU tensors, but out is on {outs[0].device}")
    draws = crop_draws(crop, batch, generator)
    flips = flip_flags(flip, batch, generator)
    plan = SinkPlan(layout, size, outs, batch)
    for i, src in enumerate(srcs):
        try:
            header = codec.read_header(src, max_pixels=max_pixels, max_bytes=max_bytes)
            plan.add(i, header, image_window(header, layout, size, resize, crop, draws[i]), bool(flips[i]))
        except (ValueError, OSError):
            pass             # the read (or the Python route after it) reports this item
    # window: band-ordered files with restart intervals are decoded only where the operators read
    results = read_batch_with_sink(srcs, resize_sink_address(), plan.context.ctypes.data, threads=threads,
                                   strict=strict, max_pixels=max_pixels, max_scans=max_scans, max_bytes=max_bytes,
                                   max_scan_blocks=max_scan_blocks, window=resize_window_address())
    del plan
    errors: list[BaseException | None] = [None] * batch
    views = tuple(t.numpy() for t in outs)
    for i, item in enumerate(results):       # None: resampled by the reader's thread
        if isinstance(item, DCTImage):
            try:
                # the window from the image itself (the same as the header's, unless the file changed)
                window = image_window(item, layout, size, resize, crop, draws[i])
                resize_image_into(item, layout, size, window, views, i, bool(flips[i]))
            except ValueError as e:
                errors[i] = _detached(e)
        elif item is not None:
            errors[i] = item
    del results
    return _finish(outs, errors, layout, out)


def _finish(outs: tuple, errors: list, layout: DCTLayout, out) -> tuple:
    """``(output, errors)`` with the failed items' rows zeroed (never stale data); ``out`` itself
    when the caller gave it."""
    for i, e in enumerate(errors):
        if e is not None:
            for t in outs:
                t[i].zero_()
    output = outs if layout.kind == "late_concat" else outs[0]
    return (out if out is not None else output), errors


def _read_to_tensor(srcs, layout, size, crop, flip, generator, out, threads, strict, max_pixels, max_scans,
                    max_bytes, max_scan_blocks, band_args):
    """read_to_tensor's work: ``(output, errors)``."""
    if crop not in ("center", "random"):
        raise ValueError(f"read_to_tensor needs crop='center' or crop='random' (got {crop!r}): the output is "
                         "allocated before the files are read; for whole images use read_dct_batch + to_tensor")
    if size is None:
        raise ValueError("read_to_tensor needs size= (the output is allocated before the files are read)")
    srcs = list(srcs)
    batch = len(srcs)
    if batch == 0:
        raise ValueError("empty batch: no images")
    unit = 1 if layout.kind == "y_only" else 2
    hb, wb = pixels_to_blocks(size, unit, "8-pixel blocks" if unit == 1 else "16-pixel steps of the 4:2:0 geometry")
    shapes = output_shapes(layout, batch, hb, wb)
    if out is None:
        outs = tuple(torch.empty(s, dtype=torch.float32) for s in shapes)
    else:
        outs = check_out(out, shapes, torch.float32)
        if outs[0].device.type != "cpu":
            raise ValueError(f"read_to_tensor writes CPU tensors (the reader's threads run the numba gather), but "
                             f"out is on {outs[0].device}; read_dct_batch + to_tensor(backend='triton') fills CUDA "
                             "tensors")
    # the same draws, in the same order, as plan_geometry and to_tensor make
    uniform = random_crop_draws(batch, generator) if crop == "random" else np.zeros((batch, 2))
    flips = flip_flags(flip, batch, generator)
    ctx, keep = _context(layout, batch, hb, wb, outs, crop, uniform, flips)
    # window: band-ordered files with restart intervals are decoded only around the crop
    results = read_batch_with_sink(srcs, nk.sink_address(), ctx.ctypes.data, threads=threads, strict=strict,
                                   max_pixels=max_pixels, max_scans=max_scans, max_bytes=max_bytes,
                                   max_scan_blocks=max_scan_blocks, window=nk.window_address(), **band_args)
    del keep
    errors: list[BaseException | None] = [None] * batch
    general: list[int] = []                  # not on the fast path: plan_geometry + numba, same draws
    images: list[DCTImage] = []
    for i, item in enumerate(results):       # None: gathered by the reader's thread
        if item is None:
            continue
        if isinstance(item, DCTImage):
            general.append(i)
            images.append(item)
        else:
            errors[i] = item
    del results
    if general:
        _general_path(images, general, layout, crop, size, flips, uniform, outs, errors)
    del images
    return _finish(outs, errors, layout, out)
