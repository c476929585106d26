"""Selectors (HRS/T1K/T5K/TTK) and rank computation: property tests on random logit tables."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dctnet.evaluate.selectors import SELECTORS, rank_and_topk, select


@st.composite
def logit_tables(draw):
    """Random (N, V, C) integer logits (ties are common) and labels (N,)."""
    n = draw(st.integers(1, 12))
    v = draw(st.integers(1, 6))
    c = draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    logits = rng.integers(0, draw(st.integers(1, 6)), size=(n, v, c)).astype(np.float32)
    labels = rng.integers(0, c, size=n)
    return logits, labels


def _tables(logits, labels):
    n, v, c = logits.shape
    ranks = np.zeros((n, v), np.int64)
    top5 = np.zeros((n, v, min(5, c)), np.int64)
    for j in range(v):
        ranks[:, j], top5[:, j] = rank_and_topk(logits[:, j], labels)
    return ranks, top5


@settings(max_examples=300, deadline=None)
@given(logit_tables())
def test_rank_and_topk_agree_with_a_sort(table):
    logits, labels = table
    n, v, c = logits.shape
    ranks, top5 = _tables(logits, labels)
    for i in range(n):
        for j in range(v):
            # Independent order: Python's sort on (-logit, class index).
            order = sorted(range(c), key=lambda k: (-float(logits[i, j, k]), k))
            assert ranks[i, j] == order.index(labels[i]) + 1
            assert list(top5[i, j]) == order[:min(5, c)]


@settings(max_examples=300, deadline=None)
@given(logit_tables())
def test_selector_guarantees(table):
    logits, labels = table
    n, v, c = logits.shape
    ranks, top5 = _tables(logits, labels)
    chosen = {name: select(name, ranks, top5) for name in SELECTORS}
    rows = np.arange(n)
    for name, idx in chosen.items():
        assert idx.shape == (n,) and idx.min() >= 0 and idx.max() < v
    r = {name: ranks[rows, idx] for name, idx in chosen.items()}
    # HRS's top-k is at least every other selector's and every single version's, for every k.
    for k in range(1, c + 1):
        best = np.sum(r["HRS"] <= k)
        for name in SELECTORS:
            assert best >= np.sum(r[name] <= k)
        for j in range(v):
            assert best >= np.sum(ranks[:, j] <= k)
    orig = ranks[:, 0]
    k5 = min(5, c)
    # T1K keeps top-1 per image (hence overall), T5K keeps top-5, TTK both.
    assert np.array_equal(r["T1K"] <= 1, orig <= 1)
    assert np.array_equal(r["T5K"] <= k5, orig <= k5)
    assert np.array_equal(r["TTK"] <= 1, orig <= 1)
    assert np.array_equal(r["TTK"] <= k5, orig <= k5)
    # "Lowest quality": no later version satisfies the selector's condition.
    for i in range(n):
        for j in range(chosen["T1K"][i] + 1, v):
            assert top5[i, j, 0] != top5[i, 0, 0]
        for j in range(chosen["HRS"][i] + 1, v):
            assert ranks[i, j] > ranks[i, chosen["HRS"][i]]


def test_hrs_ties_go_to_lowest_quality():
    ranks = np.array([[1, 1, 1], [3, 2, 2], [1, 2, 3]])
    assert select("HRS", ranks, np.zeros((3, 3, 5), np.int64)).tolist() == [2, 2, 0]


def test_unknown_selector_and_bad_labels():
    with pytest.raises(ValueError, match="unknown selector"):
        select("XYZ", np.ones((1, 1)), np.zeros((1, 1, 5)))
    with pytest.raises(ValueError, match="labels"):
        rank_and_topk(np.zeros((2, 3)), np.array([0, 3]))
