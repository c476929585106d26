"""Fused first stage of the "upsampling" DCT ResNets: block layout -> output of ``layer1[0]``.

Unfused, the first stage of an UpSampling-RFA model is: gather the kept bands of Y, Cb, Cr
from the block layout, upsample chroma x2 (nearest), multiply by the quantisation steps,
normalise per channel (``layout.mean/std``), the input BatchNorm, then ``layer1[0]``: a conv
block whose convolutions are all 1x1 (c->m, m->m, m->o, and the c->o projection) with BN and
ReLU. Every step is per position, so in eval mode it folds into, per 28x28 position::

    x   = coef[k_j] * qstep[b, comp_j, k_j] * s_j + t_j        (gather + dequantise + normalise + BN)
    h1  = relu(x @ W1 + b1);  h2 = relu(h1 @ W2 + b2)
    out = relu(h2 @ W3 + b3 + x @ Wp + bp)

with the BNs folded into (W, b). ``first_stage(model, blocks)`` computes ``out`` either with
the unfused torch modules (the reference, used on CPU and in training) or with one Triton
kernel that reads the int16/float32 blocks directly, so the ``(B, 3n, H, W)`` input tensor
is never written to memory (used automatically for CUDA inputs in eval mode).

Odd block counts: chroma planes have ``ceil`` or ``floor`` of half the luma size; position
``(h, w)`` reads chroma block ``(min(h // 2, Hc - 1), min(w // 2, Wc - 1))`` (nearest
upsampling, the last row/column repeated when the chroma plane is the floor). Both paths do
the same.
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import NamedTuple

import torch
from torch import nn

from ..ops import BlockBatch, DCTLayout, blocks_to_tensor_torch, check_block_batch, normalisation
from .resnet import Bottleneck

__all__ = ["blocks_to_input", "check_block_batch", "fold_first_stage", "FoldedStem", "first_stage",
           "first_stage_torch", "first_stage_triton", "supports_fused_stem", "triton_available"]


# ----------------------------------------------------------------------------- torch reference

def blocks_to_input(blocks: BlockBatch, layout: DCTLayout):
    """The model's input tensor(s) from a ``BlockBatch``: :func:`dctnet.ops.blocks_to_tensor_torch`
    (the one torch reference of the gather), float32."""
    return blocks_to_tensor_torch(blocks, layout)


def supports_fused_stem(model: nn.Module) -> bool:
    """True if ``model`` is an "upsampling" DCT ResNet whose ``layer1[0]`` is all 1x1 convs."""
    layout = getattr(model, "layout", None)
    if layout is None or layout.kind != "upsampling" or not hasattr(model, "bn_in") or not hasattr(model, "layer1"):
        return False
    block = model.layer1[0]
    if not isinstance(block, Bottleneck) or block.downsample is None:
        return False
    convs = (block.conv1, block.conv2, block.conv3, block.downsample[0])
    return all(type(c) is nn.Conv2d and c.kernel_size == (1, 1) and c.stride == (1, 1) and c.groups == 1
               and c.bias is None for c in convs)


def first_stage_torch(model: nn.Module, blocks: BlockBatch) -> torch.Tensor:
    """Unfused reference: ``layer1[0](stem(blocks_to_input(blocks)))``, ``(B, o, Hb, Wb)`` float32."""
    x = blocks_to_input(blocks, model.layout)
    return model.layer1[0](model.forward_stem(x))


# ----------------------------------------------------------------------------- folding

class FoldedStem(NamedTuple):
    """The first stage folded for the kernel (fp32, contiguous; C = input channels, M, O widths).

    col_k, col_comp: ``int32 (C,)`` natural index and component of each input channel;
    col_scale, col_shift: ``float32 (C,)``: ``x_j = coef * qstep * col_scale_j + col_shift_j``
    (normalisation and the input BN); w1 ``(C, M)``, w2 ``(M, M)``, w3 ``(M, O)``, wp ``(C, O)``
    with biases b1, b2 ``(M,)`` and b_out = b3 + bp ``(O,)`` (the BNs folded in).
    """

    col_k: torch.Tensor
    col_comp: torch.Tensor
    col_scale: torch.Tensor
    col_shift: torch.Tensor
    w1: torch.Tensor
    b1: torch.Tensor
    w2: torch.Tensor
    b2: torch.Tensor
    w3: torch.Tensor
    wp: torch.Tensor
    b_out: torch.Tensor


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _fold_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    scale, shift = _bn_affine(bn)
    weight = conv.weight[:, :, 0, 0] * scale[:, None]  # (out, in)
    return weight.t().contiguous(), shift.contiguous()


@torch.no_grad()
def fold_first_stage(model: nn.Module) -> FoldedStem:
    """Fold normalisation, input BN and ``layer1[0]``'s BNs into a ``FoldedStem`` (eval semantics)."""
    if not supports_fused_stem(model):
        raise ValueError(f"{getattr(model, 'model_name', type(model).__name__)}: the fused first stage needs an "
                         "'upsampling' DCT ResNet whose layer1[0] is all 1x1 convolutions")
    layout: DCTLayout = model.layout
    device = model.bn_in.weight.device
    col_k, col_comp = [], []
    for c, bands in enumerate(layout.band_indices()):
        col_k += list(bands)
        col_comp += [c] * len(bands)
    g, t = _bn_affine(model.bn_in)
    g, t = g.float(), t.float()
    # the normalisation constants every backend shares: (x - mean) * inv_std
    mean, inv_std = (torch.from_numpy(a).to(device) for a in normalisation(layout))
    scale, shift = g * inv_std, t - g * mean * inv_std
    block = model.layer1[0]
    w1, b1 = _fold_conv(block.conv1, block.bn1)
    w2, b2 = _fold_conv(block.conv2, block.bn2)
    w3, b3 = _fold_conv(block.conv3, block.bn3)
    wp, bp = _fold_conv(block.downsample[0], block.downsample[1])
    as_int = functools.partial(torch.tensor, dtype=torch.int32, device=device)
    return FoldedStem(as_int(col_k), as_int(col_comp), scale.contiguous(), shift.contiguous(),
                      w1.float(), b1.float(), w2.float(), b2.float(), w3.float(), wp.float(), (b3 + bp).float())


# ----------------------------------------------------------------------------- Triton

def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def _kernel():
    # Defined on first use: triton.jit reads TRITON_INTERPRET when the kernel is defined.
    import triton
    import triton.language as tl

    @triton.jit
    def fused_stem_kernel(
        y_ptr, cb_ptr, cr_ptr, q_ptr, out_ptr,
        colk_ptr, colc_ptr, cols_ptr, colt_ptr,
        w1_ptr, b1_ptr, w2_ptr, b2_ptr, w3_ptr, wp_ptr, bo_ptr,
        P, H, W, HC, WC, C, M, O,
        sy_b, sy_h, sy_w, sy_k, sb_b, sb_h, sb_w, sb_k, sr_b, sr_h, sr_w, sr_k, sq_b, sq_c,
        BLOCK_P: tl.constexpr, C_PAD: tl.constexpr, M_PAD: tl.constexpr, BLOCK_M: tl.constexpr,
        BLOCK_O: tl.constexpr,
    ):
        pid = tl.program_id(0)
        p = pid * BLOCK_P + tl.arange(0, BLOCK_P)
        p_ok = p < P
        p64 = p.to(tl.int64)
        w_ = p64 % W
        h_ = (p64 // W) % H
        b_ = p64 // (W * H)
        hc = tl.minimum(h_ // 2, HC - 1)
        wc = tl.minimum(w_ // 2, WC - 1)

        # Gather + dequantise + normalise + input BN: x (BLOCK_P, C_PAD), zero in padding.
        cols = tl.arange(0, C_PAD)
        c_ok = cols < C
        k = tl.load(colk_ptr + cols, mask=c_ok, other=0).to(tl.int64)
        comp = tl.load(colc_ptr + cols, mask=c_ok, other=0)
        scale = tl.load(cols_ptr + cols, mask=c_ok, other=0.0)
        shift = tl.load(colt_ptr + cols, mask=c_ok, other=0.0)
        ok = p_ok[:, None] & c_ok[None, :]
        vy = tl.load(y_ptr + b_[:, None] * sy_b + h_[:, None] * sy_h + w_[:, None] * sy_w + k[None, :] * sy_k,
                     mask=ok & (comp == 0)[None, :], other=0).to(tl.float32)
        vb = tl.load(cb_ptr + b_[:, None] * sb_b + hc[:, None] * sb_h + wc[:, None] * sb_w + k[None, :] * sb_k,
                     mask=ok & (comp == 1)[None, :], other=0).to(tl.float32)
        vr = tl.load(cr_ptr + b_[:, None] * sr_b + hc[:, None] * sr_h + wc[:, None] * sr_w + k[None, :] * sr_k,
                     mask=ok & (comp == 2)[None, :], other=0).to(tl.float32)
        q = tl.load(q_ptr + b_[:, None] * sq_b + comp[None, :] * sq_c + k[None, :], mask=ok, other=0.0)
        x = tl.where(ok, (vy + vb + vr) * q * scale[None, :] + shift[None, :], 0.0)

        # h2 = relu(relu(x @ W1 + b1) @ W2 + b2), conv1 in BLOCK_M column chunks (no M x M tile).
        mcols = tl.arange(0, M_PAD)
        m_ok = mcols < M
        h2 = tl.zeros((BLOCK_P, M_PAD), dtype=tl.float32)
        for m0 in range(0, M, BLOCK_M):
            mc = m0 + tl.arange(0, BLOCK_M)
            mc_ok = mc < M
            w1 = tl.load(w1_ptr + cols[:, None] * M + mc[None, :], mask=c_ok[:, None] & mc_ok[None, :], other=0.0)
            b1 = tl.load(b1_ptr + mc, mask=mc_ok, other=0.0)
            h1 = tl.maximum(tl.dot(x, w1, input_precision="ieee") + b1[None, :], 0.0)
            w2 = tl.load(w2_ptr + mc[:, None] * M + mcols[None, :], mask=mc_ok[:, None] & m_ok[None, :], other=0.0)
            h2 += tl.dot(h1, w2, input_precision="ieee")
        b2 = tl.load(b2_ptr + mcols, mask=m_ok, other=0.0)
        h2 = tl.maximum(h2 + b2[None, :], 0.0)

        # out = relu(h2 @ W3 + x @ Wp + b3 + bp), stored NCHW in BLOCK_O channel chunks.
        hw = h_ * W + w_
        for o0 in range(0, O, BLOCK_O):
            oc = o0 + tl.arange(0, BLOCK_O)
            o_ok = oc < O
            w3 = tl.load(w3_ptr + mcols[:, None] * O + oc[None, :], mask=m_ok[:, None] & o_ok[None, :], other=0.0)
            wp = tl.load(wp_ptr + cols[:, None] * O + oc[None, :], mask=c_ok[:, None] & o_ok[None, :], other=0.0)
            bo = tl.load(bo_ptr + oc, mask=o_ok, other=0.0)
            acc = tl.dot(h2, w3, input_precision="ieee") + tl.dot(x, wp, input_precision="ieee") + bo[None, :]
            acc = tl.maximum(acc, 0.0)
            dst = out_ptr + b_[:, None] * (O * H * W) + oc[None, :].to(tl.int64) * (H * W) + hw[:, None]
            tl.store(dst, acc, mask=p_ok[:, None] & o_ok[None, :])

    return fused_stem_kernel


def _pow2(n: int, minimum: int = 16) -> int:
    return max(minimum, 1 << (max(1, n) - 1).bit_length())


def first_stage_triton(model: nn.Module, blocks: BlockBatch, *, block_p: int | None = None) -> torch.Tensor:
    """The fused Triton kernel: same result as ``first_stage_torch`` in eval mode, ``(B, o, Hb, Wb)`` float32.

    Needs CUDA tensors (or ``TRITON_INTERPRET=1`` set before first use, for CPU tensors), an
    eval-mode model (BatchNorm must use running statistics to be folded) whose parameters are
    on the blocks' device.
    """
    if not triton_available():
        raise RuntimeError("the fused first stage needs triton (pip install 'dctnet[gpu]')")
    if model.training:
        raise RuntimeError("the fused first stage folds BatchNorm running statistics: call model.eval() first")
    layout: DCTLayout = model.layout
    check_block_batch(blocks, layout)
    device = blocks.y.device
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("the Triton first stage runs on CUDA tensors (or on CPU under TRITON_INTERPRET=1)")
    folded = fold_first_stage(model)
    if folded.w1.device != device:
        raise ValueError(f"model is on {folded.w1.device}, blocks on {device}")
    y, cb, cr = blocks.y, blocks.cb, blocks.cr
    qsteps = blocks.qsteps.to(torch.float32).contiguous()
    b, hb, wb, _ = y.shape
    c, m = folded.w1.shape
    o = folded.w3.shape[1]
    out = torch.empty((b, o, hb, wb), dtype=torch.float32, device=device)
    npos = b * hb * wb
    if npos == 0:
        return out
    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    # Interpreted programs cost ~3 ms each whatever their size: use big position blocks there.
    block_p = block_p or (128 if interpret else 32)
    c_pad, m_pad = _pow2(c), _pow2(m)
    block_m = min(32, m_pad)
    block_o = min(64, _pow2(o))
    grid = (-(-npos // block_p),)
    _kernel()[grid](
        y, cb, cr, qsteps, out,
        folded.col_k, folded.col_comp, folded.col_scale, folded.col_shift,
        folded.w1, folded.b1, folded.w2, folded.b2, folded.w3, folded.wp, folded.b_out,
        npos, hb, wb, cb.shape[1], cb.shape[2], c, m, o,
        *y.stride(), *cb.stride(), *cr.stride(), qsteps.stride(0), qsteps.stride(1),
        BLOCK_P=block_p, C_PAD=c_pad, M_PAD=m_pad, BLOCK_M=block_m, BLOCK_O=block_o,
    )
    return out


_warned_no_triton = False


def first_stage(model: nn.Module, blocks: BlockBatch, impl: str = "auto") -> torch.Tensor:
    """Output of ``layer1[0]`` of an "upsampling" DCT ResNet for a ``BlockBatch``: ``(B, o, Hb, Wb)`` float32.

    Args:
        impl: ``"torch"`` (unfused modules; differentiable), ``"triton"`` (the fused kernel; raises
            if it cannot run), or ``"auto"``: Triton for CUDA inputs with the model in eval
            mode, the unfused modules otherwise (a warning says so if Triton is missing on CUDA).
    """
    if impl == "torch":
        return first_stage_torch(model, blocks)
    if impl == "triton":
        return first_stage_triton(model, blocks)
    if impl != "auto":
        raise ValueError(f"impl must be 'auto', 'triton' or 'torch', not {impl!r}")
    if blocks.y.is_cuda and not model.training and supports_fused_stem(model):
        if triton_available():
            return first_stage_triton(model, blocks)
        global _warned_no_triton
        if not _warned_no_triton:
            _warned_no_triton = True
            warnings.warn("triton is not installed: the DCT first stage runs unfused", RuntimeWarning, stacklevel=2)
    return first_stage_torch(model, blocks)
