"""Training DCT and RGB models: ``train(TrainConfig(...))`` (`dctnet train`), DDP helpers
(:mod:`dctnet.train.distributed`), and the CPU-sized study (:mod:`dctnet.train.study`,
`dctnet study`)."""

from .loop import TrainConfig, compute_layout_stats, train

__all__ = ["TrainConfig", "compute_layout_stats", "train"]
