"""dctnet: image classification straight from JPEG DCT coefficients.

Public API (see README.md):
    read_dct, read_dct_batch, read_header, DCTImage, JPEGError, estimate_quality  (dctnet.codec)
"""

from .codec import (
    DCTImage,
    JPEGError,
    JPEGHeader,
    JPEGWarning,
    estimate_quality,
    read_dct,
    read_dct_batch,
    read_header,
)

__version__ = "0.1.0"

__all__ = [
    "DCTImage",
    "JPEGError",
    "JPEGHeader",
    "JPEGWarning",
    "estimate_quality",
    "read_dct",
    "read_dct_batch",
    "read_header",
]
