"""From DCTImages to network input tensors (see design.md section 2)."""

from .layout import ZIGZAG, DCTLayout

__all__ = ["ZIGZAG", "DCTLayout"]
