"""Per-image choice among versions of an image (Yang, Amer, Jiang, Entropy 2021).

Every image exists as V versions ordered from the highest quality to the lowest:
the original first, then QF 100, 90, ..., 10. For one model, the inputs are

* ``ranks``  ``int (N, V)``: the true class's rank (1 = top-1) of each version;
* ``top1``   ``int (N, V)``: the predicted class of each version;
* ``top5``   ``int (N, V, 5)``: the five best classes of each version (any order);

and each selector returns ``int (N,)``: the index of the chosen version per image.

* **HRS** (label known): the version with the best (smallest) true-class rank; ties go
  to the lowest quality (the largest version index). Its rank is the minimum over
  versions, so its top-k accuracy is at least any selector's for every k.
* **T1K** / **T5K** / **TTK** (label unknown): the lowest-quality version whose top-1
  label / top-5 set / both equal the original's (version 0). The original always
  qualifies, so a choice always exists; the chosen version is correct at top-1 (T1K),
  top-5 (T5K) or both (TTK) exactly when the original is.

One label-free combiner needs no training and no choice (Yang et al. §4, the topology's
training-free counterpart; its trained form is :mod:`dctnet.models.multiqf`):

* **MEANPROB**: the mean over the versions of each version's softmax probabilities,
  computed from the stored logits of a normal run (:func:`mean_probabilities`); its
  prediction is the class order of that mean. It uses every version (the "chosen" counts of
  the summary do not apply; its compression ratio counts the bytes of all of them).

Ranks and top-5 sets must come from the same order (:func:`rank_and_topk`): classes by
decreasing logit, ties to the lower class index, so "rank <= k" and "in the top-k set"
agree.
"""

from __future__ import annotations

import numpy as np

__all__ = ["COMBINERS", "SELECTORS", "mean_probabilities", "select", "select_hrs", "select_t1k", "select_t5k", "select_ttk", "rank_and_topk"]

SELECTORS = ("HRS", "T1K", "T5K", "TTK")
#: Label-free rules that combine the versions' outputs instead of choosing one.
COMBINERS = ("MEANPROB",)


def rank_and_topk(logits: np.ndarray, labels: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """True-class rank and the k best classes from logits.

    Args:
        logits: ``float (N, C)``.
        labels: ``int (N,)`` true class indices.
    Returns:
        ``(ranks int64 (N,), topk int64 (N, min(k, C)))``: rank 1 is the best; classes are
        ordered by decreasing logit with ties to the lower class index (a stable order),
        so ``rank <= j`` exactly when the label is among ``topk[:, :j]``.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels, dtype=np.int64)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"expected logits (N, C) and labels (N,), got {logits.shape} and {labels.shape}")
    n, c = logits.shape
    if n and (labels.min() < 0 or labels.max() >= c):
        raise ValueError(f"labels must be in 0..{c - 1}")
    order = np.argsort(-logits, axis=1, kind="stable")
    true = logits[np.arange(n), labels][:, None]
    idx = np.arange(c)[None, :]
    ranks = 1 + np.sum((logits > true) | ((logits == true) & (idx < labels[:, None])), axis=1)
    return ranks.astype(np.int64), order[:, :min(k, c)].astype(np.int64)


def _last_true(mask: np.ndarray) -> np.ndarray:
    """Index of the last True per row of a bool ``(N, V)`` (column 0 must be True)."""
    v = mask.shape[1]
    return (v - 1 - np.argmax(mask[:, ::-1], axis=1)).astype(np.int64)


def select_hrs(ranks: np.ndarray) -> np.ndarray:
    """HRS: best true-class rank, ties to the lowest quality. ``(N, V) -> int64 (N,)``."""
    ranks = np.asarray(ranks)
    return _last_true(ranks == ranks.min(axis=1, keepdims=True))


def select_t1k(top1: np.ndarray) -> np.ndarray:
    """T1K: lowest quality with the original's top-1 label. ``(N, V) -> int64 (N,)``."""
    top1 = np.asarray(top1)
    return _last_true(top1 == top1[:, :1])


def _same_top5(top5: np.ndarray) -> np.ndarray:
    s = np.sort(np.asarray(top5), axis=2)
    return np.all(s == s[:, :1, :], axis=2)


def select_t5k(top5: np.ndarray) -> np.ndarray:
    """T5K: lowest quality with the original's top-5 set. ``(N, V, 5) -> int64 (N,)``."""
    return _last_true(_same_top5(top5))


def select_ttk(top1: np.ndarray, top5: np.ndarray) -> np.ndarray:
    """TTK: lowest quality with the original's top-1 label and top-5 set. ``-> int64 (N,)``."""
    top1 = np.asarray(top1)
    return _last_true((top1 == top1[:, :1]) & _same_top5(top5))


def select(name: str, ranks: np.ndarray, top5: np.ndarray) -> np.ndarray:
    """Selector ``name`` in :data:`SELECTORS`; ``top5[..., 0]`` is taken as the top-1 label."""
    top5 = np.asarray(top5)
    top1 = top5[..., 0]
    if name == "HRS":
        return select_hrs(ranks)
    if name == "T1K":
        return select_t1k(top1)
    if name == "T5K":
        return select_t5k(top5)
    if name == "TTK":
        return select_ttk(top1, top5)
    raise ValueError(f"unknown selector {name!r}; choose from {', '.join(SELECTORS)}")


def mean_probabilities(logits: np.ndarray) -> np.ndarray:
    """MEANPROB: the mean over versions of the softmax probabilities.

    Args:
        logits: ``float (N, V, C)``: per image, the logits of each of its V versions (any float
            dtype; computed in float64).
    Returns:
        ``float64 (N, C)``: ``mean_v softmax(logits[:, v, :])``; each row sums to 1. Rank its
        classes with :func:`rank_and_topk` (it takes probabilities as it takes logits).
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 3 or z.shape[1] < 1:
        raise ValueError(f"expected logits (N, V, C) with V >= 1, got shape {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits must be finite (a failed version has no logits: leave the image out)")
    z = z - z.max(axis=2, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=2, keepdims=True)
    return p.mean(axis=1)
