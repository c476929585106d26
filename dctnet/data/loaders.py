"""Training and validation data pipelines: DCT-domain (fast path) and RGB (baseline).

**DCT pipeline.** :class:`DCTDataset` is a torch ``Dataset`` whose items are whole *batches*:
``dataset[BatchRequest(indices, seed)]`` feeds the batch's files through the model's input
pipeline (:class:`dctnet.pipeline.DCTPipeline` with ``train=True``: the native batch reader
with the GIL released, the numba gather run by the reader's own threads on CPU),
augmenting in the DCT domain: a random crop on
16-pixel (4:2:0 block) boundaries and a random horizontal flip (exact: block columns
reversed, odd horizontal frequencies negated). Reading a batch at once beats per-item
``__getitem__`` + collate: one call into the native reader and one kernel launch per batch,
no per-image tensors to stack.

:class:`DCTLoader` iterates it with ``workers`` threads (not processes): every step of the
pipeline releases the GIL, so threads keep all cores busy without copying batches between
processes, and without forking a process that has started numba's OpenMP threads (which
libgomp forbids). When CUDA is available the batches are written straight into pinned
(page-locked) buffers, so ``.to("cuda", non_blocking=True)`` overlaps the copy.

**RGB pipeline.** :class:`RGBTrainDataset` is the torchvision-style per-image pipeline:
decode (libjpeg-turbo), ``RandomResizedCrop`` (torchvision's sampling: scale (0.08, 1),
aspect ratio (3/4, 4/3) log-uniform, 10 attempts, then a centre crop clamped to the
ratio range) resized with Pillow bilinear (antialiased), ``RandomHorizontalFlip``, scale to
[0, 1] and normalise. ``augment="crop"`` replaces the random-resized crop by a plain random
crop (no rescaling; what the DCT pipeline can do). Validation uses
:class:`dctnet.imaging.RGBPreprocess` (resize the shorter side, centre crop). It runs in a
torch ``DataLoader`` with worker processes, as torchvision's ImageNet recipe does.

**Determinism.** Every random choice comes from a ``torch.Generator`` seeded by
``(seed, epoch, position)`` through :class:`SeededBatchSampler` / :class:`SeededSampler`,
which shard with ``DistributedSampler``: the data of epoch ``e`` is the same whether training
ran straight through or was resumed, and whatever the number of workers.
"""

from __future__ import annotations

import math
import os
import queue
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Literal, NamedTuple, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DistributedSampler, Sampler

from ..codec import JPEGError
from ..imaging import RGBPreprocess, decode_rgb, resize_for_crop, resize_shorter
from ..models import resolve
from ..ops import DCTLayout, output_shapes, random_resized_crop_box
from ..pipeline import DCTPipeline
from .datasets import Dataset

__all__ = ["BatchRequest", "ItemRequest", "SeededBatchSampler", "SeededSampler", "DCTDataset", "DCTLoader",
           "RGBTrainDataset", "RGBEvalDataset", "VersionsDataset", "random_resized_crop_box", "make_loader"]


def _mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (SeedSequence hashing: nearby inputs give unrelated seeds)."""
    words = [int(p) & 0xFFFFFFFF for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> np.uint64(1))


class BatchRequest(NamedTuple):
    """One batch to load: dataset indices and the seed of its augmentation."""

    indices: tuple[int, ...]
    seed: int


class ItemRequest(NamedTuple):
    """One image to load (per-item pipelines): its index and the seed of its augmentation."""

    index: int
    seed: int


class _Sharded:
    """The epoch's index order for this rank.

    Shuffled (training): ``DistributedSampler`` semantics (permutation seeded by ``seed +
    epoch``, padded to a multiple of ``world_size`` or cut with ``drop_last``, every
    ``world_size``-th index from ``rank``). In order (evaluation): indices ``rank, rank +
    world_size, ...`` with no padding, so every image is counted exactly once over the ranks.
    """

    def __init__(self, n: int, *, shuffle: bool, seed: int, rank: int, world_size: int, drop_last: bool):
        if n < 1:
            raise ValueError("empty dataset")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
        self.n, self.shuffle = n, shuffle
        self.sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                          drop_last=drop_last and world_size > 1) if shuffle else None
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if self.sampler is not None:
            self.sampler.set_epoch(self.epoch)

    def order(self) -> list[int]:
        if self.sampler is not None:
            return list(self.sampler)
        return list(range(self.rank, self.n, self.world_size))

    def __len__(self) -> int:
        return len(self.sampler) if self.sampler is not None else len(range(self.rank, self.n, self.world_size))


class SeededBatchSampler(Sampler):
    """Batches of indices for :class:`DCTDataset`, sharded over ranks, each with its own seed.

    Args:
        n: dataset size.
        batch_size: images per batch (per rank).
        shuffle: new random order every epoch (``set_epoch``).
        drop_last: drop the last incomplete batch (training) or keep it (evaluation).
        seed: base seed; batch ``k`` of epoch ``e`` on rank ``r`` gets seed ``f(seed, e, r, k)``.
        rank, world_size: this process's shard (``DistributedSampler`` semantics).
        start: skip the first ``start`` batches of the epoch (resuming inside an epoch).

    Yields :class:`BatchRequest`.
    """

    def __init__(self, n: int, batch_size: int, *, shuffle: bool = True, drop_last: bool = True, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        self.shard = _Sharded(n, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size, drop_last=drop_last)
        self.batch_size, self.drop_last = int(batch_size), drop_last
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.shard.set_epoch(epoch)
        self.start = int(start)

    def __len__(self) -> int:
        m = len(self.shard)
        return m // self.batch_size if self.drop_last else math.ceil(m / self.batch_size)

    def __iter__(self) -> Iterator[BatchRequest]:
        order = self.shard.order()
        for k in range(self.start, len(self)):
            chunk = order[k * self.batch_size:(k + 1) * self.batch_size]
            yield BatchRequest(tuple(chunk), _mix_seed(self.shard.seed, self.shard.epoch, self.shard.rank, k))


class SeededSampler(Sampler):
    """Per-image requests for torch ``DataLoader`` pipelines (:class:`RGBTrainDataset`):
    sharded and shuffled like ``DistributedSampler``, image at position ``k`` of epoch ``e``
    gets seed ``f(seed, e, index)``. Yields :class:`ItemRequest`."""

    def __init__(self, n: int, *, shuffle: bool = True, drop_last: bool = False, seed: int = 0, rank: int = 0,
                 world_size: int = 1):
        self.shard = _Sharded(n, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size, drop_last=drop_last)
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's order; skip its first ``start`` images (resuming inside an epoch)."""
        self.shard.set_epoch(epoch)
        self.start = int(start)

    def __len__(self) -> int:
        return max(0, len(self.shard) - self.start)

    def __iter__(self) -> Iterator[ItemRequest]:
        for i in self.shard.order()[self.start:]:
            yield ItemRequest(int(i), _mix_seed(self.shard.seed, self.shard.epoch, int(i)))


# ------------------------------------------------------------------------------------ DCT


def _good_items(paths: Sequence[str], errors: Sequence, on_error: str, skipped: list) -> list[int]:
    """Positions of a batch's good items; a bad one raises (``on_error="raise"``) or is
    dropped with its path added to ``skipped``."""
    keep = []
    for i, (path, error) in enumerate(zip(paths, errors)):
        if error is None:
            keep.append(i)
        elif on_error == "raise":
            raise error
        else:
            skipped.append(path)
    return keep


class DCTDataset(torch.utils.data.Dataset):
    """DCT-domain inputs of a labelled JPEG folder, a batch per item.

    Args:
        dataset: the labelled files (:func:`dctnet.data.datasets.open_dataset`).
        layout: the model's :class:`~dctnet.ops.DCTLayout` (with its normalisation statistics).
        size: crop size in pixels (multiple of 16; e.g. 224 -> a 28x28 block grid).
        train: random crop + random flip (True) or centre crop (False).
        crop: the training crop (:class:`~dctnet.pipeline.DCTPipeline`'s ``train_crop``):
            ``"random-resized"`` (RandomResizedCrop resampled in the DCT domain, any image size)
            or ``"random"`` (exact block-aligned crops; images smaller than the crop are errors).
        threads: reader threads per batch.
        backend: :func:`~dctnet.ops.to_tensor` backend (``"auto"``: numba on CPU).
        on_error: ``"raise"`` (a bad file stops training with its name) or ``"skip"`` (drop it from
            its batch; the dropped paths are collected in ``self.skipped``).

    ``dataset[BatchRequest(indices, seed)]`` returns ``(inputs, labels)``: ``inputs``
    ``float32 (B, C, size/8, size/8)`` (a ``(y, cbcr)`` tuple for late-concat layouts), labels
    ``int64 (B,)``; ``dataset[i]`` returns one image's ``(input (C, h, w), label)``.
    """

    def __init__(self, dataset: Dataset, layout: DCTLayout, size: int, *, train: bool, threads: int = 1,
                 backend: str = "auto", on_error: Literal["raise", "skip"] = "raise",
                 crop: Literal["random-resized", "random"] = "random-resized"):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
        if size % 16:
            raise ValueError(f"DCT crop size must be a multiple of 16 pixels (4:2:0 blocks), not {size}")
        self.dataset, self.layout, self.size, self.train = dataset, layout, int(size), bool(train)
        self.threads, self.backend, self.on_error = int(threads), backend, on_error
        # Images smaller than the crop are errors here (never re-encoded): prepare the set.
        self.pipeline = DCTPipeline(layout, self.size, train=self.train, threads=self.threads, backend=backend,
                                    small="error", train_crop=crop)
        self.labels = torch.as_tensor(dataset.labels, dtype=torch.int64)
        self.skipped: list[str] = []
        self.pin = torch.cuda.is_available()

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, request: BatchRequest, out=None):
        """``(inputs, labels)`` of one batch (see the class docstring); ``out``: buffers to write into."""
        paths = [self.dataset.paths[i] for i in request.indices]
        batch = self.pipeline(paths, seed=request.seed, out=out)
        keep = _good_items(paths, batch.errors, self.on_error, self.skipped)
        if not keep:  # only reached with on_error="skip": an empty batch, which training skips
            shapes = output_shapes(self.layout, 0, self.size // 8, self.size // 8)
            x = tuple(torch.zeros(s) for s in shapes)
            return (x if len(x) > 1 else x[0]), self.labels[:0]
        x = batch.inputs
        if len(keep) < len(paths):  # a skipped file changes the batch's size
            x = tuple(t[keep] for t in x) if isinstance(x, tuple) else x[keep]
        return x, self.labels[[request.indices[i] for i in keep]]

    def __getitem__(self, request):
        if isinstance(request, BatchRequest):
            return self.load(request)
        i = int(request.index if isinstance(request, ItemRequest) else request)
        seed = request.seed if isinstance(request, ItemRequest) else i
        x, y = self.load(BatchRequest((i,), seed))
        return (tuple(t[0] for t in x) if isinstance(x, tuple) else x[0]), y[0]


class DCTLoader:
    """Iterate a :class:`DCTDataset` in batches with ``workers`` threads (see the module docstring).

    Args:
        dataset: the :class:`DCTDataset`.
        sampler: a :class:`SeededBatchSampler` (call ``loader.set_epoch(e)`` each epoch).
        workers: batches prepared concurrently (0: in the calling thread).
        prefetch: batches queued ahead per worker.
        pin_memory: write batches into pinned buffers (default: when CUDA is available).

    Yields ``(inputs, labels)`` in the sampler's order.
    """

    def __init__(self, dataset: DCTDataset, sampler: SeededBatchSampler, *, workers: int = 2, prefetch: int = 2,
                 pin_memory: bool | None = None):
        self.dataset, self.sampler = dataset, sampler
        self.workers, self.prefetch = max(0, int(workers)), max(1, int(prefetch))
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.sampler.set_epoch(epoch, start)

    def __len__(self) -> int:
        return len(self.sampler) - self.sampler.start

    def _load(self, request: BatchRequest):
        out = None
        if self.pin_memory:
            g = self.dataset.size // 8
            out = tuple(torch.empty(s, dtype=torch.float32, pin_memory=True)
                        for s in output_shapes(self.dataset.layout, len(request.indices), g, g))
            out = out if len(out) > 1 else out[0]
        x, y = self.dataset.load(request, out=out)
        if self.pin_memory:
            y = y.pin_memory()
        return x, y

    def __iter__(self):
        requests = iter(self.sampler)
        if self.workers == 0:
            for r in requests:
                yield self._load(r)
            return
        # Keep workers * prefetch batches in flight, yield in order.
        pending: queue.Queue = queue.Queue()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="dctnet-loader") as pool:
            try:
                for r in requests:
                    pending.put(pool.submit(self._load, r))
                    if pending.qsize() >= self.workers * self.prefetch:
                        yield pending.get().result()
                while not pending.empty():
                    yield pending.get().result()
            finally:
                while not pending.empty():
                    pending.get().cancel()


class VersionsDataset(torch.utils.data.Dataset):
    """Inputs of a model fed several versions of each file (``multiqf``), a batch per item: its
    bundle's :class:`~dctnet.pipeline.VersionsPipeline` (the original and its re-encodings
    through the backbone's evaluation pipeline: centre crops, no augmentation, so every epoch
    sees the same inputs and the re-encodings are cached).

    Args:
        dataset: labelled files; pipeline: ``bundle.pipeline(...)`` of the model;
        on_error: as :class:`DCTDataset`.

    ``dataset[BatchRequest(indices, seed)]`` returns ``(inputs float32 (B, V, C, h, w) (a
    tuple for late-concat backbones), labels int64 (B,))``.
    """

    def __init__(self, dataset: Dataset, pipeline, *, on_error: Literal["raise", "skip"] = "raise"):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
        self.dataset, self.pipeline, self.on_error = dataset, pipeline, on_error
        self.labels = torch.as_tensor(dataset.labels, dtype=torch.int64)
        self.skipped: list[str] = []

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, request: BatchRequest, out=None):
        """``(inputs, labels)`` of one batch (``out`` is not used)."""
        paths = [self.dataset.paths[i] for i in request.indices]
        batch = self.pipeline(paths)
        keep = _good_items(paths, batch.errors, self.on_error, self.skipped)
        if not keep:  # only reached with on_error="skip": an empty batch, which training skips
            return torch.zeros(0), self.labels[:0]
        x = batch.inputs
        if len(keep) < len(paths):
            x = tuple(t[keep] for t in x) if isinstance(x, tuple) else x[keep]
        return x, self.labels[[request.indices[i] for i in keep]]

    def __getitem__(self, request):
        if isinstance(request, BatchRequest):
            return self.load(request)
        i = int(request.index if isinstance(request, ItemRequest) else request)
        x, y = self.load(BatchRequest((i,), i))
        return (tuple(t[0] for t in x) if isinstance(x, tuple) else x[0]), y[0]


# ------------------------------------------------------------------------------------ RGB


def _normalise(pixels: np.ndarray, mean, std) -> torch.Tensor:
    """``uint8 (H, W, 3)`` -> ``float32 (3, H, W)``: ``(x / 255 - mean) / std``."""
    x = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))).float().div_(255.0)
    return x.sub_(torch.tensor(mean).view(3, 1, 1)).div_(torch.tensor(std).view(3, 1, 1))


class RGBTrainDataset(torch.utils.data.Dataset):
    """torchvision-style RGB training pipeline (see the module docstring), one image per item.

    Args:
        dataset: labelled files; size: output side in pixels; mean, std: normalisation.
        augment: ``"rrc"`` (RandomResizedCrop with ``scale`` and ``ratio``) or ``"crop"`` (random
            ``size x size`` crop of the image resized to a ``round(size * 256 / 224)`` shorter side).

    ``dataset[ItemRequest(i, seed)]`` -> ``(float32 (3, size, size), int64 label)``.
    """

    def __init__(self, dataset: Dataset, size: int, mean: Sequence[float], std: Sequence[float], *,
                 augment: Literal["rrc", "crop"] = "rrc", scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3)):
        if augment not in ("rrc", "crop"):
            raise ValueError(f"augment must be 'rrc' or 'crop', not {augment!r}")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
        self.dataset, self.size, self.augment = dataset, int(size), augment
        self.mean, self.std = tuple(mean), tuple(std)
        self.scale, self.ratio = tuple(scale), tuple(ratio)

    def __len__(self) -> int:
        return len(self.dataset)

    def pixels(self, index: int, generator: torch.Generator) -> np.ndarray:
        """Augmented ``uint8 (size, size, 3)`` pixels of image ``index``."""
        path = self.dataset.paths[index]
        rgb = decode_rgb(path)
        if self.augment == "rrc":
            top, left, h, w = random_resized_crop_box(rgb.shape[0], rgb.shape[1], generator, self.scale, self.ratio)
            out = np.asarray(Image.fromarray(rgb).resize((self.size, self.size), Image.BILINEAR,
                                                         box=(left, top, left + w, top + h)))
        else:
            rgb = resize_shorter(rgb, resize_for_crop(self.size))
            hh, ww = rgb.shape[:2]
            if hh < self.size or ww < self.size:
                raise JPEGError(path, f"{ww}x{hh} is smaller than the {self.size}x{self.size} crop")
            top = int(torch.randint(0, hh - self.size + 1, (1,), generator=generator))
            left = int(torch.randint(0, ww - self.size + 1, (1,), generator=generator))
            out = rgb[top:top + self.size, left:left + self.size]
        if bool(torch.rand(1, generator=generator) < 0.5):
            out = out[:, ::-1]
        return out

    def __getitem__(self, request):
        index, seed = (request.index, request.seed) if isinstance(request, ItemRequest) else (int(request), int(request))
        g = torch.Generator().manual_seed(int(seed))
        return _normalise(self.pixels(index, g), self.mean, self.std), int(self.dataset.labels[index])


class RGBEvalDataset(torch.utils.data.Dataset):
    """Validation: :class:`dctnet.imaging.RGBPreprocess` (resize the shorter side to
    ``round(size * 256 / 224)``, centre crop ``size``, normalise). Items as :class:`RGBTrainDataset`."""

    def __init__(self, dataset: Dataset, size: int, mean: Sequence[float], std: Sequence[float]):
        self.dataset = dataset
        self.preprocess = RGBPreprocess.for_crop(int(size), mean, std)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, request):
        index = request.index if isinstance(request, ItemRequest) else int(request)
        return torch.from_numpy(self.preprocess(self.dataset.paths[index])), int(self.dataset.labels[index])


class _RGBLoader:
    """A torch ``DataLoader`` over a seeded per-item sampler, with ``set_epoch``."""

    def __init__(self, loader: torch.utils.data.DataLoader, sampler: SeededSampler):
        self.loader, self.sampler = loader, sampler

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch; skip its first ``start`` batches (resuming inside an epoch)."""
        self.sampler.set_epoch(epoch, start * self.loader.batch_size)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        return iter(self.loader)


def make_loader(model, dataset: Dataset, *, train: bool, batch_size: int, workers: int = 2, seed: int = 0,
                rank: int = 0, world_size: int = 1, size: int | None = None, augment: str = "rrc",
                scale: tuple[float, float] = (0.08, 1.0), backend: str = "auto", on_error: str = "raise",
                pin_memory: bool | None = None):
    """The loader a model needs, from its bundle (:func:`dctnet.models.resolve`): DCT (the
    bundle's :class:`~dctnet.ops.DCTLayout`, fed by :class:`~dctnet.pipeline.DCTPipeline`) or
    RGB (the bundle's :class:`~dctnet.imaging.RGBPreprocess` mean and std).

    Args:
        model: a :class:`~dctnet.models.ModelBundle` or a model from ``create_model`` (a DCT
            model's layout must carry statistics).
        dataset: labelled files; train: augmentation + shuffling + dropping the last partial
            batch, or centre crops in order; batch_size: per rank; workers: threads (DCT) or
            processes (RGB); seed, rank, world_size: see :class:`SeededBatchSampler`;
            size: crop size (default: the model's ``input_config.image_size``); augment,
            scale: training augmentation (see :class:`RGBTrainDataset`); DCT models: ``"rrc"``
            is RandomResizedCrop resampled in the DCT domain (scale 0.08-1 only), ``"crop"``
            exact block-aligned random crops.

    Models fed several versions of each file (``bundle.versions``, ``multiqf``) get a
    :class:`VersionsDataset` on their own evaluation pipeline (no augmentation; ``size`` must
    be the model's).

    Returns:
        An iterable of ``(inputs, labels int64 (B,))`` with ``set_epoch(epoch)`` and ``len``.
    """
    bundle = resolve(model)
    size = int(size or bundle.image_size)
    if bundle.versions is not None:
        if size != bundle.image_size:
            raise ValueError(f"{bundle.name} trains on its evaluation inputs ({bundle.image_size} pixels), not {size}")
        threads = 1 if workers > 0 else (os.cpu_count() or 1)
        ds = VersionsDataset(dataset, bundle.pipeline(threads=threads), on_error=on_error)
        sampler = SeededBatchSampler(len(dataset), batch_size, shuffle=train, drop_last=train, seed=seed,
                                     rank=rank, world_size=world_size)
        return DCTLoader(ds, sampler, workers=workers, pin_memory=False)
    if bundle.kind == "dct":
        layout = bundle.input
        if layout.mean is None:
            raise ValueError("the model's layout has no normalisation statistics (dctnet.ops.compute_stats)")
        if augment not in ("rrc", "crop"):
            raise ValueError(f"augment must be 'rrc' or 'crop', not {augment!r}")
        if train and augment == "rrc" and tuple(scale) != (0.08, 1.0):
            raise ValueError(f"DCT models' RandomResizedCrop uses scale (0.08, 1.0), not {tuple(scale)}")
        ds = DCTDataset(dataset, layout, size, train=train, threads=1 if workers > 0 else (os.cpu_count() or 1),
                        backend=backend, on_error=on_error, crop="random-resized" if augment == "rrc" else "random")
        sampler = SeededBatchSampler(len(dataset), batch_size, shuffle=train, drop_last=train, seed=seed,
                                     rank=rank, world_size=world_size)
        return DCTLoader(ds, sampler, workers=workers, pin_memory=pin_memory)
    if bundle.kind != "rgb":
        raise ValueError(f"{bundle.name}: a {bundle.kind} model cannot be trained here")
    cfg = bundle.input
    if train:
        ds = RGBTrainDataset(dataset, size, cfg.mean, cfg.std, augment=augment, scale=scale)
    else:
        ds = RGBEvalDataset(dataset, size, cfg.mean, cfg.std)
    sampler = SeededSampler(len(dataset), shuffle=train, drop_last=train, seed=seed, rank=rank,
                            world_size=world_size)
    pin = torch.cuda.is_available() if pin_memory is None else pin_memory
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers,
                                         drop_last=train, pin_memory=pin, persistent_workers=workers > 0)
    return _RGBLoader(loader, sampler)
