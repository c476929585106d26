"""Training DCT and RGB models: ``train(TrainConfig(...))`` (`dctnet train`), DDP helpers
(:mod:`dctnet.train.distributed`), and the CPU-sized study (:mod:`dctnet.train.study`,
`dctnet study`). Attributes load lazily so that `dctnet --help` does not import torch."""

__all__ = ["TrainConfig", "compute_layout_stats", "train"]


def __getattr__(name):
    if name in __all__:
        from . import loop
        return getattr(loop, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
