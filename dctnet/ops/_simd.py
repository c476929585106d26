"""Short-vector building blocks for the numba CPU kernels, written as LLVM vector IR.

numba leaves LLVM's SLP vectoriser off (``NUMBA_SLP_VECTORIZE=0``, process-wide), so its loop
vectoriser is the only one at work, and it gives up on the short fixed-length loops of the
DCT-domain resampler (8 coefficients of a block row, 8 output frequencies): those compile to
scalar code, 2-3x slower. These intrinsics state the vectors directly (``<16 x float>``,
``<8 x float>``, ``<8 x i16>``); LLVM lowers them to AVX-512, AVX2 or SSE pairs, whatever the
host has, so nothing here assumes a particular CPU.

They read and write raw memory: callers guarantee the ranges (each function says which).
Arrays must be C-contiguous, weights float32 and offsets integers (typing refuses anything
else rather than computing wrong addresses or emitting mismatched vector types).

numba's on-disk cache (``cache=True``) keys a kernel on its own source file only: after editing
this module, clear ``dctnet/ops/__pycache__/*.nb[ic]`` (or touch the kernels' module) so the
kernels that inline these intrinsics are compiled again.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["band_dot4", "dequantise16", "fma_row16", "fma_rows16"]

_FAST = ("fast",)
_I32 = ir.IntType(32)


def _contiguous(*arrays, dtype=types.float32) -> bool:
    return all(isinstance(a, types.Array) and a.layout == "C" and a.dtype == dtype for a in arrays)


def _scalars(*values, kind=types.float32) -> bool:
    """float32 weights (splatted into float vectors as they are) or integer offsets."""
    if kind is types.Integer:
        return all(isinstance(v, types.Integer) for v in values)
    return all(v == kind for v in values)


def _pointer(context, builder, ty, value, offset, element):
    """Address of ``value[offset]`` (flat element offset) as a pointer to ``element``."""
    data = context.make_array(ty)(context, builder, value).data
    return builder.bitcast(builder.gep(data, [offset]), element.as_pointer())


def _splat(builder, scalar, vector_type):
    lane0 = builder.insert_element(ir.Constant(vector_type, ir.Undefined), scalar, ir.Constant(_I32, 0))
    return builder.shuffle_vector(lane0, ir.Constant(vector_type, ir.Undefined),
                                  ir.Constant(ir.VectorType(_I32, vector_type.count), [0] * vector_type.count))


def _madd(builder, acc, a, b):
    return builder.fadd(acc, builder.fmul(a, b, flags=_FAST), flags=_FAST)


@intrinsic
def fma_rows16(typingctx, d0, d1, s0, s1, s2, s3, c, x0, y0, u0, v0, x1, y1, u1, v1):
    """Two output rows, four source rows, 16 columns from ``c``:
    ``d0[c:c+16] += x0 s0 + y0 s1 + u0 s2 + v0 s3`` and ``d1[c:c+16] += x1 s0 + ... + v1 s3``
    (float32 rows; every row must have ``c + 16`` elements; ``d0`` and ``d1`` must differ)."""
    if not (_contiguous(d0, d1, s0, s1, s2, s3) and _scalars(c, kind=types.Integer)
            and _scalars(x0, y0, u0, v0, x1, y1, u1, v1)):
        return None
    sig = types.void(d0, d1, s0, s1, s2, s3, c, x0, y0, u0, v0, x1, y1, u1, v1)

    def codegen(context, builder, signature, args):
        tys = signature.args
        vt = ir.VectorType(ir.FloatType(), 16)
        at = lambda k: _pointer(context, builder, tys[k], args[k], args[6], vt)  # noqa: E731
        src = [builder.load(at(k), align=4) for k in range(2, 6)]
        p0, p1 = at(0), at(1)
        a0 = builder.load(p0, align=4)
        a1 = builder.load(p1, align=4)
        for k in range(4):
            a0 = _madd(builder, a0, _splat(builder, args[7 + k], vt), src[k])
            a1 = _madd(builder, a1, _splat(builder, args[11 + k], vt), src[k])
        builder.store(a0, p0, align=4)
        builder.store(a1, p1, align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def fma_row16(typingctx, d0, s0, s1, s2, s3, c, x0, y0, u0, v0):
    """:func:`fma_rows16` for one output row: ``d0[c:c+16] += x0 s0 + y0 s1 + u0 s2 + v0 s3``."""
    if not (_contiguous(d0, s0, s1, s2, s3) and _scalars(c, kind=types.Integer) and _scalars(x0, y0, u0, v0)):
        return None
    sig = types.void(d0, s0, s1, s2, s3, c, x0, y0, u0, v0)

    def codegen(context, builder, signature, args):
        tys = signature.args
        vt = ir.VectorType(ir.FloatType(), 16)
        at = lambda k: _pointer(context, builder, tys[k], args[k], args[5], vt)  # noqa: E731
        src = [builder.load(at(k), align=4) for k in range(1, 5)]
        p0 = at(0)
        a0 = builder.load(p0, align=4)
        for k in range(4):
            a0 = _madd(builder, a0, _splat(builder, args[6 + k], vt), src[k])
        builder.store(a0, p0, align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def dequantise16(typingctx, dst0, dst1, dst_offset, src, src_offset, qstep, q_offset):
    """Two rows of a block at once: ``float32(src[src_offset:+16]) * qstep[q_offset:+16]``, the
    first 8 to ``dst0[dst_offset:+8]``, the last 8 to ``dst1[dst_offset:+8]`` (int16 source)."""
    if not (_contiguous(dst0, dst1, qstep) and _contiguous(src, dtype=types.int16)
            and _scalars(dst_offset, src_offset, q_offset, kind=types.Integer)):
        return None
    sig = types.void(dst0, dst1, dst_offset, src, src_offset, qstep, q_offset)

    def codegen(context, builder, signature, args):
        tys = signature.args
        f16 = ir.VectorType(ir.FloatType(), 16)
        f8 = ir.VectorType(ir.FloatType(), 8)
        coefs = builder.load(_pointer(context, builder, tys[3], args[3], args[4], ir.VectorType(ir.IntType(16), 16)),
                             align=2)
        steps = builder.load(_pointer(context, builder, tys[5], args[5], args[6], f16), align=4)
        values = builder.fmul(builder.sitofp(coefs, f16), steps)
        undef = ir.Constant(f16, ir.Undefined)
        for k, dst in enumerate((0, 1)):
            lanes = ir.Constant(ir.VectorType(_I32, 8), list(range(8 * k, 8 * k + 8)))
            half = builder.shuffle_vector(values, undef, lanes)
            builder.store(half, _pointer(context, builder, tys[dst], args[dst], args[2], f8), align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def band_dot4(typingctx, dst, dst_offset, dst_stride, r0, r1, r2, r3, src_offset, op, op_offset, taps):
    """Four source rows against one banded operator block, eight outputs each: for ``k < 4``,
    ``dst[dst_offset + k dst_stride : +8] = sum_{c < taps} r_k[src_offset + c] *
    op[op_offset + 8 c : +8]`` (float32; flat offsets into C-contiguous arrays)."""
    if not (_contiguous(dst, r0, r1, r2, r3, op)
            and _scalars(dst_offset, dst_stride, src_offset, op_offset, taps, kind=types.Integer)):
        return None
    sig = types.void(dst, dst_offset, dst_stride, r0, r1, r2, r3, src_offset, op, op_offset, taps)

    def codegen(context, builder, signature, args):
        tys = signature.args
        f8 = ir.VectorType(ir.FloatType(), 8)
        rows = [context.make_array(tys[k])(context, builder, args[k]).data for k in range(3, 7)]
        accs = [cgutils.alloca_once_value(builder, ir.Constant(f8, [0.0] * 8)) for _ in range(4)]
        with cgutils.for_range(builder, args[10]) as loop:
            c = loop.index
            w = builder.load(_pointer(context, builder, tys[8], args[8],
                                      builder.add(args[9], builder.mul(c, ir.Constant(c.type, 8))), f8), align=4)
            at = builder.add(args[7], c)
            for k in range(4):
                x = _splat(builder, builder.load(builder.gep(rows[k], [at])), f8)
                builder.store(_madd(builder, builder.load(accs[k]), x, w), accs[k])
        for k in range(4):
            offset = builder.add(args[1], builder.mul(args[2], ir.Constant(args[2].type, k)))
            builder.store(builder.load(accs[k]), _pointer(context, builder, tys[0], args[0], offset, f8), align=4)
        return context.get_dummy_value()

    return sig, codegen
