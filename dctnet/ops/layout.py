"""What a DCT model expects as input: which coefficients, in which geometry, how scaled."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple, Sequence, Union

import numpy as np

__all__ = ["ZIGZAG", "BlockBatch", "DCTLayout", "zigzag_bands"]

#: Natural indices (k = 8*v + u) of the JPEG zigzag scan: ZIGZAG[i] is the i-th lowest frequency.
ZIGZAG: tuple[int, ...] = (
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
    12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
    35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
    58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
)

LayoutKind = Literal["upsampling", "late_concat", "y_only"]
Bands = Union[int, Sequence[Sequence[int]]]


def zigzag_bands(n: int) -> tuple[int, ...]:
    """Natural indices of the n lowest frequencies (the first n entries of the zigzag scan)."""
    if not 1 <= n <= 64:
        raise ValueError(f"number of bands must be in 1..64, not {n}")
    return ZIGZAG[:n]


@dataclass(frozen=True)
class DCTLayout:
    """The input a DCT model consumes.

    Attributes:
        kind (block grids and crop steps: :mod:`dctnet.ops.align`):
            ``"upsampling"``: Y at H/8 x W/8 with Cb, Cr upsampled x2 (nearest) and
            concatenated, one tensor ``(B, C, H/8, W/8)``. ``"late_concat"``: Y
            ``(B, nY, H/8, W/8)`` and CbCr ``(B, nCb + nCr, H/16, W/16)``. ``"y_only"``:
            Y alone.
        bands: ``n`` (the n lowest zigzag frequencies of every component) or one sequence of
            natural indices per component (Y, Cb, Cr).
        dequantize: multiply coefficients by their quantisation steps (recommended: the same
            content then has the same magnitude at every quality).
        mean, std: per output channel normalisation (channel order of the output tensor(s):
            Y bands, then Cb bands, then Cr bands); ``None`` means no normalisation.
            Measured by :func:`dctnet.ops.compute_stats`; applied as ``(x - mean) * (1/std)``.
    """

    kind: LayoutKind = "upsampling"
    bands: Bands = 64
    dequantize: bool = True
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self):
        if self.kind not in ("upsampling", "late_concat", "y_only"):
            raise ValueError(f"unknown layout kind {self.kind!r}")
        if isinstance(self.bands, (int, np.integer)):
            zigzag_bands(int(self.bands))
            object.__setattr__(self, "bands", int(self.bands))
        else:
            bands = tuple(tuple(int(k) for k in comp) for comp in self.bands)
            if len(bands) != (1 if self.kind == "y_only" else 3):
                raise ValueError(f"{self.kind} layout needs band lists for "
                                 f"{'1 component' if self.kind == 'y_only' else '3 components'}, got {len(bands)}")
            for comp in bands:
                if not comp or any(not 0 <= k < 64 for k in comp) or len(set(comp)) != len(comp):
                    raise ValueError(f"band list {comp} must hold distinct natural indices in 0..63")
            object.__setattr__(self, "bands", bands)
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                value = tuple(float(v) for v in value)
                if len(value) != self.num_channels:
                    raise ValueError(f"{name} has {len(value)} entries, the layout has {self.num_channels} channels")
                object.__setattr__(self, name, value)
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std must be given together")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ValueError("std entries must be positive")

    @property
    def num_components(self) -> int:
        return 1 if self.kind == "y_only" else 3

    def band_indices(self) -> tuple[tuple[int, ...], ...]:
        """Natural coefficient indices kept for each component (Y[, Cb, Cr])."""
        if isinstance(self.bands, int):
            return (zigzag_bands(self.bands),) * self.num_components
        return self.bands

    @property
    def channels_per_component(self) -> tuple[int, ...]:
        return tuple(len(b) for b in self.band_indices())

    @property
    def num_channels(self) -> int:
        """Total output channels (for late_concat: Y channels + CbCr channels)."""
        return sum(self.channels_per_component)

    def read_bands(self) -> dict:
        """What a reader must decode for this layout: the band-limited read arguments of
        :func:`dctnet.codec.read_dct` (``bands``, ``chroma_bands``, ``band_sampling``).

        The bands are the leading zigzag bands that cover every index the layout keeps
        (``n`` for ``bands=n``). Chroma other than 4:2:0 is resampled in the DCT domain,
        which mixes bands, so for the 4:2:0 kinds the limit applies only to gray and 4:2:0
        files (``band_sampling="420"``); ``y_only`` needs no chroma at all. With these
        arguments the input built from a file is the same as from a whole read.
        """
        extent = [max(ZIGZAG.index(k) for k in comp) + 1 for comp in self.band_indices()]
        if self.kind == "y_only":
            return {"bands": extent[0], "chroma_bands": 0, "band_sampling": "any"}
        return {"bands": extent[0], "chroma_bands": max(extent[1:]), "band_sampling": "420"}

    def with_stats(self, mean: Sequence[float], std: Sequence[float]) -> "DCTLayout":
        return replace(self, mean=tuple(mean), std=tuple(std))

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict` (what checkpoints store next to the weights)."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> "DCTLayout":
        return cls.from_dict(json.loads(text))

    def to_dict(self) -> dict:
        """JSON-serialisable form, stored in checkpoints."""
        return {"kind": self.kind, "bands": self.bands if isinstance(self.bands, int) else [list(b) for b in self.bands],
                "dequantize": self.dequantize,
                "mean": list(self.mean) if self.mean is not None else None,
                "std": list(self.std) if self.std is not None else None}

    @classmethod
    def from_dict(cls, d: dict) -> "DCTLayout":
        return cls(kind=d["kind"], bands=d["bands"], dequantize=d.get("dequantize", True),
                   mean=d.get("mean"), std=d.get("std"))


class BlockBatch(NamedTuple):
    """A batch of coefficients brought to a layout's block geometry, before band selection.

    This is the hand-over point between chroma alignment / crop / flip
    (:func:`dctnet.ops.align_blocks`) and the per-channel gather (``to_tensor``) or the fused
    first stage of a model, which read it directly. Crop and horizontal flip are already
    applied (flipped blocks have their odd-``u`` coefficients negated), so a consumer only
    selects bands, multiplies by ``qsteps`` and normalises.

    Geometry (see :mod:`dctnet.ops.align`): ``Hb, Wb`` is the layout's Y grid; for 4:2:0
    layouts both are even (an odd last row/column of Y blocks is dropped together with the
    partial chroma block it would pair with, e.g. a 225x223 image gives 28x28 / 14x14).

    Attributes:
        y: ``int16 (B, Hb, Wb, 64)`` luma blocks, natural order, quantised (Y is never
            resampled).
        cb, cr: ``(B, Hb // 2, Wb // 2, 64)`` for 4:2:0-geometry layouts (``upsampling``,
            ``late_concat``); zeros for grayscale images; ``None`` for ``y_only``. ``int16``
            when every image kept its stored chroma (4:2:0 files); ``float32`` when some
            image's chroma was resampled in the DCT domain: the resampled planes are
            dequantised (their ``qsteps`` are ones), the others hold their stored integers.
        qsteps: ``float32 (B, 3, 64)`` quantisation step per component and coefficient
            (natural order) to multiply by; ones where planes are already dequantised, for
            grayscale chroma, or when the layout does not dequantise.
        has_chroma: ``bool (B,)``, False for grayscale sources (zero chroma).
    """

    y: "torch.Tensor"
    cb: "torch.Tensor | None"
    cr: "torch.Tensor | None"
    qsteps: "torch.Tensor"
    has_chroma: "torch.Tensor"
