"""The study runner and its summary: a hand computation, resume, sharding, errors."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

import dctnet.evaluate.study as study_mod
from dctnet.data.datasets import load_class_list, open_dataset
from dctnet.data.encode import encode_setting, make_settings
from dctnet.evaluate.store import StaleResultsError
from dctnet.evaluate.study import run_study, shard_indices

NUM_CLASSES = 7
SETTINGS = make_settings((90, 10))  # original, qf90, qf10
# Best-first class orders per image (label = image index) and setting; see the expected
# numbers below, worked out by hand from these tables.
ORDERS = {
    0: {"original": [0, 1, 2, 3, 4, 5, 6], "qf90": [1, 0, 2, 3, 4, 5, 6], "qf10": [0, 2, 1, 3, 4, 5, 6]},
    1: {"original": [2, 1, 0, 3, 4, 5, 6], "qf90": [1, 2, 0, 3, 4, 5, 6], "qf10": [2, 3, 4, 5, 6, 1, 0]},
    2: {"original": [0, 1, 3, 4, 5, 6, 2], "qf90": [0, 1, 3, 4, 2, 5, 6], "qf10": [0, 3, 1, 4, 5, 2, 6]},
    3: {"original": [3, 0, 1, 2, 4, 5, 6], "qf90": [3, 0, 1, 2, 4, 5, 6], "qf10": [3, 6, 5, 4, 2, 1, 0]},
}


class TablePredictor:
    """Returns the logits of ORDERS for the exact bytes of each version; counts its work."""

    num_classes = NUM_CLASSES

    def __init__(self, versions: dict[bytes, tuple[int, str]], name: str = "fake", identity: str = "fake-1"):
        self.versions, self.name, self.identity = versions, name, identity
        self.seen: list[tuple[int, str]] = []

    def predict_logits(self, jpegs):
        logits = np.full((len(jpegs), NUM_CLASSES), np.nan, np.float32)
        errors = [None] * len(jpegs)
        for i, data in enumerate(jpegs):
            if data not in self.versions:
                errors[i] = "unknown image"
                continue
            image, setting = self.versions[data]
            self.seen.append((image, setting))
            order = ORDERS[image][setting]
            logits[i, order] = np.arange(NUM_CLASSES, 0, -1, dtype=np.float32)
        return logits, errors


def _make_images(root):
    """Four small photos in class folders c0..c3 of a 7-class list."""
    from turbojpeg import TJPF_RGB, TurboJPEG

    tj = TurboJPEG()
    rng = np.random.default_rng(0)
    (root / "data").mkdir()
    for i in range(4):
        (root / "data" / f"c{i}").mkdir()
        yy, xx = np.mgrid[0:40, 0:56]
        img = np.stack([(xx * (3 + i)) % 256, (yy * 5) % 256, (xx + yy) * 2 % 256], -1)
        img = np.clip(img + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)
        (root / "data" / f"c{i}" / "img.jpg").write_bytes(tj.encode(img, quality=95, pixel_format=TJPF_RGB))
    (root / "classes.tsv").write_text("".join(f"c{i}\tclass {i}\n" for i in range(NUM_CLASSES)))
    ds = open_dataset(root / "data", classes=root / "classes.tsv")
    assert ds.labels == [0, 1, 2, 3]
    versions, sizes = {}, {}
    for i, path in enumerate(ds.paths):
        with open(path, "rb") as fh:
            original = fh.read()
        for s in SETTINGS:
            data = encode_setting(original, s)
            versions[data] = (i, s.name)
            sizes[(i, s.name)] = len(data)
    return ds, versions, sizes


@pytest.fixture()
def images(tmp_path):
    return _make_images(tmp_path)


def _summary(out):
    with open(os.path.join(out, "summary.json")) as fh:
        return json.load(fh)


def test_numbers_match_a_hand_computation(tmp_path, images):
    ds, versions, sizes = images
    out = str(tmp_path / "out")
    run_study(ds, [TablePredictor(versions)], SETTINGS, out, progress=False, chunk=3,
              report_options={"plots": False, "confusion": ("fake", "qf90")})
    summ = _summary(out)
    m = summ["models"]["fake"]
    assert m["count"] == 4 and m["failed"] == 0
    # True-class ranks by hand: original [1, 2, 7, 1], qf90 [2, 1, 5, 1], qf10 [1, 6, 6, 1].
    expected = {"original": (50.0, 75.0), "qf90": (50.0, 100.0), "qf10": (50.0, 50.0)}
    pixels = 56 * 40 * 4
    for name, (t1, t5) in expected.items():
        got = m["settings"][name]
        total = sum(sizes[(i, name)] for i in range(4))
        assert (got["top1"], got["top5"], got["count"]) == (t1, t5, 4)
        assert got["mean_bytes"] == pytest.approx(total / 4, abs=0.05)
        assert got["bpp"] == pytest.approx(8 * total / pixels, abs=1e-4)
        assert got["cr"] == pytest.approx(sum(sizes[(i, "original")] for i in range(4)) / total, abs=1e-4)
    # Rank differences: qf90 [1, -1, -2, 0], qf10 [0, 4, -1, 0] (population std).
    assert m["settings"]["qf90"]["rank_diff"] == pytest.approx({"mean": -0.5, "median": -0.5, "std": math.sqrt(1.25)},
                                                               abs=1e-4)
    assert m["settings"]["qf10"]["rank_diff"] == pytest.approx({"mean": 0.75, "median": 0.0, "std": math.sqrt(3.6875)},
                                                               abs=1e-4)
    # Selectors by hand: chosen versions per image and their ranks.
    chosen = {"HRS": ["qf10", "qf90", "qf90", "qf10"], "T1K": ["qf10"] * 4,
              "T5K": ["qf10", "qf90", "qf10", "qf90"], "TTK": ["qf10", "original", "qf10", "qf90"]}
    accuracy = {"HRS": (75.0, 100.0), "T1K": (50.0, 50.0), "T5K": (75.0, 75.0), "TTK": (50.0, 75.0)}
    orig_total = sum(sizes[(i, "original")] for i in range(4))
    for sel, picks in chosen.items():
        got = m["selectors"][sel]
        assert (got["top1"], got["top5"]) == accuracy[sel], sel
        assert got["cr"] == pytest.approx(orig_total / sum(sizes[(i, s)] for i, s in enumerate(picks)), abs=1e-4)
        assert got["chosen"] == {s: picks.count(s) for s in ("original", "qf90", "qf10")}
    # Quality numbers are present for the re-encodings only, and fall with QF.
    q = summ["settings"]
    assert q["original"]["psnr"] is None and q["qf90"]["psnr"] > q["qf10"]["psnr"] > 15
    assert 1 >= q["qf90"]["ssim"] > q["qf10"]["ssim"] > 0
    # Confusion matrix of qf90: top-1 classes [1, 1, 0, 3] for labels [0, 1, 2, 3].
    assert summ["confusion"] == {"model": "fake", "setting": "qf90", "file": "confusion_fake_qf90.csv"}
    with open(os.path.join(out, "confusion_fake_qf90.csv")) as fh:
        rows = fh.read().splitlines()
    assert rows[1:] == ["0,class 0,1,class 1,1", "1,class 1,1,class 1,1", "2,class 2,0,class 0,1",
                        "3,class 3,3,class 3,1"]
    with open(os.path.join(out, "summary.md")) as fh:
        md = fh.read()
    assert "| HRS | 75.00 | 100.00 |" in md
    with open(os.path.join(out, "settings.csv")) as fh:
        csv_rows = fh.read().splitlines()
    assert len(csv_rows) == 1 + len(SETTINGS) and csv_rows[1].startswith("fake,original,50.0,75.0,4,")


def test_interrupted_run_resumes_and_rerun_recomputes_nothing(tmp_path, images, monkeypatch):
    ds, versions, _ = images

    class Interrupting(TablePredictor):
        def predict_logits(self, jpegs):
            if len(self.seen) >= 2 * len(SETTINGS):  # after two images' worth of work
                raise KeyboardInterrupt
            return super().predict_logits(jpegs)

    out = str(tmp_path / "out")
    first = Interrupting(versions)
    with pytest.raises(KeyboardInterrupt):
        run_study(ds, [first], SETTINGS, out, progress=False, chunk=2)
    assert len(first.seen) == 2 * len(SETTINGS)
    second = TablePredictor(versions)
    run_study(ds, [second], SETTINGS, out, progress=False, chunk=2, report_options={"plots": False})
    assert sorted(second.seen) == sorted((i, s.name) for i in (2, 3) for s in SETTINGS)
    resumed = _summary(out)

    def fail(*a, **k):
        raise AssertionError("re-encoded although everything was stored")

    monkeypatch.setattr(study_mod, "_make_versions", fail)
    third = TablePredictor(versions)
    run_study(ds, [third], SETTINGS, out, progress=False, report_options={"plots": False})
    assert third.seen == []
    assert _summary(out) == resumed
    monkeypatch.undo()
    fresh = str(tmp_path / "fresh")
    run_study(ds, [TablePredictor(versions)], SETTINGS, fresh, progress=False, report_options={"plots": False})
    assert _summary(fresh)["models"] == resumed["models"]
    assert _summary(fresh)["settings"] == resumed["settings"]
    # Another model under a stored name is refused rather than mixed in.
    with pytest.raises(StaleResultsError, match="another model named 'fake'"):
        run_study(ds, [TablePredictor(versions, identity="fake-2")], SETTINGS, out, progress=False)


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_shards_are_disjoint_and_cover(world):
    for n in (0, 1, 4, 11):
        shards = [list(shard_indices(n, r, world)) for r in range(world)]
        flat = sorted(i for s in shards for i in s)
        assert flat == list(range(n))
    with pytest.raises(ValueError):
        shard_indices(4, world, world)


def test_sharded_run_merges_to_the_same_summary(tmp_path, images):
    ds, versions, _ = images
    sharded, single = str(tmp_path / "sharded"), str(tmp_path / "single")
    barriers = []
    preds = {}
    # Ranks run one after another (rank 0 last: it merges after the final barrier).
    for rank in (2, 1, 0):
        preds[rank] = TablePredictor(versions)
        path = run_study(ds, [preds[rank]], SETTINGS, sharded, progress=False, rank=rank, world_size=3,
                         barrier=lambda: barriers.append(1), report_options={"plots": False})
        assert (path is None) == (rank != 0)
    assert {i for i, _ in preds[1].seen} == {1} and {i for i, _ in preds[2].seen} == {2}
    assert {i for i, _ in preds[0].seen} == {0, 3}
    assert len(barriers) == 6 and not os.listdir(os.path.join(sharded, "shards"))
    run_study(ds, [TablePredictor(versions)], SETTINGS, single, progress=False, report_options={"plots": False})
    a, b = _summary(sharded), _summary(single)
    assert a["models"] == b["models"] and a["settings"] == b["settings"]


def test_bad_files_are_reported_and_left_out(tmp_path, images):
    ds, versions, _ = images
    bad = os.path.join(ds.root, "c1", "broken.jpg")
    with open(bad, "wb") as fh:
        fh.write(b"\xff\xd8\xff\xdbnot a jpeg at all")
    ds2 = open_dataset(ds.root, classes=load_class_list(tmp_path / "classes.tsv"))
    assert len(ds2) == 5
    out = str(tmp_path / "out")
    run_study(ds2, [TablePredictor(versions)], SETTINGS, out, progress=False, report_options={"plots": False})
    summ = _summary(out)
    m = summ["models"]["fake"]
    assert m["count"] == 4 and m["failed"] == 1
    assert m["settings"]["original"]["top1"] == 50.0
    assert summ["errors"]["count"] == 1 and summ["errors"]["first"][0]["image"] == "c1/broken.jpg"
    assert summ["settings"]["qf90"]["count"] == 4


def test_model_and_class_list_must_agree(tmp_path, images):
    ds, versions, _ = images
    wide = TablePredictor(versions)
    wide.num_classes = NUM_CLASSES + 1
    with pytest.raises(ValueError, match="8 outputs but the class list .* has 7 classes"):
        run_study(ds, [wide], SETTINGS, str(tmp_path / "out"), progress=False)
    with pytest.raises(ValueError, match="unique"):
        run_study(ds, [TablePredictor(versions), TablePredictor(versions)], SETTINGS, str(tmp_path / "o"),
                  progress=False)


def test_missing_matplotlib_is_impossible_to_miss(tmp_path, images, monkeypatch, capsys):
    import sys

    ds, versions, _ = images
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    out = tmp_path / "out"
    run_study(ds, [TablePredictor(versions)], SETTINGS, str(out), progress=False)
    assert "PLOTS NOT WRITTEN" in capsys.readouterr().err
    assert "matplotlib is not installed" in _summary(str(out))["plots"]["error"]
    assert (out / "PLOTS_MISSING.txt").exists() and not (out / "accuracy_vs_qf.png").exists()
    monkeypatch.undo()
    run_study(ds, [TablePredictor(versions)], SETTINGS, str(out), progress=False)
    assert not (out / "PLOTS_MISSING.txt").exists() and (out / "accuracy_vs_qf.png").exists()


def test_an_image_changed_in_place_is_recognised_by_its_content(tmp_path, images):
    """Same key, label and size but other bytes: stored results are refused, not reused."""
    ds, versions, _ = images
    out = str(tmp_path / "out")
    run_study(ds, [TablePredictor(versions)], SETTINGS, out, progress=False, report_options={"plots": False})
    path = ds.paths[1]
    with open(path, "rb") as fh:
        data = bytearray(fh.read())
    data[len(data) // 2] ^= 0x01  # one bit inside the entropy-coded data: same size
    with open(path, "wb") as fh:
        fh.write(data)
    with pytest.raises(StaleResultsError, match="changed in place"):
        run_study(ds, [TablePredictor(versions)], SETTINGS, out, progress=False)


def test_a_corrupt_results_database_names_the_file(tmp_path, images):
    ds, versions, _ = images
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.sqlite").write_bytes(b"this is not an sqlite database" * 100)
    with pytest.raises(ValueError, match=r"results\.sqlite: not a readable dctnet results database"):
        run_study(ds, [TablePredictor(versions)], SETTINGS, str(out), progress=False)


def test_a_database_without_hashes_gets_them(tmp_path, images):
    """Results folders of dctnet 0.1 (no sha256 column) are read and completed."""
    import sqlite3

    from dctnet.evaluate.store import ResultStore

    ds, versions, _ = images
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE images(image TEXT PRIMARY KEY, label INTEGER NOT NULL, size INTEGER NOT NULL)")
    db.execute("INSERT INTO images VALUES ('a.jpg', 1, 10)")
    db.commit()
    db.close()
    with ResultStore(path) as store:
        store.register_images(["a.jpg"], [1], [10], ["ab" * 32])
        assert list(store.db.execute("SELECT sha256 FROM images")) == [("ab" * 32,)]
        with pytest.raises(StaleResultsError, match="changed in place"):
            store.register_images(["a.jpg"], [1], [10], ["cd" * 32])
