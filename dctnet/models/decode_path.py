"""The JPEG decode path as linear algebra: quantised coefficients -> the RGB an RGB network sees.

Used by the exact conversion (:mod:`dctnet.models.convert`, which folds it into a first
convolution) and by :class:`DCTFrontEnd` (which runs it in front of unchanged networks).

The path from a JPEG's quantised coefficients to the normalised RGB tensor an ImageNet
network sees is linear except for the decoder's clamp to [0, 255] and its integer rounding:

1. dequantise (``coef * qstep``; done by :func:`dctnet.ops.to_tensor` with ``dequantize``);
2. 8x8 inverse DCT per block, + 128 level shift. libjpeg-turbo's default ``islow`` IDCT is
   an integer approximation of the exact float IDCT used here (its outputs differ by at most
   a level or so, see the tests);
3. chroma upsampling as libjpeg-turbo 2.1.5 decodes 4:2:0 with ``do_fancy_upsampling=TRUE``
   (the default of djpeg, PyTurboJPEG and simplejpeg): ``jdsample.c``'s
   ``h2v2_fancy_upsample``, the triangular filter, each output sample = 3/4 of the nearer
   input sample + 1/4 of the further one along each axis (9/16, 3/16, 3/16, 1/16 in 2-D),
   with the edge sample replicated at the image border. The merged upsampler of
   ``jdmerge.c`` (box filter fused with colour conversion) is only chosen by
   ``use_merged_upsample`` when fancy upsampling is OFF, so it is not what these decoders use;
4. JFIF YCbCr -> RGB (``jdcolor.c``): R = Y + 1.40200 Cr', G = Y - 0.34414 Cb' - 0.71414 Cr',
   B = Y + 1.77200 Cb' (Cb' = Cb - 128);
5. scale to [0, 1] and normalise by the network's mean and std.

:class:`DCTFrontEnd` runs that path in torch (coefficients -> float RGB), optionally with the
decoder's clamps and rounding; it feeds unchanged RGB networks (e.g. ONNX classifiers, see
:mod:`dctnet.models.onnx_frontend`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..imaging import IMAGENET_MEAN, IMAGENET_STD
from ..ops import DCTLayout
from ..ops.dct_domain import DCT8
from .resnet_dct import split_late_concat  # the front end takes late_concat inputs

__all__ = ["CLAMP_TOLERANCE", "YCC_TO_RGB", "ChromaDecoder", "DCTFrontEnd", "check_inputs", "converted_layout",
           "fancy_upsample2x", "fancy_upsample2x_int", "idct_basis", "idct_planes", "islow_idct", "tri_axis",
           "ycc_to_rgb_int"]


#: JFIF YCbCr -> RGB (libjpeg's jdcolor.c constants): rows R, G, B; columns Y, Cb - 128, Cr - 128.
YCC_TO_RGB = np.array([[1.0, 0.0, 1.40200],
                       [1.0, -0.34414, -0.71414],
                       [1.0, 1.77200, 0.0]])

#: What the tests hold the float decode path to against libjpeg-turbo's own integer decode
#: (islow IDCT, fancy upsampling, 8-bit rounding) on pixels the clamp does not touch: every
#: stage rounds to integers (IDCT output, upsampled chroma, RGB), each rounding is at most
#: 1/2 level and islow's fixed-point arithmetic adds about one more, so a decoded pixel is
#: within 3 levels of the exact value; most are within 1.
CLAMP_TOLERANCE = 3.0


def converted_layout(bands=64) -> DCTLayout:
    """The input layout of converted models: ``late_concat``, dequantised, unnormalised."""
    return DCTLayout("late_concat", bands, dequantize=True)


def idct_basis(bands: Sequence[int]) -> np.ndarray:
    """``float64 (64, n)``: column j is the 8x8 pixel pattern (row-major ``8*y + x``) of
    natural coefficient ``bands[j]`` under the orthonormal IDCT (JPEG's scaling)."""
    cols = []
    for k in bands:
        v, u = divmod(int(k), 8)
        cols.append(np.outer(DCT8[v], DCT8[u]).reshape(64))
    return np.stack(cols, axis=1)


def idct_planes(x: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``(B, n, h, w)`` coefficients, ``basis (64, n)`` -> ``(B, 1, 8h, 8w)`` pixels (no level shift)."""
    return F.pixel_shuffle(F.conv2d(x, basis[:, :, None, None].to(x.dtype)), 8)


def tri_axis(p: torch.Tensor, dim: int) -> torch.Tensor:
    """Triangular x2 upsampling along ``dim`` of a signal padded by one sample at each end.

    ``p`` has ``N + 2`` entries along ``dim`` (samples ``-1 .. N``); the result has ``2N + 2``
    (pixels ``-1 .. 2N``): pixel ``2i`` = 3/4 s[i] + 1/4 s[i-1], pixel ``2i+1`` = 3/4 s[i] +
    1/4 s[i+1] (libjpeg's fancy upsampling, without its integer rounding).
    """
    n2 = p.shape[dim]
    a = p.narrow(dim, 0, n2 - 1)      # s[-1 .. N-1]
    b = p.narrow(dim, 1, n2 - 1)      # s[0 .. N]
    odd = 0.75 * a + 0.25 * b         # pixel 2i+1 for i = -1 .. N-1  (3/4 s[i] + 1/4 s[i+1])
    even = 0.75 * b + 0.25 * a        # pixel 2i   for i =  0 .. N    (3/4 s[i] + 1/4 s[i-1])
    out = torch.stack([odd, even], dim=dim + 1)
    shape = list(p.shape)
    shape[dim] = 2 * (n2 - 1)
    return out.reshape(shape)


def fancy_upsample2x(s: torch.Tensor, edge: str = "replicate") -> torch.Tensor:
    """libjpeg's h2v2 fancy (triangular) upsampling of ``(B, C, h, w)`` float samples.

    ``edge="replicate"``: what the decoder does; returns ``(B, C, 2h, 2w)``.
    ``edge="zero"``: samples outside are zero and the result is extended by one pixel on
    every side, ``(B, C, 2h + 2, 2w + 2)`` (pixels -1 .. 2h): the translation-invariant map
    whose composition with ``conv1`` is a transposed convolution.
    """
    if edge not in ("replicate", "zero"):
        raise ValueError(f"edge must be 'replicate' or 'zero', not {edge!r}")
    p = F.pad(s, (1, 1, 1, 1), mode="replicate" if edge == "replicate" else "constant")
    out = tri_axis(tri_axis(p, 2), 3)
    return out[:, :, 1:-1, 1:-1] if edge == "replicate" else out


# --- libjpeg-turbo's integer decode, re-implemented for the "libjpeg" front-end mode ----------
# (jidctint.c's islow IDCT: the Loeffler-Ligtenberg-Moschytz butterfly with 13-bit constants
# and 2 extra bits between passes; jdsample.c's h2v2 fancy upsampling with biases 8 and 7;
# jdcolor.c's 16-bit fixed-point colour tables.) Bit-exact with the library's output.

def _fix(x: float, bits: int = 13) -> int:
    return int(round(x * (1 << bits)))


def _islow_1d(x: list, shift: int) -> list:
    """One 8-point pass on 8 int64 arrays; returns the 8 outputs descaled (rounded) by ``shift`` bits."""
    z2, z3 = x[2], x[6]
    z1 = (z2 + z3) * _fix(0.541196100)
    tmp2 = z1 - z3 * _fix(1.847759065)
    tmp3 = z1 + z2 * _fix(0.765366865)
    tmp0 = (x[0] + x[4]) << 13
    tmp1 = (x[0] - x[4]) << 13
    t10, t13, t11, t12 = tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2
    o0, o1, o2, o3 = x[7], x[5], x[3], x[1]
    z1, z2, z3, z4 = o0 + o3, o1 + o2, o0 + o2, o1 + o3
    z5 = (z3 + z4) * _fix(1.175875602)
    o0 = o0 * _fix(0.298631336)
    o1 = o1 * _fix(2.053119869)
    o2 = o2 * _fix(3.072711026)
    o3 = o3 * _fix(1.501321110)
    z1 = z1 * -_fix(0.899976223)
    z2 = z2 * -_fix(2.562915447)
    z3 = z3 * -_fix(1.961570560) + z5
    z4 = z4 * -_fix(0.390180644) + z5
    o0 = o0 + z1 + z3
    o1 = o1 + z2 + z4
    o2 = o2 + z2 + z3
    o3 = o3 + z1 + z4
    half = 1 << (shift - 1)
    outs = [t10 + o3, t11 + o2, t12 + o1, t13 + o0, t13 - o0, t12 - o1, t11 - o2, t10 - o3]
    return [(v + half) >> shift for v in outs]


def islow_idct(coefs, bands: Sequence[int]) -> np.ndarray:
    """libjpeg's integer ``islow`` IDCT: dequantised ``(B, n, h, w)`` coefficients (integer
    values; tensor or array) of natural indices ``bands`` -> ``int64 (B, 1, 8h, 8w)`` samples
    in 0..255 (NumPy: its integer elementwise ops are much faster than torch's on CPU)."""
    c = coefs.detach().cpu().numpy() if isinstance(coefs, torch.Tensor) else np.asarray(coefs)
    b, n, h, w = c.shape
    blk = np.zeros((b, h, w, 8, 8), np.int64)                           # [..., v, u]
    flat = blk.reshape(b, h, w, 64)
    flat[..., list(bands)] = np.rint(c).astype(np.int64).transpose(0, 2, 3, 1)
    cols = _islow_1d([np.ascontiguousarray(blk[..., k, :]) for k in range(8)], 13 - 2)   # pass 1 along v
    ws = np.stack(cols, axis=-2)                                         # [..., y, u]
    rows = _islow_1d([np.ascontiguousarray(ws[..., k]) for k in range(8)], 13 + 2 + 3)  # pass 2 along u
    px = np.clip(np.stack(rows, axis=-1) + 128, 0, 255)                  # [..., y, x]
    return px.transpose(0, 1, 3, 2, 4).reshape(b, 1, 8 * h, 8 * w)


def fancy_upsample2x_int(s: np.ndarray) -> np.ndarray:
    """libjpeg's integer h2v2 fancy upsampling of ``int64 (B, C, h, w)`` samples -> ``(B, C, 2h, 2w)``."""
    b, c, h, w = s.shape
    p = np.pad(s, ((0, 0), (0, 0), (1, 1), (0, 0)), mode="edge")
    near = 3 * p[:, :, 1:-1]
    cs = np.stack([near + p[:, :, :-2], near + p[:, :, 2:]], axis=3).reshape(b, c, 2 * h, w)  # column sums
    q = np.pad(cs, ((0, 0), (0, 0), (0, 0), (1, 1)), mode="edge")
    mid = 3 * q[..., 1:-1]
    return np.stack([(mid + q[..., :-2] + 8) >> 4, (mid + q[..., 2:] + 7) >> 4], axis=-1).reshape(b, c, 2 * h, 2 * w)


def ycc_to_rgb_int(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """libjpeg's fixed-point JFIF conversion of ``int64`` planes -> ``int64 (B, 3, H, W)`` in 0..255."""
    cb, cr = cb - 128, cr - 128
    half = 1 << 15
    r = y + ((_fix(1.40200, 16) * cr + half) >> 16)
    g = y + ((-_fix(0.34414, 16) * cb + half - _fix(0.71414, 16) * cr) >> 16)
    b = y + ((_fix(1.77200, 16) * cb + half) >> 16)
    return np.clip(np.concatenate([r, g, b], 1), 0, 255)


def check_inputs(y: torch.Tensor, cbcr: torch.Tensor, ny: int, nc: int) -> None:
    if y.dim() != 4 or cbcr.dim() != 4 or y.shape[1] != ny or cbcr.shape[1] != nc:
        raise ValueError(f"expected y (B, {ny}, h, w) and cbcr (B, {nc}, h/2, w/2) (late_concat layout), got "
                         f"{tuple(y.shape)} and {tuple(cbcr.shape)}")
    if (2 * cbcr.shape[2], 2 * cbcr.shape[3]) != tuple(y.shape[2:]):
        raise ValueError(f"cbcr grid {tuple(cbcr.shape[2:])} must be half the y grid {tuple(y.shape[2:])} (4:2:0)")


class ChromaDecoder(nn.Module):
    """Shared by the front end and the converted layer: Cb, Cr coefficients -> centred samples."""

    def __init__(self, layout: DCTLayout):
        super().__init__()
        if layout.kind != "late_concat" or not layout.dequantize or layout.mean is not None:
            raise ValueError("the decode path takes the late_concat layout, dequantised and unnormalised "
                             f"(converted_layout(bands)), not {layout}")
        self.layout = layout
        by, bcb, bcr = layout.band_indices()
        self.ny, self.ncb, self.ncr = len(by), len(bcb), len(bcr)
        self.register_buffer("basis_y", torch.from_numpy(idct_basis(by)).float(), persistent=False)
        self.register_buffer("basis_cb", torch.from_numpy(idct_basis(bcb)).float(), persistent=False)
        self.register_buffer("basis_cr", torch.from_numpy(idct_basis(bcr)).float(), persistent=False)

    def chroma(self, cbcr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, nCb + nCr, h, w)`` -> Cb, Cr samples ``(B, 1, 8h, 8w)`` (centred: no +128)."""
        return (idct_planes(cbcr[:, :self.ncb], self.basis_cb),
                idct_planes(cbcr[:, self.ncb:], self.basis_cr))


class DCTFrontEnd(ChromaDecoder):
    """Quantised-and-dequantised coefficients -> the normalised RGB an RGB network expects.

    Args:
        layout: :func:`converted_layout` (``late_concat``, dequantised, no statistics).
        mean, std: per-channel normalisation of [0, 1] RGB (ImageNet's by default).
        clamp: ``"none"`` (the exact linear map), ``"clamp"`` (the decoder's clamps to
            [0, 255] after the IDCT and after colour conversion), ``"round"`` (clamps and
            rounding to integers after each float stage) or ``"libjpeg"`` (libjpeg-turbo's
            integer arithmetic: islow IDCT, integer fancy upsampling, fixed-point colour
            tables; bit-exact with its decode, see the tests).

    ``forward(y (B, nY, h, w), cbcr (B, nCb + nCr, h/2, w/2)) -> float (B, 3, 8h, 8w)``.
    """

    def __init__(self, layout: DCTLayout, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, clamp: str = "none"):
        super().__init__(layout)
        if clamp not in ("none", "clamp", "round", "libjpeg"):
            raise ValueError(f"clamp must be 'none', 'clamp', 'round' or 'libjpeg', not {clamp!r}")
        self.clamp = clamp
        mean = torch.tensor([float(m) for m in mean], dtype=torch.float64)
        std = torch.tensor([float(s) for s in std], dtype=torch.float64)
        if mean.shape != (3,) or std.shape != (3,) or (std <= 0).any():
            raise ValueError("mean and std need 3 entries, std positive")
        self.register_buffer("scale", (1.0 / (255.0 * std)).float().view(1, 3, 1, 1), persistent=False)
        self.register_buffer("offset", (-mean / std).float().view(1, 3, 1, 1), persistent=False)
        self.register_buffer("ycc", torch.from_numpy(YCC_TO_RGB).float(), persistent=False)

    def _limit(self, x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        if self.clamp == "none":
            return x
        if self.clamp == "round":
            x = torch.round(x)
        return x.clamp(lo, hi)

    def pixels(self, y: torch.Tensor, cbcr: torch.Tensor | None = None) -> torch.Tensor:
        """RGB pixel values ``float (B, 3, 8h, 8w)`` in [0, 255] (up to the clamp option)."""
        y, cbcr = split_late_concat(y, cbcr)
        check_inputs(y, cbcr, self.ny, self.ncb + self.ncr)
        if self.clamp == "libjpeg":
            by, bcb, bcr = self.layout.band_indices()
            chroma = np.concatenate([islow_idct(cbcr[:, :self.ncb], bcb), islow_idct(cbcr[:, self.ncb:], bcr)], 1)
            chroma = fancy_upsample2x_int(chroma)
            rgb = ycc_to_rgb_int(islow_idct(y, by), chroma[:, :1], chroma[:, 1:])
            return torch.from_numpy(rgb).to(device=y.device, dtype=y.dtype)
        luma = self._limit(idct_planes(y, self.basis_y) + 128.0, 0.0, 255.0)
        cb, cr = self.chroma(cbcr)
        chroma = torch.cat([self._limit(cb + 128.0, 0.0, 255.0), self._limit(cr + 128.0, 0.0, 255.0)], 1)
        chroma = fancy_upsample2x(chroma, "replicate")
        if self.clamp == "round":
            chroma = torch.round(chroma)
        ycc = torch.cat([luma, chroma - 128.0], 1)
        rgb = torch.einsum("rc,bchw->brhw", self.ycc.to(ycc.dtype), ycc)
        return self._limit(rgb, 0.0, 255.0)

    def forward(self, y: torch.Tensor, cbcr: torch.Tensor | None = None) -> torch.Tensor:
        rgb = self.pixels(y, cbcr)
        return rgb * self.scale.to(rgb.dtype) + self.offset.to(rgb.dtype)
