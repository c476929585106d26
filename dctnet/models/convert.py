"""Pretrained DCT-input models by exact conversion of RGB networks.

The decode path (coefficients -> normalised RGB, :mod:`dctnet.models.decode_path`) is linear
except for the decoder's clamps and rounding.

:func:`from_rgb` folds the linear part into a torch ResNet's first convolution and its
BatchNorm (eval-mode statistics). The input is the ``late_concat`` layout (Y ``(B, nY, H/8,
W/8)`` and CbCr ``(B, nCb + nCr, H/16, W/16)``, dequantised, unnormalised): native 4:2:0
geometry, so no chroma information is invented or lost and the map stays exact. The 7x7/2
``conv1`` turns every 8x8 block into 4x4 output positions, so its composition with the
decode path is

* for Y: a 3x3 convolution over the Y block grid with ``64 * 16`` output channels
  (``nn.Conv2d(nY, 1024, 3, padding=1)``), pixel-shuffled by 4 to ``(B, 64, H/2, W/2)``;
* for chroma: the triangular upsampling couples each chroma block to four Y-block columns
  (and rows), ``2k - 1 .. 2k + 2``, which is a 4x4 stride-2 transposed convolution over the
  chroma block grid (``nn.ConvTranspose2d(nCb + nCr, 1024, 4, stride=2, padding=1)``) into
  the same 1024 channels;
* a constant: the level shift and the normalisation's mean (a per-position map, because
  ``conv1`` zero-pads the *normalised* image) plus the folded BatchNorm shift;
* an exact border term: at the image border libjpeg replicates the edge chroma sample
  while the translation-invariant kernel above assumes zeros, and the kernel spreads chroma
  onto the out-of-image pixels that ``conv1`` sees as zero padding. The difference lives on
  the pixel frame {-1, 0, H-1, H} x {-1, 0, W-1, W}; it is computed from the chroma
  samples and put through ``conv1`` on the four thin output strips it touches (2 rows or
  columns each), so the whole layer equals ``bn1(conv1(decode(coefficients)))`` up to float
  rounding.

With ``n < 64`` bands the dropped coefficients have no weights: the Y conv and the chroma
transposed conv have ``n`` input channels per component, so their MACs are proportional to
``n`` (see :func:`stem_macs`). Everything after ``bn1`` (ReLU, max-pool, the stages, the
classifier) is the RGB network's, unchanged.
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
                          tri_axis)
from .registry import register_model
from .resnet import InputConfig, ResNet
from .resnet_dct import split_late_concat  # converted models take late_concat inputs

__all__ = ["ConvertedFirstLayer", "ConvertedStem", "from_rgb", "resnet_from_rgb", "stem_macs"]

def _conv1_affine(conv1: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``float64`` weight ``(C, 3, k, k)`` and bias ``(C,)`` of ``bn(conv1(x))`` in eval mode."""
    w = conv1.weight.detach().double()
    b = conv1.bias.detach().double() if conv1.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    if bn is not None:
        scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.detach().double() + bn.eps)
        w = w * scale[:, None, None, None]
        b = (b - bn.running_mean.detach().double()) * scale + bn.bias.detach().double()
    return w, b


class ConvertedFirstLayer(ChromaDecoder):
    """``bn1(conv1(normalise(decode(y, cbcr))))`` of an RGB ResNet as one layer over the
    block grid (see the module docstring). Needs ``conv1`` = 7x7, stride 2, padding 3.

    Parameters: ``conv_y`` (Conv2d nY -> 16C, 3x3), ``deconv_c`` (ConvTranspose2d
    nCb + nCr -> 16C, 4x4 stride 2), ``bias (C,)``. Buffers: ``frame_weight (C, 3, 7, 7)``
    (conv1 scaled to act on raw pixel levels, for the border term), ``const_taps (C, 7, 7)``
    (conv1's response to the constant image, for the per-position constant).

    ``forward(y (B, nY, h, w), cbcr (B, nCb + nCr, h/2, w/2)) -> (B, C, 4h, 4w)``; ``h, w``
    even (whole 16x16 macroblocks), at least 2.
    """

    def __init__(self, layout: DCTLayout, out_channels: int):
        super().__init__(layout)
        c16 = 16 * out_channels
        self.out_channels = out_channels
        self.conv_y = nn.Conv2d(self.ny, c16, 3, padding=1, bias=False)
        self.deconv_c = nn.ConvTranspose2d(self.ncb + self.ncr, c16, 4, stride=2, padding=1, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("frame_weight", torch.zeros(out_channels, 3, 7, 7))
        self.register_buffer("const_taps", torch.zeros(out_channels, 7, 7))
        self.register_buffer("chroma_to_rgb", torch.from_numpy(YCC_TO_RGB[:, 1:].T.copy()).float(), persistent=False)
        self._const_cache: dict = {}

    # --- building from conv1 ----------------------------------------------------------

    @torch.no_grad()
    def fill_from(self, conv1: nn.Conv2d, bn: nn.BatchNorm2d | None, mean: Sequence[float],
                  std: Sequence[float]) -> "ConvertedFirstLayer":
        """Compute every weight from an RGB ``conv1`` (+ ``bn``, eval statistics) and the
        network's input normalisation, in float64."""
        if conv1.in_channels != 3 or conv1.kernel_size != (7, 7) or conv1.stride != (2, 2) \
                or conv1.padding != (3, 3) or conv1.groups != 1 or conv1.dilation != (1, 1):
            raise ValueError(f"from_rgb needs an RGB 7x7 stride-2 padding-3 first convolution, got {conv1}")
        if conv1.out_channels != self.out_channels:
            raise ValueError(f"conv1 has {conv1.out_channels} outputs, this layer {self.out_channels}")
        w, b = _conv1_affine(conv1, bn)
        std64 = torch.tensor([float(s) for s in std], dtype=torch.float64)
        mean64 = torch.tensor([float(m) for m in mean], dtype=torch.float64)
        w_pix = w / (255.0 * std64)[None, :, None, None]         # acts on pixel levels 0..255
        m = torch.from_numpy(YCC_TO_RGB)                         # (rgb, ycc)
        w_ycc = torch.einsum("ocij,cd->odij", w_pix, m)           # (C, 3 [Y, Cb', Cr'], 7, 7)
        c = self.out_channels
        by, bcb, bcr = self.layout.band_indices()

        # Y: a unit coefficient k at block (a, b) of a 3x3-block image; output block (1, 1).
        basis = torch.from_numpy(idct_basis(by))                 # (64, nY)
        ny = len(by)
        probe = torch.zeros(ny, 3, 3, 24, 24, dtype=torch.float64)
        pat = basis.T.reshape(ny, 8, 8)
        for a in range(3):
            for bb in range(3):
                probe[:, a, bb, 8 * a:8 * a + 8, 8 * bb:8 * bb + 8] = pat
        resp = F.conv2d(probe.reshape(ny * 9, 1, 24, 24), w_ycc[:, :1], stride=2, padding=3)  # (ny*9, C, 12, 12)
        resp = resp[:, :, 4:8, 4:8].reshape(ny, 3, 3, c, 4, 4)
        self.conv_y.weight.copy_(resp.permute(3, 4, 5, 0, 1, 2).reshape(16 * c, ny, 3, 3).float())

        # Chroma: a unit coefficient at chroma block (2, 2) of a 6x6-block plane, upsampled with
        # zero edges (interior: translation invariant), then conv1; output blocks 3..6 = taps 0..3.
        weights = []
        for comp, bands in ((1, bcb), (2, bcr)):
            nb = len(bands)
            pat = torch.from_numpy(idct_basis(bands)).T.reshape(nb, 1, 8, 8)
            plane = torch.zeros(nb, 1, 48, 48, dtype=torch.float64)
            plane[:, :, 16:24, 16:24] = pat
            up = fancy_upsample2x(plane, "replicate")            # the edges are far from the probe
            out = F.conv2d(up, w_ycc[:, comp:comp + 1], stride=2, padding=3)   # (nb, C, 48, 48)
            out = out[:, :, 12:28, 12:28].reshape(nb, c, 4, 4, 4, 4)           # (k, o, ty, dy, tx, dx)
            weights.append(out.permute(0, 1, 3, 5, 2, 4).reshape(nb, 16 * c, 4, 4))
        self.deconv_c.weight.copy_(torch.cat(weights, 0).float())

        self.bias.copy_(b.float())
        self.frame_weight.copy_(w_pix.float())
        level = (128.0 / 255.0 - mean64) / std64                  # normalised value of a mid-grey pixel
        self.const_taps.copy_(torch.einsum("ocij,c->oij", w, level).float())
        self._const_cache.clear()
        return self

    # --- running ----------------------------------------------------------------------

    def _load_from_state_dict(self, *args, **kwargs):
        self._const_cache.clear()
        return super()._load_from_state_dict(*args, **kwargs)

    def _apply(self, fn, *args, **kwargs):
        self._const_cache.clear()
        return super()._apply(fn, *args, **kwargs)

    def constant_map(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """``(C, h/2, w/2)``: conv1's response to the mid-grey image of ``h x w`` pixels (zero
        padded outside). Cached per size."""
        if like.is_meta or self.const_taps.is_meta:
            return torch.zeros(self.out_channels, h // 2, w // 2, device=like.device, dtype=like.dtype)
        key = (h, w, like.device, like.dtype, self.const_taps._version)
        hit = self._const_cache.get(key)
        if hit is not None:
            return hit
        taps = self.const_taps.detach().double().cpu().numpy()

        def inside(n: int) -> np.ndarray:   # (n/2, 7): tap k of output o reads pixel 2o - 3 + k
            p = 2 * np.arange(n // 2)[:, None] - 3 + np.arange(7)[None, :]
            return ((p >= 0) & (p < n)).astype(np.float64)

        cmap = np.einsum("okl,yk,xl->oyx", taps, inside(h), inside(w))
        out = torch.from_numpy(cmap).to(device=like.device, dtype=like.dtype)
        self._const_cache[key] = out
        return out

    def _edge_samples(self, cbcr: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Chroma samples on the plane's border, centred, Cb and Cr stacked on dim 1:
        first and last sample rows ``(B, 2, w2)``, first and last sample columns ``(B, 2, h2)``."""
        out = []
        for part, basis in ((cbcr[:, :self.ncb], self.basis_cb), (cbcr[:, self.ncb:], self.basis_cr)):
            pat = basis.to(part.dtype).reshape(8, 8, -1)                  # (y, x, k)
            b, _, hc, wc = part.shape
            top = torch.einsum("bkw,xk->bwx", part[:, :, 0], pat[0]).reshape(b, 8 * wc)
            bottom = torch.einsum("bkw,xk->bwx", part[:, :, -1], pat[7]).reshape(b, 8 * wc)
            left = torch.einsum("bkh,yk->bhy", part[:, :, :, 0], pat[:, 0]).reshape(b, 8 * hc)
            right = torch.einsum("bkh,yk->bhy", part[:, :, :, -1], pat[:, 7]).reshape(b, 8 * hc)
            out.append((top, bottom, left, right))
        return tuple(torch.stack([cb, cr], 1) for cb, cr in zip(*out))

    def border_term(self, cbcr: torch.Tensor, h: int, w: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """The exact correction on the output frame (2 rows/columns on each side) that turns
        the translation-invariant part into ``bn1(conv1(decode(.)))``: added into ``out``
        (``(B, C, h/2, w/2)``) if given, else returned as a tensor that is zero off the frame.

        With S the chroma samples, the decoder's upsampling with replicated edges minus the
        zero-edged one used by ``deconv_c`` is, per axis, +1/4 of the edge sample on the edge
        pixel and -1/4 of it on the pixel just outside; in 2-D that is a frame of pixels
        {-1, 0, h-1, h} x {-1, 0, w-1, w}, built here from the border samples only and put
        through conv1 on the four output strips it reaches.
        """
        top, bottom, left, right = self._edge_samples(cbcr)
        bsz = cbcr.shape[0]

        def up_zero(line):      # (B, 2, n) -> (B, 2, 2n + 2): pixels -1 .. 2n, zero samples outside
            return tri_axis(F.pad(line, (1, 1)), 2)

        def up_rep(line):       # (B, 2, n) -> (B, 2, 2n): the decoder's, edges replicated
            return tri_axis(F.pad(line, (1, 1), mode="replicate"), 2)[:, :, 1:-1]

        col0, col1 = up_rep(left), up_rep(right)                          # (B, 2, h): vertical upsampling
        q = 0.25
        # Top strip: pixel rows -3..5, columns -3..w+2 (index = pixel + 3).
        strip_t = cbcr.new_zeros(bsz, 2, 9, w + 6)
        row = up_zero(top)                                                # columns -1..w
        strip_t[:, :, 2, 2:w + 4] -= q * row                              # pixel row -1
        strip_t[:, :, 3, 2:w + 4] += q * row                              # pixel row 0
        # Bottom strip: pixel rows h-7..h+1.
        strip_b = cbcr.new_zeros(bsz, 2, 9, w + 6)
        row = up_zero(bottom)
        strip_b[:, :, 6, 2:w + 4] += q * row                              # pixel row h-1
        strip_b[:, :, 7, 2:w + 4] -= q * row                              # pixel row h
        # Columns -1, 0, w-1, w from the horizontal edges (rows 0..h-1 only: zero outside).
        for strip, rows in ((strip_t, slice(0, 6)), (strip_b, slice(h - 7, h))):
            r0 = 3 if strip is strip_t else 0
            n = rows.stop - rows.start
            strip[:, :, r0:r0 + n, 2] -= q * col0[:, :, rows]
            strip[:, :, r0:r0 + n, 3] += q * col0[:, :, rows]
            strip[:, :, r0:r0 + n, w + 2] += q * col1[:, :, rows]
            strip[:, :, r0:r0 + n, w + 3] -= q * col1[:, :, rows]
        # Left and right strips: pixel rows 1..h-3, columns -3..5 and w-7..w+1.
        strip_l = cbcr.new_zeros(bsz, 2, h - 3, 9)
        strip_l[:, :, :, 2] -= q * col0[:, :, 1:h - 2]
        strip_l[:, :, :, 3] += q * col0[:, :, 1:h - 2]
        strip_r = cbcr.new_zeros(bsz, 2, h - 3, 9)
        strip_r[:, :, :, 6] += q * col1[:, :, 1:h - 2]
        strip_r[:, :, :, 7] -= q * col1[:, :, 1:h - 2]

        ho, wo = h // 2, w // 2
        if out is None:
            out = torch.zeros(bsz, self.out_channels, ho, wo, device=cbcr.device, dtype=cbcr.dtype)
        m = self.chroma_to_rgb.to(cbcr.dtype)
        wt = self.frame_weight.to(cbcr.dtype)

        def conv(strip):
            return F.conv2d(torch.einsum("bkhw,kr->brhw", strip, m), wt, stride=2)

        out[:, :, :2] += conv(strip_t)
        out[:, :, ho - 2:] += conv(strip_b)
        out[:, :, 2:ho - 2, :2] += conv(strip_l)
        out[:, :, 2:ho - 2, wo - 2:] += conv(strip_r)
        return out

    def forward(self, y: torch.Tensor, cbcr: torch.Tensor | None = None) -> torch.Tensor:
        y, cbcr = split_late_concat(y, cbcr)
        check_inputs(y, cbcr, self.ny, self.ncb + self.ncr)
        if y.shape[2] < 2 or y.shape[3] < 2:
            raise ValueError(f"the y block grid {tuple(y.shape[2:])} is too small (at least one 16x16 macroblock)")
        h, w = 8 * y.shape[2], 8 * y.shape[3]
        z = self.conv_y(y)
        z = z + self.deconv_c(cbcr) if torch.is_grad_enabled() else z.add_(self.deconv_c(cbcr))
        z = F.pixel_shuffle(z, 4)
        z += self.constant_map(h, w, z)
        z += self.bias.view(1, -1, 1, 1).to(z.dtype)
        return self.border_term(cbcr, h, w, out=z)


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


def from_rgb(model: ResNet, layout: DCTLayout | int = 64, *, copy_model: bool = True) -> ResNet:
    """A DCT-input copy of an RGB ResNet whose first layer is ``bn1(conv1(decode(.)))``.

    Args:
        model: an RGB ResNet of the registry (``conv1`` 7x7/2, ``bn1``, ``relu``, ``maxpool``,
            ``input_config`` with its mean and std). BatchNorm is folded with its running
            statistics: the result is exact in eval mode.
        layout: :func:`converted_layout` or ``n``: keep the n lowest zigzag bands of every
            component (``late_concat``, dequantised, unnormalised).
        copy_model: work on a deep copy (default) instead of modifying ``model``.

    Returns:
        The converted ``ResNet``: ``forward(y (B, nY, H/8, W/8), cbcr (B, nCb + nCr, H/16,
        W/16))`` -> logits; ``layout`` set; ``input_config`` gives the two input shapes;
        ``model_name`` ``"resnet_from_rgb"`` with ``converted_from`` the RGB model's name (so
        :func:`~dctnet.models.save_checkpoint` writes a checkpoint ``load_model`` rebuilds).
    """
    if isinstance(layout, (int, np.integer)):
        layout = converted_layout(int(layout))
    if not isinstance(model, ResNet) or not hasattr(model, "conv1") or getattr(model, "layout", None) is not None:
        raise ValueError(f"from_rgb needs an RGB ResNet from the registry, got {type(model).__name__}"
                         + (" (already a DCT model)" if getattr(model, "layout", None) is not None else ""))
    cfg = getattr(model, "input_config", None)
    if cfg is None or cfg.mean is None:
        raise ValueError("from_rgb needs the RGB model's input normalisation (model.input_config.mean/std)")
    net = copy.deepcopy(model) if copy_model else model
    first = ConvertedFirstLayer(layout, net.conv1.out_channels)
    if not net.conv1.weight.is_meta:
        first.fill_from(net.conv1, net.bn1, cfg.mean, cfg.std)
    first = first.to(device=net.conv1.weight.device)
    stem = ConvertedStem(first, net.relu, net.maxpool)
    for name in list(net._stem_names):
        delattr(net, name)
    for name, module in stem.named_children():
        net.add_module(name, module)
    net._stem_names = [name for name, _ in stem.named_children()]
    object.__setattr__(net, "_stem", stem)
    ny, ncb, ncr = layout.channels_per_component
    h, w = cfg.image_size
    net.layout = layout
    net.converted_from = getattr(model, "model_name", None)
    net.model_name = "resnet_from_rgb"
    net.model_kwargs = {"base": net.converted_from or "resnet50",
                        "bands": layout.bands if isinstance(layout.bands, int) else [list(b) for b in layout.bands]}
    net.input_config = InputConfig((h, w), ((ny, h // 8, w // 8), (ncb + ncr, h // 16, w // 16)))
    return net.eval()


@register_model
def resnet_from_rgb(base: str = "resnet50", bands=64, num_classes: int = 1000, **kwargs) -> ResNet:
    """An RGB ResNet (``base``, a registry name) converted to the ``late_concat`` DCT layout
    with ``bands`` (see :func:`from_rgb`). Built from the RGB builder's random initialisation;
    load a checkpoint written by ``dctnet convert`` to get real weights."""
    rgb = create_model(base, num_classes=num_classes, **kwargs)
    if getattr(rgb, "layout", None) is not None:
        raise ValueError(f"resnet_from_rgb converts RGB models; {base!r} is a DCT model")
    return from_rgb(rgb, converted_layout(bands), copy_model=False)


def stem_macs(layout: DCTLayout | int, image_size: int = 224, out_channels: int = 64) -> dict[str, int]:
    """Multiply-accumulates of the converted first layer for one ``image_size`` image.

    ``{"conv_y", "deconv_c", "border", "total", "rgb_conv1"}``: the Y conv and the chroma
    transposed conv (dense, as torch runs them), the border term, and for comparison the RGB
    ``conv1`` they replace (square images).
    """
    if isinstance(layout, (int, np.integer)):
        layout = converted_layout(int(layout))
    ny, ncb, ncr = layout.channels_per_component
    hb = image_size // 8
    c16 = 16 * out_channels
    conv_y = ny * 9 * c16 * hb * hb
    deconv = (ncb + ncr) * 16 * c16 * (hb // 2) ** 2
    # border term: the border samples (one row/column of every edge chroma block), their
    # colour conversion on the four 9-pixel-wide strips, and conv1 on the strips
    px, ho = image_size, image_size // 2
    edge = (ncb + ncr) * 8 * 2 * 2 * (hb // 2)
    colour = 2 * 3 * 9 * (2 * (px + 6) + 2 * (px - 3))
    strips = out_channels * 3 * 49 * (2 * 2 * ho + 2 * 2 * (ho - 4))
    border = edge + colour + strips
    rgb = out_channels * 3 * 49 * ho * ho
    return {"conv_y": conv_y, "deconv_c": deconv, "border": border, "total": conv_y + deconv + border,
            "rgb_conv1": rgb}
