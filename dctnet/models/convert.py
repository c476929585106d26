"""Pretrained DCT-input models by exact conversion of RGB networks.

The decode path (coefficients -> normalised RGB, :mod:`dctnet.models.decode_path`) is linear
except for the decoder's clamps and rounding.

:func:`from_rgb` folds the linear part into an RGB network's first convolution and its
BatchNorm (eval-mode statistics): a ResNet's 7x7/2 ``conv1`` + ``bn1``, EfficientNet-Lite0's
3x3/2 TensorFlow-"SAME" ``_conv_stem`` + ``_bn0``, or any first convolution with a stride
``s`` dividing 8 and at most 7 pixels of zero padding per side (:class:`ConvertedFirstLayer`).
The input is the ``late_concat`` layout (Y ``(B, nY, H/8, W/8)`` and CbCr ``(B, nCb + nCr,
H/16, W/16)``, dequantised, unnormalised): native 4:2:0 geometry, so no chroma information
is invented or lost and the map stays exact. The convolution turns every 8x8 block into
``r x r`` output positions (``r = 8 / s``: 4 for both networks), so its composition with the
decode path is

* for Y: a convolution over the Y block grid with ``C * r * r`` output channels, pixel-shuffled
  by ``r`` to ``(B, C, H/s, W/s)``; its kernel covers the blocks the convolution's window
  reaches: 3x3 blocks for ResNet's 7x7 with padding 3 (``nn.Conv2d(nY, 1024, 3, padding=1)``),
  2x2 (the block and the next one) for EfficientNet's 3x3 with "SAME" padding (0 before,
  1 after: ``nn.Conv2d(nY, 512, 2)`` after padding the block grid by one at the end);
* for chroma: the triangular upsampling couples each chroma block to four Y-block columns
  (and rows), ``2k - 1 .. 2k + 2``, which is a 4x4 stride-2 transposed convolution over the
  chroma block grid (``nn.ConvTranspose2d(nCb + nCr, C * r * r, 4, stride=2, padding=1)``)
  into the same channels;
* a constant: the level shift and the normalisation's mean (a per-position map, because
  the convolution zero-pads the *normalised* image) plus the folded BatchNorm shift;
* an exact border term: at the image border libjpeg replicates the edge chroma sample
  while the translation-invariant kernel above assumes zeros, and the kernel spreads chroma
  onto the out-of-image pixels that the convolution sees as zero padding. The difference
  lives on the pixel frame {-1, 0, H-1, H} x {-1, 0, W-1, W}; it is computed from the chroma
  samples and put through the convolution on the thin output strips it touches (the output
  rows and columns whose window reaches the border: 2 per side for ResNet, 1 for
  EfficientNet), so the whole layer equals ``bn(conv(decode(coefficients)))`` up to float
  rounding.

With ``n < 64`` bands the dropped coefficients have no weights: the Y conv and the chroma
transposed conv have ``n`` input channels per component, so their MACs are proportional to
``n`` (see :func:`stem_macs`). Everything after the BatchNorm (ReLU / ReLU6, max-pool, the
stages or blocks, the classifier) is the RGB network's, unchanged.
"""

from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..ops.layout import DCTLayout
from .resolve import create_model
from .decode_path import (YCC_TO_RGB, ChromaDecoder, check_inputs, converted_layout, fancy_upsample2x, idct_basis,
                          idct_planes, tri_axis)
from .checkpoint import Checkpoint, load_weights
from .efficientnet import LITE0_SHA256, EfficientNetLite, efficientnet_lite0, lite0_weights_path
from .registry import register_model
from .resnet import InputConfig, ResNet
from .resnet_dct import split_late_concat  # converted models take late_concat inputs

__all__ = ["ConvertedFirstLayer", "ConvertedStem", "conv_geometry", "efficientnet_lite0_dct", "prefer_factored",
           "efficientnet_lite0_dct_weights", "from_rgb", "resnet_from_rgb", "stem_macs"]

def _conv1_affine(conv1: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``float64`` weight ``(C, 3, k, k)`` and bias ``(C,)`` of ``bn(conv1(x))`` in eval mode."""
    w = conv1.weight.detach().double()
    b = conv1.bias.detach().double() if conv1.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    if bn is not None:
        scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.detach().double() + bn.eps)
        w = w * scale[:, None, None, None]
        b = (b - bn.running_mean.detach().double()) * scale + bn.bias.detach().double()
    return w, b


def conv_geometry(conv: nn.Conv2d) -> tuple[tuple[int, int], int, tuple[int, int, int, int]]:
    """``(kernel (kh, kw), stride, padding (top, bottom, left, right))`` of a first convolution
    on an image whose sides are multiples of 16 pixels (whole 4:2:0 macroblocks).

    Handles ``nn.Conv2d`` with integer or ``"valid"``/``"same"`` padding and TensorFlow "SAME"
    convolutions that compute their padding per input (``padding_for(h, w)``, e.g.
    :class:`~dctnet.models.efficientnet.Conv2dSame`; for sides that are multiples of the
    stride it does not depend on the size).
    """
    kh, kw = conv.kernel_size
    if conv.stride[0] != conv.stride[1]:
        raise ValueError(f"the first convolution needs the same stride on both axes, got {conv}")
    stride = conv.stride[0]
    if hasattr(conv, "padding_for"):
        pads = tuple(int(p) for p in conv.padding_for(16, 16))
    elif conv.padding == "valid":
        pads = (0, 0, 0, 0)
    elif conv.padding == "same":     # PyTorch's (stride 1 only): the odd one at the end
        pads = ((kh - 1) // 2, kh // 2, (kw - 1) // 2, kw // 2)
    else:
        ph, pw = conv.padding
        pads = (ph, ph, pw, pw)
    return (kh, kw), stride, pads


def _axis_plan(kernel: int, stride: int, before: int, after: int) -> dict:
    """Per-axis bookkeeping of a first convolution over whole 8x8 blocks (see
    :class:`ConvertedFirstLayer`): ``r`` outputs per block; the Y kernel's block taps
    ``lo`` before and ``hi`` after the output's own block; the output rows that reach the
    frame at the start (``n_start``) and at the end (``n_end``); ``end`` = how far the last
    output's window reaches past the last pixel (``after`` minus padding never read)."""
    end = kernel - stride - before
    return {"r": 8 // stride, "lo": -(-before // 8), "hi": (7 + end) // 8, "n_start": before // stride + 1,
            "n_end": end // stride + 1, "end": end}


class ConvertedFirstLayer(ChromaDecoder):
    """``bn(conv(normalise(decode(y, cbcr))))`` of an RGB network's first convolution (any
    kernel, stride 1, 2, 4 or 8, zero padding up to 7 pixels per side, including TensorFlow
    "SAME"'s asymmetric padding; groups 1) as one layer over the block grid (see the module
    docstring). The default geometry is ResNet's ``conv1``: 7x7, stride 2, padding 3.

    With ``s`` the stride and ``r = 8 / s`` outputs per block and axis: parameters
    ``conv_y`` (Conv2d nY -> r*r*C over the Y block grid; 3x3 for ResNet, 2x2 for
    EfficientNet's 3x3/2 "SAME" stem), ``deconv_c`` (ConvTranspose2d nCb + nCr -> r*r*C, 4x4
    stride 2), ``bias (C,)``. Buffers: ``frame_weight (C, 3, kh, kw)`` (the convolution scaled
    to act on raw pixel levels, for the border term), ``const_taps (C, kh, kw)`` (its response
    to the constant image, for the per-position constant), ``edge_basis_cb (64, nCb)``,
    ``edge_basis_cr (64, nCr)`` (float32: the chroma pixel patterns of the border term; the
    kept bands' IDCT basis, or with a folded estimate of the dropped bands that basis plus
    the dropped ones' times the estimate, see :mod:`dctnet.models.calibrate`), ``pixel_basis_y
    (64, nY)`` (the same for Y, used by the factored form). ``factored`` (bool, default False,
    not saved): run :meth:`forward_factored`, the same map computed as IDCT + decode + the RGB
    convolution, which is cheaper on CPU.

    ``forward(y (B, nY, h, w), cbcr (B, nCb + nCr, h/2, w/2)) -> (B, C, r*h, r*w)``; ``h, w``
    even (whole 16x16 macroblocks), at least 2.

    Raises:
        ValueError: a geometry it cannot convert exactly (the output must have ``H / s``
            positions on an ``H``-pixel side: total padding between ``k - s`` and ``k - 1``).
    """

    def __init__(self, layout: DCTLayout, out_channels: int, kernel_size: int | tuple[int, int] = 7,
                 stride: int = 2, padding: int | tuple[int, int, int, int] = 3):
        super().__init__(layout)
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        pads = (padding,) * 4 if isinstance(padding, int) else tuple(int(p) for p in padding)
        geometry = f"{kh}x{kw} stride-{stride} convolution with padding (top, bottom, left, right) {pads}"
        if stride not in (1, 2, 4, 8) or len(pads) != 4 or not all(0 <= p <= 7 for p in pads) \
                or not kh - stride <= pads[0] + pads[1] <= kh - 1 or not kw - stride <= pads[2] + pads[3] <= kw - 1:
            raise ValueError(f"cannot convert a {geometry} exactly: the stride must divide 8, each padding be 0..7 "
                             "and the output have H/stride positions (total padding k - stride .. k - 1)")
        self.kernel_size, self.stride, self.padding = (kh, kw), stride, pads
        self.geometry = geometry
        self.plan_y = _axis_plan(kh, stride, pads[0], pads[1])
        self.plan_x = _axis_plan(kw, stride, pads[2], pads[3])
        r = 8 // stride
        self.r = r
        self.out_channels = out_channels
        cr = r * r * out_channels
        ky = (self.plan_y["lo"] + self.plan_y["hi"] + 1, self.plan_x["lo"] + self.plan_x["hi"] + 1)
        # Symmetric block padding (ResNet: 1) stays the convolution's own; otherwise F.pad.
        sym = self.plan_y["lo"] == self.plan_y["hi"] and self.plan_x["lo"] == self.plan_x["hi"]
        self._y_pad = None if sym else (self.plan_x["lo"], self.plan_x["hi"], self.plan_y["lo"], self.plan_y["hi"])
        self.conv_y = nn.Conv2d(self.ny, cr, ky, padding=(self.plan_y["lo"], self.plan_x["lo"]) if sym else 0,
                                bias=False)
        self.deconv_c = nn.ConvTranspose2d(self.ncb + self.ncr, cr, 4, stride=2, padding=1, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("frame_weight", torch.zeros(out_channels, 3, kh, kw))
        self.register_buffer("const_taps", torch.zeros(out_channels, kh, kw))
        self.register_buffer("chroma_to_rgb", torch.from_numpy(YCC_TO_RGB[:, 1:].T.copy()).float(), persistent=False)
        # The border term's chroma pixel patterns: the kept bands' IDCT basis unless a linear
        # estimate of the dropped bands is folded in (dctnet.models.calibrate); persistent,
        # checkpoints without them load the plain basis (see _load_from_state_dict).
        self.register_buffer("edge_basis_cb", self.basis_cb.clone())
        self.register_buffer("edge_basis_cr", self.basis_cr.clone())
        # The same for Y, used only by the factored form (forward_factored).
        self.register_buffer("pixel_basis_y", self.basis_y.clone())
        #: Run :meth:`forward_factored` instead of the folded convolutions (same function; see there).
        self.factored = False
        self._const_cache: dict = {}

    # --- building from the first convolution ----------------------------------------------

    def _conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The RGB first convolution (its zero padding, its stride) with ``weight``."""
        top, bottom, left, right = self.padding
        return F.conv2d(F.pad(x, (left, right, top, bottom)), weight, stride=self.stride)

    @torch.no_grad()
    def fill_from(self, conv1: nn.Conv2d, bn: nn.BatchNorm2d | None, mean: Sequence[float],
                  std: Sequence[float]) -> "ConvertedFirstLayer":
        """Compute every weight from an RGB first convolution ``conv1`` (+ ``bn``, eval
        statistics) and the network's input normalisation, in float64. ``conv1`` must have
        this layer's geometry (:func:`conv_geometry`), 3 input channels, groups and dilation 1."""
        if conv1.in_channels != 3 or conv1.groups != 1 or conv1.dilation != (1, 1) \
                or getattr(conv1, "padding_mode", "zeros") != "zeros" \
                or conv_geometry(conv1) != (self.kernel_size, self.stride, self.padding):
            raise ValueError(f"this layer converts an RGB {self.geometry} (groups 1, zero padding), got {conv1}")
        if conv1.out_channels != self.out_channels:
            raise ValueError(f"conv1 has {conv1.out_channels} outputs, this layer {self.out_channels}")
        w, b = _conv1_affine(conv1, bn)
        std64 = torch.tensor([float(s) for s in std], dtype=torch.float64)
        mean64 = torch.tensor([float(m) for m in mean], dtype=torch.float64)
        w_pix = w / (255.0 * std64)[None, :, None, None]         # acts on pixel levels 0..255
        m = torch.from_numpy(YCC_TO_RGB)                         # (rgb, ycc)
        w_ycc = torch.einsum("ocij,cd->odij", w_pix, m)           # (C, 3 [Y, Cb', Cr'], kh, kw)
        c, r = self.out_channels, self.r
        by, bcb, bcr = self.layout.band_indices()
        py, px = self.plan_y, self.plan_x
        ky, kx = py["lo"] + py["hi"] + 1, px["lo"] + px["hi"] + 1

        # Y: a unit coefficient k at block (1 + i, 1 + j) of a (ky + 2) x (kx + 2)-block image
        # is tap (i, j) of the output block (1 + lo_y, 1 + lo_x).
        basis = torch.from_numpy(idct_basis(by))                 # (64, nY)
        ny = len(by)
        gy, gx = ky + 2, kx + 2
        probe = torch.zeros(ny, ky, kx, 8 * gy, 8 * gx, dtype=torch.float64)
        pat = basis.T.reshape(ny, 8, 8)
        for i in range(ky):
            for j in range(kx):
                probe[:, i, j, 8 * (1 + i):8 * (2 + i), 8 * (1 + j):8 * (2 + j)] = pat
        resp = self._conv(probe.reshape(ny * ky * kx, 1, 8 * gy, 8 * gx), w_ycc[:, :1])   # (., C, r*gy, r*gx)
        oy, ox = r * (1 + py["lo"]), r * (1 + px["lo"])
        resp = resp[:, :, oy:oy + r, ox:ox + r].reshape(ny, ky, kx, c, r, r)
        self.conv_y.weight.copy_(resp.permute(3, 4, 5, 0, 1, 2).reshape(r * r * c, ny, ky, kx).float())

        # Chroma: a unit coefficient at chroma block (2, 2) of a 6x6-block plane, upsampled with
        # zero edges (interior: translation invariant), then the convolution; Y blocks 3..6
        # (outputs r*3 .. r*7) are the transposed convolution's taps 0..3.
        weights = []
        for comp, bands in ((1, bcb), (2, bcr)):
            nb = len(bands)
            pat = torch.from_numpy(idct_basis(bands)).T.reshape(nb, 1, 8, 8)
            plane = torch.zeros(nb, 1, 48, 48, dtype=torch.float64)
            plane[:, :, 16:24, 16:24] = pat
            up = fancy_upsample2x(plane, "replicate")            # the edges are far from the probe
            out = self._conv(up, w_ycc[:, comp:comp + 1])         # (nb, C, 12r, 12r)
            out = out[:, :, 3 * r:7 * r, 3 * r:7 * r].reshape(nb, c, 4, r, 4, r)   # (k, o, ty, dy, tx, dx)
            weights.append(out.permute(0, 1, 3, 5, 2, 4).reshape(nb, r * r * c, 4, 4))
        self.deconv_c.weight.copy_(torch.cat(weights, 0).float())

        self.bias.copy_(b.float())
        self.frame_weight.copy_(w_pix.float())
        level = (128.0 / 255.0 - mean64) / std64                  # normalised value of a mid-grey pixel
        self.const_taps.copy_(torch.einsum("ocij,c->oij", w, level).float())
        self._const_cache.clear()
        return self

    # --- running ----------------------------------------------------------------------

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self._const_cache.clear()
        for name, comp in (("edge_basis_cb", 1), ("edge_basis_cr", 2), ("pixel_basis_y", 0)):
            if prefix + name not in state_dict and not getattr(self, name).is_meta:   # older checkpoints
                state_dict[prefix + name] = torch.from_numpy(idct_basis(self.layout.band_indices()[comp])).float()
        return super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _apply(self, fn, *args, **kwargs):
        self._const_cache.clear()
        return super()._apply(fn, *args, **kwargs)

    def constant_map(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """``(C, h/s, w/s)``: the convolution's response to the mid-grey image of ``h x w``
        pixels (zero padded outside). Cached per size."""
        s = self.stride
        if like.is_meta or self.const_taps.is_meta:
            return torch.zeros(self.out_channels, h // s, w // s, device=like.device, dtype=like.dtype)
        key = (h, w, like.device, like.dtype, self.const_taps._version)
        hit = self._const_cache.get(key)
        if hit is not None:
            return hit
        taps = self.const_taps.detach().double().cpu().numpy()
        kh, kw = self.kernel_size

        def inside(n: int, k: int, before: int) -> np.ndarray:   # (n/s, k): tap j of output o reads s*o - before + j
            p = s * np.arange(n // s)[:, None] - before + np.arange(k)[None, :]
            return ((p >= 0) & (p < n)).astype(np.float64)

        cmap = np.einsum("okl,yk,xl->oyx", taps, inside(h, kh, self.padding[0]), inside(w, kw, self.padding[2]))
        out = torch.from_numpy(cmap).to(device=like.device, dtype=like.dtype)
        self._const_cache[key] = out
        return out

    def _edge_samples(self, cbcr: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Chroma samples on the plane's border, centred, Cb and Cr stacked on dim 1:
        first and last sample rows ``(B, 2, w2)``, first and last sample columns ``(B, 2, h2)``
        (pixel patterns ``edge_basis_cb``, ``edge_basis_cr``: ``(64, n)`` per component)."""
        out = []
        for part, basis in ((cbcr[:, :self.ncb], self.edge_basis_cb), (cbcr[:, self.ncb:], self.edge_basis_cr)):
            pat = basis.to(part.dtype).reshape(8, 8, -1)                  # (y, x, k)
            b, _, hc, wc = part.shape
            top = torch.einsum("bkw,xk->bwx", part[:, :, 0], pat[0]).reshape(b, 8 * wc)
            bottom = torch.einsum("bkw,xk->bwx", part[:, :, -1], pat[7]).reshape(b, 8 * wc)
            left = torch.einsum("bkh,yk->bhy", part[:, :, :, 0], pat[:, 0]).reshape(b, 8 * hc)
            right = torch.einsum("bkh,yk->bhy", part[:, :, :, -1], pat[:, 7]).reshape(b, 8 * hc)
            out.append((top, bottom, left, right))
        return tuple(torch.stack([cb, cr], 1) for cb, cr in zip(*out))

    def strips(self, h: int, w: int) -> list[tuple[int, int, int, int, int, int, int, int]]:
        """The output rectangles the border term touches on an ``h x w``-pixel image and the
        pixel windows they read: ``(out_row, n_rows, out_col, n_cols, px_row, px_rows,
        px_col, px_cols)`` for the top and bottom strips (all columns; their windows span the
        padded width) and the left and right strips (the rows in between)."""
        s, (kh, kw) = self.stride, self.kernel_size
        top, _, left, right = self.padding
        py, px = self.plan_y, self.plan_x
        ho, wo = h // s, w // s
        nt, nb, nl, nr = py["n_start"], py["n_end"], px["n_start"], px["n_end"]

        def rows(o0: int, n: int) -> tuple[int, int]:
            return s * o0 - top, s * (n - 1) + kh

        def cols(o0: int, n: int) -> tuple[int, int]:
            return s * o0 - left, s * (n - 1) + kw

        full = (0, wo, -left, w + left + right)   # every output column; the padded width
        out = [(0, nt, *full[:2], *rows(0, nt), *full[2:])]
        if nb > 0:
            out.append((ho - nb, nb, *full[:2], *rows(ho - nb, nb), *full[2:]))
        mid = ho - nt - nb
        if mid > 0:
            out.append((nt, mid, 0, nl, *rows(nt, mid), *cols(0, nl)))
            if nr > 0:
                out.append((nt, mid, wo - nr, nr, *rows(nt, mid), *cols(wo - nr, nr)))
        return out

    def border_term(self, cbcr: torch.Tensor, h: int, w: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """The exact correction on the output frame (the output rows and columns whose window
        reaches the image border) that turns the translation-invariant part into
        ``bn(conv(decode(.)))``: added into ``out`` (``(B, C, h/s, w/s)``) if given, else
        returned as a tensor that is zero off the frame.

        With S the chroma samples, the decoder's upsampling with replicated edges minus the
        zero-edged one used by ``deconv_c`` is, per axis, +1/4 of the edge sample on the edge
        pixel and -1/4 of it on the pixel just outside; in 2-D that is a frame of pixels
        {-1, 0, h-1, h} x {-1, 0, w-1, w}, built here from the border samples only and put
        through the convolution on the strips it reaches (:meth:`strips`).
        """
        top, bottom, left, right = self._edge_samples(cbcr)
        bsz = cbcr.shape[0]

        def up_zero(line):      # (B, 2, n) -> (B, 2, 2n + 2): pixels -1 .. 2n, zero samples outside
            return tri_axis(F.pad(line, (1, 1)), 2)

        def up_rep(line):       # (B, 2, n) -> (B, 2, 2n): the decoder's, edges replicated
            return tri_axis(F.pad(line, (1, 1), mode="replicate"), 2)[:, :, 1:-1]

        q = 0.25
        row_t, row_b = up_zero(top), up_zero(bottom)                      # columns -1..w
        col_l, col_r = up_rep(left), up_rep(right)                        # rows 0..h-1
        frame_rows = ((-1, -q, row_t), (0, q, row_t), (h - 1, q, row_b), (h, -q, row_b))
        frame_cols = ((-1, -q, col_l), (0, q, col_l), (w - 1, q, col_r), (w, -q, col_r))

        def window(r0: int, nr: int, c0: int, nc: int) -> torch.Tensor:
            """The frame's chroma on pixels [r0, r0 + nr) x [c0, c0 + nc): (B, 2, nr, nc)."""
            win = cbcr.new_zeros(bsz, 2, nr, nc)
            lo, hi = max(c0, -1), min(c0 + nc, w + 1)
            for rho, sign, line in frame_rows:
                if r0 <= rho < r0 + nr and lo < hi:
                    win[:, :, rho - r0, lo - c0:hi - c0] += sign * line[:, :, lo + 1:hi + 1]
            lo, hi = max(r0, 0), min(r0 + nr, h)
            for kappa, sign, line in frame_cols:
                if c0 <= kappa < c0 + nc and lo < hi:
                    win[:, :, lo - r0:hi - r0, kappa - c0] += sign * line[:, :, lo:hi]
            return win

        if out is None:
            out = torch.zeros(bsz, self.out_channels, h // self.stride, w // self.stride, device=cbcr.device,
                              dtype=cbcr.dtype)
        m = self.chroma_to_rgb.to(cbcr.dtype)
        wt = self.frame_weight.to(cbcr.dtype)
        for o_r, n_r, o_c, n_c, r0, nr, c0, nc in self.strips(h, w):
            rgb = torch.einsum("bkhw,kr->brhw", window(r0, nr, c0, nc), m)
            out[:, :, o_r:o_r + n_r, o_c:o_c + n_c] += F.conv2d(rgb, wt, stride=self.stride)
        return out

    def forward_factored(self, y: torch.Tensor, cbcr: torch.Tensor | None = None) -> torch.Tensor:
        """The same map as :meth:`forward`, run in its factors instead of folded: per-block
        IDCT of the kept bands (``pixel_basis_y``, ``edge_basis_cb``, ``edge_basis_cr``: with a
        folded estimate of the dropped bands, kept patterns + dropped patterns @ estimate),
        libjpeg's fancy upsampling of the chroma, YCbCr -> RGB (pixel levels - 128), then the
        RGB convolution with its zero padding (``frame_weight``), the mid-grey constant map
        and the bias. The IDCT costs ``nY + (nCb + nCr) / 4`` MACs per pixel, then the RGB
        convolution's; the folded form costs ``64 * C`` per Y band and block (2x2 taps,
        ``16 * C`` outputs). On CPU the layer is 2.5-6x faster, the whole EfficientNet-Lite0
        3-14% (``scripts/bench_stem.py``).

        Uses ``conv_y`` / ``deconv_c`` not at all: valid for conversions, the folded ``lsq`` /
        ``wiener`` estimates and the ``stem`` step of :mod:`dctnet.models.calibrate` (which
        update the bases and ``frame_weight`` alike), not after ``distill``, nor for calibrated
        checkpoints written before ``pixel_basis_y`` existed (they load the plain Y basis).
        ``(B, nY, h, w), (B, nCb + nCr, h/2, w/2) -> (B, C, 8h/s, 8w/s)``."""
        y, cbcr = split_late_concat(y, cbcr)
        check_inputs(y, cbcr, self.ny, self.ncb + self.ncr)
        luma = idct_planes(y, self.pixel_basis_y)                                   # (B, 1, H, W), centred
        chroma = torch.cat([idct_planes(cbcr[:, :self.ncb], self.edge_basis_cb),
                            idct_planes(cbcr[:, self.ncb:], self.edge_basis_cr)], 1)
        chroma = fancy_upsample2x(chroma, "replicate")
        m = torch.from_numpy(YCC_TO_RGB).to(dtype=y.dtype, device=y.device)          # (rgb, ycc)
        rgb = luma * m[:, 0].view(1, 3, 1, 1) + torch.einsum("rc,bchw->brhw", m[:, 1:], chroma)
        h, w = 8 * y.shape[2], 8 * y.shape[3]
        z = self._conv(rgb, self.frame_weight.to(y.dtype))
        z += self.constant_map(h, w, z)
        return z + self.bias.view(1, -1, 1, 1).to(z.dtype)

    @torch.no_grad()
    def factored_matches(self, rtol: float = 1e-4) -> bool:
        """Whether :meth:`forward_factored` still computes :meth:`forward` (the folded
        convolutions are the fold of the bases: a conversion, a folded estimate; not after
        ``distill`` or training), checked on a fixed random input of 4x4 blocks: max
        difference <= ``rtol`` times the output's largest magnitude."""
        g = torch.Generator().manual_seed(0)
        p = next(self.parameters())
        y = (torch.randn(1, self.ny, 4, 4, generator=g) * 100).to(p.device, p.dtype)
        cbcr = (torch.randn(1, self.ncb + self.ncr, 2, 2, generator=g) * 50).to(p.device, p.dtype)
        folded = self.forward_folded(y, cbcr)
        factored = self.forward_factored(y, cbcr)
        return bool((folded - factored).abs().max() <= rtol * folded.abs().max())

    def forward(self, y: torch.Tensor, cbcr: torch.Tensor | None = None) -> torch.Tensor:
        if self.factored:
            return self.forward_factored(y, cbcr)
        return self.forward_folded(y, cbcr)

    def forward_folded(self, y: torch.Tensor, cbcr: torch.Tensor | None = None) -> torch.Tensor:
        """The folded form: ``conv_y`` over the Y block grid, ``deconv_c`` over the chroma, the
        border term and the constant (what :meth:`forward` runs unless ``factored``)."""
        y, cbcr = split_late_concat(y, cbcr)
        check_inputs(y, cbcr, self.ny, self.ncb + self.ncr)
        if y.shape[2] < 2 or y.shape[3] < 2:
            raise ValueError(f"the y block grid {tuple(y.shape[2:])} is too small (at least one 16x16 macroblock)")
        h, w = 8 * y.shape[2], 8 * y.shape[3]
        z = self.conv_y(y if self._y_pad is None else F.pad(y, self._y_pad))
        z = z + self.deconv_c(cbcr) if torch.is_grad_enabled() else z.add_(self.deconv_c(cbcr))
        z = F.pixel_shuffle(z, self.r) if self.r > 1 else z
        z += self.constant_map(h, w, z)
        z += self.bias.view(1, -1, 1, 1).to(z.dtype)
        return self.border_term(cbcr, h, w, out=z)

    def macs(self, image_size: int) -> dict[str, int]:
        """Multiply-accumulates for one ``image_size`` x ``image_size`` image (a multiple of
        16), as torch runs them: ``{"conv_y", "deconv_c", "border", "total", "rgb_conv1"}``
        (``rgb_conv1``: the RGB convolution it replaces)."""
        c, r, (kh, kw) = self.out_channels, self.r, self.kernel_size
        hb = image_size // 8
        conv_y = self.ny * self.conv_y.kernel_size[0] * self.conv_y.kernel_size[1] * r * r * c * hb * hb
        deconv = (self.ncb + self.ncr) * 16 * r * r * c * (hb // 2) ** 2
        # border: the border samples (one row/column of every edge chroma block), their
        # colour conversion on the strips' pixel windows, and the convolution on the strips
        edge = (self.ncb + self.ncr) * 8 * 2 * 2 * (hb // 2)
        strips = self.strips(image_size, image_size)
        colour = 2 * 3 * sum(nr * nc for *_, nr, _, nc in strips)
        conv = c * 3 * kh * kw * sum(n_r * n_c for _, n_r, _, n_c, *_ in strips)
        border = edge + colour + conv
        ho = image_size // self.stride
        return {"conv_y": conv_y, "deconv_c": deconv, "border": border, "total": conv_y + deconv + border,
                "rgb_conv1": c * 3 * kh * kw * ho * ho}


class ConvertedStem(nn.Module):
    """Converted first layer, then the RGB network's ReLU and max-pool. Children are
    registered flat on the ResNet (``stem_conv``, ``relu``, ``maxpool``)."""

    def __init__(self, first: ConvertedFirstLayer, relu: nn.Module, maxpool: nn.Module):
        super().__init__()
        self.out_channels = first.out_channels
        self.stem_conv = first
        self.relu = relu
        self.maxpool = maxpool

    def forward(self, y, cbcr=None):
        return self.maxpool(self.relu(self.stem_conv(y, cbcr)))


def prefer_factored(model: nn.Module) -> int:
    """Run every :class:`ConvertedFirstLayer` of an inference model in its factored form where
    that is still the same map (:meth:`ConvertedFirstLayer.factored_matches`): on CPU the
    layer is 2.5-6x faster, EfficientNet-Lite0 9-13% as a whole. For models that are only
    run, never trained (``factored`` ignores ``conv_y`` / ``deconv_c``); :class:`dctnet.Classifier`
    applies it to the models it builds itself. Returns the number of layers switched."""
    switched = 0
    for m in model.modules():
        if isinstance(m, ConvertedFirstLayer) and not m.factored and m.factored_matches():
            m.factored = True
            switched += 1
    return switched


def _converted_input_config(cfg: InputConfig, layout: DCTLayout) -> InputConfig:
    ny, ncb, ncr = layout.channels_per_component
    h, w = cfg.image_size
    return InputConfig((h, w), ((ny, h // 8, w // 8), (ncb + ncr, h // 16, w // 16)))


def _bands_option(layout: DCTLayout):
    return layout.bands if isinstance(layout.bands, int) else [list(b) for b in layout.bands]


def from_rgb(model: nn.Module, layout: DCTLayout | int = 64, *, copy_model: bool = True) -> nn.Module:
    """A DCT-input copy of an RGB network whose first layer is ``bn(conv(decode(.)))``.

    Args:
        model: an RGB network of the registry: a ResNet (``conv1`` 7x7/2, ``bn1``, ``relu``,
            ``maxpool``) or an :class:`~dctnet.models.efficientnet.EfficientNetLite` (``_conv_stem``
            3x3/2 TF "SAME", ``_bn0``), with ``input_config`` giving its mean and std. Any
            first convolution :class:`ConvertedFirstLayer` takes works for a model with
            ``first_layer()`` / ``replace_first_layer(layer)``. BatchNorm is folded with its
            running statistics: the result is exact in eval mode.
        layout: :func:`converted_layout` or ``n``: keep the n lowest zigzag bands of every
            component (``late_concat``, dequantised, unnormalised).
        copy_model: work on a deep copy (default) instead of modifying ``model``.

    Returns:
        The converted network: ``forward(y (B, nY, H/8, W/8), cbcr (B, nCb + nCr, H/16,
        W/16))`` -> logits; ``layout`` set; ``input_config`` gives the two input shapes;
        ``model_name`` ``"resnet_from_rgb"`` (ResNets, with ``converted_from`` the RGB
        model's name) or ``"<rgb name>_dct"`` (``efficientnet_lite0_dct``), so that
        :func:`~dctnet.models.save_checkpoint` writes a checkpoint ``load_model`` rebuilds.
    """
    if isinstance(layout, (int, np.integer)):
        layout = converted_layout(int(layout))
    if getattr(model, "layout", None) is not None:
        raise ValueError(f"from_rgb needs an RGB network, got {type(model).__name__} (already a DCT model)")
    generic = hasattr(model, "replace_first_layer") and hasattr(model, "first_layer")
    if not generic and (not isinstance(model, ResNet) or not hasattr(model, "conv1")):
        raise ValueError(f"from_rgb needs an RGB ResNet or EfficientNet-Lite from the registry, got "
                         f"{type(model).__name__}")
    cfg = getattr(model, "input_config", None)
    if cfg is None or cfg.mean is None:
        raise ValueError("from_rgb needs the RGB model's input normalisation (model.input_config.mean/std)")
    net = copy.deepcopy(model) if copy_model else model
    conv, bn = net.first_layer() if generic else (net.conv1, net.bn1)
    kernel, stride, padding = conv_geometry(conv)
    first = ConvertedFirstLayer(layout, conv.out_channels, kernel, stride, padding)
    if not conv.weight.is_meta:
        first.fill_from(conv, bn, cfg.mean, cfg.std)
    first = first.to(device=conv.weight.device)
    if generic:
        net.replace_first_layer(first)
        net.converted_from = getattr(model, "model_name", None) or "efficientnet_lite0"
        net.model_name = f"{net.converted_from}_dct"
        net.model_kwargs = {"bands": _bands_option(layout)}
    else:
        stem = ConvertedStem(first, net.relu, net.maxpool)
        for name in list(net._stem_names):
            delattr(net, name)
        for name, module in stem.named_children():
            net.add_module(name, module)
        net._stem_names = [name for name, _ in stem.named_children()]
        object.__setattr__(net, "_stem", stem)
        net.converted_from = getattr(model, "model_name", None)
        net.model_name = "resnet_from_rgb"
        net.model_kwargs = {"base": net.converted_from or "resnet50", "bands": _bands_option(layout)}
    net.layout = layout
    net.input_config = _converted_input_config(cfg, layout)
    return net.eval()


@register_model
def resnet_from_rgb(base: str = "resnet50", bands=64, num_classes: int = 1000, **kwargs) -> ResNet:
    """An RGB ResNet (``base``, a registry name) converted to the ``late_concat`` DCT layout
    with ``bands`` (see :func:`from_rgb`). Built from the RGB builder's random initialisation;
    load a checkpoint written by ``dctnet convert`` to get real weights."""
    rgb = create_model(base, num_classes=num_classes, weights=False, **kwargs)
    if getattr(rgb, "layout", None) is not None or not isinstance(rgb, ResNet):
        raise ValueError(f"resnet_from_rgb converts RGB ResNets; {base!r} is "
                         + ("a DCT model" if getattr(rgb, "layout", None) is not None else type(rgb).__name__))
    return from_rgb(rgb, converted_layout(bands), copy_model=False)


_CONVERTED: dict[tuple, Checkpoint] = {}


def efficientnet_lite0_dct_weights(bands=64, **options) -> Checkpoint:
    """Default weights of ``efficientnet_lite0_dct``: the pretrained RGB weights
    (:func:`~dctnet.models.efficientnet.lite0_weights_path`, SHA-256 checked) converted by
    :func:`from_rgb` at load time, as an in-memory dctnet checkpoint (model, ``bands``,
    layout, state dict; ``source`` is the RGB file). Cached per band selection; builder
    options other than ``bands`` do not change the weights."""
    path = lite0_weights_path()
    layout = converted_layout(bands)
    key = (path, LITE0_SHA256, layout.band_indices())
    hit = _CONVERTED.get(key)
    if hit is None:
        with torch.device("cpu"), torch.no_grad():   # never on a caller's default device (meta)
            rgb = efficientnet_lite0()
            rgb.model_name = "efficientnet_lite0"
            load_weights(rgb, path)
            dct = from_rgb(rgb.eval(), layout, copy_model=False)
        hit = Checkpoint(state_dict={k: v.detach().clone() for k, v in dct.state_dict().items()},
                         model=dct.model_name, model_kwargs=dict(dct.model_kwargs), layout=layout,
                         extra={"converted_from": "efficientnet_lite0", "rgb_sha256": LITE0_SHA256}, source=path)
        _CONVERTED[key] = hit
    return hit


@register_model(default_weights=efficientnet_lite0_dct_weights)
def efficientnet_lite0_dct(bands=64, num_classes: int = 1000, **kwargs) -> EfficientNetLite:
    """EfficientNet-Lite0 converted exactly to the ``late_concat`` DCT layout with ``bands``
    (1..64 lowest zigzag bands per component, or per-component lists; see :func:`from_rgb`):
    the 3x3/2 "SAME" stem and ``_bn0`` become a :class:`ConvertedFirstLayer` (``stem_conv``),
    the rest is the RGB network. Default weights (``resolve("efficientnet_lite0_dct",
    bands=n)``): the pretrained RGB weights converted at load time
    (:func:`efficientnet_lite0_dct_weights`); ``weights=False``: the conversion of a random
    initialisation. ``kwargs``: :func:`~dctnet.models.efficientnet.efficientnet_lite0`'s."""
    rgb = efficientnet_lite0(num_classes=num_classes, **kwargs)
    rgb.model_name = "efficientnet_lite0"
    return from_rgb(rgb, converted_layout(bands), copy_model=False)


def stem_macs(layout: DCTLayout | int, image_size: int = 224, out_channels: int = 64,
              kernel_size: int | tuple[int, int] = 7, stride: int = 2,
              padding: int | tuple[int, int, int, int] = 3) -> dict[str, int]:
    """Multiply-accumulates of the converted first layer for one ``image_size`` image.

    ``{"conv_y", "deconv_c", "border", "total", "rgb_conv1"}``: the Y conv and the chroma
    transposed conv (dense, as torch runs them), the border term, and for comparison the RGB
    first convolution they replace (square images). The defaults are ResNet's ``conv1``
    (7x7/2, padding 3, 64 channels); EfficientNet-Lite0's stem is ``out_channels=32,
    kernel_size=3, stride=2, padding=(0, 1, 0, 1)`` (:func:`conv_geometry`).
    """
    if isinstance(layout, (int, np.integer)):
        layout = converted_layout(int(layout))
    with torch.device("meta"):
        layer = ConvertedFirstLayer(layout, out_channels, kernel_size, stride, padding)
    return layer.macs(image_size)
