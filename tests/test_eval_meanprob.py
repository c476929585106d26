"""MEANPROB (the label-free mean of the versions' probabilities): computed from the logits a
normal `dctnet eval` run stores, without running any model, and equal to a hand computation."""

from __future__ import annotations

import json
import os
import sqlite3

import numpy as np
import pytest

from dctnet.evaluate.report import write_report
from dctnet.evaluate.selectors import mean_probabilities, rank_and_topk
from dctnet.evaluate.store import ResultStore
from dctnet.evaluate.study import run_study
from test_eval_study import NUM_CLASSES, SETTINGS, _make_images

# Image 1 (label 1): every version alone puts another class first, their mean puts class 1 first.
CRAFTED = {"original": [0, 2.0, 2.5, 0, 0, 0, 0], "qf90": [0, 2.0, 0, 2.5, 0, 0, 0],
           "qf10": [0, 2.0, 0, 0, 2.5, 0, 0]}


class RandomPredictor:
    """Seeded random logits per (image, setting) (CRAFTED for image 1), known by the exact
    bytes of each version; records every call."""

    num_classes = NUM_CLASSES

    def __init__(self, versions, name="fake", identity="fake-1"):
        self.versions, self.name, self.identity = versions, name, identity
        self.calls = 0
        self.returned: dict[tuple[int, str], np.ndarray] = {}

    def logits_of(self, image: int, setting: str) -> np.ndarray:
        if image == 1:
            return np.array(CRAFTED[setting], np.float32)
        rng = np.random.default_rng([image, ["original", "qf90", "qf10"].index(setting)])
        return (3 * rng.standard_normal(NUM_CLASSES)).astype(np.float32)

    def predict_logits(self, jpegs):
        self.calls += 1
        out = np.full((len(jpegs), NUM_CLASSES), np.nan, np.float32)
        for i, data in enumerate(jpegs):
            image, setting = self.versions[data]
            out[i] = self.logits_of(image, setting)
            self.returned[(image, setting)] = out[i].copy()
        return out, [None] * len(jpegs)


def _summary(out):
    with open(os.path.join(out, "summary.json")) as fh:
        return json.load(fh)


def test_mean_probabilities_by_hand():
    # softmax([0, 0]) = [.5, .5]; softmax([ln 3, 0]) = [.75, .25]; mean [.625, .375].
    got = mean_probabilities(np.array([[[0.0, 0.0], [np.log(3.0), 0.0]]]))
    np.testing.assert_allclose(got, [[0.625, 0.375]], rtol=1e-12)
    assert got.dtype == np.float64
    with pytest.raises(ValueError, match="expected logits"):
        mean_probabilities(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="finite"):
        mean_probabilities(np.array([[[0.0, np.nan]]]))


def test_meanprob_comes_from_stored_logits_without_running_a_model(tmp_path):
    ds, versions, sizes = _make_images(tmp_path)
    out = str(tmp_path / "out")
    pred = RandomPredictor(versions)
    run_study(ds, [pred], SETTINGS, out, progress=False, chunk=2, write_report=False)
    assert pred.calls == 2 and len(pred.returned) == 4 * len(SETTINGS)

    # The report step: any model call would fail.
    def refuse(jpegs):
        raise AssertionError("a model ran while the report was written")

    pred.predict_logits = refuse
    write_report(out, ds, ["fake"], SETTINGS, plots=False)
    summary = _summary(out)
    got = summary["models"]["fake"]["selectors"]["MEANPROB"]

    # By hand from what the model returned, as stored (float16): softmax per version, mean, rank.
    names = [s.name for s in SETTINGS]
    ranks = []
    for i in range(4):
        z = np.stack([pred.returned[(i, s)].astype(np.float16).astype(np.float64) for s in names])
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        mean = p.mean(axis=0)
        ranks.append(1 + int(np.sum(mean > mean[i])))
    ranks = np.array(ranks)
    assert ranks[1] == 1  # the crafted image: right only when the versions are combined
    assert got["top1"] == pytest.approx(100 * np.mean(ranks <= 1))
    assert got["top5"] == pytest.approx(100 * np.mean(ranks <= 5))
    assert got["count"] == 4 and got["chosen"] == {} and got["versions"] == names
    orig = sum(sizes[(i, "original")] for i in range(4))
    assert got["cr"] == pytest.approx(orig / sum(sizes[(i, s)] for i in range(4) for s in names), abs=1e-4)
    # No single version gets image 1 right at top-1, so MEANPROB is no choice of one.
    settings = summary["models"]["fake"]["settings"]
    with ResultStore(os.path.join(out, "results.sqlite")) as store:
        for s in names:
            assert store.predictions("fake")[(ds.keys[1], s)][0] > 1
        stored = store.logits("fake")
    assert len(stored) == 4 * len(SETTINGS)
    for (key, s), z in stored.items():
        assert z.dtype == np.float16 and z.shape == (NUM_CLASSES,)
        np.testing.assert_array_equal(z, pred.returned[(ds.keys.index(key), s)].astype(np.float16))
    # It is reported with the other selectors in the Markdown and CSV tables.
    with open(os.path.join(out, "summary.md")) as fh:
        md = fh.read()
    assert f"| MEANPROB | {got['top1']:.2f} | {got['top5']:.2f} |" in md
    with open(os.path.join(out, "selectors.csv")) as fh:
        rows = fh.read().splitlines()
    assert any(r.startswith(f"fake,MEANPROB,{got['top1']},{got['top5']},") for r in rows)
    assert settings["original"]["count"] == 4


def test_results_without_logits_are_recomputed_once(tmp_path):
    ds, versions, _ = _make_images(tmp_path)
    out = str(tmp_path / "out")
    pred = RandomPredictor(versions)
    run_study(ds, [pred], SETTINGS, out, progress=False, chunk=4, write_report=False)
    db = sqlite3.connect(os.path.join(out, "results.sqlite"))
    db.execute("DELETE FROM logits WHERE image = ?", (ds.keys[2],))  # as an older dctnet left them
    db.commit()
    db.close()
    with pytest.raises(ValueError, match="no stored logits of .* rerun `dctnet eval`"):
        write_report(out, ds, ["fake"], SETTINGS, plots=False)
    pred.returned.clear()
    run_study(ds, [pred], SETTINGS, out, progress=False, chunk=4, report_options={"plots": False})
    assert sorted(pred.returned) == [(2, s.name) for s in sorted(SETTINGS, key=lambda s: s.name)]
    assert _summary(out)["models"]["fake"]["selectors"]["MEANPROB"]["count"] == 4
    calls = pred.calls
    run_study(ds, [pred], SETTINGS, out, progress=False, chunk=4, report_options={"plots": False})
    assert pred.calls == calls  # nothing left to compute


def test_float16_overflow_is_stored_as_float32(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as store:
        store.add_logits([("a", "original", "m", np.array([1e5, 0.0], np.float32)),
                          ("b", "original", "m", np.array([1.0, 0.0], np.float32))])
        got = store.logits("m")
    assert got[("a", "original")].dtype == np.float32 and got[("a", "original")][0] == 1e5
    assert got[("b", "original")].dtype == np.float16
    ranks, _ = rank_and_topk(mean_probabilities(np.stack([got[("a", "original")]])[:, None]), np.array([0]))
    assert ranks.tolist() == [1]
