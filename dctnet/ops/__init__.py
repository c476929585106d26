"""From DCTImages to network input tensors (conventions: docs/architecture.md §4).

``to_tensor(images, layout, ...)`` = ``align_blocks`` (crop, flip, chroma alignment, exact in
the DCT domain) + band selection + dequantisation + normalisation, with a torch reference,
a numba CPU kernel and a Triton GPU kernel. ``compute_stats`` measures the normalisation.
``read_to_tensor(srcs, layout, ...)`` is ``read_dct_batch`` + ``to_tensor`` fused: each image
is gathered by the reader thread that decoded it.
"""

from .align import align_blocks, plan_geometry, random_resized_crop_box, usable_size
from .fused_read import read_to_tensor
from .layout import ZIGZAG, BlockBatch, DCTLayout, zigzag_bands
from .outputs import output_shapes
from .rearrange import BACKENDS, compute_stats, to_tensor
from .resize import crop_window, resize_geometry, resize_to_tensor
from .reference import blocks_to_tensor_torch, check_block_batch, normalisation

__all__ = ["ZIGZAG", "BlockBatch", "DCTLayout", "zigzag_bands", "align_blocks", "plan_geometry", "usable_size", "to_tensor", "read_to_tensor",
           "compute_stats", "output_shapes", "blocks_to_tensor_torch", "check_block_batch", "normalisation", "BACKENDS",
           "resize_geometry", "resize_to_tensor", "random_resized_crop_box", "crop_window"]
