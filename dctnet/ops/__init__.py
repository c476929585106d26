"""From DCTImages to network input tensors (see design.md section 2)."""

from .layout import ZIGZAG, BlockBatch, DCTLayout, zigzag_bands

__all__ = ["ZIGZAG", "BlockBatch", "DCTLayout", "zigzag_bands"]
