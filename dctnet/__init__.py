"""dctnet: image classification straight from JPEG DCT coefficients.

Public API (see README.md):

* reading (``dctnet.codec``; imports only NumPy): ``read_dct``, ``read_dct_batch``,
  ``read_header``, ``DCTImage``, ``JPEGHeader``, ``JPEGError``, ``JPEGWarning``,
  ``estimate_quality``;
* loaded on first use (they import torch): ``Classifier``, ``Prediction``
  (``dctnet.classify``); ``DCTLayout``, ``to_tensor``, ``read_to_tensor``, ``align_blocks``,
  ``compute_stats`` (``dctnet.ops``); ``create_model``, ``list_models``, ``resolve``
  (``dctnet.models``).

The package's layers and conventions: ``docs/architecture.md``.
"""

from importlib import import_module

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

__version__ = "0.2.0"

_LAZY = {
    "Classifier": "dctnet.classify",
    "Prediction": "dctnet.classify",
    "DCTLayout": "dctnet.ops",
    "to_tensor": "dctnet.ops",
    "read_to_tensor": "dctnet.ops",
    "align_blocks": "dctnet.ops",
    "compute_stats": "dctnet.ops",
    "create_model": "dctnet.models",
    "resolve": "dctnet.models",
    "list_models": "dctnet.models",
}

__all__ = [
    "DCTImage",
    "JPEGError",
    "JPEGHeader",
    "JPEGWarning",
    "estimate_quality",
    "read_dct",
    "read_dct_batch",
    "read_header",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dctnet' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
