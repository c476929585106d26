"""Running the study: every image x every setting x every model, stored as it goes.

:func:`run_study` fills a :class:`~dctnet.evaluate.store.ResultStore` (resuming from what
it holds) and, on rank 0, writes the results folder (:mod:`dctnet.evaluate.report`).

Sharding: with ``world_size > 1`` (``torchrun`` sets ``RANK`` / ``WORLD_SIZE``) rank ``r``
takes images ``r, r + W, r + 2W, ...`` (:func:`shard_indices`) and writes its own shard
database; after a barrier rank 0 merges the shards into ``DIR/results.sqlite`` and writes
the summary. The barrier is a callable (default: a ``torch.distributed`` gloo barrier) so
the logic is testable by running the ranks one after another in one process.
"""

from __future__ import annotations

import datetime
import glob
import hashlib
import os
import stat
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np
import torch.distributed as dist
from tqdm import tqdm

from ..codec import DEFAULT_MAX_BYTES, JPEGError, read_dct, read_source
from ..data.datasets import Dataset
from ..data.encode import Setting, coefficient_agreement, decode_setting, encode_setting, reference_pixels
from ..imaging import CODECS, ENCODER, codec_versions, decode_rgb
from .metrics import psnr, ssim
from .predictors import Predictor
from .report import write_report as _write
from .selectors import rank_and_topk
from .store import ResultStore

__all__ = ["run_study", "shard_indices", "distributed_context"]

RESULTS_DB = "results.sqlite"


def _size_and_hash(path: str) -> tuple[int, str | None]:
    """A file's size and SHA-256; ``(-1, None)`` if it is not a readable regular file of at most
    ``DEFAULT_MAX_BYTES`` (its error is reported when it is read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO cannot block the open
    except (OSError, ValueError):
        return -1, None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > DEFAULT_MAX_BYTES:
            return -1, None
        digest = hashlib.sha256()
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
        return st.st_size, digest.hexdigest()


def shard_indices(n: int, rank: int, world_size: int) -> range:
    """The dataset indices rank ``rank`` of ``world_size`` evaluates: ``rank, rank + W, ...``.

    The shards of all ranks are disjoint and cover ``range(n)``.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
    return range(rank, n, world_size)


def distributed_context() -> tuple[int, int, Callable[[], None]]:
    """``(rank, world_size, barrier)`` from torchrun's environment (``1, 0, no-op`` otherwise).

    Under torchrun the barrier is a gloo ``torch.distributed.barrier`` (the process group
    is created on first use, with a 24-hour timeout since shards of a big dataset take long).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world <= 1:
        return 0, 1, lambda: None

    def barrier() -> None:
        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=datetime.timedelta(hours=24))
        dist.barrier()

    return rank, world, barrier


def _decode_for_metrics(data: bytes, gray: bool, name: str) -> np.ndarray:
    rgb = decode_rgb(data, name=name)
    return rgb[:, :, 0] if gray else rgb


def _compare_requant(data: bytes, reference: bytes, path: str, setting: Setting) -> tuple:
    """A requantised version against the true re-encode: ``(agree_y, agree_all, psnr)``."""
    agree_y, agree_all = coefficient_agreement(read_dct(data), read_dct(reference))
    a = decode_rgb(data, name=f"{path} [{setting.name}]")
    b = decode_rgb(reference, name=f"{path} [qf{setting.qf}]")
    return agree_y, agree_all, psnr(a, b) if a.shape == b.shape else None


def _make_versions(path: str, key: str, settings: Sequence[Setting], need_metrics: set[str]):
    """One image: ``({setting name: bytes or decoded pixels}, [version rows], {setting name: error},
    [requant rows])``. Versions of other codecs are handed on as their decode (``uint8 (H, W, 3)``):
    RGB models take them as pixels."""
    blobs: dict[str, bytes | np.ndarray] = {}
    rows: list[tuple] = []
    errors: dict[str, str] = {}
    requant_rows: list[tuple] = []
    try:
        original = bytes(read_source(path)[0])  # regular files only, size checked first
    except (OSError, JPEGError) as e:
        msg = str(e) if isinstance(e, JPEGError) else f"{path}: cannot read: {e.strerror or e}"
        for s in settings:
            errors[s.name] = msg
            rows.append((key, s.name, None, None, None, None, None, msg))
            if s.requantize:
                requant_rows.append((key, s.name, f"qf{s.qf}", None, None, None, msg))
        return blobs, rows, errors, requant_rows
    rgb = None
    rgb_error = None
    encoded: dict[str, bytes] = {}
    for s in settings:
        try:
            if s.is_original:
                data = original
                if rgb is None and rgb_error is None:
                    try:
                        rgb = decode_rgb(original, name=path)
                    except JPEGError as e:
                        rgb_error = e
                # The original's own row: no quality numbers (it is the reference).
                h, w = (rgb.shape[:2] if rgb is not None else (None, None))
                blobs[s.name] = data
                if s.name in need_metrics:
                    rows.append((key, s.name, len(data), w, h, None, None, None))
                continue
            if rgb is None:
                if rgb_error is None:
                    try:
                        rgb = decode_rgb(original, name=path)
                    except JPEGError as e:
                        rgb_error = e
                if rgb_error is not None:
                    raise rgb_error
            data = encode_setting(original, s, original_rgb=rgb, name=path)
            encoded[s.name] = data
            dec = None
            if s.is_jpeg:
                blobs[s.name] = data
            else:  # decoded once: the models' input and the quality metrics' operand
                dec = blobs[s.name] = decode_setting(data, s, name=f"{path} [{s.name}]")
            if s.name in need_metrics:
                ref = reference_pixels(rgb, s)
                if dec is None:
                    dec = _decode_for_metrics(data, ref.ndim == 2, f"{path} [{s.name}]")
                if dec.shape != ref.shape:
                    raise ValueError(f"{path} [{s.name}]: decoded {dec.shape}, expected {ref.shape}")
                rows.append((key, s.name, len(data), dec.shape[1], dec.shape[0],
                             psnr(ref, dec), ssim(ref, dec) if min(dec.shape[:2]) >= 11 else None, None))
                if s.requantize:
                    reference = encoded.get(f"qf{s.qf}") or encode_setting(original, Setting(s.qf),
                                                                           original_rgb=rgb, name=path)
                    requant_rows.append((key, s.name, f"qf{s.qf}") + _compare_requant(data, reference, path, s)
                                        + (None,))
        except (JPEGError, ValueError, OSError) as e:
            msg = str(e)
            errors[s.name] = msg
            blobs.pop(s.name, None)
            if s.name in need_metrics:
                rows.append((key, s.name, None, None, None, None, None, msg))
                if s.requantize:
                    requant_rows.append((key, s.name, f"qf{s.qf}", None, None, None, msg))
    return blobs, rows, errors, requant_rows


def _applicable(predictor: Predictor, settings: Sequence[Setting]) -> list[Setting]:
    """The settings a model is evaluated at: all of them if it takes decoded pixels, else the
    JPEG ones (DCT models read JPEG coefficients; other codecs' files have none)."""
    if getattr(predictor, "accepts_pixels", False):
        return list(settings)
    return [s for s in settings if s.is_jpeg]


def run_study(dataset: Dataset, predictors: Sequence[Predictor], settings: Sequence[Setting], out_dir: str,
              *, threads: int | None = None, chunk: int = 8, progress: bool = True,
              rank: int = 0, world_size: int = 1, barrier: Callable[[], None] = lambda: None,
              write_report: bool = True, report_options: dict | None = None) -> str | None:
    """Evaluate ``predictors`` on ``dataset`` at ``settings``, storing results in ``out_dir``.

    Args:
        dataset: labelled images (:func:`dctnet.data.datasets.open_dataset`).
        predictors: :class:`~dctnet.evaluate.predictors.Predictor` objects (unique names).
        settings: the versions (:func:`dctnet.data.encode.make_settings`), ``original`` first.
        out_dir: results folder; ``results.sqlite`` there is reused (resume / no recompute).
        threads: threads for re-encoding and quality metrics (default: all cores).
        chunk: images per batch (all their versions go to a model in one call).
        rank, world_size, barrier: sharding (see the module docstring).
        write_report: rank 0 writes ``summary.json`` and the other files at the end.
        report_options: keyword arguments for :func:`dctnet.evaluate.report.write_report`.

    Returns the path of ``summary.json`` on rank 0 (when written), else ``None``.
    """

    names = [p.name for p in predictors]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique, got {names}")
    if not settings or not settings[0].is_original:
        raise ValueError("settings must start with the original")
    for p in predictors:
        # Labels are indices into the class list; a model with another number of outputs
        # would be scored against the wrong classes.
        if p.num_classes != len(dataset.classes):
            raise ValueError(f"model {p.name} has {p.num_classes} outputs but the class list "
                             f"{dataset.classes.source} has {len(dataset.classes)} classes (give --classes)")
    codecs = sorted({s.codec for s in settings if not s.is_jpeg})
    versions = codec_versions()
    # What a codec version depends on: its options and the library that made it.
    libs = {"jpeg2000": ["pillow", "openjpeg"], "heif": ["pillow-heif", "libheif", "x265"],
            "avif": ["pillow", "libavif", "aom"], "webp": ["pillow", "libwebp"]}
    codec_record = {c: {"options": CODECS[c]["options"], **{k: versions.get(k) for k in libs[c]}}
                    for c in codecs} or None
    applicable = {p.name: _applicable(p, settings) for p in predictors}
    threads = threads or os.cpu_count() or 1
    os.makedirs(out_dir, exist_ok=True)
    main_path = os.path.join(out_dir, RESULTS_DB)
    shard_dir = os.path.join(out_dir, "shards")

    def register(store: ResultStore) -> None:
        with ThreadPoolExecutor(threads) as pool:  # hashing reads every file: threads overlap the I/O
            stats = list(pool.map(_size_and_hash, dataset.paths))
        store.register_images(dataset.keys, dataset.labels, [s for s, _ in stats], [h for _, h in stats])
        store.register_encoder(ENCODER)
        if codec_record is not None:
            store.register_codecs(codec_record)
        for p in predictors:
            store.register_model(p.name, p.identity, p.num_classes)

    if rank == 0:
        with ResultStore(main_path) as main:
            # Shards left by an interrupted sharded run hold finished work: keep it.
            for leftover in sorted(glob.glob(os.path.join(shard_dir, "rank*.sqlite"))):
                main.merge_from(leftover)
                os.remove(leftover)
            register(main)
    barrier()

    with ResultStore(main_path) as main:
        register(main)  # only checks on ranks > 0: rank 0 registered everything above
        done_versions = main.done_versions()
        done_preds = {p.name: main.done_predictions(p.name) for p in predictors}
    store = ResultStore(main_path if world_size == 1 else os.path.join(shard_dir, f"rank{rank}.sqlite"))
    try:
        register(store)
        done_versions |= store.done_versions()
        for p in predictors:
            done_preds[p.name] |= store.done_predictions(p.name)

        mine = list(shard_indices(len(dataset), rank, world_size))
        todo = []
        for i in mine:
            key = dataset.keys[i]
            if any((key, s.name) not in done_versions for s in settings) or any(
                    (key, s.name) not in done_preds[p.name] for p in predictors for s in applicable[p.name]):
                todo.append(i)
        bar = tqdm(total=len(mine), initial=len(mine) - len(todo), unit="img", disable=not progress,
                   desc=f"eval rank {rank}/{world_size}" if world_size > 1 else "eval", file=sys.stderr,
                   dynamic_ncols=True)
        with ThreadPoolExecutor(threads) as pool:
            for start in range(0, len(todo), chunk):
                idx = todo[start:start + chunk]
                keys = [dataset.keys[i] for i in idx]

                def prepare(i: int):
                    key = dataset.keys[i]
                    need = {s.name for s in settings if (key, s.name) not in done_versions}
                    return _make_versions(dataset.paths[i], key, settings, need)

                prepared = list(pool.map(prepare, idx))
                for _, rows, _, requant_rows in prepared:
                    store.add_versions(rows)
                    store.add_requant(requant_rows)
                for p in predictors:
                    items, pred_rows = [], []
                    for key, i, (blobs, _, errs, _) in zip(keys, idx, prepared):
                        for s in applicable[p.name]:
                            if (key, s.name) in done_preds[p.name]:
                                continue
                            if s.name in errs:
                                pred_rows.append((key, s.name, p.name, None, None, errs[s.name]))
                            else:
                                items.append((key, s.name, dataset.labels[i], blobs[s.name]))
                    if items:
                        logits, perrs = p.predict_logits([it[3] for it in items])
                        logits = np.asarray(logits)
                        if logits.shape != (len(items), p.num_classes):
                            raise ValueError(f"model {p.name} returned logits of shape {logits.shape}, "
                                             f"expected {(len(items), p.num_classes)}")
                        ok = [j for j, e in enumerate(perrs) if e is None]
                        ranks = np.zeros(len(items), np.int64)
                        top5 = np.zeros((len(items), min(5, p.num_classes)), np.int64)
                        if ok:
                            labels = np.array([items[j][2] for j in ok])
                            ranks[ok], top5[ok] = rank_and_topk(logits[ok], labels)
                        for j, (key, sname, _, _) in enumerate(items):
                            if perrs[j] is None:
                                pred_rows.append((key, sname, p.name, int(ranks[j]), top5[j].tolist(), None))
                            else:
                                pred_rows.append((key, sname, p.name, None, None, str(perrs[j])))
                        # the full logits too: selectors that combine versions (MEANPROB) need them
                        store.add_logits((items[j][0], items[j][1], p.name, logits[j]) for j in ok)
                    store.add_predictions(pred_rows)
                store.commit()  # one transaction per chunk: an interruption loses at most a chunk
                bar.update(len(idx))
        bar.close()
    finally:
        store.close()

    barrier()
    if rank != 0:
        return None
    if world_size > 1:
        with ResultStore(main_path) as main:
            for r in range(world_size):
                shard = os.path.join(shard_dir, f"rank{r}.sqlite")
                if os.path.exists(shard):
                    main.merge_from(shard)
                    os.remove(shard)
    if not write_report:
        return None
    options = {"jpeg_only": [p.name for p in predictors if len(applicable[p.name]) < len(settings)],
               **(report_options or {})}
    return _write(out_dir, dataset, [p.name for p in predictors], list(settings), **options)
