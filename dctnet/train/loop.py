"""The training loop behind `dctnet train` (DCT and RGB models, one process or DDP).

Recipe (defaults of dos Santos et al., ICIP 2020): SGD with momentum 0.9, global batch 128,
learning rate 0.05 divided by 10 every 30 epochs, 120 epochs, weight decay 1e-4, optional
label smoothing; mixed precision (float16 autocast + gradient scaling) on CUDA.

Training starts from scratch, or from ``weights`` (`--weights PATH|default`; then the
weights' layout statistics are kept). Models with a frozen backbone (``multiqf``, Yang et
al.'s topology) train their final layer and ``unfreeze_last`` backbone blocks only
(`--unfreeze-last N`; :meth:`dctnet.models.multiqf.MultiQFNet.set_trainable_blocks`), on the
inputs of their evaluation pipeline (:class:`dctnet.data.loaders.VersionsDataset`).

For DCT models trained from scratch the per-channel normalisation statistics of the inputs are measured first on
training images (:func:`dctnet.ops.compute_stats`, centre crops) and stored in the model's
layout, so the checkpoint carries them to evaluation.

Output folder:

* ``last.pt`` after every epoch (and every ``checkpoint_every`` steps inside one): a dctnet
  checkpoint (``dctnet.models.save_checkpoint``: model name, builder options, weights, layout with statistics, class names) whose
  ``extra["train_state"]`` also holds the optimizer, scheduler, gradient scaler, RNG states
  and the number of finished epochs (and steps of the current one, with its running sums):
  ``--resume`` continues exactly where it stopped (the data order and augmentation of every
  epoch depend only on the seed and the epoch, so the remaining batches are the same);
* ``best.pt`` when there is a validation set: the epoch with the best validation top-1;
* ``log.jsonl``: one JSON object per epoch (loss, top-1/top-5, images/s, learning rate).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..codec import JPEGError, read_dct_batch
from ..data.datasets import open_dataset
from ..data.loaders import make_loader
from ..models import load_checkpoint, resolve, save_checkpoint
from ..ops import DCTLayout, compute_stats, usable_size
from .distributed import DistContext, all_reduce_sum, broadcast_object, init_distributed

__all__ = ["TrainConfig", "train", "compute_layout_stats"]


@dataclass
class TrainConfig:
    """Everything `dctnet train` takes (see ``dctnet train --help`` for each option).

    ``batch_size`` is the global batch: each of ``world_size`` processes loads
    ``batch_size / world_size`` images per step.
    """

    model: str
    data: str
    out: str
    val: str | None = None
    classes: str | None = None
    labels: str | None = None
    val_labels: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    unfreeze_last: int | None = None
    epochs: int = 120
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_step: int = 30
    lr_gamma: float = 0.1
    label_smoothing: float = 0.0
    amp: bool | None = None
    workers: int = 2
    seed: int = 0
    size: int | None = None
    augment: str = "rrc"
    scale: tuple[float, float] = (0.08, 1.0)
    stats_images: int = 1000
    limit: int | None = None
    device: str | None = None
    resume: str | None = None
    checkpoint_every: int = 0
    on_error: str = "raise"
    quiet: bool = False

    def to_json_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["scale"] = list(self.scale)
        return d


def _topk_correct(logits: torch.Tensor, target: torch.Tensor, k: int) -> tuple[int, int]:
    k5 = min(k, logits.shape[1])
    top = logits.topk(k5, dim=1).indices
    hit = top.eq(target[:, None])
    return int(hit[:, 0].sum()), int(hit.any(dim=1).sum())


def compute_layout_stats(model, dataset, size: int, count: int, seed: int, threads: int | None = None,
                         skipped: list[str] | None = None):
    """The model's layout with mean/std measured on ``count`` training images (a seeded
    random subset, centre crops of ``size`` pixels).

    ``skipped``: a list to collect files that cannot be read or do not fit the layout (CMYK,
    smaller than the crop) instead of raising on the first (`dctnet train --skip-bad-files`).
    """
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(dataset), generator=g)[:max(1, min(count, len(dataset)))].tolist()
    paths = [dataset.paths[i] for i in sorted(order)]
    images, errors = read_dct_batch(paths, threads=threads, on_error="return", **model.layout.read_bands())
    usable = []
    for path, image, error in zip(paths, images, errors):
        if error is None:
            try:
                h, w = usable_size(image, model.layout)
                if h < size or w < size:
                    error = JPEGError(path, f"usable area {w}x{h} is smaller than the {size}x{size} crop")
            except ValueError as e:  # a colour space no layout takes (CMYK)
                error = JPEGError(path, str(e).removeprefix(f"{path}: "))
        if error is None:
            usable.append(image)
        elif skipped is None:
            raise error
        else:
            skipped.append(path)
    if not usable:
        raise ValueError(f"{dataset.root}: none of the {len(paths)} images for the statistics is usable")
    return compute_stats(usable, model.layout, crop="center", size=size)


def _skipped(loader) -> list[str]:
    """Files a DCT loader dropped (``--skip-bad-files``); empty for RGB loaders."""
    dataset = getattr(loader, "dataset", None)
    return list(getattr(dataset, "skipped", []) or [])


def _report_skipped(log, out: str | None, paths: list[str], when: str) -> None:
    """Say which files were skipped: a log line and ``OUT/skipped.txt`` (one path per line)."""
    if not paths:
        return
    log.info(f"skipped {len(paths)} unreadable or unusable file(s) ({when}), e.g. {paths[0]}; "
             f"all listed in {os.path.join(out or '.', 'skipped.txt')}")
    if out is None:
        return
    path = os.path.join(out, "skipped.txt")
    known = set()
    if os.path.exists(path):
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            known = {line.rstrip("\n") for line in f}
    with open(path, "a", encoding="utf-8", errors="surrogateescape") as f:
        for p in paths:
            if p not in known:
                f.write(p + "\n")


class _Logger:
    def __init__(self, path: str | None, quiet: bool):
        self.path, self.quiet = path, quiet

    def info(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    def epoch(self, record: dict) -> None:
        if self.path:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        parts = [f"epoch {record['epoch']}/{record['epochs']}", f"lr {record['lr']:.4g}",
                 f"train loss {record['train_loss']:.4f} top1 {100 * record['train_top1']:.2f} "
                 f"top5 {100 * record['train_top5']:.2f} ({record['train_images_per_s']:.0f} img/s)"]
        if record.get("val_top1") is not None:
            parts.append(f"val loss {record['val_loss']:.4f} top1 {100 * record['val_top1']:.2f} "
                         f"top5 {100 * record['val_top5']:.2f}")
        self.info(" | ".join(parts))


def _run_epoch(model, loader, criterion, ctx: DistContext, *, optimizer=None, scaler=None, amp: bool = False,
               first_step: int = 0, carried=(0.0, 0.0, 0.0, 0.0, 0.0), on_step=None):
    """One pass; returns ``(loss_sum, top1, top5, count, seconds)`` summed over ranks (seconds:
    the slowest rank's).

    ``first_step`` and ``carried`` (already reduced sums of the steps before it, counted once)
    continue an interrupted epoch; ``on_step(step, sums)`` is called after every training step
    with this rank's running sums (for mid-epoch checkpoints).
    """
    training = optimizer is not None
    model.train(training)
    loss_sum = top1 = top5 = count = 0.0
    start = time.perf_counter()
    dev = ctx.device
    step = first_step
    with torch.set_grad_enabled(training):
        for inputs, target in loader:
            if target.shape[0] == 0:  # every file of the batch was skipped (--skip-bad-files)
                if ctx.world_size > 1:
                    raise ValueError(f"rank {ctx.rank}: every file of a batch was unreadable and skipped; with "
                                     "several processes every rank must step together (remove the files)")
                step += 1
                continue
            xs = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
            xs = tuple(x.to(dev, non_blocking=True) for x in xs)
            target = target.to(dev, non_blocking=True)
            with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=amp):
                logits = model(*xs)
                loss = criterion(logits, target)
            if training:
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
            n = target.shape[0]
            c1, c5 = _topk_correct(logits.detach().float(), target, 5)
            loss_sum += float(loss.detach()) * n
            top1 += c1
            top5 += c5
            count += n
            step += 1
            if on_step is not None:
                on_step(step, [loss_sum, top1, top5, count, time.perf_counter() - start])
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - start
    loss_sum, top1, top5, count = all_reduce_sum([loss_sum, top1, top5, count], ctx)
    seconds = all_reduce_sum([seconds], ctx, op="max")[0]  # the slowest rank sets the pace
    return (loss_sum + carried[0], top1 + carried[1], top5 + carried[2], count + carried[3], seconds + carried[4])


def _rng_state(ctx: DistContext) -> dict:
    state = {"torch": torch.get_rng_state()}
    if ctx.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(ctx.device)
    return state


def _set_rng_state(state: dict, ctx: DistContext) -> None:
    torch.set_rng_state(state["torch"])
    if ctx.device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], ctx.device)


def train(config: TrainConfig) -> dict:
    """Train ``config.model`` on ``config.data``; see the module docstring.

    Returns:
        ``{"checkpoint": path of last.pt, "best": path or None, "history": [per-epoch records],
        "model": the trained model (unwrapped from DDP)}`` on every rank.

    Raises:
        ValueError: bad options or data (messages name the file or option).
    """
    if config.epochs < 1 or config.batch_size < 1 or config.lr <= 0:
        raise ValueError("epochs, batch size and learning rate must be positive")
    if not 0.0 <= config.label_smoothing < 1.0:
        raise ValueError(f"label smoothing must be in [0, 1), not {config.label_smoothing}")
    ctx = init_distributed(config.device)
    try:
        return _train(config, ctx)
    finally:
        if ctx.owns_group:
            # The DDP wrapper's reducer holds the process group; freed now (it is in reference
            # cycles), not at interpreter exit, where a gloo group torn down late can abort
            # the process (seen once: SIGABRT in a rank after a successful run).
            gc.collect()
            dist.destroy_process_group()


def _train(config, ctx):
    if config.batch_size % ctx.world_size:
        raise ValueError(f"global batch size {config.batch_size} is not divisible by the {ctx.world_size} processes")
    per_rank = config.batch_size // ctx.world_size
    log = _Logger(os.path.join(config.out, "log.jsonl") if ctx.is_main else None, config.quiet or not ctx.is_main)
    os.makedirs(config.out, exist_ok=True)
    train_set = open_dataset(config.data, classes=config.classes, labels=config.labels, limit=config.limit)
    val_set = None
    if config.val:
        val_set = open_dataset(config.val, classes=config.classes if config.classes else train_set.classes,
                               labels=config.val_labels)
        if val_set.classes.synsets != train_set.classes.synsets:
            raise ValueError(f"{config.val}: its classes differ from those of {config.data}")
    class_names = list(train_set.classes.names)
    num_classes = len(train_set.classes)

    resume_path = config.resume
    if resume_path == "auto":
        candidate = os.path.join(config.out, "last.pt")
        resume_path = candidate if os.path.exists(candidate) else None
    ckpt = load_checkpoint(resume_path) if resume_path else None

    torch.manual_seed(config.seed)
    # resolve: the checkpoint must be for this model; it supplies its builder options
    # from scratch unless resuming or given starting weights (--weights PATH, or "default": the
    # model's registered default weights, e.g. multiqf's pretrained backbone)
    start = False if config.weights is None else (None if config.weights == "default" else config.weights)
    bundle = resolve(config.model, weights=ckpt if ckpt is not None else start, num_classes=num_classes,
                     **config.model_kwargs)
    if ckpt is not None and "train_state" not in ckpt.extra:
        raise ValueError(f"{resume_path}: not a training checkpoint (no train_state); use it as weights instead")
    if ckpt is None and config.weights == "default" and not bundle.trained:
        raise ValueError(f"--weights default: {config.model} has no default weights for {num_classes} classes "
                         f"(the class list of {config.data}); give --weights PATH or train from scratch")
    model = bundle.model
    if hasattr(model, "set_trainable_blocks"):  # a frozen backbone (multiqf): fc and the last N blocks train
        model.set_trainable_blocks(config.unfreeze_last or 0)
    elif config.unfreeze_last is not None:
        raise ValueError(f"--unfreeze-last is for models with a frozen backbone (multiqf); {config.model} "
                         "trains every layer")
    model_kwargs = dict(model.model_kwargs)
    size = int(config.size or bundle.image_size)
    layout = bundle.input if bundle.kind == "dct" else None
    stats_skipped: list[str] = []
    if ckpt is None and start is False and layout is not None:  # starting weights bring their statistics
        t0 = time.perf_counter()
        stats = None
        if ctx.is_main:
            stats = compute_layout_stats(model, train_set, size, config.stats_images, config.seed,
                                         skipped=stats_skipped if config.on_error == "skip" else None).to_dict()
        layout = DCTLayout.from_dict(broadcast_object(stats, ctx))
        model.layout = layout
        log.info(f"normalisation statistics of {layout.num_channels} channels from "
                 f"{min(config.stats_images, len(train_set)) - len(stats_skipped)} images "
                 f"({time.perf_counter() - t0:.1f} s)")
        _report_skipped(log, config.out, stats_skipped, "statistics")
    model.class_names = class_names
    model.to(ctx.device)

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:  # (frozen parts of multiqf's backbone do not)
            (no_decay if p.ndim <= 1 else decay).append(p)  # no weight decay on BN and biases
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": config.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, momentum=config.momentum)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step, gamma=config.lr_gamma)
    amp = (ctx.device.type == "cuda") if config.amp is None else bool(config.amp)
    if amp and ctx.device.type != "cuda":
        raise ValueError("--amp needs a CUDA device (mixed precision training here is float16 on GPU)")
    scaler = torch.amp.GradScaler("cuda") if amp else None
    start_epoch = start_step = 0
    carried = (0.0, 0.0, 0.0, 0.0, 0.0)
    history: list[dict] = []
    best_top1 = -1.0
    if ckpt is not None:
        state = ckpt.extra["train_state"]
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"], ctx)
        start_epoch = int(state["epoch"])
        start_step = int(state.get("step", 0))
        carried = tuple(state.get("partial", carried))
        history = list(ckpt.extra.get("history", []))
        best_top1 = float(state.get("best_top1", -1.0))
        where = f"epoch {start_epoch + 1}, step {start_step}" if start_step else f"after epoch {start_epoch}"
        log.info(f"resumed from {resume_path} ({where})")

    net = model
    if ctx.world_size > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda"
                                                  else None)
    loader_opts = dict(workers=config.workers, seed=config.seed, rank=ctx.rank, world_size=ctx.world_size,
                       size=size, on_error=config.on_error)
    train_loader = make_loader(model, train_set, train=True, batch_size=per_rank, augment=config.augment,
                               scale=tuple(config.scale), **loader_opts)
    if len(train_loader) == 0:
        raise ValueError(f"{config.data}: {len(train_set)} images give no full batch of {per_rank} per process")
    val_loader = make_loader(model, val_set, train=False, batch_size=per_rank, **loader_opts) if val_set else None
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    val_criterion = nn.CrossEntropyLoss()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters()) - trainable
    log.info(f"training {config.model} ({trainable / 1e6:.2f}M parameters"
             + (f", {frozen / 1e6:.2f}M frozen" if frozen else "") + ") on "
             f"{len(train_set)} images, {num_classes} classes, {ctx.world_size} process(es) on {ctx.device}, "
             f"batch {config.batch_size}, {config.epochs} epochs" + (", AMP" if amp else ""))

    last = os.path.join(config.out, "last.pt")
    best = os.path.join(config.out, "best.pt") if val_set else None
    saved_kwargs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in model_kwargs.items()}
    def train_state(epoch_done: int, **more) -> dict:
        return {"epoch": epoch_done, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None, "rng": _rng_state(ctx),
                "best_top1": best_top1, "config": config.to_json_dict(), **more}

    steps_per_epoch = len(train_loader)
    for epoch in range(start_epoch, config.epochs):
        lr = optimizer.param_groups[0]["lr"]
        first = start_step if epoch == start_epoch else 0
        prior = carried if epoch == start_epoch else (0.0, 0.0, 0.0, 0.0, 0.0)
        train_loader.set_epoch(epoch, first)

        def on_step(step: int, sums: list, epoch=epoch, prior=prior) -> None:
            if not config.checkpoint_every or step % config.checkpoint_every or step >= steps_per_epoch:
                return
            # Every rank takes part in the reduction; rank 0 stores the epoch's sums so far.
            partial = all_reduce_sum(sums[:4], ctx) + [all_reduce_sum(sums[4:], ctx, op="max")[0]]
            partial = [a + b for a, b in zip(partial, prior)]
            if ctx.is_main:
                save_checkpoint(last, model, class_names=class_names, layout=layout, model_kwargs=saved_kwargs,
                                extra={"train_state": train_state(epoch, step=step, partial=partial),
                                       "history": history})

        loss, c1, c5, n, seconds = _run_epoch(net, train_loader, criterion, ctx, optimizer=optimizer,
                                              scaler=scaler, amp=amp, first_step=first, carried=prior,
                                              on_step=on_step)
        scheduler.step()
        record = {"epoch": epoch + 1, "epochs": config.epochs, "lr": lr, "train_loss": loss / n,
                  "train_top1": c1 / n, "train_top5": c5 / n, "train_images": int(n),
                  "train_images_per_s": n / seconds if seconds > 0 else math.inf, "train_seconds": seconds}
        if val_loader is not None:
            val_loader.set_epoch(epoch)
            vloss, v1, v5, vn, vs = _run_epoch(net, val_loader, val_criterion, ctx, amp=amp)
            record.update(val_loss=vloss / vn, val_top1=v1 / vn, val_top5=v5 / vn, val_images=int(vn),
                          val_seconds=vs)
        skipped = sorted(set(_skipped(train_loader)) | set(_skipped(val_loader)))
        if skipped:
            record["skipped_files"] = len(skipped)
            _report_skipped(log, config.out if ctx.is_main else None, skipped, f"epoch {epoch + 1}")
        history.append(record)
        log.epoch(record)
        if ctx.is_main:
            improved = val_loader is not None and record["val_top1"] > best_top1
            if improved:
                best_top1 = record["val_top1"]
            extra = {"train_state": train_state(epoch + 1), "history": history, "metrics": record}
            save_checkpoint(last, model, class_names=class_names, layout=layout, model_kwargs=saved_kwargs,
                            extra=extra)
            if improved:
                save_checkpoint(best, model, class_names=class_names, layout=layout, model_kwargs=saved_kwargs,
                                extra={"history": history, "metrics": record})
        if ctx.world_size > 1:
            dist.barrier()
    return {"checkpoint": last, "best": best, "history": history, "model": model}


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `dctnet train` (python -m dctnet train)")
