"""Training DCT and RGB models: ``train(TrainConfig(...))`` (`dctnet train`), DDP helpers,
and the CPU-sized study (`dctnet study`)."""

from .loop import TrainConfig, compute_layout_stats, train

__all__ = ["TrainConfig", "compute_layout_stats", "train"]
